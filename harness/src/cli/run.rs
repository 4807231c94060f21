//! `gauntlet run SCENARIO.toml`: bring the cluster up, run the scenario's load and fault
//! timeline, check the invariants, print the verdict, tear everything down. The run
//! itself is [`crate::world::Launch`]; this file parses the flags and renders.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::exit::{CliError, Outcome};
use crate::scenario::executor::{describe_operations, Event, RunOutcome};
use crate::scenario::model::RuntimeChoice;
use crate::scenario::Scenario;
use crate::world::{interrupt_on_signal, reaper_warning, Launch, LaunchEvent};

/// Where the cluster of a run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunRuntime {
    /// Child processes on 127.0.0.1.
    Process,
    /// Containers (needs a Docker engine).
    Docker,
    /// A deployment already running at its services' `urls` (nothing is started; node
    /// faults are refused; without --toxiproxy only the clients' edge carries faults).
    External,
}

/// Options of `gauntlet run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (see scenarios/).
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: PathBuf,
    /// Where the nodes run; default the scenario's `[cluster] runtime`.
    #[arg(long, value_enum)]
    pub runtime: Option<RunRuntime>,
    /// Cargo profile of the service binaries (built when missing).
    #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
    pub profile: String,
    /// Where runs keep their logs, data, history and ledger.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Seed of every random choice, overriding the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Put the edge proxies on this Toxiproxy API instead of an embedded one (process runtime).
    #[arg(long, value_name = "URL")]
    pub toxiproxy: Option<String>,
    /// Replay the fault schedule (times, node targets, seed) of a simulated run: its
    /// folder, as `gauntlet sim` printed it, or its schedule.json. Reproduces a seed the
    /// simulator's search found, against real processes.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "seed")]
    pub schedule_from: Option<PathBuf>,
}

/// Runs `gauntlet run`.
pub fn run(args: RunArgs) -> Result<Outcome, CliError> {
    let mut scenario = Scenario::load(&args.scenario).map_err(|e| CliError::BadInput(e.to_string()))?;
    if let Some(seed) = args.seed {
        scenario.reseed(seed);
    }
    if let Some(from) = &args.schedule_from {
        let schedule = crate::scenario::schedule::Schedule::read(from).map_err(CliError::BadInput)?;
        schedule
            .apply(&mut scenario)
            .map_err(|e| CliError::BadInput(format!("--schedule-from {}: {e}", from.display())))?;
    }
    let display = Display::new();
    let on_event = |e| display.show(e);
    let runtime = args.runtime.map(RuntimeChoice::from);
    let launch = Launch::new(&scenario, runtime, &args.profile, &args.runs, args.toxiproxy.clone(), &on_event)?;
    eprintln!("scenario {} (seed {}): {}", scenario.name, scenario.seed, first_line(&scenario.description));
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    let outcome = rt.block_on(async {
        let interrupt = interrupt_on_signal();
        launch.run(&scenario, interrupt, &on_event).await
    })?;
    print_verdict(&outcome);
    if outcome.interrupted {
        eprintln!("interrupted: every fault was rolled back and the cluster torn down");
        return Ok(Outcome::HarnessFailed);
    }
    Ok(if outcome.passed() { Outcome::Passed } else { Outcome::GateFailed })
}

impl From<RunRuntime> for RuntimeChoice {
    fn from(r: RunRuntime) -> Self {
        match r {
            RunRuntime::Process => RuntimeChoice::Process,
            RunRuntime::Docker => RuntimeChoice::Docker,
            RunRuntime::External => RuntimeChoice::External,
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// What a launch reports, for people: setup lines with their time, the live progress
/// line on a terminal (plain lines every few seconds otherwise).
pub(crate) struct Display {
    terminal: bool,
    last_plain: Mutex<Option<Instant>>,
}

impl Display {
    pub(crate) fn new() -> Self {
        Self { terminal: std::io::stderr().is_terminal(), last_plain: Mutex::new(None) }
    }

    pub(crate) fn show(&self, event: LaunchEvent) {
        match event {
            LaunchEvent::Reaped(r) => {
                eprintln!("gauntlet: run {} ended without cleaning up; its processes were ended", r.run_id)
            }
            LaunchEvent::RunStarted { id, run_dir } => eprintln!("run {id}: {}", run_dir.display()),
            LaunchEvent::ReaperFailed(e) => eprintln!("{}", reaper_warning(&e)),
            LaunchEvent::Step { elapsed, message } => eprintln!("[{:>6.2}s] {message}", elapsed.as_secs_f64()),
            LaunchEvent::InterruptedWhileStarting => eprintln!("interrupted while starting: tearing down"),
            LaunchEvent::Executor(e) => self.executor(e),
            LaunchEvent::ExecutorDone => self.finish(),
        }
    }

    fn executor(&self, event: Event) {
        let mut err = std::io::stderr().lock();
        match event {
            Event::Note(msg) => {
                if self.terminal {
                    let _ = write!(err, "\r\x1b[2K");
                }
                let _ = writeln!(err, "{msg}");
            }
            Event::Progress(p, faults) => {
                let faults = if faults.is_empty() { "none".to_string() } else { faults.join(", ") };
                let line = format!(
                    "{:>6.1}s  {:>7.1} req/s  p95 {:>8}  errors {}  in flight {}  faults: {faults}",
                    p.elapsed.as_secs_f64(),
                    p.rate(),
                    ms(p.p95_ms),
                    p.errors,
                    p.in_flight
                );
                if self.terminal {
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                } else {
                    let mut last = self.last_plain.lock().unwrap_or_else(|p| p.into_inner());
                    if last.is_none_or(|t| t.elapsed().as_secs() >= 5) {
                        *last = Some(Instant::now());
                        let _ = writeln!(err, "{line}");
                    }
                }
            }
        }
    }

    /// Ends one run's live line; the next run starts its plain lines afresh.
    fn finish(&self) {
        *self.last_plain.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if self.terminal {
            eprintln!();
        }
    }
}

/// Milliseconds for people: `612.4ms`, `3.02s`.
fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else {
        format!("{v:.1}ms")
    }
}

/// Prints the verdict table: SLOs, invariants, faults with planned and actual times.
pub fn print_verdict(o: &RunOutcome) {
    println!();
    println!("scenario {} (seed {}) — {}", o.scenario, o.seed, if o.passed() { "PASSED" } else { "FAILED" });
    if !o.passed() {
        for why in o.failure_reasons() {
            println!("  - {why}");
        }
    }
    if let Some(why) = &o.stopped {
        println!("stopped early: {why}");
    }
    let l = &o.load;
    println!(
        "load: {} requests, {:.1} req/s, p95 {}, p99 {}, availability {:.3}%, errors {}, dropped {}",
        l.requests,
        l.rate,
        ms(l.p95_ms),
        ms(l.p99_ms),
        l.availability * 100.0,
        l.errors,
        l.dropped
    );
    println!("operations: {}", describe_operations(&o.operations));
    if !o.slos.is_empty() {
        println!("\nSLOs");
        for v in &o.slos {
            println!("  {v}");
        }
    }
    if !o.checks.is_empty() {
        println!("\nInvariants");
        for c in &o.checks {
            println!("  {c}");
        }
    } else if o.reasons.is_some() {
        println!("\nInvariants: none declared, so no data was judged (declare [[invariant]]s: docs/checkers.md)");
    }
    if !o.faults.is_empty() {
        println!("\nFaults{:>46} {:>20}", "planned", "actual");
        let t = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.2}s"));
        for f in &o.faults {
            println!(
                "  {:<40} {:>8}..{:<8} {:>8}..{:<8}{}",
                f.label,
                t(Some(f.planned_at)),
                t(Some(f.planned_until)),
                t(f.applied_at),
                t(f.removed_at),
                f.error.as_deref().map(|e| format!("  ERROR {e}")).unwrap_or_default()
            );
            if let Some(e) = &f.effect {
                let verdict = if f.did_not_happen() { "  NO EFFECT: the experiment did not happen" } else { "" };
                println!("      effect: {}{verdict}", e.detail);
            }
        }
    }
    for e in &o.rollback_errors {
        println!("rollback failed: {e}");
    }
    for f in &o.report_files {
        println!("report: {}", f.display());
    }
    println!("\nlogs, history and state: {}", o.run_dir.display());
}
