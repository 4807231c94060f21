//! `gauntlet-sim` (also run as `gauntlet sim`): a scenario on the simulated cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use gauntlet::scenario::Scenario;

/// Runs a scenario file on the simulated cluster: the shop's real services, the fault
/// layer and the load in one process, on simulated network and time. A run is a
/// function of its seed: the same seed and build give the same history, state and
/// report, byte for byte.
///
/// Exit codes, as `gauntlet run`: 0 every run passed, 1 a run failed its SLOs or
/// invariants (or diverged under --check-determinism), 2 bad input (including a
/// scenario the simulator refuses, with what it refuses named), 3 harness failure.
///
/// Examples:
///   gauntlet sim scenarios/smoke.toml --seed 1 --check-determinism
///   gauntlet sim scenarios/payments-reset-peer.toml --seeds 1..200 --jobs 2
///   gauntlet sim scenarios/payments-reset-peer.toml --seed 37 --buggify
///   gauntlet run scenarios/payments-reset-peer.toml --schedule-from runs/sim-payments-reset-peer/seed-37
#[derive(Parser, Debug)]
#[command(name = "gauntlet sim", bin_name = "gauntlet sim", version, verbatim_doc_comment)]
struct Args {
    /// The scenario file (the same one `gauntlet run` takes).
    scenario: PathBuf,
    /// The seed to run (default: the scenario's own `seed`).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A seed search over `A..B` (B excluded) or `A..=B`, with --buggify: the failing
    /// seeds are listed with the invariant and clauses each broke and the commands that
    /// replay it.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Runs each seed twice and fails on the first difference between the two runs'
    /// history.jsonl, final-reads.jsonl and report.json.
    #[arg(long)]
    check_determinism: bool,
    /// Also draws, from each seed, fault times and node targets within the scenario's
    /// bounds, the network's delays and host order (FoundationDB's "buggify"). On by
    /// default with --seeds; give it with --seed to replay a seed a search found.
    #[arg(long)]
    buggify: bool,
    /// With --seeds: stop at the first failing seed (the seeds already running finish).
    #[arg(long)]
    first_failure: bool,
    /// With --seeds: how many seeds run at once, one thread each (default 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Where runs go: `<out>/seed-<N>/` each (default runs/sim-<scenario name>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{s}` is not a seed range: write A..B (B excluded) or A..=B, e.g. 1..200");
    let (a, b, inclusive) = match (s.split_once("..="), s.split_once("..")) {
        (Some((a, b)), _) => (a, b, true),
        (None, Some((a, b))) => (a, b, false),
        _ => return Err(bad()),
    };
    let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    let end = if inclusive { b.checked_add(1).ok_or_else(bad)? } else { b };
    if end <= a {
        return Err(format!("the seed range `{s}` is empty"));
    }
    Ok((a, end))
}

/// One seed's run (and replay, when checking determinism).
struct SeedRun {
    seed: u64,
    dir: PathBuf,
    outcome: Result<gauntlet::scenario::RunOutcome, String>,
    diverged: Option<String>,
    wall: Duration,
}

impl SeedRun {
    fn failed(&self) -> bool {
        self.outcome.as_ref().map_or(true, |o| !o.passed()) || self.diverged.is_some()
    }

    fn line(&self, check: bool) -> String {
        let verdict = match &self.outcome {
            Err(e) => return format!("seed {}: HARNESS FAILURE: {e}", self.seed),
            Ok(o) if o.passed() => "PASSED",
            Ok(_) => "FAILED",
        };
        let determinism = match (&self.diverged, check) {
            (None, true) => ", deterministic (replayed: identical history, state and report)",
            (Some(_), _) => ", NOT deterministic",
            (None, false) => "",
        };
        let simulated = simulated_secs(&self.dir);
        let mut line = format!(
            "seed {}: {verdict}{determinism} — {simulated:.1} simulated s in {:.1} wall s ({:.1}x) → {}",
            self.seed,
            self.wall.as_secs_f64(),
            simulated / self.wall.as_secs_f64().max(1e-9),
            self.dir.display()
        );
        if let Some(d) = &self.diverged {
            line.push_str(&format!("\n  first divergence: {d}"));
        }
        line
    }
}

fn run_one(scenario: &Scenario, seed: u64, out: &Path, buggify: bool, check: bool) -> SeedRun {
    let dir = gauntlet_sim::seed_dir(out, seed);
    let started = Instant::now();
    let outcome = gauntlet_sim::run_seed(scenario, seed, &dir, buggify).map_err(|e| format!("{e:#}"));
    let wall = started.elapsed();
    let mut diverged = None;
    if check && outcome.is_ok() {
        let replay = out.join(format!("seed-{seed}.replay"));
        diverged = match gauntlet_sim::run_seed(scenario, seed, &replay, buggify) {
            Ok(_) => gauntlet_sim::compare::first_divergence(&dir, &replay),
            Err(e) => Some(format!("the replay failed: {e:#}")),
        };
    }
    SeedRun { seed, dir, outcome, diverged, wall }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(refused) = gauntlet_sim::check_supported(&scenario) {
        eprintln!("error: {}: {refused}", args.scenario.display());
        return ExitCode::from(2);
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("sim-{}", scenario.name)));
    let buggify = args.buggify || args.seeds.is_some();
    let check = args.check_determinism;
    let Some((from, to)) = args.seeds else {
        let seed = args.seed.unwrap_or(scenario.seed);
        let run = run_one(&scenario, seed, &out, buggify, check);
        println!("{}", run.line(check));
        return match &run.outcome {
            Err(_) => ExitCode::from(3),
            Ok(outcome) => {
                gauntlet::cli::run::print_verdict(outcome);
                if run.failed() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
        };
    };

    let total = to - from;
    let stop_note = if args.first_failure { ", stopping at the first failure" } else { "" };
    println!(
        "searching seeds {from}..{to} of {} ({total} runs{}, {} at once, with buggify{stop_note})",
        scenario.name,
        if check { ", each replayed" } else { "" },
        args.jobs
    );
    let began = Instant::now();
    let next = AtomicU64::new(from);
    let stop = AtomicBool::new(false);
    let done: Mutex<Vec<SeedRun>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(total as u32) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= to {
                    break;
                }
                let run = run_one(&scenario, seed, &out, true, check);
                if args.first_failure && run.failed() {
                    stop.store(true, Ordering::Relaxed);
                }
                let mut done = done.lock().unwrap_or_else(PoisonError::into_inner);
                println!("[{}/{total}] {}", done.len() + 1, run.line(check));
                if let Ok(o) = &run.outcome {
                    if !o.passed() {
                        for why in o.failure_reasons() {
                            println!("  - {why}");
                        }
                    }
                }
                done.push(run);
            });
        }
    });
    let mut runs = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    runs.sort_by_key(|r| r.seed);
    let minutes = began.elapsed().as_secs_f64() / 60.0;
    let failing: Vec<&SeedRun> = runs.iter().filter(|r| r.failed()).collect();
    println!(
        "\n{} seeds in {minutes:.1} min ({:.1} seeds/min): {} failed",
        runs.len(),
        runs.len() as f64 / minutes.max(1e-9),
        failing.len()
    );
    for r in &failing {
        let why = match &r.outcome {
            Ok(o) => {
                let broken: Vec<String> = o
                    .checks
                    .iter()
                    .filter(|c| !c.valid())
                    .map(|c| format!("{} [{}]", c.invariant, c.broken_clauses().join(", ")))
                    .collect();
                if broken.is_empty() {
                    o.failure_reasons().first().cloned().or_else(|| r.diverged.clone()).unwrap_or_default()
                } else {
                    format!("invariant {}", broken.join("; "))
                }
            }
            Err(e) => e.clone(),
        };
        println!("  seed {}: {why}", r.seed);
        println!(
            "    replay: gauntlet sim {} --seed {} --buggify   (against real processes: gauntlet run {} --schedule-from {})",
            args.scenario.display(),
            r.seed,
            args.scenario.display(),
            r.dir.display()
        );
    }
    if runs.iter().any(|r| r.outcome.is_err()) {
        ExitCode::from(3)
    } else if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The simulated seconds a run covered, from its `simulated.json`.
fn simulated_secs(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("simulated.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json.pointer("/simulated_secs").and_then(serde_json::Value::as_f64).unwrap_or(0.0)
}
