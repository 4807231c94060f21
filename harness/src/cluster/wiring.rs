//! Edge wiring: what stands in each proxy slot.
//!
//! [`Wiring::Direct`] puts nothing there (consumers call providers directly; no edge
//! faults, no partitions). [`Wiring::Toxiproxy`] creates one proxy per slot through the
//! Toxiproxy API (the embedded server, or a real Toxiproxy given with `--toxiproxy`), so
//! every edge can carry toxics and a node can be partitioned by disabling its proxies.

use std::collections::BTreeMap;

use super::plan::{ClusterPlan, NodeId, Slot};
use super::runtime::RuntimeError;
use crate::faults::client::ToxiproxyClient;
use crate::faults::model::{ProxyConfig, Stream, Toxic, ToxicKind};

/// The name (before its stream) of the toxics a partition installs.
const PARTITION: &str = "gauntlet_partition";

/// What stands in the proxy slots.
#[derive(Clone)]
pub enum Wiring {
    /// No proxies.
    Direct,
    /// A proxy per slot, through this Toxiproxy API.
    Toxiproxy { client: ToxiproxyClient },
}

/// The URL each slot's consumers call, by proxy name.
pub type SlotUrls = BTreeMap<String, String>;

/// Where slots are, for one runtime: what a proxy connects to, where it listens, and
/// how a consumer reaches the address it bound.
pub struct SlotAddressing<'a> {
    /// The provider replica's address as the proxy sees it (`127.0.0.1:7002`, `store-db-0:7002`).
    pub upstream: &'a (dyn Fn(&Slot) -> String + Sync),
    /// Where the slot's proxy listens (`127.0.0.1:0` for any free port).
    pub listen: &'a (dyn Fn(&Slot) -> String + Sync),
    /// The URL a consumer of the slot calls, from the address the proxy bound.
    pub reach: &'a (dyn Fn(&Slot, &str) -> String + Sync),
}

impl Wiring {
    /// Opens every slot of `plan`; returns where consumers reach each.
    pub async fn open(&self, plan: &ClusterPlan, addressing: &SlotAddressing<'_>) -> Result<SlotUrls, RuntimeError> {
        let mut out = SlotUrls::new();
        match self {
            Wiring::Direct => {
                for s in &plan.slots {
                    out.insert(s.proxy_name(), format!("{}://{}", plan.scheme_of(s), (addressing.upstream)(s)));
                }
            }
            Wiring::Toxiproxy { client } => {
                for s in &plan.slots {
                    let name = s.proxy_name();
                    // A proxy left by an earlier run of the same name is replaced.
                    let _ = client.delete_proxy(&name).await;
                    let config = ProxyConfig::new(name.clone(), (addressing.listen)(s), (addressing.upstream)(s));
                    let proxy = client
                        .create_proxy(&config)
                        .await
                        .map_err(|e| RuntimeError::Wiring(format!("creating proxy {name}: {e}")))?;
                    out.insert(name, (addressing.reach)(s, &proxy.listen));
                }
            }
        }
        Ok(out)
    }

    /// The Toxiproxy API the edges are on, if any.
    pub fn api_url(&self) -> Option<String> {
        match self {
            Wiring::Toxiproxy { client } => Some(client.base_url().to_string()),
            Wiring::Direct => None,
        }
    }

    /// Enables or disables the proxies of `slots` (a partition disables them).
    pub async fn set_enabled<'a>(
        &self,
        slots: impl Iterator<Item = &'a Slot>,
        enabled: bool,
    ) -> Result<(), RuntimeError> {
        match self {
            Wiring::Direct => {
                Err(RuntimeError::Unsupported("partitions need edge proxies; run without --no-proxies".into()))
            }
            Wiring::Toxiproxy { client, .. } => {
                for s in slots {
                    client.set_enabled(&s.proxy_name(), enabled).await.map_err(|e| {
                        let verb = if enabled { "enabling" } else { "disabling" };
                        RuntimeError::Wiring(format!("{verb} proxy {}: {e}", s.proxy_name()))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Cuts `slots` off, or heals them: a partition drops traffic both ways (a
    /// `timeout` toxic of 0 on each stream), so open connections stall and new ones are
    /// accepted and hang until the caller's own timeout; healing removes the toxics,
    /// which closes the stalled connections. (`down`, refusing connections at once, is
    /// [`Wiring::set_enabled`].)
    pub async fn partition<'a>(&self, slots: impl Iterator<Item = &'a Slot>, cut: bool) -> Result<(), RuntimeError> {
        let Wiring::Toxiproxy { client } = self else {
            return Err(RuntimeError::Unsupported("partitions need edge proxies; run without --no-proxies".into()));
        };
        for s in slots {
            let name = s.proxy_name();
            for stream in Stream::BOTH {
                let toxic =
                    Toxic::new(ToxicKind::Timeout { timeout: 0 }, stream).named(format!("{PARTITION}_{stream}"));
                let done = if cut {
                    client.add_toxic(&name, &toxic).await.map(|_| ())
                } else {
                    match client.remove_toxic(&name, &toxic.name).await {
                        Err(e) if e.status() == Some(404) => Ok(()),
                        other => other.map(|_| ()),
                    }
                };
                done.map_err(|e| {
                    let verb = if cut { "cutting" } else { "healing" };
                    RuntimeError::Wiring(format!("{verb} proxy {name}: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// Removes every proxy of `plan`.
    pub async fn close(&self, plan: &ClusterPlan) {
        if let Wiring::Toxiproxy { client, .. } = self {
            for s in &plan.slots {
                let _ = client.delete_proxy(&s.proxy_name()).await;
            }
        }
    }
}

/// Loopback addressing, for nodes that are local processes: proxies bind free ports
/// on 127.0.0.1 and consumers call what they bound.
pub async fn open_local(wiring: &Wiring, plan: &ClusterPlan) -> Result<SlotUrls, RuntimeError> {
    let addressing = SlotAddressing {
        upstream: &|s: &Slot| s.upstream.to_string(),
        listen: &|_: &Slot| "127.0.0.1:0".to_string(),
        reach: &|s: &Slot, bound: &str| format!("{}://{bound}", plan.scheme_of(s)),
    };
    wiring.open(plan, &addressing).await
}

/// Each consumer node's upstream variables: for every provider it calls, the URLs of its
/// slots leading to the provider's replicas, comma-separated.
pub fn upstream_env(plan: &ClusterPlan, urls: &SlotUrls) -> BTreeMap<NodeId, BTreeMap<String, String>> {
    let mut out: BTreeMap<NodeId, BTreeMap<String, String>> = BTreeMap::new();
    for node in &plan.nodes {
        for edge in plan.spec.edges.iter().filter(|e| e.from == node.id.service) {
            let urls: Vec<String> = plan
                .slots
                .iter()
                .filter(|s| s.edge == *edge && s.serves(&node.id))
                .filter_map(|s| urls.get(&s.proxy_name()).cloned())
                .collect();
            out.entry(node.id.clone()).or_default().insert(plan.spec.upstream_var(&edge.to), urls.join(","));
        }
    }
    out
}

pub fn ingress_urls(plan: &ClusterPlan, urls: &SlotUrls) -> Vec<String> {
    plan.slots
        .iter()
        .filter(|s| s.edge.from == super::plan::CLIENT)
        .filter_map(|s| urls.get(&s.proxy_name()).cloned())
        .collect()
}
