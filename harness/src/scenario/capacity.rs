//! The capacity search: the highest constant arrival rate at which a scenario's SLOs
//! (and invariants) still hold, found by running it.
//!
//! Each step is a whole run of the scenario at one constant rate on a fresh cluster, so
//! a step never inherits the queues or the data of the one before. The search grows the
//! rate geometrically until a step fails, bisects between the highest passing rate and
//! the lowest failing one until they are within the plan's resolution, then runs the
//! best rate once more: a rate is published only when it passed twice. A failed
//! confirmation makes that rate the new ceiling and the search goes on below it. Every
//! loop is bounded by [`CapacityPlan::max_steps`].
//!
//! A step fails when the run fails (an SLO, an invariant, a stop) and also when the
//! generator could not offer the rate (dropped starts, or under 95% of the planned
//! flow starts went out): a rate that was not offered was not measured.

use std::future::Future;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::executor::RunOutcome;
use super::model::CapacityPlan;

/// The version of `capacity.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a step ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Growing the rate until a step fails.
    Explore,
    /// Halving the gap between the passing and the failing rate.
    Bisect,
    /// Running the best rate again before publishing it.
    Confirm,
}

/// One run of the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Why it ran.
    pub phase: Phase,
    /// Planned flow starts per second.
    pub rate: f64,
    /// Whether every gate held and the rate was offered in full.
    pub passed: bool,
    /// What failed, in words (empty when it passed).
    pub reasons: Vec<String>,
    /// Requests per second achieved.
    pub requests_per_second: f64,
    /// Requests answered or failed.
    pub requests: u64,
    /// Corrected p95 latency over the whole run, ms.
    pub p95_ms: f64,
    /// Corrected p99 latency over the whole run, ms.
    pub p99_ms: f64,
    /// Share of requests answered in time without a 5xx.
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

impl Step {
    /// Judges one run of the scenario at `rate`.
    pub fn from_outcome(phase: Phase, rate: f64, planned_starts: u64, o: &RunOutcome) -> Self {
        let started = o.load.flows_started;
        // The run's own verdict, then what a capacity step asks on top: the rate offered.
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
            phase,
            rate,
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

/// How the search ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The highest rate that passed, and passed again when confirmed; the lowest rate
    /// that failed above it, if one did.
    Capacity { rate: f64, ceiling: Option<f64> },
    /// Even `max_rate` passed: the capacity is at least that.
    AtLeast { rate: f64 },
    /// Even `start_rate` failed (or every confirmation did).
    NonePassed { lowest_tried: f64 },
    /// The step budget ran out before a rate was confirmed.
    Unconfirmed { best_unconfirmed: Option<f64>, ceiling: Option<f64> },
}

impl Finding {
    /// The rate to publish, if there is one.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Self::Capacity { rate, .. } | Self::AtLeast { rate } => Some(*rate),
            Self::NonePassed { .. } | Self::Unconfirmed { .. } => None,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Capacity { rate, ceiling: Some(c) } => {
                write!(f, "capacity {} flows/s (confirmed; {} flows/s failed)", show(*rate), show(*c))
            }
            Self::Capacity { rate, ceiling: None } => write!(f, "capacity {} flows/s (confirmed)", show(*rate)),
            Self::AtLeast { rate } => {
                write!(f, "capacity at least {} flows/s: the highest rate tried passed (raise max_rate)", show(*rate))
            }
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
}

impl From<CapacityPlan> for PlanRecord {
    fn from(p: CapacityPlan) -> Self {
        Self {
            start_rate: p.start_rate,
            max_rate: p.max_rate,
            growth: p.growth,
            resolution: p.resolution,
            max_steps: p.max_steps,
        }
    }
}

/// Runs the search, calling `probe(rate, phase)` for each step; a probe that fails to
/// run at all (the harness, not the system) ends the search with its error.
pub async fn search<E, F, Fut>(plan: CapacityPlan, mut probe: F) -> Result<Search, E>
where
    F: FnMut(f64, Phase) -> Fut,
    Fut: Future<Output = Result<Step, E>>,
{
    let mut steps: Vec<Step> = Vec::new();
    let mut pass: Option<f64> = None;
    let mut fail: Option<f64> = None;
    let budget = plan.max_steps;

    // Explore: grow until a step fails or the ceiling of the plan passes.
    let mut rate = round_rate(plan.start_rate);
    loop {
        if steps.len() >= budget {
            return Ok(done(plan, steps, Finding::Unconfirmed { best_unconfirmed: pass, ceiling: fail }));
        }
        let step = probe(rate, Phase::Explore).await?;
        let passed = step.passed;
        steps.push(step);
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
            return Ok(done(plan, steps, Finding::NonePassed { lowest_tried: round_rate(plan.start_rate) }));
        };
        // Bisect until the gap is within the resolution (or cannot shrink).
        while let Some(hi) = fail {
            let lo = pass.unwrap_or(lo);
            let mid = round_rate((lo + hi) / 2.0);
            if (hi - lo) / lo <= plan.resolution || mid <= lo || mid >= hi {
                break;
            }
            if steps.len() + 1 >= budget {
                // Keep one step for the confirmation.
                break;
            }
            let step = probe(mid, Phase::Bisect).await?;
            if step.passed {
                pass = Some(mid);
            } else {
                fail = Some(mid);
            }
            steps.push(step);
        }
        let best = pass.unwrap_or(lo);
        if steps.len() >= budget {
            return Ok(done(plan, steps, Finding::Unconfirmed { best_unconfirmed: Some(best), ceiling: fail }));
        }
        let step = probe(best, Phase::Confirm).await?;
        let confirmed = step.passed;
        steps.push(step);
        if confirmed {
            let finding = match fail {
                None => Finding::AtLeast { rate: best },
                Some(c) => Finding::Capacity { rate: best, ceiling: Some(c) },
            };
            return Ok(done(plan, steps, finding));
        }
        // Not reproducible: `best` is now a failing rate; go on below it from the
        // highest rate under it that passed.
        fail = Some(best);
        pass = steps.iter().filter(|s| s.passed && s.rate < best).map(|s| s.rate).reduce(f64::max);
        if pass.is_none() {
            return Ok(done(plan, steps, Finding::NonePassed { lowest_tried: round_rate(plan.start_rate) }));
        }
    }
}

fn done(plan: CapacityPlan, steps: Vec<Step>, finding: Finding) -> Search {
    Search { schema_version: SCHEMA_VERSION, plan: plan.into(), steps, finding }
}

impl Search {
    /// The confirmation step of the published rate.
    pub fn confirmed_step(&self) -> Option<&Step> {
        let rate = self.finding.rate()?;
        self.steps.iter().rev().find(|s| s.rate == rate && s.passed)
    }

    /// The search as Markdown: the finding first, then every step.
    pub fn markdown(&self, title: &str, context: &[(String, String)]) -> String {
        let mut md = format!("# {title}\n\n**{}**\n\n", self.finding);
        for (k, v) in context {
            md.push_str(&format!("- {k}: {v}\n"));
        }
        let p = &self.plan;
        md.push_str(&format!(
            "- search: from {} flows/s, ×{} until a step fails, bisect to {}%, confirm; at most {} runs, max {} flows/s\n\n",
            show(p.start_rate),
            p.growth,
            show(p.resolution * 100.0),
            p.max_steps,
            show(p.max_rate)
        ));
        md.push_str("| # | phase | flows/s | req/s | p95 | p99 | availability | dropped | verdict |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for (i, s) in self.steps.iter().enumerate() {
            let verdict = if s.passed { "pass".to_string() } else { format!("FAIL: {}", s.reasons.join("; ")) };
            md.push_str(&format!(
                "| {} | {:?} | {} | {:.1} | {:.1} ms | {:.1} ms | {:.3}% | {} | {} |\n",
                i + 1,
                s.phase,
                show(s.rate),
                s.requests_per_second,
                s.p95_ms,
                s.p99_ms,
                s.availability * 100.0,
                s.dropped,
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

    fn step(phase: Phase, rate: f64, passed: bool) -> Step {
        Step {
            phase,
            rate,
            passed,
            reasons: if passed { vec![] } else { vec!["SLO p95".into()] },
            requests_per_second: rate,
            requests: 0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            availability: 1.0,
            dropped: 0,
            slos: vec![],
            run_dir: PathBuf::new(),
            report_files: vec![],
        }
    }

    fn plan() -> CapacityPlan {
        CapacityPlan { start_rate: 10.0, max_rate: 10_000.0, growth: 2.0, resolution: 0.05, max_steps: 16 }
    }

    /// Runs the search against a system that passes below `limit` (and, when given,
    /// fails the confirmations listed).
    fn run(plan: CapacityPlan, limit: f64, flaky: &[f64]) -> (Search, Vec<(f64, Phase)>) {
        let calls = RefCell::new(Vec::new());
        let s = futures_lite(search::<(), _, _>(plan, |rate, phase| {
            calls.borrow_mut().push((rate, phase));
            let ok = rate <= limit && !(phase == Phase::Confirm && flaky.contains(&rate));
            std::future::ready(Ok(step(phase, rate, ok)))
        }))
        .unwrap();
        (s, calls.into_inner())
    }

    fn futures_lite<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn finds_the_knee_within_the_resolution_and_confirms_it() {
        let (s, calls) = run(plan(), 137.0, &[]);
        let Finding::Capacity { rate, ceiling: Some(c) } = s.finding else { panic!("{:?}", s.finding) };
        assert!(rate <= 137.0 && (c - rate) / rate <= 0.05, "{rate} {c}");
        assert!(c > 137.0);
        assert_eq!(calls.last().unwrap(), &(rate, Phase::Confirm));
        assert_eq!(calls[..5].iter().map(|c| c.0).collect::<Vec<_>>(), vec![10.0, 20.0, 40.0, 80.0, 160.0]);
        assert!(calls.len() <= 16);
        assert_eq!(s.confirmed_step().unwrap().rate, rate);
    }

    #[test]
    fn a_failed_confirmation_moves_the_ceiling_down() {
        let (first, _) = run(plan(), 137.0, &[]);
        let best = first.finding.rate().unwrap();
        let (s, calls) = run(plan(), 137.0, &[best]);
        let found = s.finding.rate().expect("a lower rate is confirmed");
        assert!(found < best, "{found} < {best}");
        assert_eq!(calls.iter().filter(|c| c.1 == Phase::Confirm).count(), 2);
        let Finding::Capacity { ceiling: Some(c), .. } = s.finding else { panic!() };
        assert_eq!(c, best, "the unreproducible rate is the new ceiling");
    }

    #[test]
    fn start_rate_failing_says_so() {
        let (s, calls) = run(plan(), 5.0, &[]);
        assert_eq!(s.finding, Finding::NonePassed { lowest_tried: 10.0 });
        assert_eq!(calls.len(), 1);
        assert!(s.finding.to_string().contains("lower start_rate"));
    }

    #[test]
    fn max_rate_passing_is_a_lower_bound() {
        let p = CapacityPlan { max_rate: 50.0, ..plan() };
        let (s, calls) = run(p, 1e9, &[]);
        assert_eq!(s.finding, Finding::AtLeast { rate: 50.0 });
        assert_eq!(calls.iter().map(|c| c.0).collect::<Vec<_>>(), vec![10.0, 20.0, 40.0, 50.0, 50.0]);
    }

    #[test]
    fn the_step_budget_bounds_the_search() {
        let p = CapacityPlan { max_steps: 4, resolution: 0.001, ..plan() };
        let (s, calls) = run(p, 137.0, &[]);
        assert!(calls.len() <= 4, "{calls:?}");
        assert!(matches!(s.finding, Finding::Unconfirmed { best_unconfirmed: Some(80.0), .. }), "{:?}", s.finding);
    }

    #[test]
    fn the_markdown_leads_with_the_finding_and_lists_every_step() {
        let (s, _) = run(plan(), 137.0, &[]);
        let md = s.markdown("shop capacity", &[("machine".into(), "2 cores".into())]);
        assert!(md.lines().nth(2).unwrap().starts_with("**capacity "), "{md}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| #")).count(), s.steps.len());
        assert!(md.contains("FAIL: SLO p95"));
    }
}
