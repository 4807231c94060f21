//! What a run records: per step, per flow and overall, corrected latency and service
//! time histograms, outcome counts, 1-second time series, SLO windows and aborts.
//!
//! Corrected latency runs from the *intended* send time (when the schedule said the
//! request should go) to the end of the answer, so a stall that delays sending is
//! counted in full (coordinated omission corrected, as in wrk2). Service time runs
//! from the moment a connection was in hand to the end of the answer.
//!
//! A flow start dropped at the in-flight limit is counted overall and in its flow (and
//! in their windows) as one more unavailable request; steps never saw it.

use std::time::Duration;

use thiserror::Error;

use super::series::{Bucket, TimeSeries};
use super::slo::{Observable, SloScope, SloSpec, SloVerdict, Window};
use super::stats::{micros, Judgement, Outcome, Stats};

/// An SLO names a flow or step the workload does not have.
#[derive(Debug, Error, PartialEq)]
#[error("SLO `{threshold}` is about {scope}, which the workload does not have")]
pub struct UnknownScope {
    /// The threshold, as written.
    pub threshold: String,
    /// The missing scope.
    pub scope: String,
}

/// A step, by its index among all steps of all flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepId(pub usize);

/// A flow, by its index in the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub usize);

/// One request as it happened, in offsets from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the schedule meant it to be sent.
    pub intended: Duration,
    /// When a connection was in hand and it was sent.
    pub sent: Duration,
    /// When the answer was complete (or the request failed).
    pub done: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// What the workload's answer rules said about it.
    pub judgement: Judgement,
}

impl Sample {
    /// A sample no answer rule applied to.
    pub fn plain(intended: Duration, sent: Duration, done: Duration, outcome: Outcome) -> Self {
        Self { intended, sent, done, outcome, judgement: Judgement::NONE }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Overall,
    Flow(usize),
    Step(usize),
}

#[derive(Debug)]
struct Windowed {
    key: Key,
    window: Window,
    stats: Stats,
}

/// The most samples kept to judge windows placed after the run, e.g. on the times a
/// scenario's faults were actually applied and removed (about 40 bytes each).
pub const MAX_KEPT: usize = 4_000_000;

/// One request (or dropped start) as kept for windows placed after the run.
#[derive(Clone, Copy, Debug)]
struct Kept {
    intended: Duration,
    latency: u64,
    service: u64,
    outcome: Outcome,
    judgement: Judgement,
    dropped: bool,
}

#[derive(Debug)]
struct AbortWatch {
    key: Key,
    spec: SloSpec,
    streak: u64,
}

/// Names of the flows and of their steps, in workload order.
pub type Layout = Vec<(String, Vec<String>)>;

/// Everything recorded during a run.
#[derive(Debug)]
pub struct Recorder {
    layout: Layout,
    step_base: Vec<usize>,
    overall: Stats,
    /// How late each request went out: actual minus intended send, microseconds. The
    /// generator's own share of the latency figures (a late send is counted as latency).
    lateness: hdrhistogram::Histogram<u64>,
    overall_series: TimeSeries,
    flows: Vec<(Stats, TimeSeries)>,
    steps: Vec<(Stats, TimeSeries)>,
    windows: Vec<Windowed>,
    /// Every sample of each scope that has a windowed SLO, so its window can be moved
    /// after the run ([`Recorder::verdicts`] judges any window from them).
    kept: Vec<(Key, Vec<Kept>)>,
    /// How many samples `kept` holds in all.
    kept_len: usize,
    /// Samples not kept once [`MAX_KEPT`] was reached.
    kept_overflow: u64,
    watches: Vec<AbortWatch>,
    abort: Option<String>,
    dropped: u64,
    grace: Duration,
    /// One flow of one step: its flow and step stats are the overall ones, recorded
    /// once instead of three times.
    single: bool,
    /// Requests and dropped starts meant for before this offset are a warm-up: not
    /// measured, in no scope, window or series.
    measure_from: Duration,
}

impl Recorder {
    /// A recorder for flows and steps named by `layout`, keeping what `slos` need;
    /// time-series buckets close `grace` after their second ends.
    pub fn new(layout: Layout, slos: &[SloSpec], grace: Duration) -> Result<Self, UnknownScope> {
        let mut step_base = Vec::with_capacity(layout.len());
        let mut n_steps = 0;
        for (_, steps) in &layout {
            step_base.push(n_steps);
            n_steps += steps.len();
        }
        let single = layout.len() == 1 && n_steps == 1;
        let fresh = |n: usize| (0..n).map(|_| (Stats::new(), TimeSeries::default())).collect();
        let mut rec = Self {
            single,
            flows: fresh(layout.len()),
            steps: fresh(n_steps),
            layout,
            step_base,
            overall: Stats::new(),
            lateness: super::stats::latency_histogram(3),
            overall_series: TimeSeries::default(),
            windows: Vec::new(),
            kept: Vec::new(),
            kept_len: 0,
            kept_overflow: 0,
            watches: Vec::new(),
            abort: None,
            dropped: 0,
            grace,
            measure_from: Duration::ZERO,
        };
        for spec in slos {
            let key = rec
                .key(&spec.scope)
                .ok_or_else(|| UnknownScope { threshold: spec.threshold.to_string(), scope: spec.scope.to_string() })?;
            let exists = rec.windows.iter().any(|w| w.key == key && w.window == spec.window);
            if spec.window != Window::WHOLE_RUN && !exists {
                rec.windows.push(Windowed { key, window: spec.window, stats: Stats::new() });
            }
            if spec.window != Window::WHOLE_RUN && !rec.kept.iter().any(|(k, _)| *k == key) {
                rec.kept.push((key, Vec::new()));
            }
            if spec.abort_after.is_some() {
                rec.watches.push(AbortWatch { key, spec: spec.clone(), streak: 0 });
            }
        }
        Ok(rec)
    }

    /// Leaves out what was meant to start before `warmup`: the system warms up (caches,
    /// connection pools, JIT-less but lazy allocations) before anything counts.
    pub fn exclude_warmup(&mut self, warmup: Duration) {
        self.measure_from = warmup;
    }

    /// The warm-up left out of every figure (zero when there is none).
    pub fn warmup(&self) -> Duration {
        self.measure_from
    }

    /// Whether a request or start meant for `intended` is measured (not a warm-up).
    #[inline]
    fn measured(&self, intended: Duration) -> bool {
        intended >= self.measure_from
    }

    fn key(&self, scope: &SloScope) -> Option<Key> {
        let key = match scope {
            SloScope::Overall => Some(Key::Overall),
            SloScope::Flow(f) => self.flow_index(f).map(Key::Flow),
            SloScope::Step { flow, step } => {
                let fi = self.flow_index(flow)?;
                let si = self.layout[fi].1.iter().position(|s| s == step)?;
                Some(Key::Step(self.step_base[fi] + si))
            }
        }?;
        Some(if self.single { Key::Overall } else { key })
    }

    fn flow_index(&self, name: &str) -> Option<usize> {
        self.layout.iter().position(|(f, _)| f == name)
    }

    /// The id of step `index` of flow `flow`.
    pub fn step_id(&self, flow: FlowId, index: usize) -> StepId {
        StepId(self.step_base[flow.0] + index)
    }

    /// Records one request of step `step`.
    #[inline]
    pub fn record_step(&mut self, step: StepId, s: &Sample) {
        if !self.measured(s.intended) {
            return;
        }
        let latency = micros(s.done.saturating_sub(s.intended));
        let service = micros(s.done.saturating_sub(s.sent));
        let second = s.intended.as_secs();
        self.overall.record_judged(latency, service, s.outcome, s.judgement);
        self.lateness.saturating_record(micros(s.sent.saturating_sub(s.intended)).max(1));
        self.overall_series.record(second, latency, s.outcome, s.judgement);
        if self.single {
            // Scopes of a single-step workload all resolve to `Key::Overall`.
            self.record_windows(Key::Overall, latency, service, s);
            return;
        }
        if let Some((stats, series)) = self.steps.get_mut(step.0) {
            stats.record_judged(latency, service, s.outcome, s.judgement);
            series.record(second, latency, s.outcome, s.judgement);
        }
        self.record_windows(Key::Step(step.0), latency, service, s);
    }

    fn record_windows(&mut self, key: Key, latency: u64, service: u64, s: &Sample) {
        for w in &mut self.windows {
            let mine = w.key == Key::Overall || w.key == key;
            if mine && w.window.contains(s.intended) {
                w.stats.record_judged(latency, service, s.outcome, s.judgement);
            }
        }
        let kept =
            Kept { intended: s.intended, latency, service, outcome: s.outcome, judgement: s.judgement, dropped: false };
        self.keep(|k| k == Key::Overall || k == key, kept);
    }

    fn keep(&mut self, mine: impl Fn(Key) -> bool, sample: Kept) {
        if self.kept.is_empty() {
            return;
        }
        for (k, samples) in &mut self.kept {
            if !mine(*k) {
                continue;
            }
            if self.kept_len >= MAX_KEPT {
                self.kept_overflow += 1;
            } else {
                samples.push(sample);
                self.kept_len += 1;
            }
        }
    }

    /// Whether every sample was kept, so a window can be judged wherever it is placed
    /// after the run; when false, only the windows the SLOs named at the start can be.
    pub fn windows_movable(&self) -> bool {
        self.kept_overflow == 0
    }

    /// What scope `scope` recorded over `window`, from the kept samples.
    fn stats_from_kept(&self, scope: &SloScope, window: Window) -> Option<Stats> {
        if !self.windows_movable() {
            return None;
        }
        let key = self.key(scope)?;
        let (_, samples) = self.kept.iter().find(|(k, _)| *k == key)?;
        let mut stats = Stats::new();
        for s in samples.iter().filter(|s| window.contains(s.intended)) {
            if s.dropped {
                stats.record_dropped();
            } else {
                stats.record_judged(s.latency, s.service, s.outcome, s.judgement);
            }
        }
        Some(stats)
    }

    /// Records one whole flow: `service` is the sum of its steps' service times,
    /// `outcome` that of the step that ended it, `judgement` that of all its steps.
    pub fn record_flow(&mut self, flow: FlowId, s: &Sample) {
        if !self.measured(s.intended) {
            return;
        }
        let latency = micros(s.done.saturating_sub(s.intended));
        let service = micros(s.done.saturating_sub(s.sent));
        if self.single {
            return;
        }
        if let Some((stats, series)) = self.flows.get_mut(flow.0) {
            stats.record_judged(latency, service, s.outcome, s.judgement);
            series.record(s.intended.as_secs(), latency, s.outcome, s.judgement);
        }
        for w in &mut self.windows {
            if w.key == Key::Flow(flow.0) && w.window.contains(s.intended) {
                w.stats.record_judged(latency, service, s.outcome, s.judgement);
            }
        }
        let kept =
            Kept { intended: s.intended, latency, service, outcome: s.outcome, judgement: s.judgement, dropped: false };
        self.keep(|k| k == Key::Flow(flow.0), kept);
    }

    /// Counts a start of flow `flow`, meant for offset `intended`, that was dropped
    /// because the in-flight limit was reached: one unavailable request overall and in
    /// the flow.
    pub fn record_dropped(&mut self, flow: FlowId, intended: Duration) {
        if !self.measured(intended) {
            return;
        }
        self.dropped += 1;
        let second = intended.as_secs();
        self.overall.record_dropped();
        self.overall_series.record_dropped(second);
        if !self.single {
            if let Some((stats, series)) = self.flows.get_mut(flow.0) {
                stats.record_dropped();
                series.record_dropped(second);
            }
        }
        let key = if self.single { Key::Overall } else { Key::Flow(flow.0) };
        for w in &mut self.windows {
            if (w.key == Key::Overall || w.key == key) && w.window.contains(intended) {
                w.stats.record_dropped();
            }
        }
        let kept = Kept {
            intended,
            latency: 0,
            service: 0,
            outcome: Outcome::Status(0),
            judgement: Judgement::NONE,
            dropped: true,
        };
        self.keep(|k| k == Key::Overall || k == key, kept);
    }

    /// Closes the time-series seconds whose answers are all in by `now`, and checks
    /// the abort conditions on them.
    pub fn advance(&mut self, now: Duration) {
        let upto = now.saturating_sub(self.grace).as_secs();
        self.close(|series, inspect| series.close_before(upto, inspect));
    }

    /// Closes every second; call once the run is over.
    pub fn finish(&mut self) {
        self.close(|series, inspect| series.close_all(inspect));
    }

    fn close(&mut self, mut how: impl FnMut(&mut TimeSeries, &mut dyn FnMut(u64, &Bucket))) {
        let (watches, abort) = (&mut self.watches, &mut self.abort);
        let mut each = |key: Key, series: &mut TimeSeries| {
            how(series, &mut |second, bucket| check_abort(watches, abort, key, second, bucket));
        };
        each(Key::Overall, &mut self.overall_series);
        for (i, (_, series)) in self.flows.iter_mut().enumerate() {
            each(Key::Flow(i), series);
        }
        for (i, (_, series)) in self.steps.iter_mut().enumerate() {
            each(Key::Step(i), series);
        }
    }

    /// Why the run should stop, once an SLO with `abort_after` has been breached long
    /// enough.
    pub fn abort_reason(&self) -> Option<&str> {
        self.abort.as_deref()
    }

    /// Starts dropped because the in-flight limit was reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Names of the flows and steps.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How late requests went out (actual minus intended send), microseconds: what of
    /// the latency is the generator's own. A closed loop's requests are never late.
    pub fn send_lateness(&self) -> &hdrhistogram::Histogram<u64> {
        &self.lateness
    }

    /// Every request of the run.
    pub fn overall(&self) -> &Stats {
        &self.overall
    }

    /// The overall 1-second time series.
    pub fn overall_series(&self) -> &TimeSeries {
        &self.overall_series
    }

    /// Whole flows of flow `flow`.
    pub fn flow(&self, flow: FlowId) -> Option<(&Stats, &TimeSeries)> {
        if self.single {
            return (flow.0 == 0).then_some((&self.overall, &self.overall_series));
        }
        self.flows.get(flow.0).map(|(stats, series)| (stats, series))
    }

    /// Requests of step `step`.
    pub fn step(&self, step: StepId) -> Option<(&Stats, &TimeSeries)> {
        if self.single {
            return (step.0 == 0).then_some((&self.overall, &self.overall_series));
        }
        self.steps.get(step.0).map(|(stats, series)| (stats, series))
    }

    /// The stats an SLO is judged on: its scope over its window.
    pub fn stats_for(&self, scope: &SloScope, window: Window) -> Option<&Stats> {
        let key = self.key(scope)?;
        if window == Window::WHOLE_RUN {
            return Some(match key {
                Key::Overall => &self.overall,
                Key::Flow(i) => &self.flows[i].0,
                Key::Step(i) => &self.steps[i].0,
            });
        }
        self.windows.iter().find(|w| w.key == key && w.window == window).map(|w| &w.stats)
    }

    /// Judges each SLO against what was recorded. A window no SLO named at the start
    /// (one moved after the run) is judged from the kept samples, and has no data if
    /// they overflowed ([`Recorder::windows_movable`]).
    pub fn verdicts(&self, slos: &[SloSpec]) -> Vec<SloVerdict> {
        slos.iter()
            .map(|spec| match self.stats_for(&spec.scope, spec.window) {
                Some(stats) => SloVerdict::judge(spec, Some(stats as &dyn Observable)),
                None => {
                    let kept = self.stats_from_kept(&spec.scope, spec.window);
                    SloVerdict::judge(spec, kept.as_ref().map(|s| s as &dyn Observable))
                }
            })
            .collect()
    }
}

fn check_abort(watches: &mut [AbortWatch], abort: &mut Option<String>, key: Key, second: u64, bucket: &Bucket) {
    for w in watches.iter_mut().filter(|w| w.key == key) {
        let Some(after) = w.spec.abort_after else { continue };
        if !w.spec.window.contains(Duration::from_secs(second)) {
            continue;
        }
        let Some(value) = w.spec.threshold.observe(bucket) else { continue };
        if w.spec.threshold.holds(value) {
            w.streak = 0;
            continue;
        }
        w.streak += 1;
        if abort.is_none() && Duration::from_secs(w.streak) >= after {
            *abort = Some(format!(
                "SLO `{}` ({}) breached for {}s in a row (second {second}: {})",
                w.spec.threshold,
                w.spec.scope,
                w.streak,
                w.spec.threshold.format_value(value),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::ErrorKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn layout() -> Layout {
        vec![("browse".into(), vec!["list".into(), "get".into()])]
    }

    #[test]
    fn corrected_latency_counts_from_the_intended_time() {
        let mut r = Recorder::new(layout(), &[], Duration::ZERO).unwrap();
        let s = Sample::plain(ms(0), ms(900), ms(1000), Outcome::Status(200));
        r.record_step(StepId(1), &s);
        assert_eq!(r.overall().latency().max(), r.overall().latency().highest_equivalent(1_000_000));
        assert_eq!(r.overall().service().max(), r.overall().service().highest_equivalent(100_000));
        assert_eq!(r.step(StepId(1)).unwrap().0.total(), 1);
        assert_eq!(r.step(StepId(0)).unwrap().0.total(), 0);
    }

    #[test]
    fn sustained_breach_aborts_and_windows_keep_their_own_stats() {
        let mut slo: SloSpec =
            toml::from_str("threshold = 'error_rate < 10%'\nabort_after = '2s'\nduring = '1s..3s'").unwrap();
        slo.scope = SloScope::Step { flow: "browse".into(), step: "get".into() };
        let mut r = Recorder::new(layout(), std::slice::from_ref(&slo), Duration::ZERO).unwrap();
        for sec in 0..4 {
            let at = Duration::from_secs(sec);
            let outcome = Outcome::Error(ErrorKind::Reset);
            r.record_step(StepId(1), &Sample::plain(at, at, at, outcome));
            r.advance(at + Duration::from_secs(1));
            assert_eq!(r.abort_reason().is_some(), sec >= 2, "second {sec}");
        }
        let v = r.verdicts(std::slice::from_ref(&slo));
        assert_eq!(v[0].samples, 2);
        assert!(!v[0].passed());
    }

    #[test]
    fn a_single_step_workload_records_once_and_answers_for_every_scope() {
        let single = vec![("default".to_owned(), vec!["request".to_owned()])];
        let slo: SloSpec = toml::from_str("threshold = 'p95 < 1s'\nflow = 'default'\nstep = 'request'").unwrap();
        let mut r = Recorder::new(single, std::slice::from_ref(&slo), Duration::ZERO).unwrap();
        let s = Sample::plain(ms(0), ms(1), ms(2), Outcome::Status(200));
        r.record_step(StepId(0), &s);
        r.record_flow(FlowId(0), &s);
        assert_eq!(r.overall().total(), 1);
        assert_eq!(r.flow(FlowId(0)).unwrap().0.total(), 1);
        assert_eq!(r.step(StepId(0)).unwrap().0.total(), 1);
        assert!(r.verdicts(&[slo])[0].passed());
    }

    #[test]
    fn a_warmup_is_in_no_scope_window_or_series() {
        let slo: SloSpec = toml::from_str("threshold = 'p95 < 100ms'\nflow = 'browse'").unwrap();
        let mut r = Recorder::new(layout(), std::slice::from_ref(&slo), Duration::ZERO).unwrap();
        r.exclude_warmup(Duration::from_secs(2));
        // A slow, failing warm-up second, then one good measured request.
        let slow = Sample::plain(ms(1500), ms(1500), ms(4500), Outcome::Error(ErrorKind::Reset));
        r.record_step(StepId(0), &slow);
        r.record_flow(FlowId(0), &slow);
        r.record_dropped(FlowId(0), ms(1999));
        let good = Sample::plain(ms(2000), ms(2000), ms(2010), Outcome::Status(200));
        r.record_step(StepId(0), &good);
        r.record_flow(FlowId(0), &good);
        assert_eq!((r.overall().total(), r.dropped()), (1, 0));
        assert_eq!(r.overall().availability(), 1.0);
        assert_eq!(r.flow(FlowId(0)).unwrap().0.total(), 1);
        assert!(r.verdicts(std::slice::from_ref(&slo))[0].passed(), "the slow warm-up does not count");
        r.finish();
        let requests: Vec<(u64, u64)> = r.overall_series().seconds().iter().map(|s| (s.second, s.requests)).collect();
        assert_eq!(requests, [(0, 0), (1, 0), (2, 1)]);
    }

    #[test]
    fn dropped_starts_lower_overall_and_flow_availability_not_the_steps() {
        let slo: SloSpec = toml::from_str("threshold = 'availability >= 99%'\nflow = 'browse'\nafter = '1s'").unwrap();
        let mut r = Recorder::new(layout(), std::slice::from_ref(&slo), Duration::ZERO).unwrap();
        for at in [ms(1000), ms(1500)] {
            let s = Sample::plain(at, at, at + ms(1), Outcome::Status(200));
            r.record_step(StepId(0), &s);
            r.record_step(StepId(1), &s);
            r.record_flow(FlowId(0), &s);
        }
        r.record_dropped(FlowId(0), ms(500));
        r.record_dropped(FlowId(0), ms(1200));
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.overall().availability(), 4.0 / 6.0);
        assert_eq!(r.flow(FlowId(0)).unwrap().0.availability(), 2.0 / 4.0);
        assert_eq!(r.step(StepId(0)).unwrap().0.availability(), 1.0);
        let v = &r.verdicts(std::slice::from_ref(&slo))[0];
        assert_eq!((v.samples, v.observed), (3, Some(2.0 / 3.0)), "the window holds one of the drops");
        r.finish();
        let dropped: Vec<u64> = r.flow(FlowId(0)).unwrap().1.seconds().iter().map(|s| s.dropped).collect();
        assert_eq!(dropped, [1, 1]);
    }

    #[test]
    fn a_window_moved_after_the_run_is_judged_on_exactly_its_samples() {
        // Planned 10s..20s; the fault was actually in place 10.5s..21s.
        let slo: SloSpec = toml::from_str("threshold = 'availability >= 99%'\nduring = '10s..20s'").unwrap();
        let mut r = Recorder::new(layout(), std::slice::from_ref(&slo), Duration::ZERO).unwrap();
        let good = |at| Sample::plain(at, at, at + ms(1), Outcome::Status(200));
        let bad = |at| Sample::plain(at, at, at + ms(1), Outcome::Error(ErrorKind::Reset));
        for s in [good(ms(10_200)), good(ms(15_000)), bad(ms(20_500))] {
            r.record_step(StepId(0), &s);
        }
        r.record_dropped(FlowId(0), ms(10_100));
        let planned = &r.verdicts(std::slice::from_ref(&slo))[0];
        assert_eq!((planned.samples, planned.observed), (3, Some(2.0 / 3.0)));
        let mut moved = slo.clone();
        moved.window = Window { start: ms(10_500), end: Some(ms(21_000)) };
        let v = &r.verdicts(std::slice::from_ref(&moved))[0];
        assert_eq!((v.samples, v.observed), (2, Some(0.5)), "15s good, 20.5s bad; the drop at 10.1s is outside");
        assert!(r.windows_movable());
        let whole = SloSpec::overall("availability >= 99%".parse().unwrap());
        let mut elsewhere = whole.clone();
        elsewhere.window = Window { start: ms(0), end: Some(ms(1000)) };
        assert_eq!(r.verdicts(&[elsewhere])[0].status, crate::load::slo::SloStatus::NoData);
    }

    #[test]
    fn unknown_scopes_are_refused() {
        let mut slo = SloSpec::overall("p95 < 1s".parse().unwrap());
        slo.scope = SloScope::Flow("checkout".into());
        assert!(Recorder::new(layout(), &[slo], Duration::ZERO).is_err());
    }
}
