//! Service gauges sampled while a scenario's load runs, for SLOs such as
//! `metric worker:jobs_pending max < 500`.
//!
//! Once a second the sampler reads `/metrics` of the first node of each service an SLO
//! names (directly, not through a fault proxy) and keeps every gauge's value with its
//! offset from the start of the load. A node that does not answer (killed, paused) adds
//! no sample; an SLO whose window holds no sample has no data, and fails as such. The
//! verdict is [`SloVerdict::judge`] over the samples in the SLO's window, like every
//! other SLO's, so the run's one verdict judges it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::load::slo::{Gauge, Metric, Observable, SloSpec, SloVerdict};
use crate::load::stats::Counts;

/// How often the gauges are read.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// At most this many samples per gauge (a day at one a second): the sampler stops there.
const MAX_SAMPLES: usize = 86_400;

/// Every gauge's values, by offset from the start of the load.
#[derive(Clone, Debug, Default)]
pub struct GaugeSamples {
    samples: BTreeMap<Gauge, Vec<(Duration, f64)>>,
}

impl GaugeSamples {
    /// Records `value` of `gauge` at offset `at`.
    pub fn record(&mut self, gauge: &Gauge, at: Duration, value: f64) {
        let s = self.samples.entry(gauge.clone()).or_default();
        if s.len() < MAX_SAMPLES {
            s.push((at, value));
        }
    }

    /// Judges a [`Metric::GaugeMax`] SLO on the samples in its window.
    pub fn verdict(&self, spec: &SloSpec) -> SloVerdict {
        debug_assert_eq!(spec.threshold.metric, Metric::GaugeMax);
        let values: Vec<f64> = spec
            .threshold
            .gauge
            .as_ref()
            .and_then(|g| self.samples.get(g))
            .map(|s| s.iter().filter(|(at, _)| spec.window.contains(*at)).map(|(_, v)| *v).collect())
            .unwrap_or_default();
        let peak = Peak { samples: values.len() as u64, max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max) };
        SloVerdict::judge(spec, Some(&peak))
    }
}

/// Stops the sampler when dropped.
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The samples of one gauge in a window, as an SLO observes them.
struct Peak {
    samples: u64,
    max: f64,
}

impl Observable for Peak {
    fn counts(&self) -> Counts {
        Counts { total: self.samples, ..Counts::default() }
    }
    fn latency_percentile_ms(&self, _: f64) -> f64 {
        self.max
    }
    fn latency_max_ms(&self) -> f64 {
        self.max
    }
    fn latency_mean_ms(&self) -> f64 {
        self.max
    }
}

/// The value of the metric `name` in Prometheus text: the sum of its series (a metric
/// with labels has several), `None` when it is not there.
pub fn read_gauge(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.trim().rsplit_once(' ') else { continue };
        let series_name = series.split('{').next().unwrap_or_default();
        if series_name != name {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// How long one read of `/metrics` may take before its sample is skipped.
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);

/// Samples `targets` (a gauge and the `/metrics` URL of its service) every
/// [`INTERVAL`] until `stop`, offsets from `start`, with `fetch` reading a `/metrics`
/// URL (`None`: no answer, no sample), on tokio's clock: each world fetches with its own
/// HTTP (the simulation's on simulated time).
pub async fn sample<F, Fut>(
    targets: Vec<(Gauge, String)>,
    start: Instant,
    stop: Arc<AtomicBool>,
    fetch: F,
) -> GaugeSamples
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let mut out = GaugeSamples::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..MAX_SAMPLES {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = start.elapsed();
        for (gauge, url) in &targets {
            let Some(text) = fetch(url.clone()).await else { continue };
            if let Some(v) = read_gauge(&text, &gauge.name) {
                out.record(gauge, at, v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::slo::{SloStatus, Window};

    const TEXT: &str = "# HELP app_outbox_unsent_events x\n# TYPE app_outbox_unsent_events gauge\n\
        app_outbox_unsent_events 12\napp_outbox_unsent_events_total 99\n\
        app_events{outcome=\"a\"} 2\napp_events{outcome=\"b\"} 3\n";

    #[test]
    fn a_gauge_is_read_by_its_exact_name_and_its_series_summed() {
        assert_eq!(read_gauge(TEXT, "app_outbox_unsent_events"), Some(12.0));
        assert_eq!(read_gauge(TEXT, "app_events"), Some(5.0));
        assert_eq!(read_gauge(TEXT, "app_outbox"), None);
    }

    #[test]
    fn the_verdict_is_on_the_highest_sample_in_the_window_and_no_sample_is_no_data() {
        let spec = |t: &str, window| SloSpec { window, ..SloSpec::overall(t.parse().unwrap()) };
        let gauge = Gauge { service: "worker".into(), name: "lag".into() };
        let mut s = GaugeSamples::default();
        for (at, v) in [(1, 10.0), (2, 600.0), (3, 40.0), (4, 0.0)] {
            s.record(&gauge, Duration::from_secs(at), v);
        }
        let whole = s.verdict(&spec("metric worker:lag max < 500", Window::WHOLE_RUN));
        assert_eq!((whole.status, whole.observed, whole.samples), (SloStatus::Failed, Some(600.0), 4));
        let after = Window { start: Duration::from_secs(3), end: None };
        let late = s.verdict(&spec("metric worker:lag max < 500", after));
        assert_eq!((late.status, late.observed, late.samples), (SloStatus::Passed, Some(40.0), 2));
        let other = s.verdict(&spec("metric db:lag max < 500", Window::WHOLE_RUN));
        assert_eq!(other.status, SloStatus::NoData);
    }
}
