//! `gauntlet run SCENARIO.toml`: bring the cluster up, run the scenario's load and fault
//! timeline, check the invariants, print the verdict, tear everything down.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::sync::watch;

use crate::cluster::binaries::Binaries;
use crate::cluster::docker::DockerRuntime;
use crate::cluster::ledger::Ledger;
use crate::cluster::plan::{ClusterPlan, Ports};
use crate::cluster::process::ProcessRuntime;
use crate::cluster::wiring::Wiring;
use crate::cluster::Runtime;
use crate::exit::{CliError, Outcome};
use crate::faults::client::ToxiproxyClient;
use crate::faults::ProxyServer;
use crate::scenario::executor::{self, admin_endpoints, describe_operations, Cluster, Event, RunOutcome};
use crate::scenario::model::RuntimeChoice;
use crate::scenario::Scenario;

/// Where the cluster of a run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunRuntime {
    /// Child processes on 127.0.0.1.
    Process,
    /// Containers (needs a Docker engine).
    Docker,
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
}

/// Runs `gauntlet run`.
pub fn run(args: RunArgs) -> Result<Outcome, CliError> {
    let mut scenario = Scenario::load(&args.scenario).map_err(|e| CliError::BadInput(e.to_string()))?;
    if let Some(seed) = args.seed {
        scenario.reseed(seed);
    }
    let launch = Launch::new(&scenario, args.runtime, &args.profile, &args.runs, args.toxiproxy.clone())?;
    eprintln!("scenario {} (seed {}): {}", scenario.name, scenario.seed, first_line(&scenario.description));
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    let outcome = rt.block_on(async move {
        let interrupt = interrupt_on_signal();
        launch.run(&scenario, interrupt).await
    })?;
    print_verdict(&outcome);
    if outcome.interrupted {
        eprintln!("interrupted: every fault was rolled back and the cluster torn down");
        return Ok(Outcome::HarnessFailed);
    }
    Ok(if outcome.passed() { Outcome::Passed } else { Outcome::GateFailed })
}

/// A receiver that turns true on SIGINT or SIGTERM.
pub(crate) fn interrupt_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    // Listening starts now, not when the task first runs.
    let mut shutdown = super::up::Shutdown::listen();
    tokio::spawn(async move {
        shutdown.recv().await;
        let _ = tx.send(true);
    });
    rx
}

/// Where and how a scenario's cluster runs: one run with `gauntlet run`, many with
/// `gauntlet capacity`.
pub(crate) struct Launch {
    runtime: RuntimeChoice,
    binaries: Binaries,
    runs: PathBuf,
    toxiproxy: Option<String>,
}

impl Launch {
    /// Resolves the runtime (the command line's, else the scenario's), the service
    /// binaries (built when missing) and the runs folder; reaps what crashed runs left.
    pub(crate) fn new(
        scenario: &Scenario,
        runtime: Option<RunRuntime>,
        profile: &str,
        runs: &Path,
        toxiproxy: Option<String>,
    ) -> Result<Self, CliError> {
        let runtime = match runtime {
            Some(RunRuntime::Process) => RuntimeChoice::Process,
            Some(RunRuntime::Docker) => RuntimeChoice::Docker,
            None => scenario.cluster.runtime,
        };
        if runtime == RuntimeChoice::Docker && toxiproxy.is_some() {
            return Err(CliError::BadInput("--toxiproxy is for the process runtime".into()));
        }
        for r in Ledger::new(runs).reap_dead() {
            eprintln!("gauntlet: run {} ended without cleaning up; its processes were ended", r.run_id);
        }
        let runs = std::path::absolute(runs).context("resolving --runs")?;
        let file = &scenario.cluster.file;
        let cluster_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let binaries =
            Binaries::for_cluster(&scenario.cluster.spec, &cluster_dir, profile).map_err(anyhow::Error::from)?;
        Ok(Self { runtime, binaries, runs, toxiproxy })
    }

    /// Brings a fresh cluster up, runs `scenario` on it and tears it down.
    pub(crate) async fn run(
        &self,
        scenario: &Scenario,
        interrupt: watch::Receiver<bool>,
    ) -> Result<RunOutcome, CliError> {
        let id = super::up::run_id(&scenario.cluster.spec.name);
        let run_dir = self.runs.join(&id);
        let mut plan =
            ClusterPlan::new(scenario.cluster.spec.clone(), &run_dir, Ports::Ephemeral, &scenario.cluster.replicas)
                .context("planning the cluster")?;
        for node in &mut plan.nodes {
            if let Some(env) = scenario.cluster.env.get(&node.id.service) {
                node.env.extend(env.clone());
            }
        }
        eprintln!("run {id}: {}", run_dir.display());
        super::up::start_reaper(&self.runs, &id);
        let ledger = Ledger::new(&self.runs);
        let binaries = self.binaries.clone();
        match self.runtime {
            RuntimeChoice::Process => {
                let server = match &self.toxiproxy {
                    Some(_) => None,
                    None => Some(
                        ProxyServer::start("127.0.0.1:0", scenario.seed)
                            .await
                            .context("could not start the embedded fault proxy")?,
                    ),
                };
                let api = self.toxiproxy.clone().or_else(|| server.as_ref().map(ProxyServer::url)).unwrap_or_default();
                let wiring = Wiring::Toxiproxy { client: ToxiproxyClient::new(api) };
                let runtime = ProcessRuntime::new(plan, binaries, wiring, ledger, &id);
                let outcome =
                    drive(scenario, runtime, interrupt, |r| (r.ingress_urls().first().cloned(), r.wiring_url())).await;
                if let Some(server) = server {
                    server.shutdown().await;
                }
                outcome
            }
            RuntimeChoice::Docker => {
                let gauntlet = std::env::current_exe().context("locating the gauntlet binary")?;
                let runtime = DockerRuntime::new(plan, binaries, gauntlet, ledger, &id, scenario.seed);
                drive(scenario, runtime, interrupt, |r| (r.ingress_urls().first().cloned(), r.toxiproxy_url())).await
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Starts the cluster, runs the scenario, and always tears down.
async fn drive<R: Runtime>(
    scenario: &Scenario,
    mut runtime: R,
    mut interrupt: watch::Receiver<bool>,
    urls: impl Fn(&R) -> (Option<String>, Option<String>),
) -> Result<RunOutcome, CliError> {
    let t0 = Instant::now();
    let progress = move |msg: &str| eprintln!("[{:>6.2}s] {msg}", t0.elapsed().as_secs_f64());
    let started = tokio::select! {
        r = runtime.start(&progress) => r,
        _ = interrupt.wait_for(|v| *v) => {
            eprintln!("interrupted while starting: tearing down");
            let _ = runtime.teardown().await;
            return Err(CliError::Harness(anyhow::anyhow!("interrupted before the cluster was up")));
        }
    };
    if let Err(e) = started {
        let _ = runtime.teardown().await;
        return Err(CliError::Harness(anyhow::Error::from(e).context("the cluster could not start")));
    }
    let (Some(url), Some(api)) = urls(&runtime) else {
        let _ = runtime.teardown().await;
        return Err(CliError::Harness(anyhow::anyhow!("the cluster has no ingress URL or no Toxiproxy API")));
    };
    let nodes = runtime.status();
    let admin = match admin_endpoints(runtime.plan(), &nodes) {
        Ok(a) => Some(a),
        Err(_) if scenario.invariants.is_empty() => None,
        Err(e) => {
            let _ = runtime.teardown().await;
            return Err(CliError::Harness(e));
        }
    };
    let mut cluster = Cluster { runtime, ingress: url, toxiproxy: ToxiproxyClient::new(api), admin };
    let display = Display::new();
    let result = executor::execute(scenario, &mut cluster, interrupt, &|e| display.show(e)).await;
    display.finish();
    progress("tearing down");
    let down = cluster.runtime.teardown().await;
    let outcome = result.map_err(CliError::Harness)?;
    down.map_err(|e| CliError::Harness(anyhow::Error::from(e).context("tearing the cluster down")))?;
    progress("cluster is down");
    let _ =
        std::fs::write(outcome.run_dir.join("outcome.json"), serde_json::to_vec_pretty(&outcome).unwrap_or_default());
    Ok(outcome)
}

/// The live progress line on a terminal; plain lines every few seconds otherwise.
struct Display {
    terminal: bool,
    started: Instant,
    last_plain: Mutex<Option<Instant>>,
}

impl Display {
    fn new() -> Self {
        Self { terminal: std::io::stderr().is_terminal(), started: Instant::now(), last_plain: Mutex::new(None) }
    }

    fn show(&self, event: Event) {
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
        let _ = self.started;
    }

    fn finish(&self) {
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
    if !o.order_statuses.is_empty() {
        let counts: Vec<String> = o.order_statuses.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("orders at the end: {}", counts.join(", "));
    }
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
