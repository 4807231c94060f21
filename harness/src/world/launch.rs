//! One scenario run on a fresh world, from start to teardown: the path `gauntlet run`
//! takes once and `gauntlet capacity` once per step.
//!
//! [`Launch`] resolves where the cluster runs and builds the service binaries once;
//! [`Launch::run`] plans the cluster with the scenario's environment and assembles the
//! world (fault proxy, ledger, reaper); [`run_on`] starts any [`World`] (an interrupt
//! tears it down), hands the executor a ready [`Cluster`], and always tears down. Nothing here prints: what
//! happens goes to the caller's [`LaunchEvent`] sink.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;

use super::open::{open, OpenWorld, Proxies, WorldKind};
use super::{run_id, start_reaper, World};
use crate::cluster::binaries::Binaries;
use crate::cluster::ledger::{Ledger, Reaped};
use crate::cluster::plan::{ClusterPlan, Ports};
use crate::cluster::RuntimeError;
use crate::exit::CliError;
use crate::scenario::executor::{self, Cluster, Event, RunOutcome};
use crate::scenario::model::RuntimeChoice;
use crate::scenario::Scenario;

/// What happens while a world is launched, for the caller to show.
#[derive(Debug)]
pub enum LaunchEvent {
    /// An earlier run ended without cleaning up; what it left was ended.
    Reaped(Reaped),
    /// The run has its id and folder.
    RunStarted { id: String, run_dir: PathBuf },
    /// The run's reaper could not start (a warning: the ledger still allows clean-up).
    ReaperFailed(std::io::Error),
    /// A step of bringing the world up or down, `elapsed` since the world began to start.
    Step { elapsed: Duration, message: String },
    /// An interrupt came before the world was up; it is being torn down.
    InterruptedWhileStarting,
    /// What the executor reported.
    Executor(Event),
    /// The executor is done; teardown follows.
    ExecutorDone,
}

/// How starting a world ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Every node is ready.
    Up,
    /// The interrupt came first; the world is not torn down yet.
    Interrupted,
}

/// Starts `world` unless `interrupt` turns true first; a world that fails to start is
/// torn down before the error is returned.
pub async fn start<W: World>(
    world: &mut W,
    interrupt: &mut watch::Receiver<bool>,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Started, RuntimeError> {
    let started = tokio::select! {
        r = world.start(progress) => r,
        _ = interrupt.wait_for(|v| *v) => return Ok(Started::Interrupted),
    };
    if let Err(e) = started {
        let _ = world.teardown().await;
        return Err(e);
    }
    Ok(Started::Up)
}

/// The runtime of a scenario's run: the command line's choice, else the scenario's.
/// An external Toxiproxy only works with local processes.
pub fn resolve_runtime(
    flag: Option<RuntimeChoice>,
    scenario: RuntimeChoice,
    toxiproxy: bool,
) -> Result<RuntimeChoice, CliError> {
    let runtime = flag.unwrap_or(scenario);
    if runtime == RuntimeChoice::Docker && toxiproxy {
        return Err(CliError::BadInput("--toxiproxy is for the process runtime".into()));
    }
    Ok(runtime)
}

/// Refuses, before anything runs, the faults an external deployment cannot take: node
/// faults (Gauntlet owns none of its nodes), and without the deployment's own Toxiproxy,
/// faults on any edge but the clients' (only the ingress is behind Gauntlet's proxy).
fn reachable_on_a_deployment(scenario: &Scenario, own_toxiproxy: bool) -> Result<(), CliError> {
    use crate::scenario::model::FaultTarget;
    for fault in &scenario.faults {
        let why = match &fault.target {
            FaultTarget::Node(node) => format!(
                "node {node}: the external runtime does not own the deployment's nodes; use its own tools, \
                 or run the system on the process or docker runtime"
            ),
            FaultTarget::Edge { edge, .. } if edge.from != crate::cluster::plan::CLIENT && !own_toxiproxy => format!(
                "edge {edge}: on an external deployment only the clients' edge (client->{}) goes through \
                 Gauntlet's proxy; give --toxiproxy URL of the deployment's own edge proxies to reach the others",
                scenario.cluster.spec.ingress
            ),
            FaultTarget::Edge { .. } => continue,
        };
        return Err(CliError::BadInput(format!("{}: fault {}: {why}", scenario.file.display(), fault.label)));
    }
    Ok(())
}

/// Where and how a scenario's cluster runs: one run with `gauntlet run`, many with
/// `gauntlet capacity`.
pub struct Launch {
    runtime: RuntimeChoice,
    binaries: Binaries,
    profile: String,
    runs: PathBuf,
    toxiproxy: Option<String>,
}

impl Launch {
    /// Resolves the runtime (see [`resolve_runtime`]), the service binaries (built when
    /// missing) and the runs folder; reaps what crashed runs left.
    pub fn new(
        scenario: &Scenario,
        runtime: Option<RuntimeChoice>,
        profile: &str,
        runs: &Path,
        toxiproxy: Option<String>,
        on_event: &(dyn Fn(LaunchEvent) + Sync),
    ) -> Result<Self, CliError> {
        let runtime = resolve_runtime(runtime, scenario.cluster.runtime, toxiproxy.is_some())?;
        if runtime == RuntimeChoice::External {
            reachable_on_a_deployment(scenario, toxiproxy.is_some())?;
        }
        if let (RuntimeChoice::Process | RuntimeChoice::External, Some(s)) =
            (runtime, scenario.cluster.spec.services.iter().find(|s| s.compose.is_some()))
        {
            return Err(CliError::BadInput(format!(
                "{} is a Compose file: its services (e.g. {}) run as containers; drop --runtime {}",
                scenario.cluster.file.display(),
                s.name,
                if runtime == RuntimeChoice::Process { "process" } else { "external" }
            )));
        }
        for r in Ledger::new(runs).reap_dead() {
            on_event(LaunchEvent::Reaped(r));
        }
        let runs = std::path::absolute(runs).context("resolving --runs")?;
        let file = &scenario.cluster.file;
        let cluster_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let binaries =
            Binaries::for_cluster(&scenario.cluster.spec, &cluster_dir, profile).map_err(anyhow::Error::from)?;
        Ok(Self { runtime, binaries, profile: profile.to_string(), runs, toxiproxy })
    }

    /// Where the cluster runs.
    pub fn runtime(&self) -> RuntimeChoice {
        self.runtime
    }

    /// Brings a fresh cluster up, runs `scenario` on it and tears it down; writes
    /// `outcome.json` into the run's folder.
    pub async fn run(
        &self,
        scenario: &Scenario,
        interrupt: watch::Receiver<bool>,
        on_event: &(dyn Fn(LaunchEvent) + Sync),
    ) -> Result<RunOutcome, CliError> {
        // Checkers that are binaries of a workspace are built when missing.
        let mut scenario = scenario.clone();
        let t0 = Instant::now();
        let progress = |msg: &str| on_event(LaunchEvent::Step { elapsed: t0.elapsed(), message: msg.to_string() });
        crate::scenario::data::resolve_binaries(&mut scenario.declared, &self.profile, &progress)
            .map_err(anyhow::Error::from)?;
        let scenario = &scenario;
        let id = run_id(&scenario.cluster.spec.name);
        let run_dir = self.runs.join(&id);
        let mut plan =
            ClusterPlan::new(scenario.cluster.spec.clone(), &run_dir, Ports::Ephemeral, &scenario.cluster.replicas)
                .context("planning the cluster")?;
        for node in &mut plan.nodes {
            if let Some(env) = scenario.cluster.env.get(&node.id.service) {
                node.env.extend(env.clone());
            }
        }
        on_event(LaunchEvent::RunStarted { id: id.clone(), run_dir });
        if let Err(e) = start_reaper(&self.runs, &id) {
            on_event(LaunchEvent::ReaperFailed(e));
        }
        let ledger = Ledger::new(&self.runs);
        let (kind, proxies) = match (self.runtime, &self.toxiproxy) {
            (RuntimeChoice::Process, Some(url)) => (WorldKind::Process, Proxies::Toxiproxy(url.clone())),
            (RuntimeChoice::Process, None) => (WorldKind::Process, Proxies::Embedded { listen: None }),
            (RuntimeChoice::Docker, _) => (WorldKind::Docker, Proxies::Embedded { listen: None }),
            (RuntimeChoice::External, Some(url)) => (WorldKind::External, Proxies::Toxiproxy(url.clone())),
            (RuntimeChoice::External, None) => (WorldKind::External, Proxies::Embedded { listen: None }),
        };
        let binaries = self.binaries.clone();
        let OpenWorld { world, embedded_proxy } =
            open(plan, kind, proxies, |_| Ok(binaries), ledger, &id, scenario.seed).await?;
        let outcome = run_on(world, scenario, interrupt, on_event).await;
        OpenWorld::close_proxy(embedded_proxy).await;
        outcome
    }
}

/// Starts `world`, runs `scenario` on it, always tears down, and writes `outcome.json`
/// into the run's folder. [`Launch::run`] calls it with the world it assembled; a world
/// assembled elsewhere (a simulation) is run the same way.
pub async fn run_on<W: World>(
    mut world: W,
    scenario: &Scenario,
    mut interrupt: watch::Receiver<bool>,
    on_event: &(dyn Fn(LaunchEvent) + Sync),
) -> Result<RunOutcome, CliError> {
    let t0 = Instant::now();
    let progress = |msg: &str| on_event(LaunchEvent::Step { elapsed: t0.elapsed(), message: msg.to_string() });
    // A resource or clock fault this world cannot hold refuses the scenario before anything starts.
    let prepared =
        world.prepare_limits(&scenario.limits()).and_then(|()| world.prepare_clocks(&scenario.clock_nodes()));
    if let Err(e) = prepared {
        let _ = world.teardown().await;
        return Err(CliError::BadInput(format!("{}: {e}", scenario.file.display())));
    }
    match start(&mut world, &mut interrupt, &progress).await {
        Ok(Started::Up) => {}
        Ok(Started::Interrupted) => {
            on_event(LaunchEvent::InterruptedWhileStarting);
            let _ = world.teardown().await;
            return Err(CliError::Harness(anyhow::anyhow!("interrupted before the cluster was up")));
        }
        Err(e) => return Err(CliError::Harness(anyhow::Error::from(e).context("the cluster could not start"))),
    }
    let mut cluster = ready(world).await?;
    let result = executor::execute(scenario, &mut cluster, interrupt, &|e| on_event(LaunchEvent::Executor(e))).await;
    on_event(LaunchEvent::ExecutorDone);
    progress("tearing down");
    let down = cluster.runtime.teardown().await;
    let outcome = result.map_err(CliError::Harness)?;
    down.map_err(|e| CliError::Harness(anyhow::Error::from(e).context("tearing the cluster down")))?;
    progress("cluster is down");
    let _ =
        std::fs::write(outcome.run_dir.join("outcome.json"), serde_json::to_vec_pretty(&outcome).unwrap_or_default());
    Ok(outcome)
}

/// A started world as the executor needs it: its ingress and its fault API.
/// A world that lacks one is torn down.
async fn ready<W: World>(mut world: W) -> Result<Cluster<W>, CliError> {
    let (Some(url), Some(reach)) = (world.ingress_urls().first().cloned(), world.reach()) else {
        let _ = world.teardown().await;
        return Err(CliError::Harness(anyhow::anyhow!("the cluster has no ingress URL or no Toxiproxy API")));
    };
    Ok(Cluster { runtime: world, ingress: url, reach })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Outcome;

    #[test]
    fn the_flag_overrides_the_scenarios_runtime() {
        let r = |flag, scenario| resolve_runtime(flag, scenario, false).unwrap();
        assert_eq!(r(None, RuntimeChoice::Docker), RuntimeChoice::Docker);
        assert_eq!(r(None, RuntimeChoice::Process), RuntimeChoice::Process);
        assert_eq!(r(Some(RuntimeChoice::Process), RuntimeChoice::Docker), RuntimeChoice::Process);
        assert_eq!(r(Some(RuntimeChoice::Docker), RuntimeChoice::Process), RuntimeChoice::Docker);
    }

    #[test]
    fn an_external_toxiproxy_with_docker_is_bad_input() {
        let from_flag = resolve_runtime(Some(RuntimeChoice::Docker), RuntimeChoice::Process, true).unwrap_err();
        assert_eq!(from_flag.outcome(), Outcome::BadInput);
        let from_file = resolve_runtime(None, RuntimeChoice::Docker, true).unwrap_err();
        assert_eq!(from_file.outcome(), Outcome::BadInput);
        assert_eq!(resolve_runtime(None, RuntimeChoice::Process, true).unwrap(), RuntimeChoice::Process);
        let flag_wins = resolve_runtime(Some(RuntimeChoice::Process), RuntimeChoice::Docker, true).unwrap();
        assert_eq!(flag_wins, RuntimeChoice::Process);
    }
}
