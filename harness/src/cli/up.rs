//! `gauntlet up`, `gauntlet status`, `gauntlet down`: run a cluster by hand. The world
//! is assembled and started by [`crate::world`]; this file parses flags and renders.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::cluster::binaries::Binaries;
use crate::cluster::ledger::{self, Ledger, LedgerEntry, Reaped};
use crate::cluster::plan::{ClusterPlan, Ports, ReplicaOverrides};
use crate::cluster::{ClusterSpec, NodeStatus};
use crate::exit::{CliError, Outcome};
use crate::world::{
    interrupt_on_signal, open, reaper_warning, run_id, start, start_reaper, OpenWorld, Proxies, Started, World,
    WorldKind,
};

/// Where a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Child processes on 127.0.0.1 (needs nothing but this repository).
    Process,
    /// Containers on a private network of the run (needs a Docker engine; images are
    /// built locally, nothing is pulled).
    Docker,
    /// An already-running deployment at the services' `urls`: starts nothing.
    External,
}

/// Options every cluster command shares.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// The cluster file.
    #[arg(long, default_value = "services/cluster.toml", value_name = "FILE")]
    pub cluster: PathBuf,
    /// Where runs keep their logs, data and ledger.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
}

/// Options of the hidden `gauntlet reap`, started by every run (see
/// [`crate::cluster::ledger::watch`]).
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// The runs folder whose ledger holds the run.
    #[arg(long)]
    pub runs: PathBuf,
    /// The run to watch.
    #[arg(long)]
    pub run_id: String,
    /// The harness process that owns it.
    #[arg(long)]
    pub owner_pid: u32,
    /// Its start time (clock ticks since boot), so a recycled pid is not taken for it.
    #[arg(long)]
    pub owner_start: u64,
}

/// How long a reaper watches at most (a `gauntlet up` left running for a week is then
/// cleaned up by the next `up` or `down`, as before).
const REAPER_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// `gauntlet reap`: waits for the owner of a run to be gone, then removes what it left.
pub fn reap(args: ReapArgs) -> Result<Outcome, CliError> {
    let ledger = Ledger::new(&args.runs);
    ledger::watch(&ledger, &args.run_id, args.owner_pid, args.owner_start, REAPER_LIFETIME);
    Ok(Outcome::Passed)
}

/// Options of `gauntlet up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// A docker-compose file to run instead of a cluster file: its services become
    /// containers of the docker runtime, its `x-gauntlet` edges go through the fault proxy.
    #[arg(long, value_name = "FILE")]
    pub compose: Option<PathBuf>,
    /// Where the nodes run (default: process; docker for --compose).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeKind>,
    /// Replica count of a service, overriding the cluster file (repeatable): `api=2`.
    #[arg(long = "replicas", value_name = "SERVICE=N", value_parser = parse_replicas)]
    pub replicas: Vec<(String, u32)>,
    /// Cargo profile of the service binaries (built when missing).
    #[arg(long, default_value = "release")]
    pub profile: String,
    /// Use this Toxiproxy API for the edge proxies instead of the embedded one.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxies")]
    pub toxiproxy: Option<String>,
    /// Address of the embedded Toxiproxy API.
    #[arg(long, default_value = "127.0.0.1:8474", value_name = "ADDR")]
    pub proxy_listen: String,
    /// Wire services directly (no edge faults, no partitions).
    #[arg(long)]
    pub no_proxies: bool,
    /// Pick free ports instead of the cluster file's (several clusters side by side).
    #[arg(long)]
    pub ephemeral_ports: bool,
    /// Seed of the fault proxy's random decisions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_replicas(s: &str) -> Result<(String, u32), String> {
    let (svc, n) = s.split_once('=').ok_or_else(|| format!("{s:?} is not SERVICE=N, e.g. api=2"))?;
    let n: u32 = n.parse().map_err(|_| format!("{n:?} is not a whole number of replicas"))?;
    if !(1..=16).contains(&n) {
        return Err(format!("replicas must be from 1 to 16, got {n}"));
    }
    Ok((svc.to_string(), n))
}

/// Loads the cluster file; a mistake in it is bad input (exit code 2).
pub fn load_spec(path: &Path) -> Result<ClusterSpec, CliError> {
    ClusterSpec::load(path).map_err(|e| CliError::BadInput(e.to_string()))
}

fn report_reaped(reaped: &[Reaped]) {
    for r in reaped {
        let mut parts = Vec::new();
        if !r.processes.is_empty() {
            parts.push(format!("ended {}", r.processes.join(", ")));
        }
        if !r.containers.is_empty() {
            parts.push(format!("removed containers {}", r.containers.join(", ")));
        }
        if !r.networks.is_empty() {
            parts.push(format!("removed networks {}", r.networks.join(", ")));
        }
        if !r.volumes.is_empty() {
            parts.push(format!("removed volumes {}", r.volumes.join(", ")));
        }
        if !r.limits.is_empty() {
            parts.push(format!("removed {}", r.limits.join(", ")));
        }
        let what = if parts.is_empty() { "nothing was left running".to_string() } else { parts.join("; ") };
        eprintln!("gauntlet: run {} ended without cleaning up; {what}", r.run_id);
    }
}

/// Runs `gauntlet up`.
pub fn up(args: UpArgs) -> Result<Outcome, CliError> {
    let (spec, file) = match &args.compose {
        Some(compose) => {
            if matches!(args.runtime, Some(RuntimeKind::Process | RuntimeKind::External)) {
                return Err(CliError::BadInput(
                    "--compose runs the file's services as containers: drop --runtime (or give --runtime docker)"
                        .into(),
                ));
            }
            let spec = crate::cluster::compose::load(compose).map_err(|e| CliError::BadInput(e.to_string()))?;
            (spec, compose.clone())
        }
        None => (load_spec(&args.cluster.cluster)?, args.cluster.cluster.clone()),
    };
    for (svc, _) in &args.replicas {
        if spec.service(svc).is_none() {
            return Err(CliError::BadInput(format!(
                "--replicas names unknown service {svc:?} (see {})",
                file.display()
            )));
        }
    }
    let ledger = Ledger::new(&args.cluster.runs);
    report_reaped(&ledger.reap_dead());
    if let Some(live) = ledger.live().first() {
        return Err(CliError::BadInput(format!(
            "another `gauntlet up` (pid {}, run {}) is running: stop it with `gauntlet down` first",
            live.owner_pid, live.run_id
        )));
    }
    let id = run_id(&spec.name);
    let runs = std::path::absolute(&args.cluster.runs).context("resolving --runs")?;
    if let Err(e) = start_reaper(&runs, &id) {
        eprintln!("{}", reaper_warning(&e));
    }
    let run_dir = runs.join(&id);
    let ports = if args.ephemeral_ports { Ports::Ephemeral } else { Ports::Fixed };
    let overrides: ReplicaOverrides = args.replicas.iter().cloned().collect();
    let cluster_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let runtime =
        args.runtime.unwrap_or(if args.compose.is_some() { RuntimeKind::Docker } else { RuntimeKind::Process });
    let kind = match runtime {
        RuntimeKind::Process => WorldKind::Process,
        RuntimeKind::Docker => WorldKind::Docker,
        RuntimeKind::External => WorldKind::External,
    };
    let proxies = match &args.toxiproxy {
        _ if args.no_proxies => Proxies::Direct,
        Some(url) => Proxies::Toxiproxy(url.clone()),
        None => Proxies::Embedded { listen: Some(args.proxy_listen.clone()) },
    };
    let binaries = |spec: &ClusterSpec| {
        Binaries::for_cluster(spec, cluster_dir, &args.profile).map_err(|e| CliError::Harness(e.into()))
    };
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    rt.block_on(async move {
        let plan = ClusterPlan::new(spec, &run_dir, ports, &overrides).context("planning the cluster")?;
        let OpenWorld { world, embedded_proxy } = open(plan, kind, proxies, binaries, ledger, &id, args.seed).await?;
        let outcome = serve(world).await;
        OpenWorld::close_proxy(embedded_proxy).await;
        outcome
    })
}

/// Starts `world`, prints its nodes, and keeps it up until SIGINT or SIGTERM.
async fn serve<W: World>(mut world: W) -> Result<Outcome, CliError> {
    let t0 = Instant::now();
    let progress = move |msg: &str| eprintln!("[{:>6.2}s] {msg}", t0.elapsed().as_secs_f64());
    // One listener for the whole life of the cluster, so no Ctrl-C falls between two.
    let mut interrupt = interrupt_on_signal();
    match start(&mut world, &mut interrupt, &progress).await {
        Ok(Started::Up) => {}
        Ok(Started::Interrupted) => {
            eprintln!("interrupted: tearing down");
            let _ = world.teardown().await;
            return Ok(Outcome::HarnessFailed);
        }
        Err(e) => return Err(CliError::Harness(anyhow::Error::from(e).context("the cluster could not start"))),
    }
    println!("{}", render_nodes(&world.status()));
    println!("ingress:   {}", world.ingress_urls().join(", "));
    if let Some(url) = world.fault_api() {
        println!("toxiproxy: {url}");
    }
    println!("logs:      {}", world.plan().run_dir.join("logs").display());
    println!("cluster is up; Ctrl-C (or `gauntlet down`) tears it down");
    let _ = interrupt.wait_for(|v| *v).await;
    eprintln!("tearing down");
    world.teardown().await.map_err(anyhow::Error::from)?;
    eprintln!("cluster is down");
    Ok(Outcome::Passed)
}

/// A table of nodes, for people.
pub fn render_nodes(nodes: &[NodeStatus]) -> String {
    // The node column fits the longest name (`queue-worker-0` is 14 wide).
    let w = nodes.iter().map(|n| n.id.len()).max().unwrap_or(0).max(14);
    let mut out = format!("{:<w$} {:<12} {:<22} {}\n", "NODE", "STATE", "ADDRESS", "PID");
    for n in nodes {
        out.push_str(&format!("{:<w$} {:<12} {:<22} {}\n", n.id, n.state.to_string(), n.addr, n.handle));
    }
    out.trim_end().to_string()
}

/// Runs `gauntlet status`.
pub fn status(args: ClusterArgs) -> Result<Outcome, CliError> {
    let ledger = Ledger::new(&args.runs);
    let live = ledger.live();
    let dead = ledger.entries().len() - live.len();
    if live.is_empty() {
        println!("no cluster is running");
    }
    for e in &live {
        print_entry(e);
    }
    if dead > 0 {
        println!(
            "{dead} run(s) ended without cleaning up; `gauntlet down` or the next `gauntlet up` removes what they left"
        );
    }
    Ok(Outcome::Passed)
}

fn print_entry(e: &LedgerEntry) {
    println!("run {} ({} runtime, cluster {}, owner pid {})", e.run_id, e.runtime, e.cluster, e.owner_pid);
    let mut nodes = e.nodes.clone();
    for n in &mut nodes {
        if let Some(p) = e.processes.iter().find(|p| p.node == n.id) {
            if !ledger::same_process(p.pid, p.start_time) && n.state == crate::cluster::NodeState::Ready {
                n.state = crate::cluster::NodeState::Exited;
            }
        }
    }
    println!("{}", render_nodes(&nodes));
    println!("ingress: {}", e.ingress.join(", "));
    if let Some(t) = &e.toxiproxy {
        println!("toxiproxy: {t}");
    }
}

/// Runs `gauntlet down`.
pub fn down(args: ClusterArgs) -> Result<Outcome, CliError> {
    let ledger = Ledger::new(&args.runs);
    report_reaped(&ledger.reap_dead());
    let live = ledger.live();
    if live.is_empty() {
        println!("no cluster is running");
        return Ok(Outcome::Passed);
    }
    for e in live {
        println!("stopping run {} (pid {})", e.run_id, e.owner_pid);
        let pid = nix::unistd::Pid::from_raw(e.owner_pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while ledger::same_process(e.owner_pid, e.owner_start_time) && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if ledger::same_process(e.owner_pid, e.owner_start_time) {
            return Err(CliError::Harness(anyhow::anyhow!("run {} did not stop within 30 s", e.run_id)));
        }
        report_reaped(&ledger.reap_dead());
    }
    println!("cluster is down");
    Ok(Outcome::Passed)
}
