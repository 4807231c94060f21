//! What one scope accumulates: latency histograms and outcome counts.
//!
//! An answer is *available* when it came in time, is not a 5xx, is not degraded (it
//! matched one of the workload's `degraded` rules: served, but stale) and did not fail
//! its step's `expect` check. A flow start dropped at the in-flight limit counts as one
//! more unavailable request of its scope: it is in availability's denominator.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::slo::Observable;

/// The highest latency tracked exactly, in microseconds (an hour); longer ones are
/// recorded as an hour.
pub const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Why a request got no usable answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No answer within the per-request timeout.
    Timeout,
    /// The connection was refused.
    ConnectRefused,
    /// Any other failure to connect.
    Connect,
    /// The connection was reset or closed before the answer was complete.
    Reset,
    /// A malformed answer or another transport failure.
    Protocol,
    /// A value to capture was not in the response; the flow could not go on.
    Capture,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [Self; 6] =
        [Self::Timeout, Self::ConnectRefused, Self::Connect, Self::Reset, Self::Protocol, Self::Capture];

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectRefused => "connect_refused",
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Capture => "capture",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer with this status code arrived in time.
    Status(u16),
    /// No usable answer.
    Error(ErrorKind),
}

impl Outcome {
    /// A 2xx or 3xx answer in time.
    pub fn succeeded(self) -> bool {
        matches!(self, Self::Status(s) if (200..400).contains(&s))
    }

    /// An answer in time that is not a 5xx; availability also asks that it be neither
    /// degraded nor a failed check (see [`Counts::record`]).
    pub fn available(self) -> bool {
        matches!(self, Self::Status(s) if s < 500)
    }
}

/// Whether an answer met its step's `expect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Check {
    /// The step states no `expect`.
    #[default]
    Unchecked,
    /// An answer came in time and met every expectation.
    Passed,
    /// No answer in time, or one that broke an expectation: a wrong answer.
    Failed,
}

/// What the workload's answer rules said about one answer (or, for a flow, about the
/// answers of its steps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    /// It matched a `degraded` rule: served, but stale or partial.
    pub degraded: bool,
    /// How it fared against `expect`.
    pub check: Check,
}

impl Judgement {
    /// No rule applied: the answer is judged by its outcome alone.
    pub const NONE: Self = Self { degraded: false, check: Check::Unchecked };

    /// The judgement of a whole flow from those of its steps so far: degraded when any
    /// step was, failed when any check failed, passed when some passed and none failed.
    pub fn and(self, step: Self) -> Self {
        let check = match (self.check, step.check) {
            (Check::Failed, _) | (_, Check::Failed) => Check::Failed,
            (Check::Passed, _) | (_, Check::Passed) => Check::Passed,
            _ => Check::Unchecked,
        };
        Self { degraded: self.degraded || step.degraded, check }
    }
}

/// The counts every scope keeps, also per second: what the ratio metrics divide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests (or flows) recorded.
    pub total: u64,
    /// Those available: in time, not 5xx, not degraded, no failed check.
    pub available: u64,
    /// Those that would be available but for being degraded, plus the available ones.
    pub available_including_degraded: u64,
    /// Those answered in time with a 2xx/3xx and no failed check.
    pub succeeded: u64,
    /// Those that matched a `degraded` rule.
    pub degraded: u64,
    /// Checks (requests of steps with `expect`, or flows with such steps) that passed.
    pub checks_passed: u64,
    /// Checks that failed.
    pub checks_failed: u64,
    /// Flow starts dropped at the in-flight limit, each one more unavailable request.
    pub dropped: u64,
    /// Operations a business-outcome share is over (`ok_share(f)`: the operations of
    /// `f`): filled in by a scenario from its history (the load generator leaves it 0).
    pub placed: u64,
    /// Of those, the ones with the outcome (ended `ok`, with the value asked for).
    pub paid: u64,
}

impl Counts {
    /// Counts one request (or flow).
    #[inline]
    pub fn record(&mut self, outcome: Outcome, judgement: Judgement) {
        let failed_check = judgement.check == Check::Failed;
        let usable = outcome.available() && !failed_check;
        self.total += 1;
        self.available_including_degraded += u64::from(usable);
        self.available += u64::from(usable && !judgement.degraded);
        self.succeeded += u64::from(outcome.succeeded() && !failed_check);
        self.degraded += u64::from(judgement.degraded);
        self.checks_passed += u64::from(judgement.check == Check::Passed);
        self.checks_failed += u64::from(failed_check);
    }

    /// Requests plus dropped starts: availability's denominator.
    pub fn offered(&self) -> u64 {
        self.total + self.dropped
    }

    /// Checks made.
    pub fn checks(&self) -> u64 {
        self.checks_passed + self.checks_failed
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Counts) {
        self.total += other.total;
        self.available += other.available;
        self.available_including_degraded += other.available_including_degraded;
        self.succeeded += other.succeeded;
        self.degraded += other.degraded;
        self.checks_passed += other.checks_passed;
        self.checks_failed += other.checks_failed;
        self.dropped += other.dropped;
    }
}

/// `part / whole`, or 0 when `whole` is 0 (for reports; SLOs treat it as no data).
pub fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Histograms and counts for one scope (overall, a flow, a step) and window.
#[derive(Clone, Debug)]
pub struct Stats {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    status_classes: [u64; 6],
    errors: [u64; ErrorKind::ALL.len()],
    counts: Counts,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// A latency histogram in microseconds with `digits` significant digits.
pub fn latency_histogram(digits: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure is a bug here.
    Histogram::new_with_bounds(1, MAX_TRACKED_US, digits).expect("valid histogram bounds")
}

/// Whole microseconds of `d`, clamped to what the histograms track.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(MAX_TRACKED_US)
}

impl Stats {
    /// Empty stats, three significant digits.
    pub fn new() -> Self {
        Self {
            latency: latency_histogram(3),
            service: latency_histogram(3),
            status_classes: [0; 6],
            errors: [0; ErrorKind::ALL.len()],
            counts: Counts::default(),
        }
    }

    /// Records one request or flow that no answer rule applied to.
    #[inline]
    pub fn record(&mut self, latency_us: u64, service_us: u64, outcome: Outcome) {
        self.record_judged(latency_us, service_us, outcome, Judgement::NONE);
    }

    /// Records one request or flow: corrected latency, service time, outcome, and what
    /// the answer rules said about it.
    #[inline]
    pub fn record_judged(&mut self, latency_us: u64, service_us: u64, outcome: Outcome, judgement: Judgement) {
        self.latency.saturating_record(latency_us);
        self.service.saturating_record(service_us);
        self.counts.record(outcome, judgement);
        match outcome {
            Outcome::Status(code) => {
                let class = usize::from(code / 100).min(5);
                self.status_classes[class] += 1;
            }
            Outcome::Error(kind) => self.errors[kind.index()] += 1,
        }
    }

    /// Counts a flow start dropped at the in-flight limit: an unavailable request.
    pub fn record_dropped(&mut self) {
        self.counts.dropped += 1;
    }

    /// Every count of the scope.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Requests (or flows) recorded.
    pub fn total(&self) -> u64 {
        self.counts.total
    }

    /// Those available: answered in time, not 5xx, not degraded, no failed check.
    pub fn available(&self) -> u64 {
        self.counts.available
    }

    /// Share of requests and dropped starts that were available.
    pub fn availability(&self) -> f64 {
        share(self.counts.available, self.counts.offered())
    }

    /// Those answered in time with a 2xx/3xx and no failed check.
    pub fn succeeded(&self) -> u64 {
        self.counts.succeeded
    }

    /// Those that matched a `degraded` rule.
    pub fn degraded(&self) -> u64 {
        self.counts.degraded
    }

    /// Flow starts of this scope dropped at the in-flight limit.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped
    }

    /// Corrected latency (from the intended send time), microseconds.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Service time (from the actual send), microseconds.
    pub fn service(&self) -> &Histogram<u64> {
        &self.service
    }

    /// Answers with status `class`xx (1..=5).
    pub fn status_class(&self, class: u16) -> u64 {
        self.status_classes.get(usize::from(class)).copied().unwrap_or(0)
    }

    /// Requests that failed with `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    /// Requests without a 2xx/3xx answer in time or with a failed check: transport
    /// errors, 4xx, 5xx and wrong answers.
    pub fn failed(&self) -> u64 {
        self.counts.total - self.counts.succeeded
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        for (a, b) in self.status_classes.iter_mut().zip(other.status_classes) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.counts.merge(&other.counts);
    }
}

/// Milliseconds of a histogram value in microseconds.
pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Observable for Stats {
    fn counts(&self) -> Counts {
        self.counts
    }
    fn latency_percentile_ms(&self, q: f64) -> f64 {
        us_to_ms(self.latency.value_at_quantile(q / 100.0))
    }
    fn latency_max_ms(&self) -> f64 {
        us_to_ms(self.latency.max())
    }
    fn latency_mean_ms(&self) -> f64 {
        self.latency.mean() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_by_class_and_kind() {
        let mut s = Stats::new();
        s.record(1000, 900, Outcome::Status(200));
        s.record(1000, 900, Outcome::Status(404));
        s.record(1000, 900, Outcome::Status(503));
        s.record(2_000_000, 0, Outcome::Error(ErrorKind::Timeout));
        assert_eq!((s.total(), s.available(), s.succeeded(), s.failed()), (4, 2, 1, 3));
        assert_eq!((s.status_class(4), s.status_class(5)), (1, 1));
        assert_eq!(s.errors(ErrorKind::Timeout), 1);
        assert_eq!(s.latency().max(), s.latency().highest_equivalent(2_000_000));
    }

    #[test]
    fn degraded_answers_are_available_only_including_degraded() {
        let mut s = Stats::new();
        let stale = Judgement { degraded: true, check: Check::Unchecked };
        s.record_judged(1000, 900, Outcome::Status(200), stale);
        s.record(1000, 900, Outcome::Status(200));
        let c = s.counts();
        assert_eq!((c.total, c.available, c.available_including_degraded, c.degraded), (2, 1, 2, 1));
        assert_eq!(s.succeeded(), 2, "a stale answer is still an answer: not an error");
    }

    #[test]
    fn a_failed_check_is_neither_available_nor_a_success() {
        let mut s = Stats::new();
        let wrong = Judgement { degraded: false, check: Check::Failed };
        s.record_judged(1000, 900, Outcome::Status(200), wrong);
        s.record_judged(1000, 900, Outcome::Status(200), Judgement { degraded: false, check: Check::Passed });
        let c = s.counts();
        assert_eq!((c.available, c.available_including_degraded, c.succeeded), (1, 1, 1));
        assert_eq!((c.checks_passed, c.checks_failed, s.failed()), (1, 1, 1));
    }

    #[test]
    fn dropped_starts_are_unavailable_requests() {
        let mut s = Stats::new();
        s.record(1000, 900, Outcome::Status(200));
        s.record_dropped();
        assert_eq!((s.total(), s.dropped(), s.counts().offered()), (1, 1, 2));
        assert_eq!(s.availability(), 0.5);
    }

    #[test]
    fn a_flow_is_degraded_or_failed_when_any_step_was() {
        let stale = Judgement { degraded: true, check: Check::Unchecked };
        let passed = Judgement { degraded: false, check: Check::Passed };
        let failed = Judgement { degraded: false, check: Check::Failed };
        assert_eq!(Judgement::NONE.and(stale).and(passed), Judgement { degraded: true, check: Check::Passed });
        assert_eq!(passed.and(failed).check, Check::Failed);
        assert_eq!(Judgement::NONE.and(Judgement::NONE), Judgement::NONE);
    }
}
