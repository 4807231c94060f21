//! What one scope accumulates: latency histograms and outcome counts.

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

    /// An answer in time that is not a 5xx (what availability counts).
    pub fn available(self) -> bool {
        matches!(self, Self::Status(s) if s < 500)
    }
}

/// Histograms and counts for one scope (overall, a flow, a step) and window.
#[derive(Clone, Debug)]
pub struct Stats {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    status_classes: [u64; 6],
    errors: [u64; ErrorKind::ALL.len()],
    total: u64,
    available: u64,
    succeeded: u64,
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
            total: 0,
            available: 0,
            succeeded: 0,
        }
    }

    /// Records one request or flow: corrected latency, service time, outcome.
    #[inline]
    pub fn record(&mut self, latency_us: u64, service_us: u64, outcome: Outcome) {
        self.latency.saturating_record(latency_us);
        self.service.saturating_record(service_us);
        self.total += 1;
        match outcome {
            Outcome::Status(code) => {
                let class = usize::from(code / 100).min(5);
                self.status_classes[class] += 1;
                self.available += u64::from(code < 500);
                self.succeeded += u64::from((200..400).contains(&code));
            }
            Outcome::Error(kind) => self.errors[kind.index()] += 1,
        }
    }

    /// Requests (or flows) recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Those answered in time without a 5xx.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Those answered in time with a 2xx/3xx.
    pub fn succeeded(&self) -> u64 {
        self.succeeded
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

    /// Requests without a 2xx/3xx answer in time: transport errors, 4xx and 5xx.
    pub fn failed(&self) -> u64 {
        self.total - self.succeeded
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
        self.total += other.total;
        self.available += other.available;
        self.succeeded += other.succeeded;
    }
}

/// Milliseconds of a histogram value in microseconds.
pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Observable for Stats {
    fn total(&self) -> u64 {
        self.total
    }
    fn available(&self) -> u64 {
        self.available
    }
    fn succeeded(&self) -> u64 {
        self.succeeded
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
}
