//! Assembling a world from a plan: the runtime that runs its nodes and the fault proxy
//! its edges go through.

use anyhow::Context as _;

use super::World;
use crate::cluster::binaries::Binaries;
use crate::cluster::docker::DockerRuntime;
use crate::cluster::external::ExternalRuntime;
use crate::cluster::ledger::Ledger;
use crate::cluster::plan::{ClusterPlan, NodeId};
use crate::cluster::process::ProcessRuntime;
use crate::cluster::wiring::Wiring;
use crate::cluster::{
    ClockSkew, ClusterSpec, LimitEffect, NodeLimit, NodeOp, NodeStatus, Readiness, Runtime, RuntimeError,
};
use crate::exit::CliError;
use crate::faults::client::ToxiproxyClient;
use crate::faults::ProxyServer;

/// Where a world's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    /// Child processes on 127.0.0.1.
    Process,
    /// Containers on a private network of the run, with their own proxy container.
    Docker,
    /// An already-running deployment at the services' `urls`: nothing is started.
    External,
}

/// How the edges of a world are proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxies {
    /// The embedded fault proxy, its API on `listen` (`None`: any free port).
    Embedded { listen: Option<String> },
    /// An already-running Toxiproxy-compatible API at this URL.
    Toxiproxy(String),
    /// No proxies: services call each other directly (no edge faults, no partitions).
    Direct,
}

/// One world of any kind, so callers assemble it once and drive it through [`World`].
// One value per run, moved a handful of times: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyWorld {
    Process(ProcessRuntime),
    Docker(DockerRuntime),
    External(ExternalRuntime),
}

/// An assembled world, not started yet, and the embedded proxy it uses, if any (shut
/// it down after the world's teardown).
pub struct OpenWorld {
    /// The world.
    pub world: AnyWorld,
    /// The embedded fault proxy the world's edges are on.
    pub embedded_proxy: Option<ProxyServer>,
}

impl OpenWorld {
    /// Stops the embedded fault proxy, if there is one (after the world is torn down).
    pub async fn close_proxy(proxy: Option<ProxyServer>) {
        if let Some(server) = proxy {
            server.shutdown().await;
        }
    }
}

/// Assembles the world of run `id` for `plan`: for processes, starts the embedded fault
/// proxy (its random decisions from `seed`) unless the edges go elsewhere; `binaries`
/// is asked for the service binaries only by the runtimes that run them.
pub async fn open(
    plan: ClusterPlan,
    kind: WorldKind,
    proxies: Proxies,
    binaries: impl FnOnce(&ClusterSpec) -> Result<Binaries, CliError>,
    ledger: Ledger,
    id: &str,
    seed: u64,
) -> Result<OpenWorld, CliError> {
    if let (WorldKind::Process | WorldKind::External, Some(s)) =
        (kind, plan.spec.services.iter().find(|s| s.compose.is_some()))
    {
        return Err(CliError::BadInput(format!(
            "{} is a Compose file: its services (e.g. {}) run as containers; use the docker runtime",
            plan.spec.file.display(),
            s.name
        )));
    }
    match kind {
        WorldKind::Process => {
            let mut embedded_proxy = None;
            let wiring = match proxies {
                Proxies::Direct => Wiring::Direct,
                Proxies::Toxiproxy(url) => Wiring::Toxiproxy { client: ToxiproxyClient::new(url) },
                Proxies::Embedded { listen } => {
                    let server = match &listen {
                        None => ProxyServer::start("127.0.0.1:0", seed)
                            .await
                            .context("could not start the embedded fault proxy")?,
                        Some(addr) => ProxyServer::start(addr, seed).await.with_context(|| {
                            format!(
                                "could not start the embedded fault proxy on {addr} (use --proxy-listen to move it)"
                            )
                        })?,
                    };
                    let client = ToxiproxyClient::new(server.url());
                    embedded_proxy = Some(server);
                    Wiring::Toxiproxy { client }
                }
            };
            let binaries = binaries(&plan.spec)?;
            let world = AnyWorld::Process(ProcessRuntime::new(plan, binaries, wiring, ledger, id));
            Ok(OpenWorld { world, embedded_proxy })
        }
        WorldKind::Docker => {
            if !matches!(proxies, Proxies::Embedded { .. }) {
                return Err(CliError::BadInput(
                    "--toxiproxy and --no-proxies are for the process runtime; the docker runtime runs its own proxy container"
                        .into(),
                ));
            }
            let gauntlet = std::env::current_exe().context("locating the gauntlet binary")?;
            let binaries = binaries(&plan.spec)?;
            let world = AnyWorld::Docker(DockerRuntime::new(plan, binaries, gauntlet, ledger, id, seed));
            Ok(OpenWorld { world, embedded_proxy: None })
        }
        WorldKind::External => {
            let toxiproxy = match &proxies {
                Proxies::Toxiproxy(url) => Some(url.clone()),
                Proxies::Embedded { .. } | Proxies::Direct => None,
            };
            let runtime =
                ExternalRuntime::new(plan, ledger, id, toxiproxy).map_err(|e| CliError::BadInput(e.to_string()))?;
            // Without the deployment's own edge proxies, the clients' edge goes through
            // the embedded proxy, so it carries faults.
            let Proxies::Embedded { listen } = proxies else {
                return Ok(OpenWorld { world: AnyWorld::External(runtime), embedded_proxy: None });
            };
            let server = ProxyServer::start(listen.as_deref().unwrap_or("127.0.0.1:0"), seed)
                .await
                .context("could not start the embedded fault proxy")?;
            let runtime = runtime.with_ingress_proxies(ToxiproxyClient::new(server.url()));
            Ok(OpenWorld { world: AnyWorld::External(runtime), embedded_proxy: Some(server) })
        }
    }
}

macro_rules! each {
    ($self:expr, $w:ident => $body:expr) => {
        match $self {
            AnyWorld::Process($w) => $body,
            AnyWorld::Docker($w) => $body,
            AnyWorld::External($w) => $body,
        }
    };
}

impl Runtime for AnyWorld {
    async fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        each!(self, w => w.start(progress).await)
    }

    async fn node_op(&mut self, id: &NodeId, op: NodeOp) -> Result<(), RuntimeError> {
        each!(self, w => w.node_op(id, op).await)
    }

    async fn node_op_detached(&mut self, id: &NodeId, op: NodeOp) -> Result<Option<Readiness>, RuntimeError> {
        each!(self, w => w.node_op_detached(id, op).await)
    }

    fn node_ready(&mut self, id: &NodeId, ready: &Result<(), RuntimeError>) {
        each!(self, w => w.node_ready(id, ready))
    }

    fn prepare_limits(&mut self, limits: &[(NodeId, NodeLimit)]) -> Result<(), RuntimeError> {
        each!(self, w => w.prepare_limits(limits))
    }

    async fn limit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<(), RuntimeError> {
        each!(self, w => w.limit(id, limit).await)
    }

    async fn unlimit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<LimitEffect, RuntimeError> {
        each!(self, w => w.unlimit(id, limit).await)
    }

    fn prepare_clocks(&mut self, nodes: &[NodeId]) -> Result<(), RuntimeError> {
        each!(self, w => w.prepare_clocks(nodes))
    }

    async fn set_clock(&mut self, id: &NodeId, skew: Option<ClockSkew>) -> Result<(), RuntimeError> {
        each!(self, w => w.set_clock(id, skew).await)
    }

    fn status(&mut self) -> Vec<NodeStatus> {
        each!(self, w => w.status())
    }

    fn plan(&self) -> &ClusterPlan {
        each!(self, w => w.plan())
    }

    async fn teardown(&mut self) -> Result<(), RuntimeError> {
        each!(self, w => w.teardown().await)
    }
}

impl World for AnyWorld {
    fn ingress_urls(&self) -> Vec<String> {
        each!(self, w => World::ingress_urls(w))
    }

    fn fault_api(&self) -> Option<String> {
        each!(self, w => w.fault_api())
    }
}
