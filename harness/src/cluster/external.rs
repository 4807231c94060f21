//! The external runtime: a deployment that is already running somewhere, described by
//! the `urls` of each service. It starts nothing and stops nothing; it checks readiness
//! and reports what it sees.

use std::time::Duration;

use super::ledger::{self, Ledger, LedgerEntry};
use super::plan::{ClusterPlan, NodeId};
use super::readiness::poll_ready;
use super::runtime::{NodeOp, NodeState, NodeStatus, Runtime, RuntimeError};

/// Watches an already-running deployment.
pub struct ExternalRuntime {
    plan: ClusterPlan,
    ledger: Ledger,
    entry: LedgerEntry,
    states: Vec<(String, String, String, NodeState)>,
}

impl ExternalRuntime {
    /// A runtime for `plan`, whose services must all have `urls`.
    pub fn new(
        plan: ClusterPlan,
        ledger: Ledger,
        run_id: &str,
        toxiproxy: Option<String>,
    ) -> Result<Self, RuntimeError> {
        let mut states = Vec::new();
        for s in &plan.spec.services {
            if s.urls.is_empty() {
                return Err(RuntimeError::Unsupported(format!(
                    "service {} has no `urls`: the external runtime needs the URL of every replica of every service",
                    s.name
                )));
            }
            for (i, url) in s.urls.iter().enumerate() {
                states.push((format!("{}-{i}", s.name), s.name.clone(), url.clone(), NodeState::Starting));
            }
        }
        let (owner_pid, owner_start_time) = ledger::me();
        let ingress = plan.spec.service(&plan.spec.ingress).map(|s| s.urls.clone()).unwrap_or_default();
        let entry = LedgerEntry {
            run_id: run_id.into(),
            runtime: "external".into(),
            cluster: plan.spec.name.clone(),
            run_dir: plan.run_dir.clone(),
            owner_pid,
            owner_start_time,
            ingress,
            toxiproxy,
            ..Default::default()
        };
        Ok(Self { plan, ledger, entry, states })
    }

    /// Where clients reach the ingress.
    pub fn ingress_urls(&self) -> &[String] {
        &self.entry.ingress
    }

    /// The Toxiproxy API of the deployment's edge proxies, if it was given one.
    pub fn toxiproxy_url(&self) -> Option<String> {
        self.entry.toxiproxy.clone()
    }
}

impl Runtime for ExternalRuntime {
    async fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        progress("checking the readiness of an external deployment (nothing is started)");
        let log = self.plan.run_dir.join("logs").join("external.log");
        for (id, svc, url, state) in &mut self.states {
            let spec = self.plan.spec.service(svc).expect("states come from the spec");
            let authority = url.strip_prefix("http://").unwrap_or(url);
            let r = poll_ready(id, &spec.ready.target(authority), spec.ready_timeout, &log, || None).await;
            *state = if r.is_ok() { NodeState::Ready } else { NodeState::Exited };
            r?;
        }
        self.entry.nodes = self.status();
        self.ledger.write(&self.entry).map_err(RuntimeError::io("writing the run ledger"))?;
        Ok(())
    }

    async fn node_op(&mut self, id: &NodeId, op: NodeOp) -> Result<(), RuntimeError> {
        let _ = tokio::time::sleep(Duration::ZERO).await;
        Err(RuntimeError::Unsupported(format!(
            "{op} of {id}: the external runtime does not own its nodes; use the deployment's own tools, or edge faults through its Toxiproxy"
        )))
    }

    fn status(&mut self) -> Vec<NodeStatus> {
        self.states
            .iter()
            .map(|(id, svc, url, state)| NodeStatus {
                id: id.clone(),
                service: svc.clone(),
                addr: url.trim_start_matches("http://").to_string(),
                state: *state,
                handle: "external".into(),
            })
            .collect()
    }

    fn plan(&self) -> &ClusterPlan {
        &self.plan
    }

    fn prepare_limits(&mut self, limits: &[(NodeId, super::NodeLimit)]) -> Result<(), RuntimeError> {
        match limits.first() {
            None => Ok(()),
            Some((id, limit)) => Err(RuntimeError::Unsupported(format!(
                "`op = \"{}\"` on {id}: the external runtime does not own its nodes, so it cannot cap their CPU or \
                 memory or fill their disks; use the deployment's own tools, or run the scenario on the process runtime",
                limit.op()
            ))),
        }
    }

    fn prepare_clocks(&mut self, nodes: &[NodeId]) -> Result<(), RuntimeError> {
        match nodes.first() {
            None => Ok(()),
            Some(id) => Err(RuntimeError::Unsupported(format!(
                "`op = \"clock\"` on {id}: the external runtime does not own its nodes, so it cannot move their \
                 clocks; use the deployment's own tools (Chaos Mesh's TimeChaos), or run the scenario on the process \
                 runtime"
            ))),
        }
    }

    async fn teardown(&mut self) -> Result<(), RuntimeError> {
        self.ledger.remove(&self.entry.run_id);
        Ok(())
    }
}
