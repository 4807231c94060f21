//! The capacity search: the highest constant arrival rate at which a scenario's SLOs
//! (and invariants) still hold, found by running it.
//!
//! Each run is a whole run of the scenario at one constant rate on a fresh cluster, so
//! a run never inherits the queues or the data of the one before; it starts with a
//! warm-up at its rate that is not measured. Each rate tried (a step) is run
//! `runs` times (default 3) and passes only when every run passes: a rate that passed
//! once and failed once is not a capacity, and the step reports its pass share and the
//! spread of its p95. The search grows the rate geometrically until a step fails, then
//! bisects between the highest passing rate and the lowest failing one until they are
//! within the plan's resolution. With `runs = 1` the best rate is run once more before
//! it is published (a failed confirmation makes it the new ceiling and the search goes
//! on below). Every loop is bounded by [`CapacityPlan::max_steps`] and `runs`.
//!
//! A run fails when the scenario fails (an SLO, an invariant, a stop) and also when the
//! generator could not offer the rate (dropped starts, or under 95% of the planned
//! flow starts went out): a rate that was not offered was not measured. A step stops at
//! its first failed run: the rate has failed, and more runs would not change that.

use std::future::Future;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::executor::RunOutcome;
use super::model::CapacityPlan;

/// The version of `capacity.json`: 2 has several runs per step and the warm-up.
pub const SCHEMA_VERSION: u32 = 2;

/// Why a step ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Growing the rate until a step fails.
    Explore,
    /// Halving the gap between the passing and the failing rate.
    Bisect,
    /// Running the best rate again before publishing it (only with one run per step).
    Confirm,
}

/// One run of the scenario at one rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Whether every gate held and the rate was offered in full.
    pub passed: bool,
    /// What failed, in words (empty when it passed).
    pub reasons: Vec<String>,
    /// Requests per second achieved (after the warm-up).
    pub requests_per_second: f64,
    /// Requests answered or failed (after the warm-up).
    pub requests: u64,
    /// Corrected p95 latency over the measured run, ms.
    pub p95_ms: f64,
    /// Corrected p99 latency over the measured run, ms.
    pub p99_ms: f64,
    /// Share of requests answered in time without a 5xx, not degraded, no failed check.
    pub availability: f64,
    /// Flow starts dropped at the in-flight limit.
    pub dropped: u64,
    /// The SLO verdicts, rendered.
    pub slos: Vec<String>,
    /// The run's folder (logs, history, report).
    pub run_dir: PathBuf,
    /// The run's report files.
    pub report_files: Vec<PathBuf>,
}

impl Run {
    /// Judges one run of the scenario whose schedule planned `planned_starts` flows.
    pub fn from_outcome(planned_starts: u64, o: &RunOutcome) -> Self {
        let started = o.load.flows_started;
        // The run's own verdict, then what a capacity run asks on top: the rate offered.
        let mut reasons = o.failure_reasons();
        if o.load.dropped > 0 {
            reasons.push(format!(
                "{} flow starts dropped at the in-flight limit: the rate was not offered",
                o.load.dropped
            ));
        }
        if o.steady_state_failure.is_none() && (started as f64) < 0.95 * planned_starts as f64 {
            reasons.push(format!("only {started} of {planned_starts} planned flow starts went out"));
        }
        Self {
            passed: reasons.is_empty(),
            reasons,
            requests_per_second: o.load.rate,
            requests: o.load.requests,
            p95_ms: o.load.p95_ms,
            p99_ms: o.load.p99_ms,
            availability: o.load.availability,
            dropped: o.load.dropped,
            slos: o.slo_lines.clone(),
            run_dir: o.run_dir.clone(),
            report_files: o.report_files.clone(),
        }
    }
}

/// One rate of the search and its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Why it ran.
    pub phase: Phase,
    /// Planned flow starts per second.
    pub rate: f64,
    /// Whether every one of the planned runs ran and passed.
    pub passed: bool,
    /// Runs that passed.
    pub passes: usize,
    /// The runs, in order (fewer than planned when one failed: the step stopped there).
    pub runs: Vec<Run>,
    /// The lowest and highest p95 of its runs, ms.
    pub p95_range_ms: (f64, f64),
}

impl Step {
    fn new(phase: Phase, rate: f64, planned: usize, runs: Vec<Run>) -> Self {
        let passes = runs.iter().filter(|r| r.passed).count();
        let lo = runs.iter().map(|r| r.p95_ms).fold(f64::INFINITY, f64::min);
        let hi = runs.iter().map(|r| r.p95_ms).fold(0.0, f64::max);
        Self {
            phase,
            rate,
            passed: passes == planned && runs.len() == planned,
            passes,
            p95_range_ms: (if lo.is_finite() { lo } else { 0.0 }, hi),
            runs,
        }
    }

    /// Why it failed: the first failed run's reasons.
    pub fn reasons(&self) -> &[String] {
        self.runs.iter().find(|r| !r.passed).map_or(&[], |r| r.reasons.as_slice())
    }

    /// Mean requests per second over its runs.
    pub fn requests_per_second(&self) -> f64 {
        mean(self.runs.iter().map(|r| r.requests_per_second))
    }

    /// The lowest availability of its runs.
    pub fn worst_availability(&self) -> f64 {
        self.runs.iter().map(|r| r.availability).fold(1.0, f64::min)
    }

    /// The highest p99 of its runs, ms.
    pub fn worst_p99_ms(&self) -> f64 {
        self.runs.iter().map(|r| r.p99_ms).fold(0.0, f64::max)
    }

    /// Flow starts dropped over its runs.
    pub fn dropped(&self) -> u64 {
        self.runs.iter().map(|r| r.dropped).sum()
    }

    /// "3/3 runs", "1/2 runs (stopped at the first failure)".
    pub fn pass_share(&self, planned: usize) -> String {
        let mut s = format!("{}/{} runs", self.passes, self.runs.len());
        if self.runs.len() < planned {
            s.push_str(" (stopped at the first failure)");
        }
        s
    }

    /// "48.1 ms" for one run, "42.5–67.8 ms" for several.
    pub fn p95_spread(&self) -> String {
        let (lo, hi) = self.p95_range_ms;
        if self.runs.len() <= 1 || lo == hi {
            format!("{hi:.1} ms")
        } else {
            format!("{lo:.1}–{hi:.1} ms")
        }
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// How the search ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The highest rate that passed every one of its `runs` (and, with one run per
    /// step, its confirmation); the lowest rate that failed above it, if one did.
    Capacity { rate: f64, runs: usize, ceiling: Option<f64> },
    /// Even `max_rate` passed every run: the capacity is at least that.
    AtLeast { rate: f64, runs: usize },
    /// Even `start_rate` failed (or every confirmation did).
    NonePassed { lowest_tried: f64 },
    /// The step budget ran out before a rate was confirmed.
    Unconfirmed { best_unconfirmed: Option<f64>, ceiling: Option<f64> },
}

impl Finding {
    /// The rate to publish, if there is one.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Self::Capacity { rate, .. } | Self::AtLeast { rate, .. } => Some(*rate),
            Self::NonePassed { .. } | Self::Unconfirmed { .. } => None,
        }
    }
}

/// "every one of its 3 runs passed", "passed twice".
fn passed_runs(runs: usize) -> String {
    if runs <= 1 {
        "passed, and passed again when confirmed".into()
    } else {
        format!("passed {runs} of {runs} runs")
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Capacity { rate, runs, ceiling: Some(c) } => {
                write!(f, "capacity {} flows/s ({}; {} flows/s failed)", show(*rate), passed_runs(*runs), show(*c))
            }
            Self::Capacity { rate, runs, ceiling: None } => {
                write!(f, "capacity {} flows/s ({})", show(*rate), passed_runs(*runs))
            }
            Self::AtLeast { rate, runs } => write!(
                f,
                "capacity at least {} flows/s: the highest rate tried {} (raise max_rate)",
                show(*rate),
                passed_runs(*runs)
            ),
            Self::NonePassed { lowest_tried } => {
                write!(f, "no rate passed: {} flows/s already failed (lower start_rate)", show(*lowest_tried))
            }
            Self::Unconfirmed { best_unconfirmed, .. } => write!(
                f,
                "no rate confirmed within max_steps (best unconfirmed: {})",
                best_unconfirmed.map_or("none".into(), |r| format!("{} flows/s", show(r)))
            ),
        }
    }
}

/// A rate for people: `37.5`, `400`.
pub fn show(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A probe rate: whole flows per second from 10 up, two decimals below.
fn round_rate(rate: f64) -> f64 {
    if rate >= 10.0 {
        rate.round()
    } else {
        (rate * 100.0).round() / 100.0
    }
}

/// The whole search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Search {
    /// The format version.
    pub schema_version: u32,
    /// The plan it followed.
    pub plan: PlanRecord,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// What it found.
    pub finding: Finding,
}

/// [`CapacityPlan`] as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub start_rate: f64,
    pub max_rate: f64,
    pub growth: f64,
    pub resolution: f64,
    pub max_steps: usize,
    pub runs: usize,
    pub warmup_ms: u64,
}

impl From<CapacityPlan> for PlanRecord {
    fn from(p: CapacityPlan) -> Self {
        Self {
            start_rate: p.start_rate,
            max_rate: p.max_rate,
            growth: p.growth,
            resolution: p.resolution,
            max_steps: p.max_steps,
            runs: p.runs,
            warmup_ms: p.warmup.as_millis() as u64,
        }
    }
}

/// Runs the search, calling `probe(rate, phase, run)` for run `run` (from 0) of each
/// step; a probe that fails to run at all (the harness, not the system) ends the search
/// with its error.
pub async fn search<E, F, Fut>(plan: CapacityPlan, mut probe: F) -> Result<Search, E>
where
    F: FnMut(f64, Phase, usize) -> Fut,
    Fut: Future<Output = Result<Run, E>>,
{
    let runs = plan.runs.max(1);
    let confirm = runs == 1;
    let budget = plan.max_steps;
    let mut steps: Vec<Step> = Vec::new();
    let mut pass: Option<f64> = None;
    let mut fail: Option<f64> = None;
    // A rate, run until one run fails or all have passed.
    let mut step = async |rate: f64, phase: Phase| -> Result<Step, E> {
        let mut done = Vec::with_capacity(runs);
        for i in 0..runs {
            let run = probe(rate, phase, i).await?;
            let failed = !run.passed;
            done.push(run);
            if failed {
                break;
            }
        }
        Ok(Step::new(phase, rate, runs, done))
    };
    let lowest = round_rate(plan.start_rate);

    // Explore: grow until a step fails or the ceiling of the plan passes.
    let mut rate = lowest;
    loop {
        if steps.len() >= budget {
            let finding = match pass {
                Some(rate) if !confirm => Finding::AtLeast { rate, runs },
                _ => Finding::Unconfirmed { best_unconfirmed: pass, ceiling: fail },
            };
            return Ok(done(plan, steps, finding));
        }
        let s = step(rate, Phase::Explore).await?;
        let passed = s.passed;
        steps.push(s);
        if !passed {
            fail = Some(rate);
            break;
        }
        pass = Some(rate);
        if rate >= plan.max_rate {
            break;
        }
        rate = round_rate((rate * plan.growth).min(plan.max_rate));
    }

    loop {
        let Some(lo) = pass else {
            return Ok(done(plan, steps, Finding::NonePassed { lowest_tried: lowest }));
        };
        // Bisect until the gap is within the resolution (or cannot shrink).
        while let Some(hi) = fail {
            let lo = pass.unwrap_or(lo);
            let mid = round_rate((lo + hi) / 2.0);
            if (hi - lo) / lo <= plan.resolution || mid <= lo || mid >= hi {
                break;
            }
            // With one run per step, keep one step for the confirmation.
            if steps.len() + usize::from(confirm) >= budget {
                break;
            }
            let s = step(mid, Phase::Bisect).await?;
            if s.passed {
                pass = Some(mid);
            } else {
                fail = Some(mid);
            }
            steps.push(s);
        }
        let best = pass.unwrap_or(lo);
        let found = match fail {
            None => Finding::AtLeast { rate: best, runs },
            Some(c) => Finding::Capacity { rate: best, runs, ceiling: Some(c) },
        };
        if !confirm {
            // Every run of `best` passed already.
            return Ok(done(plan, steps, found));
        }
        if steps.len() >= budget {
            return Ok(done(plan, steps, Finding::Unconfirmed { best_unconfirmed: Some(best), ceiling: fail }));
        }
        let s = step(best, Phase::Confirm).await?;
        let confirmed = s.passed;
        steps.push(s);
        if confirmed {
            return Ok(done(plan, steps, found));
        }
        // Not reproducible: `best` is now a failing rate; go on below it from the
        // highest rate under it that passed.
        fail = Some(best);
        pass = steps.iter().filter(|s| s.passed && s.rate < best).map(|s| s.rate).reduce(f64::max);
        if pass.is_none() {
            return Ok(done(plan, steps, Finding::NonePassed { lowest_tried: lowest }));
        }
    }
}

fn done(plan: CapacityPlan, steps: Vec<Step>, finding: Finding) -> Search {
    Search { schema_version: SCHEMA_VERSION, plan: plan.into(), steps, finding }
}

impl Search {
    /// The warm-up of each run.
    pub fn plan_warmup(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.plan.warmup_ms)
    }

    /// The last run of the published rate that passed (its report is published).
    pub fn confirmed_run(&self) -> Option<(&Step, &Run)> {
        let rate = self.finding.rate()?;
        let step = self.steps.iter().rev().find(|s| s.rate == rate && s.passed)?;
        Some((step, step.runs.last()?))
    }

    /// The search as Markdown: the finding first, then every step.
    pub fn markdown(&self, title: &str, context: &[(String, String)]) -> String {
        let mut md = format!("# {title}\n\n**{}**\n\n", self.finding);
        for (k, v) in context {
            md.push_str(&format!("- {k}: {v}\n"));
        }
        let p = &self.plan;
        let runs = if p.runs <= 1 {
            "each rate run once, the best confirmed by a second run".to_string()
        } else {
            format!(
                "each rate run {} times, passing only when every run passes (a step stops at its first failed run)",
                p.runs
            )
        };
        md.push_str(&format!(
            "- search: from {} flows/s, ×{} until a step fails, bisect to {}%; {runs}; \
             each run starts with a {} warm-up that is not measured; at most {} rates, max {} flows/s\n\n",
            show(p.start_rate),
            p.growth,
            show(p.resolution * 100.0),
            humantime::format_duration(std::time::Duration::from_millis(p.warmup_ms)),
            p.max_steps,
            show(p.max_rate)
        ));
        md.push_str("| # | phase | flows/s | runs passed | req/s | p95 (min–max) | worst p99 | worst availability | dropped | verdict |\n");
        md.push_str("|---|---|---:|---|---:|---:|---:|---:|---:|---|\n");
        for (i, s) in self.steps.iter().enumerate() {
            let verdict = if s.passed { "pass".to_string() } else { format!("FAIL: {}", s.reasons().join("; ")) };
            md.push_str(&format!(
                "| {} | {:?} | {} | {} | {:.1} | {} | {:.1} ms | {:.3}% | {} | {} |\n",
                i + 1,
                s.phase,
                show(s.rate),
                s.pass_share(p.runs),
                s.requests_per_second(),
                s.p95_spread(),
                s.worst_p99_ms(),
                s.worst_availability() * 100.0,
                s.dropped(),
                verdict.replace('|', "\\|")
            ));
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    fn run_record(passed: bool, p95: f64) -> Run {
        Run {
            passed,
            reasons: if passed { vec![] } else { vec!["SLO p95".into()] },
            requests_per_second: 1.0,
            requests: 1,
            p95_ms: p95,
            p99_ms: p95 * 2.0,
            availability: 1.0,
            dropped: 0,
            slos: vec![],
            run_dir: PathBuf::new(),
            report_files: vec![],
        }
    }

    fn plan(runs: usize) -> CapacityPlan {
        CapacityPlan {
            start_rate: 10.0,
            max_rate: 10_000.0,
            growth: 2.0,
            resolution: 0.05,
            max_steps: 16,
            runs,
            warmup: Duration::from_secs(5),
        }
    }

    /// Runs the search against a system that passes below `limit`, except the runs
    /// `flaky` lists as (rate, run index) failing.
    fn search_with(plan: CapacityPlan, limit: f64, flaky: &[(f64, usize)]) -> (Search, Vec<(f64, Phase, usize)>) {
        let calls = RefCell::new(Vec::new());
        let s = block_on(search::<(), _, _>(plan, |rate, phase, i| {
            let n = calls.borrow().iter().filter(|c: &&(f64, Phase, usize)| c.0 == rate).count();
            calls.borrow_mut().push((rate, phase, i));
            let ok = rate <= limit && !flaky.contains(&(rate, n));
            std::future::ready(Ok(run_record(ok, rate)))
        }))
        .unwrap();
        (s, calls.into_inner())
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn finds_the_knee_within_the_resolution_with_every_run_passing() {
        let (s, calls) = search_with(plan(3), 137.0, &[]);
        let Finding::Capacity { rate, runs: 3, ceiling: Some(c) } = s.finding else { panic!("{:?}", s.finding) };
        assert!(rate <= 137.0 && (c - rate) / rate <= 0.05, "{rate} {c}");
        assert!(c > 137.0);
        let rates: Vec<f64> = s.steps.iter().map(|s| s.rate).collect();
        assert_eq!(rates[..5], [10.0, 20.0, 40.0, 80.0, 160.0]);
        // Passing rates ran three times, failing ones stopped at their first run.
        for step in &s.steps {
            assert_eq!(step.runs.len(), if step.passed { 3 } else { 1 }, "{}", step.rate);
        }
        assert!(s.steps.iter().all(|s| s.phase != Phase::Confirm), "three runs need no confirmation");
        assert_eq!(calls.len(), s.steps.iter().map(|s| s.runs.len()).sum::<usize>());
        assert_eq!(s.confirmed_run().unwrap().0.rate, rate);
    }

    #[test]
    fn a_rate_that_fails_one_of_its_runs_is_not_published() {
        let (first, _) = search_with(plan(3), 137.0, &[]);
        let best = first.finding.rate().unwrap();
        // The best rate passes twice, then fails its third run.
        let (s, _) = search_with(plan(3), 137.0, &[(best, 2)]);
        let found = s.finding.rate().expect("a lower rate passes every run");
        assert!(found < best, "{found} < {best}");
        let flaky = s.steps.iter().find(|s| s.rate == best).unwrap();
        assert!(!flaky.passed);
        assert_eq!((flaky.passes, flaky.runs.len()), (2, 3));
        assert_eq!(flaky.pass_share(3), "2/3 runs");
        let Finding::Capacity { ceiling: Some(c), .. } = s.finding else { panic!("{:?}", s.finding) };
        assert_eq!(c, best, "the rate that failed once is the ceiling");
    }

    #[test]
    fn one_run_per_step_confirms_the_best_rate_and_a_failed_confirmation_moves_the_ceiling() {
        let (first, calls) = search_with(plan(1), 137.0, &[]);
        let best = first.finding.rate().unwrap();
        assert_eq!(calls.last().unwrap(), &(best, Phase::Confirm, 0));
        let (s, calls) = search_with(plan(1), 137.0, &[(best, 1)]);
        let found = s.finding.rate().expect("a lower rate is confirmed");
        assert!(found < best, "{found} < {best}");
        assert_eq!(calls.iter().filter(|c| c.1 == Phase::Confirm).count(), 2);
        let Finding::Capacity { ceiling: Some(c), .. } = s.finding else { panic!() };
        assert_eq!(c, best, "the unreproducible rate is the new ceiling");
    }

    #[test]
    fn start_rate_failing_says_so() {
        let (s, calls) = search_with(plan(3), 5.0, &[]);
        assert_eq!(s.finding, Finding::NonePassed { lowest_tried: 10.0 });
        assert_eq!(calls.len(), 1, "the first failed run ends the step");
        assert!(s.finding.to_string().contains("lower start_rate"));
    }

    #[test]
    fn max_rate_passing_is_a_lower_bound() {
        let p = CapacityPlan { max_rate: 50.0, ..plan(2) };
        let (s, calls) = search_with(p, 1e9, &[]);
        assert_eq!(s.finding, Finding::AtLeast { rate: 50.0, runs: 2 });
        let rates: Vec<f64> = calls.iter().map(|c| c.0).collect();
        assert_eq!(rates, vec![10.0, 10.0, 20.0, 20.0, 40.0, 40.0, 50.0, 50.0]);
    }

    #[test]
    fn the_step_budget_bounds_the_search() {
        let p = CapacityPlan { max_steps: 4, resolution: 0.001, ..plan(1) };
        let (s, calls) = search_with(p, 137.0, &[]);
        assert!(calls.len() <= 4, "{calls:?}");
        assert!(matches!(s.finding, Finding::Unconfirmed { best_unconfirmed: Some(80.0), .. }), "{:?}", s.finding);
        let p = CapacityPlan { max_steps: 4, resolution: 0.001, ..plan(3) };
        let (s, calls) = search_with(p, 137.0, &[]);
        assert_eq!(s.steps.len(), 4);
        assert!(calls.len() <= 12, "{calls:?}");
        assert!(matches!(s.finding, Finding::AtLeast { rate: 80.0, runs: 3 }), "{:?}", s.finding);
    }

    #[test]
    fn the_markdown_leads_with_the_finding_and_shows_each_steps_spread() {
        let (s, _) = search_with(plan(3), 137.0, &[]);
        let md = s.markdown("store capacity", &[("machine".into(), "2 cores".into())]);
        assert!(md.lines().nth(2).unwrap().starts_with("**capacity "), "{md}");
        assert!(md.contains("passed 3 of 3 runs"), "{md}");
        assert!(md.contains("5s warm-up"), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| #")).count(), s.steps.len());
        assert!(md.contains("FAIL: SLO p95"));
        assert!(md.contains("| 3/3 runs |"), "{md}");
        assert!(md.contains("| 0/1 runs (stopped at the first failure) |"), "{md}");
    }

    #[test]
    fn a_step_reports_the_range_of_its_p95() {
        let step = Step::new(
            Phase::Explore,
            10.0,
            3,
            vec![run_record(true, 40.0), run_record(true, 60.5), run_record(true, 48.0)],
        );
        assert!(step.passed);
        assert_eq!(step.p95_range_ms, (40.0, 60.5));
        assert_eq!(step.p95_spread(), "40.0–60.5 ms");
        let short = Step::new(Phase::Explore, 10.0, 3, vec![run_record(true, 40.0), run_record(true, 41.0)]);
        assert!(!short.passed, "two passing runs of three planned are not a pass");
    }
}
