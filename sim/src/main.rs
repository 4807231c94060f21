//! `gauntlet-sim` (also run as `gauntlet sim`): a scenario on the simulated cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
///   gauntlet sim scenarios/payments-latency.toml --seeds 1..20
#[derive(Parser, Debug)]
#[command(name = "gauntlet sim", version, verbatim_doc_comment)]
struct Args {
    /// The scenario file (the same one `gauntlet run` takes).
    scenario: PathBuf,
    /// The seed to run (default: the scenario's own `seed`).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// A range of seeds to run one after the other, `A..B` (B excluded) or `A..=B`;
    /// the failing ones are listed with the command that replays each.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Runs each seed twice and fails on the first difference between the two runs'
    /// history.json, state.json and report.json.
    #[arg(long)]
    check_determinism: bool,
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
    let (from, to) = args.seeds.unwrap_or_else(|| {
        let s = args.seed.unwrap_or(scenario.seed);
        (s, s + 1)
    });
    let single = to - from == 1;
    let mut failing = Vec::new();
    let began = Instant::now();
    for seed in from..to {
        let dir = gauntlet_sim::seed_dir(&out, seed);
        let started = Instant::now();
        let outcome = match gauntlet_sim::run_seed(&scenario, seed, &dir) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("seed {seed}: harness failure: {e:#}");
                return ExitCode::from(3);
            }
        };
        let wall = started.elapsed();
        let mut verdict = if outcome.passed() { "PASSED".to_string() } else { "FAILED".to_string() };
        let mut diverged = None;
        if args.check_determinism {
            let replay = out.join(format!("seed-{seed}.replay"));
            if let Err(e) = gauntlet_sim::run_seed(&scenario, seed, &replay) {
                eprintln!("seed {seed}: harness failure on the replay: {e:#}");
                return ExitCode::from(3);
            }
            diverged = gauntlet_sim::compare::first_divergence(&dir, &replay);
            verdict.push_str(match diverged {
                None => ", deterministic (replayed: identical history, state and report)",
                Some(_) => ", NOT deterministic",
            });
        }
        let simulated = outcome_secs(&dir);
        println!(
            "seed {seed}: {verdict} — {simulated:.1} simulated s in {:.1} wall s ({:.1}x) → {}",
            wall.as_secs_f64(),
            simulated / wall.as_secs_f64().max(1e-9),
            dir.display()
        );
        if let Some(d) = &diverged {
            println!("  first divergence: {d}");
        }
        if single {
            gauntlet::cli::run::print_verdict(&outcome);
        } else if !outcome.passed() {
            for why in outcome.failure_reasons() {
                println!("  - {why}");
            }
        }
        if !outcome.passed() || diverged.is_some() {
            failing.push(seed);
        }
    }
    let runs = to - from;
    if runs > 1 {
        let minutes = began.elapsed().as_secs_f64() / 60.0;
        println!(
            "\n{runs} seeds in {:.1} min ({:.1} seeds/min): {} failed",
            minutes * 1.0,
            runs as f64 / minutes.max(1e-9),
            failing.len()
        );
        for seed in &failing {
            println!("  seed {seed}: replay with `gauntlet sim {} --seed {seed}`", args.scenario.display());
        }
    }
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The simulated seconds a run covered, from its report.
fn outcome_secs(dir: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("report/report.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let ms = |k: &str| json.pointer(&format!("/run/{k}")).and_then(serde_json::Value::as_str).map(str::to_owned);
    let _ = ms;
    json.pointer("/run/runtime_ms").and_then(serde_json::Value::as_f64).map_or(0.0, |ms| ms / 1000.0)
}
