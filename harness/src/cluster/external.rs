//! The external runtime: a deployment that is already running somewhere, described by
//! the `urls` of each service. It starts nothing and stops nothing; it checks readiness
//! and reports what it sees.
//!
//! Faults reach it two ways: through the deployment's own edge proxies (their Toxiproxy
//! API, `--toxiproxy URL`), or, without one, through a proxy of Gauntlet's put in front
//! of each ingress URL ([`ExternalRuntime::with_ingress_proxies`]), so the clients' edge
//! carries faults as on any runtime. The deployment's inner edges are then out of reach.

use std::time::Duration;

use super::ledger::{self, Ledger, LedgerEntry};
use super::plan::{ClusterPlan, NodeId};
use super::readiness::poll_ready;
use super::runtime::{NodeOp, NodeState, NodeStatus, Runtime, RuntimeError};
use crate::faults::client::ToxiproxyClient;
use crate::faults::model::ProxyConfig;

/// Watches an already-running deployment.
pub struct ExternalRuntime {
    plan: ClusterPlan,
    ledger: Ledger,
    entry: LedgerEntry,
    states: Vec<(String, String, String, NodeState)>,
    /// Gauntlet's own proxies in front of the ingress URLs, at this Toxiproxy API.
    ingress_proxies: Option<ToxiproxyClient>,
    /// The names of the proxies made there.
    made: Vec<String>,
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
        Ok(Self { plan, ledger, entry, states, ingress_proxies: None, made: Vec::new() })
    }

    /// Puts a proxy at `api` (a Toxiproxy API on this machine) in front of each ingress
    /// URL when the deployment starts: clients and the load go through it, and faults on
    /// the clients' edge (`client-><ingress>`) act there. Its slots are named as on any
    /// runtime (`client__<ingress>__<i>`).
    pub fn with_ingress_proxies(mut self, api: ToxiproxyClient) -> Self {
        self.ingress_proxies = Some(api);
        self
    }

    /// Where clients reach the ingress.
    pub fn ingress_urls(&self) -> &[String] {
        &self.entry.ingress
    }

    /// The Toxiproxy API faults go through: the deployment's edge proxies', or the one
    /// of Gauntlet's proxies in front of the ingress; `None` when there is neither.
    pub fn toxiproxy_url(&self) -> Option<String> {
        self.entry.toxiproxy.clone().or_else(|| self.ingress_proxies.as_ref().map(|c| c.base_url().to_string()))
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
        if let Some(api) = &self.ingress_proxies {
            let ingress = self.plan.spec.ingress.clone();
            let urls = self.plan.spec.service(&ingress).map(|s| s.urls.clone()).unwrap_or_default();
            let mut fronted = Vec::new();
            for (i, url) in urls.iter().enumerate() {
                let name = format!("{}__{ingress}__{i}", super::plan::CLIENT);
                let (scheme, authority) = url.split_once("://").unwrap_or(("http", url));
                let _ = api.delete_proxy(&name).await;
                let proxy = api
                    .create_proxy(&ProxyConfig::new(name.clone(), "127.0.0.1:0", authority))
                    .await
                    .map_err(|e| RuntimeError::Wiring(format!("creating proxy {name} in front of {url}: {e}")))?;
                self.made.push(name);
                fronted.push(format!("{scheme}://{}", proxy.listen));
            }
            progress(&format!("clients reach {ingress} through Gauntlet's proxies: {}", fronted.join(", ")));
            self.entry.ingress = fronted;
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
        if let Some(api) = &self.ingress_proxies {
            for name in self.made.drain(..) {
                let _ = api.delete_proxy(&name).await;
            }
        }
        self.ledger.remove(&self.entry.run_id);
        Ok(())
    }
}
