//! A time series of 1-second buckets, by intended send time.
//!
//! A bucket stays open while answers to requests meant for its second can still
//! arrive (the per-request timeout plus a margin); then it is closed into a
//! [`SecondSummary`] and its histogram is dropped, so memory stays bounded however
//! long the run.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use super::slo::Observable;
use super::stats::{latency_histogram, us_to_ms, Counts, Judgement, Outcome};

/// The most buckets kept open at once; samples further ahead are not bucketed.
pub const MAX_OPEN_SECONDS: u64 = 3_600;

/// What happened in one second of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct SecondSummary {
    /// Seconds since the start of the run.
    pub second: u64,
    /// Requests (or flows) intended to start in this second.
    pub requests: u64,
    /// Those without a 2xx/3xx answer in time, or with a failed check.
    pub errors: u64,
    /// Those not available: a 5xx, no answer in time, degraded, or a failed check.
    pub unavailable: u64,
    /// Those that matched a `degraded` rule.
    pub degraded: u64,
    /// Those that failed their check.
    pub checks_failed: u64,
    /// Starts dropped because the in-flight limit was reached.
    pub dropped: u64,
    /// Corrected latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Highest, milliseconds.
    pub max_ms: f64,
}

impl SecondSummary {
    /// Share of the second's requests that failed.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// One open second.
#[derive(Clone, Debug)]
pub struct Bucket {
    latency: Histogram<u64>,
    counts: Counts,
}

impl Bucket {
    fn new() -> Self {
        Self { latency: latency_histogram(2), counts: Counts::default() }
    }

    fn summary(&self, second: u64) -> SecondSummary {
        let q = |q: f64| us_to_ms(self.latency.value_at_quantile(q));
        let c = &self.counts;
        SecondSummary {
            second,
            requests: c.total,
            errors: c.total - c.succeeded,
            unavailable: c.total - c.available,
            degraded: c.degraded,
            checks_failed: c.checks_failed,
            dropped: c.dropped,
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: us_to_ms(self.latency.max()),
        }
    }
}

impl Observable for Bucket {
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

/// Buckets of one scope: closed summaries, then the open seconds.
#[derive(Clone, Debug, Default)]
pub struct TimeSeries {
    closed: Vec<SecondSummary>,
    open: VecDeque<Bucket>,
    /// The second of `open[0]`.
    first_open: u64,
    /// Samples that arrived after their second was closed.
    late: u64,
}

impl TimeSeries {
    fn bucket(&mut self, second: u64) -> Option<&mut Bucket> {
        let idx = second.checked_sub(self.first_open)?;
        if idx >= MAX_OPEN_SECONDS {
            return None;
        }
        while self.open.len() as u64 <= idx {
            self.open.push_back(Bucket::new());
        }
        self.open.get_mut(idx as usize)
    }

    /// Records a sample intended for `second`.
    #[inline]
    pub fn record(&mut self, second: u64, latency_us: u64, outcome: Outcome, judgement: Judgement) {
        match self.bucket(second) {
            Some(b) => {
                b.latency.saturating_record(latency_us);
                b.counts.record(outcome, judgement);
            }
            None => self.late += 1,
        }
    }

    /// Counts a dropped start in `second`.
    pub fn record_dropped(&mut self, second: u64) {
        match self.bucket(second) {
            Some(b) => b.counts.dropped += 1,
            None => self.late += 1,
        }
    }

    /// Closes every second before `second`, calling `inspect` on each bucket before it
    /// is summarised (abort conditions look at it there).
    pub fn close_before(&mut self, second: u64, mut inspect: impl FnMut(u64, &Bucket)) {
        while self.first_open < second {
            let bucket = self.open.pop_front().unwrap_or_else(Bucket::new);
            inspect(self.first_open, &bucket);
            self.closed.push(bucket.summary(self.first_open));
            self.first_open += 1;
        }
    }

    /// Closes every open bucket, up to the last one with data.
    pub fn close_all(&mut self, inspect: impl FnMut(u64, &Bucket)) {
        let end = self.first_open + self.open.len() as u64;
        self.close_before(end, inspect);
    }

    /// The closed seconds, in order.
    pub fn seconds(&self) -> &[SecondSummary] {
        &self.closed
    }

    /// Samples that arrived too late for their bucket.
    pub fn late_samples(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_close_in_order_with_gaps_filled() {
        let mut ts = TimeSeries::default();
        ts.record(0, 1_000, Outcome::Status(200), Judgement::NONE);
        ts.record(2, 5_000, Outcome::Status(503), Judgement::NONE);
        ts.record_dropped(2);
        ts.close_before(1, |_, _| {});
        ts.record(0, 1_000, Outcome::Status(200), Judgement::NONE);
        assert_eq!(ts.late_samples(), 1);
        ts.close_all(|_, _| {});
        let s = ts.seconds();
        assert_eq!(s.iter().map(|b| b.requests).collect::<Vec<_>>(), vec![1, 0, 1]);
        assert_eq!((s[2].unavailable, s[2].dropped), (1, 1));
        assert!((s[2].p95_ms - 5.0).abs() < 0.05);
    }
}
