//! The simulated cluster as a [`World`]: the executor drives it through the same
//! interface as local processes, containers or an external deployment, and runs the same
//! code on it (steady state, load, fault timeline, rollback, settling, checks, report).
//!
//! Node operations become what only the simulation's owner can do (crash, restart, hold
//! and release a host), queued as [`HostCommand`]s it applies before its next step; edge
//! faults go to the fabric's proxies through the Toxiproxy API's operations; HTTP is the
//! simulated network's; the clock is simulated.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use gauntlet::cluster::plan::{ClusterPlan, Slot};
use gauntlet::cluster::{ClockSkew, NodeId, NodeLimit, NodeOp, NodeState, NodeStatus, Runtime, RuntimeError};
use gauntlet::faults::model::Toxic;
use gauntlet::scenario::effect::{Counters, Traffic};
use gauntlet::world::reach::{EdgeFaults, Http, Reach};
use gauntlet::world::World;
use shop_kit::platform::Transport as _;

use crate::fabric::Link;
use crate::load::SimLoad;
use crate::net::{Clocks, SimHttp};

/// How long a starting node may take to answer `/health`, in simulated time.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the node is crashed anyway.
const STOP_LIMIT: Duration = Duration::from_secs(120);

/// What a node operation asks of the simulation's owner, which alone can crash and
/// restart hosts; applied before the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCommand {
    Crash(String),
    Restart(String),
    /// SIGSTOP: every message to and from the host waits in the network.
    Hold(String),
    /// SIGCONT: what waited is delivered.
    Release(String),
}

/// The queue of [`HostCommand`]s.
pub type Commands = Arc<Mutex<Vec<HostCommand>>>;

/// Per node (host name), its current incarnation's stop switch and whether it has
/// stopped serving (a graceful stop).
pub type Stops = Arc<
    Mutex<std::collections::BTreeMap<String, (tokio::sync::watch::Sender<bool>, Arc<std::sync::atomic::AtomicBool>)>>,
>;

/// A simulated cluster, as the executor sees it.
pub struct SimWorld {
    plan: ClusterPlan,
    /// Every slot with its proxy on the fabric.
    links: Vec<(Slot, Link)>,
    /// The ingress slot's address on the fabric (`fabric:<port>`).
    ingress: String,
    commands: Commands,
    stops: Stops,
    /// Each node's state, as the operations left it.
    states: BTreeMap<String, NodeState>,
    /// The clock faults in place, which the nodes' platform clocks read.
    clocks: Clocks,
}

impl SimWorld {
    pub fn new(
        plan: ClusterPlan,
        links: Vec<(Slot, Link)>,
        ingress: String,
        (commands, stops, clocks): (Commands, Stops, Clocks),
    ) -> Self {
        let states = plan.nodes.iter().map(|n| (n.id.to_string(), NodeState::Starting)).collect();
        Self { plan, links, ingress, commands, stops, states, clocks }
    }

    fn command(&self, command: HostCommand) {
        self.commands.lock().unwrap_or_else(PoisonError::into_inner).push(command);
    }

    /// The links a partition of `id` cuts: every slot into it and every slot carrying
    /// its own calls, as the real runtimes cut its proxies.
    fn partition(&self, id: &NodeId, cut: bool) {
        for (slot, link) in &self.links {
            if (slot.edge.to == id.service && slot.replica == id.replica) || slot.serves(id) {
                link.set_partitioned(cut);
            }
        }
    }

    /// The node's address on the simulated network, `host:port`.
    fn authority(&self, id: &NodeId) -> Option<String> {
        self.plan.nodes.iter().find(|n| n.id == *id).map(|n| format!("{}:{}", n.id, n.addr.port()))
    }
}

impl Runtime for SimWorld {
    /// The hosts are already running (the simulation's owner started them): waits until
    /// each node answers `/health`, as the real runtimes wait.
    async fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        let http = SimHttp::default();
        for node in &self.plan.nodes {
            let url = format!("http://{}:{}/health", node.id, node.addr.port());
            let deadline = tokio::time::Instant::now() + START_LIMIT;
            loop {
                match http.get(&url, None, Duration::from_secs(1)).await {
                    Ok((200, _)) => break,
                    last if tokio::time::Instant::now() >= deadline => {
                        let detail = match last {
                            Ok((status, _)) => format!("/health answered {status}"),
                            Err(e) => e,
                        };
                        return Err(RuntimeError::Start { node: node.id.to_string(), detail });
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            self.states.insert(node.id.to_string(), NodeState::Ready);
            progress(&format!("{} ready", node.id));
        }
        Ok(())
    }

    async fn node_op(&mut self, id: &NodeId, op: NodeOp) -> Result<(), RuntimeError> {
        let host = id.to_string();
        let state = match op {
            NodeOp::Kill => {
                self.command(HostCommand::Crash(host.clone()));
                NodeState::Killed
            }
            NodeOp::Restart => {
                self.command(HostCommand::Restart(host.clone()));
                NodeState::Ready
            }
            NodeOp::Stop => {
                // SIGTERM: the node stops accepting and finishes what is in flight, then
                // its process is gone.
                let switch = self.stops.lock().unwrap_or_else(PoisonError::into_inner).get(&host).cloned();
                if let Some((stop, stopped)) = switch {
                    let _ = stop.send(true);
                    let deadline = tokio::time::Instant::now() + STOP_LIMIT;
                    while !stopped.load(std::sync::atomic::Ordering::Relaxed) && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                self.command(HostCommand::Crash(host.clone()));
                NodeState::Stopped
            }
            NodeOp::Pause => {
                self.command(HostCommand::Hold(host.clone()));
                NodeState::Paused
            }
            NodeOp::Resume => {
                self.command(HostCommand::Release(host.clone()));
                NodeState::Ready
            }
            NodeOp::Partition => {
                self.partition(id, true);
                NodeState::Partitioned
            }
            NodeOp::Heal => {
                self.partition(id, false);
                NodeState::Ready
            }
        };
        self.states.insert(host, state);
        Ok(())
    }

    fn status(&mut self) -> Vec<NodeStatus> {
        self.plan
            .nodes
            .iter()
            .map(|n| NodeStatus {
                id: n.id.to_string(),
                service: n.id.service.clone(),
                addr: self.authority(&n.id).unwrap_or_default(),
                state: self.states.get(&n.id.to_string()).copied().unwrap_or(NodeState::Starting),
                handle: format!("simulated host {}", n.id),
            })
            .collect()
    }

    fn plan(&self) -> &ClusterPlan {
        &self.plan
    }

    /// The simulation's owner ends the hosts when the simulation ends.
    fn prepare_limits(&mut self, limits: &[(NodeId, NodeLimit)]) -> Result<(), RuntimeError> {
        match limits.first() {
            None => Ok(()),
            Some((id, limit)) => Err(RuntimeError::Unsupported(format!(
                "`op = \"{}\"` on {id}: the simulated world has no CPU, memory or disk of a node's to starve (its \
                 nodes share one thread and simulated time); run the scenario with `gauntlet run` on the process runtime",
                limit.op()
            ))),
        }
    }

    /// Every simulated node's clock is its platform's: nothing to prepare.
    fn prepare_clocks(&mut self, _: &[NodeId]) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn set_clock(&mut self, id: &NodeId, skew: Option<ClockSkew>) -> Result<(), RuntimeError> {
        if self.authority(id).is_none() {
            return Err(RuntimeError::UnknownNode(id.to_string()));
        }
        let mut clocks = self.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        match skew {
            Some(skew) => clocks.insert(id.to_string(), (skew, turmoil::sim_elapsed().unwrap_or_default())),
            None => clocks.remove(&id.to_string()),
        };
        Ok(())
    }

    async fn teardown(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}

impl World for SimWorld {
    fn ingress_urls(&self) -> Vec<String> {
        vec![format!("http://{}", self.ingress)]
    }

    /// No Toxiproxy API listens: the executor reaches the fabric through [`Reach`].
    fn fault_api(&self) -> Option<String> {
        None
    }

    fn reach(&self) -> Option<Reach> {
        Some(Reach {
            http: Arc::new(SimHttp::default()),
            faults: Arc::new(Fabric { links: self.links.iter().map(|(_, l)| l.clone()).collect() }),
            load: Arc::new(SimLoad { ingress: self.ingress.clone() }),
            clock: crate::net::wall_clock,
            simulated: true,
        })
    }
}

/// The fabric's proxies, by the Toxiproxy API's operations.
struct Fabric {
    links: Vec<Link>,
}

impl Fabric {
    fn link(&self, proxy: &str) -> anyhow::Result<&Link> {
        self.links.iter().find(|l| l.name == proxy).ok_or_else(|| anyhow::anyhow!("proxy {proxy} not found"))
    }
}

impl EdgeFaults for Fabric {
    fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> BoxFuture<'static, anyhow::Result<()>> {
        let done = self.link(proxy).and_then(|l| l.add_toxic(toxic).map_err(anyhow::Error::msg));
        Box::pin(async move { done })
    }

    fn remove_toxic(&self, proxy: &str, name: &str) -> BoxFuture<'static, anyhow::Result<()>> {
        let done = self.link(proxy).map(|l| l.remove_toxic(name));
        Box::pin(async move { done })
    }

    fn set_enabled(&self, proxy: &str, enabled: bool) -> BoxFuture<'static, anyhow::Result<()>> {
        let done = self.link(proxy).map(|l| l.set_enabled(enabled));
        Box::pin(async move { done })
    }

    fn counters(&self) -> BoxFuture<'static, Option<Counters>> {
        let counters = self
            .links
            .iter()
            .map(|l| {
                let (bytes, connections) = l.totals();
                let (lost, flipped) = l.damage();
                (l.name.clone(), Traffic { bytes, connections, lost, flipped })
            })
            .collect();
        Box::pin(async move { Some(counters) })
    }
}

impl SimHttp {
    /// A GET of `url` (with `token` as a bearer), its answer within `timeout`.
    fn fetch(
        &self,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, String>> {
        let mut req = http::Request::new(Bytes::new());
        if let Some(token) = token.and_then(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            req.headers_mut().insert(http::header::AUTHORIZATION, token);
        }
        let send = url.parse::<http::Uri>().map_err(|e| format!("bad URL {url}: {e}")).map(|uri| {
            *req.uri_mut() = uri;
            self.send(req)
        });
        let url = url.to_string();
        Box::pin(async move {
            tokio::time::timeout(timeout, send?).await.map_err(|_| format!("{url}: no answer within {timeout:?}"))?
        })
    }
}

impl Http for SimHttp {
    fn date(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<std::time::SystemTime, String>> {
        let answer = self.fetch(url, None, timeout);
        let url = url.to_string();
        Box::pin(async move { gauntlet::world::reach::date_of(answer.await?.headers(), &url) })
    }

    fn get(
        &self,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, String), String>> {
        let answer = self.fetch(url, token, timeout);
        Box::pin(async move {
            let res = answer.await?;
            Ok((res.status().as_u16(), String::from_utf8_lossy(res.body()).into_owned()))
        })
    }
}
