//! The process runtime (the default): every node a child process on 127.0.0.1, in its
//! own process group, with its own data directory and log file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::binaries::{check_programs, command_program, Binaries};
use super::clock::{ClockSkew, Faketime, NodeClocks};
use super::ledger::{self, Ledger, LedgerEntry, LedgerProcess};
use super::limits::cgroup::{Hierarchy, NodeCgroup, Resource};
use super::limits::disk::{self, Filled};
use super::limits::{Bytes, LimitEffect, NodeLimit};
use super::plan::{ClusterPlan, NodeId, NodePlan};
use super::readiness::{levels, poll_ready, wait_ready};
use super::runtime::{NodeOp, NodeState, NodeStatus, Readiness, Runtime, RuntimeError};
use super::spec::{Fill, RunSpec};
use super::wiring::{self, Wiring};

/// How long a gracefully stopped node may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often, and how far apart, a node an OOM kill was counted in is looked at for
/// its exit before it is said to have lived.
const OOM_EXIT_POLLS: u32 = 20;
const OOM_EXIT_PAUSE: Duration = Duration::from_millis(50);
/// A memory page: the grain of a cgroup's memory counters.
const PAGE: u64 = 4096;

/// Why process `pid` is gone, if it is: exited (a zombie not yet reaped) or no more.
fn exited(pid: u32) -> Option<String> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => Some("it exited".into()),
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) {
            Some('Z' | 'X') => Some("it exited".into()),
            _ => None,
        },
    }
}

struct Proc {
    child: Option<Child>,
    pid: u32,
    state: NodeState,
}

/// A resource fault in place on a node.
enum Held {
    Cpu {
        cgroup: NodeCgroup,
        share: f64,
        quota_us: u64,
        period_us: u64,
    },
    /// In the node's own memory cgroup (in `ProcessRuntime::born_in`); kills counted
    /// before it.
    Memory {
        bytes: u64,
        oom_kills_before: u64,
        usage_before: u64,
    },
    Disk {
        filled: Filled,
    },
}

/// Runs a cluster as local child processes.
pub struct ProcessRuntime {
    plan: ClusterPlan,
    binaries: Binaries,
    wiring: Wiring,
    ledger: Ledger,
    entry: LedgerEntry,
    upstreams: BTreeMap<NodeId, BTreeMap<String, String>>,
    procs: BTreeMap<NodeId, Proc>,
    partitioned: Vec<NodeId>,
    /// The cgroup hierarchies prepared for resource faults.
    hierarchies: Vec<Hierarchy>,
    /// Nodes whose data folder is a size-limited filesystem, and its size.
    disks: BTreeMap<NodeId, u64>,
    /// Resource faults in place.
    held: BTreeMap<NodeId, Held>,
    /// Nodes a memory fault targets: born in a memory cgroup of their own, so all their
    /// memory is charged to it (a process moved later leaves its pages charged behind).
    memory_nodes: Vec<NodeId>,
    born_in: BTreeMap<NodeId, NodeCgroup>,
    /// The nodes a clock fault targets: started with libfaketime preloaded, their clock
    /// in a timestamp file of the run's `clocks` folder.
    clocks: NodeClocks,
}

impl ProcessRuntime {
    /// A runtime for `plan`, its binaries from `binaries`, its edges wired by `wiring`,
    /// recorded in `ledger` as run `run_id`.
    pub fn new(plan: ClusterPlan, binaries: Binaries, wiring: Wiring, ledger: Ledger, run_id: &str) -> Self {
        let (owner_pid, owner_start_time) = ledger::me();
        let entry = LedgerEntry {
            run_id: run_id.to_string(),
            runtime: "process".into(),
            cluster: plan.spec.name.clone(),
            run_dir: plan.run_dir.clone(),
            owner_pid,
            owner_start_time,
            toxiproxy: wiring.api_url(),
            proxies: if wiring.api_url().is_some() {
                plan.slots.iter().map(|s| s.proxy_name()).collect()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let run_dir = plan.run_dir.clone();
        Self {
            plan,
            binaries,
            wiring,
            ledger,
            entry,
            upstreams: BTreeMap::new(),
            procs: BTreeMap::new(),
            partitioned: Vec::new(),
            hierarchies: Vec::new(),
            disks: BTreeMap::new(),
            held: BTreeMap::new(),
            memory_nodes: Vec::new(),
            born_in: BTreeMap::new(),
            clocks: NodeClocks::new(run_dir.join("clocks")),
        }
    }

    /// Where clients reach the ingress (through its proxy slots).
    pub fn ingress_urls(&self) -> &[String] {
        &self.entry.ingress
    }

    /// The Toxiproxy API the edges are on, if any.
    pub fn wiring_url(&self) -> Option<String> {
        self.wiring.api_url()
    }

    /// What the placeholders of `node` stand for: its address, its data folder, and
    /// its providers' proxy slots.
    fn fill(&self, node: &NodePlan) -> Fill {
        Fill {
            host: node.addr.ip().to_string(),
            port: node.addr.port(),
            data_dir: node.data_dir.clone(),
            upstreams: Fill::upstreams_of(&self.plan.spec, &node.service.name, self.upstreams.get(&node.id)),
        }
    }

    fn program(&self, node: &NodePlan, fill: &Fill) -> (PathBuf, Vec<String>) {
        match &node.service.run {
            RunSpec::Binary(b) => (self.binaries.path(b), Vec::new()),
            RunSpec::External => (PathBuf::from("/nonexistent"), Vec::new()),
            RunSpec::Command(c) => {
                let c: Vec<String> = c.iter().map(|a| fill.fill(a)).collect();
                (self.command_program(&c[0]), c[1..].to_vec())
            }
        }
    }

    /// The environment that preloads libfaketime into node `id`, if a clock fault
    /// targets it (its timestamp file made at true time on its first start).
    fn clock_env(&self, id: &NodeId) -> Result<Vec<(String, String)>, RuntimeError> {
        let Some(faketime) = self.clocks.faketime().filter(|_| self.clocks.targets(id)) else {
            return Ok(Vec::new());
        };
        let file = self.clocks.ensure_file(id).map_err(RuntimeError::io(format!("making the clock file of {id}")))?;
        Ok(Faketime::env(&faketime.library, &file))
    }

    fn command_program(&self, program: &str) -> PathBuf {
        command_program(&self.plan.spec, program)
    }

    fn spawn(&mut self, id: &NodeId) -> Result<(), RuntimeError> {
        let node = self.plan.node(id).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?.clone();
        std::fs::create_dir_all(&node.data_dir)
            .map_err(RuntimeError::io(format!("creating {}", node.data_dir.display())))?;
        if let Some(&size) = self.disks.get(id) {
            let store = node.store_dir();
            if !disk::is_mount(&store) {
                disk::mount(&store, size).map_err(|detail| RuntimeError::Start { node: id.to_string(), detail })?;
                self.entry.mounts.push(store);
                self.record();
            }
        }
        if let Some(dir) = node.log_file.parent() {
            std::fs::create_dir_all(dir).map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_file)
            .map_err(RuntimeError::io(format!("opening {}", node.log_file.display())))?;
        let err_log = log.try_clone().map_err(RuntimeError::io("duplicating the log file handle"))?;
        let fill = self.fill(&node);
        // Config files from their templates, before the node reads them.
        for (name, template) in &node.service.files {
            let path = node.data_dir.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
            }
            std::fs::write(&path, fill.fill(template))
                .map_err(RuntimeError::io(format!("writing {}", path.display())))?;
        }
        let (program, args) = self.program(&node, &fill);
        let env: Vec<(String, String)> = node.env.iter().map(|(k, v)| (k.clone(), fill.fill(v))).collect();
        let clock_env = self.clock_env(id)?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "HOME" || k == "RUST_BACKTRACE"))
            .envs(env)
            .envs(self.upstreams.get(id).into_iter().flatten())
            .envs(clock_env)
            .current_dir(&node.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .process_group(0)
            .kill_on_drop(true);
        // A node a memory fault targets is born in its memory cgroup: the child writes
        // its own pid ("0") there between fork and exec.
        let _procs = match self.memory_nodes.contains(id) {
            true => {
                let procs = self.birth_cgroup(id)?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
                // SAFETY: between fork and exec the closure only calls write(2), which is
                // async-signal-safe, on a descriptor opened before the fork and kept open
                // (`_procs`) until the spawn returns.
                unsafe {
                    cmd.pre_exec(move || match nix::libc::write(fd, b"0".as_ptr().cast(), 1) {
                        1 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    });
                }
                Some(procs)
            }
            false => None,
        };
        let child = cmd.spawn().map_err(|e| RuntimeError::Start {
            node: id.to_string(),
            detail: format!("cannot run {}: {e}", program.display()),
        })?;
        let pid =
            child.id().ok_or_else(|| RuntimeError::Start { node: id.to_string(), detail: "exited at once".into() })?;
        self.procs.insert(id.clone(), Proc { child: Some(child), pid, state: NodeState::Starting });
        self.entry.processes.retain(|p| p.node != id.to_string());
        self.entry.processes.push(LedgerProcess {
            node: id.to_string(),
            pid,
            start_time: ledger::start_time(pid).unwrap_or(0),
        });
        self.record();
        Ok(())
    }

    fn record(&mut self) {
        self.entry.nodes = self.status();
        if let Err(e) = self.ledger.write(&self.entry) {
            eprintln!("warning: cannot write the run ledger: {e}");
        }
    }

    fn signal(&self, id: &NodeId, sig: Signal) -> Result<(), RuntimeError> {
        let p = self.procs.get(id).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        killpg(Pid::from_raw(p.pid as i32), sig).map_err(|e| RuntimeError::Io {
            context: format!("sending {sig} to node {id}"),
            source: std::io::Error::from_raw_os_error(e as i32),
        })
    }

    async fn wait_node(&mut self, id: &NodeId) -> Result<(), RuntimeError> {
        let node = self.plan.node(id).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?.clone();
        let proc = self.procs.get_mut(id).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let child = proc.child.as_mut();
        let result = wait_ready(&node, child).await;
        let state = if result.is_ok() { NodeState::Ready } else { NodeState::Exited };
        if let Some(p) = self.procs.get_mut(id) {
            p.state = state;
        }
        self.record();
        result
    }

    async fn end(&mut self, id: &NodeId, graceful: bool) -> Result<(), RuntimeError> {
        let Some(p) = self.procs.get_mut(id) else { return Err(RuntimeError::UnknownNode(id.to_string())) };
        let pid = Pid::from_raw(p.pid as i32);
        if let Some(mut child) = p.child.take() {
            if graceful {
                let _ = killpg(pid, Signal::SIGCONT);
                let _ = killpg(pid, Signal::SIGTERM);
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    let _ = killpg(pid, Signal::SIGKILL);
                }
            } else {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
        }
        p.state = if graceful { NodeState::Stopped } else { NodeState::Killed };
        self.record();
        Ok(())
    }

    fn is_running(&self, id: &NodeId) -> bool {
        self.procs.get(id).is_some_and(|p| p.child.is_some())
    }
}

impl Runtime for ProcessRuntime {
    async fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let mut bins: Vec<String> = self
            .plan
            .nodes
            .iter()
            .filter_map(|n| match &n.service.run {
                RunSpec::Binary(b) => Some(b.clone()),
                RunSpec::Command(_) | RunSpec::External => None,
            })
            .collect();
        if let Some(s) = self.plan.spec.services.iter().find(|s| s.run == RunSpec::External) {
            return Err(RuntimeError::Unsupported(format!(
                "service {} has only `urls` (an external deployment): run it with --runtime external",
                s.name
            )));
        }
        bins.dedup();
        check_programs(&self.plan.spec, false)?;
        self.binaries.ensure(&bins, progress)?;
        let urls = wiring::open_local(&self.wiring, &self.plan).await?;
        self.upstreams = wiring::upstream_env(&self.plan, &urls);
        self.entry.ingress = wiring::ingress_urls(&self.plan, &urls);
        self.record();
        for level in levels(&self.plan) {
            let names = level.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ");
            progress(&format!("starting {names}"));
            for id in &level {
                self.spawn(id)?;
            }
            // Nodes of one level do not depend on each other: wait for them together.
            let mut waits = Vec::new();
            for id in &level {
                let node = self.plan.node(id).cloned().ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
                let child = self.procs.get_mut(id).and_then(|p| p.child.take());
                waits.push(async move {
                    let mut child = child;
                    let r = wait_ready(&node, child.as_mut()).await;
                    (node.id, child, r)
                });
            }
            for (id, child, result) in futures::future::join_all(waits).await {
                if let Some(p) = self.procs.get_mut(&id) {
                    p.child = child;
                    p.state = if result.is_ok() { NodeState::Ready } else { NodeState::Exited };
                }
                result?;
            }
            self.record();
        }
        progress(&format!("all {} nodes ready in {:.2?}", self.plan.nodes.len(), started.elapsed()));
        Ok(())
    }

    async fn node_op(&mut self, id: &NodeId, op: NodeOp) -> Result<(), RuntimeError> {
        let state = self.procs.get(id).map(|p| p.state).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let bad = || RuntimeError::BadState { op, node: id.to_string(), state };
        match op {
            NodeOp::Kill | NodeOp::Stop if !self.is_running(id) => return Err(bad()),
            NodeOp::Kill => self.end(id, false).await?,
            NodeOp::Stop => self.end(id, true).await?,
            NodeOp::Pause if state != NodeState::Ready && state != NodeState::Partitioned => return Err(bad()),
            NodeOp::Pause => {
                self.signal(id, Signal::SIGSTOP)?;
                self.set_state(id, NodeState::Paused);
            }
            NodeOp::Resume if state != NodeState::Paused => return Err(bad()),
            NodeOp::Resume => {
                self.signal(id, Signal::SIGCONT)?;
                let s = if self.partitioned.contains(id) { NodeState::Partitioned } else { NodeState::Ready };
                self.set_state(id, s);
            }
            NodeOp::Restart => {
                if self.is_running(id) {
                    self.end(id, true).await?;
                }
                self.spawn(id)?;
                self.wait_node(id).await?;
                if self.partitioned.contains(id) {
                    self.set_state(id, NodeState::Partitioned);
                }
            }
            NodeOp::Partition if self.partitioned.contains(id) => return Err(bad()),
            NodeOp::Partition => {
                self.wiring.partition(self.plan.slots_touching(id), true).await?;
                self.partitioned.push(id.clone());
                if state == NodeState::Ready {
                    self.set_state(id, NodeState::Partitioned);
                }
            }
            NodeOp::Heal if !self.partitioned.contains(id) => return Err(bad()),
            NodeOp::Heal => {
                self.wiring.partition(self.plan.slots_touching(id), false).await?;
                self.partitioned.retain(|p| p != id);
                if state == NodeState::Partitioned {
                    self.set_state(id, NodeState::Ready);
                }
            }
        }
        Ok(())
    }

    async fn node_op_detached(&mut self, id: &NodeId, op: NodeOp) -> Result<Option<Readiness>, RuntimeError> {
        if op != NodeOp::Restart {
            return self.node_op(id, op).await.map(|()| None);
        }
        if !self.procs.contains_key(id) {
            return Err(RuntimeError::UnknownNode(id.to_string()));
        }
        if self.is_running(id) {
            self.end(id, true).await?;
        }
        self.spawn(id)?;
        let node = self.plan.node(id).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?.clone();
        let pid = self.procs.get(id).map_or(0, |p| p.pid);
        Ok(Some(Box::pin(async move {
            let url = node.service.ready.target(&node.addr.to_string());
            // The child stays with the runtime; whether it died is read from /proc.
            let exited = move || exited(pid);
            poll_ready(&node.id.to_string(), &url, node.service.ready_timeout, &node.log_file, exited).await
        })))
    }

    fn node_ready(&mut self, id: &NodeId, ready: &Result<(), RuntimeError>) {
        let state = match ready {
            Ok(()) if self.partitioned.contains(id) => NodeState::Partitioned,
            Ok(()) => NodeState::Ready,
            Err(_) => NodeState::Exited,
        };
        // Only a node still starting: another operation may have struck it meanwhile.
        if self.procs.get(id).is_some_and(|p| p.state == NodeState::Starting) {
            self.set_state(id, state);
        }
    }

    fn status(&mut self) -> Vec<NodeStatus> {
        let mut out = Vec::new();
        for n in &self.plan.nodes {
            let (state, pid) = match self.procs.get_mut(&n.id) {
                Some(p) => {
                    let exited = p.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                    if exited {
                        p.child = None;
                        p.state = NodeState::Exited;
                    }
                    (p.state, p.pid.to_string())
                }
                None => (NodeState::Starting, String::new()),
            };
            out.push(NodeStatus {
                id: n.id.to_string(),
                service: n.id.service.clone(),
                addr: n.addr.to_string(),
                state,
                handle: pid,
            });
        }
        out
    }

    fn plan(&self) -> &ClusterPlan {
        &self.plan
    }

    async fn teardown(&mut self) -> Result<(), RuntimeError> {
        // Consumers first, so providers see no new calls while they drain.
        let ids: Vec<NodeId> = self.plan.nodes.iter().rev().map(|n| n.id.clone()).collect();
        for id in &ids {
            if let Some(p) = self.procs.get(id) {
                let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGCONT);
                if p.child.is_some() {
                    let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for id in &ids {
            if let Some(p) = self.procs.get_mut(id) {
                if let Some(mut child) = p.child.take() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, child.wait()).await.is_err() {
                        let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                    p.state = NodeState::Stopped;
                }
            }
        }
        self.wiring.close(&self.plan).await;
        let left = self.remove_limits();
        if left.is_empty() {
            self.ledger.remove(&self.entry.run_id);
            return Ok(());
        }
        // The ledger keeps them for the next `gauntlet down` to try again.
        Err(RuntimeError::Unsupported(format!("could not remove what resource faults made: {}", left.join("; "))))
    }

    fn prepare_limits(&mut self, limits: &[(NodeId, NodeLimit)]) -> Result<(), RuntimeError> {
        for (id, limit) in limits {
            let refuse = |why: String| RuntimeError::Unsupported(format!("`op = \"{}\"` on {id}: {why}", limit.op()));
            let resource =
                match limit {
                    NodeLimit::Cpu { .. } => Resource::Cpu,
                    NodeLimit::Memory { .. } => {
                        self.memory_nodes.push(id.clone());
                        Resource::Memory
                    }
                    NodeLimit::DiskFull { size, .. } => {
                        if self.disks.is_empty() {
                            std::fs::create_dir_all(&self.plan.run_dir)
                                .map_err(RuntimeError::io(format!("creating {}", self.plan.run_dir.display())))?;
                            disk::probe(&self.plan.run_dir).map_err(refuse)?;
                        }
                        let s = self.disks.entry(id.clone()).or_insert(0);
                        *s = (*s).max(*size);
                        continue;
                    }
                    NodeLimit::PacketLoss { .. } => return Err(refuse(
                        "local processes share the machine's network namespace, so real drops would hit every node; \
                         on the process runtime use the `loss` toxic on an edge (the proxy's model of lost segments), \
                         or run the scenario with --runtime docker"
                            .into(),
                    )),
                };
            if self.hierarchies.iter().any(|h| h.resource == resource) {
                continue;
            }
            let h = Hierarchy::find(resource).map_err(refuse)?;
            let dir = h.prepare(&self.entry.run_id).map_err(refuse)?;
            self.entry.cgroups.push(dir);
            self.hierarchies.push(h);
            self.record();
        }
        Ok(())
    }

    fn prepare_clocks(&mut self, nodes: &[NodeId]) -> Result<(), RuntimeError> {
        self.clocks.prepare(nodes).map_err(RuntimeError::Unsupported)
    }

    async fn set_clock(&mut self, id: &NodeId, skew: Option<ClockSkew>) -> Result<(), RuntimeError> {
        self.clocks.set(id, skew).map_err(RuntimeError::Unsupported)
    }

    async fn limit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<(), RuntimeError> {
        let state = self.procs.get(id).map(|p| p.state).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let pid = match self.procs.get(id) {
            Some(p) if p.child.is_some() => p.pid,
            _ => return Err(RuntimeError::Unsupported(format!("{limit} on {id}: the node is {state}, not running"))),
        };
        let failed = |detail: String| RuntimeError::Unsupported(format!("{limit} on {id}: {detail}"));
        let held = match limit.clone() {
            NodeLimit::Cpu { share } => {
                let cgroup = self.node_cgroup(Resource::Cpu, id, pid).map_err(failed)?;
                match cgroup.cap_cpu(share) {
                    Ok((quota_us, period_us)) => Held::Cpu { cgroup, share, quota_us, period_us },
                    Err(e) => return Err(failed(release_after(cgroup, e))),
                }
            }
            NodeLimit::Memory { bytes } => {
                let cgroup = self.born_in.get(id).ok_or_else(|| failed("the node was not born in a cgroup".into()))?;
                // Any process of the group born elsewhere joins it (its new pages count).
                cgroup.adopt(pid).map_err(failed)?;
                let before = cgroup.memory_stat();
                let (oom_kills_before, usage_before) = (before.oom_kills, before.usage);
                cgroup.cap_memory(bytes).map_err(|e| failed(e + &cgroup.uncap_memory().err().unwrap_or_default()))?;
                Held::Memory { bytes, oom_kills_before, usage_before }
            }
            NodeLimit::DiskFull { leave, .. } => {
                let dir = self.plan.node(id).map(NodePlan::store_dir).unwrap_or_default();
                if !disk::is_mount(&dir) {
                    return Err(failed(format!("{} is not the run's size-limited filesystem", dir.display())));
                }
                let filled = disk::fill(&dir, leave).map_err(|e| failed(e.clone() + &release_disk(&dir)))?;
                Held::Disk { filled }
            }
            NodeLimit::PacketLoss { .. } => return Err(failed("not held by the process runtime".into())),
        };
        self.held.insert(id.clone(), held);
        Ok(())
    }

    async fn unlimit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<LimitEffect, RuntimeError> {
        let failed = |detail: String| RuntimeError::Unsupported(format!("lifting {limit} from {id}: {detail}"));
        let Some(held) = self.held.remove(id) else { return Ok(LimitEffect::default()) };
        let effect = match held {
            Held::Cpu { cgroup, share, quota_us, period_us } => {
                let stat = cgroup.cpu_stat();
                cgroup.release().map_err(failed)?;
                LimitEffect {
                    touched: stat.throttled,
                    detail: format!(
                        "throttled in {} of {} periods, {:.1} s in all, at a {} share of a core ({} ms per {} ms)",
                        stat.throttled,
                        stat.periods,
                        stat.throttled_time.as_secs_f64(),
                        super::limits::percent(share),
                        quota_us as f64 / 1000.0,
                        period_us as f64 / 1000.0
                    ),
                    node_ended: false,
                }
            }
            Held::Memory { bytes, oom_kills_before, usage_before } => {
                let cgroup = self.born_in.get(id).ok_or_else(|| failed("the node's cgroup is gone".into()))?;
                let mut stat = cgroup.memory_stat();
                stat.oom_kills = stat.oom_kills.saturating_sub(oom_kills_before);
                cgroup.uncap_memory().map_err(failed)?;
                let mut died = self.exit_signal(id);
                // A kill the cgroup counted may still be on its way to the node's leader.
                for _ in 0..OOM_EXIT_POLLS {
                    if died.is_some() || stat.oom_kills == 0 {
                        break;
                    }
                    tokio::time::sleep(OOM_EXIT_PAUSE).await;
                    died = self.exit_signal(id);
                }
                let ended = died.is_some();
                let mut detail = format!("held to {} (peak {})", Bytes(bytes), Bytes(stat.max_usage));
                // Set below what the node held, the limit bites at once: the kernel
                // reclaims down to it (or refuses the limit, and the fault fails).
                let cut = usage_before > bytes;
                if cut {
                    detail
                        .push_str(&format!(", cut from the {} it held when it struck by reclaim", Bytes(usage_before)));
                }
                // Usage cannot pass the limit: a peak at it (within a page) means the
                // node's charges met the limit and the kernel reclaimed to keep it there.
                let at_limit = !cut && stat.max_usage + PAGE >= bytes;
                if at_limit {
                    detail.push_str(", ran at its limit (the kernel reclaimed to keep it there)");
                }
                if stat.hit > 0 {
                    detail.push_str(&format!(", the limit hit {} time(s) and memory reclaimed", stat.hit));
                }
                match (stat.oom_kills, died) {
                    (0, None) => detail.push_str("; no process was OOM-killed"),
                    (kills, Some(how)) => detail.push_str(&format!(
                        "; the node was OOM-killed ({kills} kill(s) counted, it {how}): it stayed down while the limit held \
                         and is started again on its data now that the fault ended"
                    )),
                    (kills, None) => detail.push_str(&format!("; {kills} process(es) of the node OOM-killed, the node lived")),
                }
                LimitEffect {
                    touched: stat.hit + stat.oom_kills + u64::from(cut || at_limit),
                    detail,
                    node_ended: ended,
                }
            }
            Held::Disk { filled } => {
                let dir = self.plan.node(id).map(NodePlan::store_dir).unwrap_or_default();
                let at_end = disk::free(&dir).ok();
                disk::release(&dir).map_err(failed)?;
                LimitEffect { touched: filled.written, detail: disk::describe(&dir, filled, at_end), node_ended: false }
            }
        };
        if effect.node_ended {
            if let Some(p) = self.procs.get_mut(id) {
                p.child = None;
                p.state = NodeState::Killed;
            }
            self.record();
        }
        Ok(effect)
    }
}

/// Releases a cgroup after a failure, adding any error of the release to `error`.
fn release_after(cgroup: NodeCgroup, error: String) -> String {
    match cgroup.release() {
        Ok(()) => error,
        Err(e) => format!("{error}; and {e}"),
    }
}

/// Deletes the filler of `dir` after a failure, saying so if that failed too.
fn release_disk(dir: &std::path::Path) -> String {
    disk::release(dir).err().map(|e| format!("; and {e}")).unwrap_or_default()
}

impl ProcessRuntime {
    fn node_cgroup(&self, resource: Resource, id: &NodeId, pid: u32) -> Result<NodeCgroup, String> {
        let h = self.hierarchies.iter().find(|h| h.resource == resource).ok_or_else(|| {
            "not prepared (the runtime was not told of the fault before the cluster started)".to_string()
        })?;
        NodeCgroup::create(h, &self.entry.run_id, &id.to_string(), pid)
    }

    /// The memory cgroup node `id` is born in (made on its first start), its
    /// `cgroup.procs` opened for writing.
    fn birth_cgroup(&mut self, id: &NodeId) -> Result<std::fs::File, RuntimeError> {
        let refuse = |detail: String| RuntimeError::Start { node: id.to_string(), detail };
        if !self.born_in.contains_key(id) {
            let h = self
                .hierarchies
                .iter()
                .find(|h| h.resource == Resource::Memory)
                .ok_or_else(|| refuse("no memory cgroup hierarchy was prepared".into()))?;
            let cgroup = NodeCgroup::for_birth(h, &self.entry.run_id, &id.to_string()).map_err(refuse)?;
            self.born_in.insert(id.clone(), cgroup);
        }
        let file = self.born_in[id].procs_file();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .map_err(|e| refuse(format!("opening {}: {e}", file.display())))
    }

    /// How node `id`'s process ended, if it has: "was killed by SIGKILL", "exited 1".
    fn exit_signal(&mut self, id: &NodeId) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let child = self.procs.get_mut(id)?.child.as_mut()?;
        let status = child.try_wait().ok()??;
        Some(match status.signal() {
            Some(9) => "was killed by SIGKILL".into(),
            Some(sig) => format!("was killed by signal {sig}"),
            None => format!("exited with {status}"),
        })
    }

    /// Lifts every resource fault, removes the run's cgroups and unmounts its data
    /// filesystems (after the processes are gone); returns what could not be removed.
    fn remove_limits(&mut self) -> Vec<String> {
        self.clocks.stop();
        let mut left = Vec::new();
        let dirs: BTreeMap<NodeId, PathBuf> = self.plan.nodes.iter().map(|n| (n.id.clone(), n.store_dir())).collect();
        for (id, held) in std::mem::take(&mut self.held) {
            let r = match held {
                Held::Cpu { cgroup, .. } => cgroup.release(),
                Held::Memory { .. } => Ok(()),
                Held::Disk { .. } => dirs.get(&id).map_or(Ok(()), |d| disk::release(d)),
            };
            left.extend(r.err());
        }
        for (_, cgroup) in std::mem::take(&mut self.born_in) {
            left.extend(cgroup.release().err());
        }
        for dir in std::mem::take(&mut self.entry.cgroups) {
            left.extend(super::limits::cgroup::remove_run(&dir).err());
        }
        self.hierarchies.clear();
        for dir in std::mem::take(&mut self.entry.mounts) {
            left.extend(disk::unmount(&dir).err());
        }
        left
    }
}

impl ProcessRuntime {
    fn set_state(&mut self, id: &NodeId, state: NodeState) {
        if let Some(p) = self.procs.get_mut(id) {
            p.state = state;
        }
        self.record();
    }
}

impl Drop for ProcessRuntime {
    /// The last line of defence (a panic, an early return): no child outlives us, and
    /// no cgroup, filler or mount of ours either.
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut child) = p.child.take() {
                let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGCONT);
                let _ = killpg(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
                // Gone before its cgroup and its data folder's mount are removed.
                let _ = child.start_kill();
                let _ = child.try_wait();
            }
        }
        for left in self.remove_limits() {
            eprintln!("warning: {left}");
        }
    }
}
