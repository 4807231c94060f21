//! What every runtime does: start a planned cluster, hurt and heal its nodes, report
//! their state, and tear everything down.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use super::clock::ClockSkew;
use super::limits::{LimitEffect, NodeLimit};
use super::plan::{ClusterPlan, NodeId};

/// A runtime's failure, with what to do about it where we know.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("building {what} failed: {detail}")]
    Build { what: String, detail: String },
    #[error("node {node} could not start: {detail}")]
    Start { node: String, detail: String },
    #[error("node {node} was not ready within {timeout:?}: {detail}")]
    NotReady { node: String, timeout: std::time::Duration, detail: String },
    #[error("no node {0} in this cluster (see `gauntlet status`)")]
    UnknownNode(String),
    #[error("{op} is not possible on node {node} while it is {state}")]
    BadState { op: NodeOp, node: String, state: NodeState },
    #[error("wiring the edge proxies failed: {0}")]
    Wiring(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl RuntimeError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// The state of one node, as `gauntlet status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Starting,
    Ready,
    Paused,
    /// Cut off from the other nodes (its edge proxies refuse connections).
    Partitioned,
    Stopped,
    Killed,
    /// Ended by itself.
    Exited,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&s)
    }
}

/// An operation on a node. Each has an inverse, so every fault can be rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOp {
    /// SIGKILL / container kill: no chance to clean up.
    Kill,
    /// SIGTERM / container stop: graceful.
    Stop,
    /// SIGSTOP / container pause: frozen, connections hang.
    Pause,
    /// SIGCONT / container unpause.
    Resume,
    /// Stop if running, then start again on the same data.
    Restart,
    /// Cut the node off from every other node.
    Partition,
    /// Undo a partition.
    Heal,
}

impl fmt::Display for NodeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&s)
    }
}

impl std::str::FromStr for NodeOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!("unknown node operation {s:?}: use kill, stop, pause, resume, restart, partition or heal")
        })
    }
}

/// One node as a runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub service: String,
    /// Its own address (not through a proxy).
    pub addr: String,
    pub state: NodeState,
    /// Process id or container id.
    pub handle: String,
}

/// A wait for a restarted node to be ready, holding no borrow of its runtime; hand its
/// result to [`Runtime::node_ready`].
pub type Readiness = std::pin::Pin<Box<dyn Future<Output = Result<(), RuntimeError>> + Send + 'static>>;

/// A way to run a cluster: local processes, containers, or an external deployment.
pub trait Runtime: Send {
    /// Starts every node in dependency order and waits until each is ready.
    fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Applies `op` to node `id`.
    fn node_op(&mut self, id: &NodeId, op: NodeOp) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Applies `op` to node `id` without waiting for a restarted node to be ready: the
    /// wait comes back as a [`Readiness`] to await elsewhere, so a slow start never holds
    /// up another node's fault. Its result goes to [`Runtime::node_ready`]. A runtime
    /// that cannot split the two waits inside and returns `None`.
    fn node_op_detached(
        &mut self,
        id: &NodeId,
        op: NodeOp,
    ) -> impl Future<Output = Result<Option<Readiness>, RuntimeError>> + Send {
        async move { self.node_op(id, op).await.map(|()| None) }
    }
    /// Records how a [`Readiness`] wait of node `id` ended.
    fn node_ready(&mut self, id: &NodeId, ready: &Result<(), RuntimeError>) {
        let _ = (id, ready);
    }
    /// Checks, before anything starts, that this runtime can hold every resource fault
    /// of `limits` (a CPU share, a memory limit, a full disk) on this machine, and
    /// prepares what must exist before the nodes start (a size-limited data folder for
    /// `disk_full`). Refuses, naming what is missing, so a scenario is refused at its
    /// start rather than mid-run. A runtime without resource faults refuses any.
    fn prepare_limits(&mut self, limits: &[(NodeId, NodeLimit)]) -> Result<(), RuntimeError> {
        match limits.first() {
            None => Ok(()),
            Some((id, limit)) => Err(RuntimeError::Unsupported(format!(
                "`op = \"{}\"` on {id}: this runtime cannot starve a node of CPU, memory or disk; run the scenario on the process runtime",
                limit.op()
            ))),
        }
    }
    /// Puts resource fault `limit` on node `id` (prepared by [`Runtime::prepare_limits`]).
    fn limit(&mut self, id: &NodeId, limit: &NodeLimit) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        let refused = self.prepare_limits(&[(id.clone(), limit.clone())]);
        async move { refused.and(Err(RuntimeError::Unsupported(format!("`{}` is not held by this runtime", limit.op())))) }
    }
    /// Lifts resource fault `limit` from node `id` and says what it did; safe to call
    /// for a limit that was only half put in place, or not at all.
    fn unlimit(
        &mut self,
        id: &NodeId,
        limit: &NodeLimit,
    ) -> impl Future<Output = Result<LimitEffect, RuntimeError>> + Send {
        let _ = (id, limit);
        async move { Ok(LimitEffect::default()) }
    }
    /// Checks, before anything starts, that this runtime can move the wall clock of each
    /// of `nodes` (the targets of the scenario's clock faults), and prepares them for it
    /// (a process node is started with libfaketime preloaded). Refuses, naming what is
    /// missing, so a scenario is refused at its start. A runtime without clocks to move
    /// refuses any.
    fn prepare_clocks(&mut self, nodes: &[NodeId]) -> Result<(), RuntimeError> {
        match nodes.first() {
            None => Ok(()),
            Some(id) => Err(RuntimeError::Unsupported(format!(
                "`op = \"clock\"` on {id}: this runtime cannot move a node's clock; run the scenario on the process \
                 or docker runtime, or with `gauntlet sim`"
            ))),
        }
    }
    /// Sets node `id`'s wall clock to `skew` from now on, or back to true time (`None`);
    /// a node prepared by [`Runtime::prepare_clocks`] keeps it across restarts.
    fn set_clock(
        &mut self,
        id: &NodeId,
        skew: Option<ClockSkew>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        // Putting a clock back is never refused: there is nothing to undo.
        let refused = match skew {
            Some(_) => self
                .prepare_clocks(std::slice::from_ref(id))
                .and(Err(RuntimeError::Unsupported(format!("the clock of {id} is not moved by this runtime")))),
            None => Ok(()),
        };
        async move { refused }
    }
    /// Every node and its state.
    fn status(&mut self) -> Vec<NodeStatus>;
    /// The plan this runtime runs.
    fn plan(&self) -> &ClusterPlan;
    /// Ends every node and removes what the run created. Safe to call twice.
    fn teardown(&mut self) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}
