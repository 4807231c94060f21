//! From a cluster spec to a plan: every node (service replica) with its port, data
//! directory, log file and environment, and every proxy slot of every edge.
//!
//! Each consumer → provider call goes through one slot per provider replica, and the
//! clients reach the ingress through one slot per ingress replica, so a fault can be put
//! on any edge without the services knowing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::spec::{ClusterSpec, Edge, ServiceSpec};

/// The consumer name of the load generator and other outside clients on ingress edges.
pub const CLIENT: &str = "client";

/// One replica of one service, e.g. `api-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub service: String,
    pub replica: u32,
}

impl NodeId {
    /// Parses `api-1`; a bare `api` means replica 0.
    pub fn parse(s: &str) -> Option<Self> {
        match s.rsplit_once('-') {
            Some((svc, n)) if !svc.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
                Some(Self { service: svc.to_string(), replica: n.parse().ok()? })
            }
            _ if !s.is_empty() => Some(Self { service: s.to_string(), replica: 0 }),
            _ => None,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.service, self.replica)
    }
}

/// How node ports are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The ports of the cluster file (replica i on port + i).
    Fixed,
    /// Free ports picked by the OS (tests; several clusters side by side).
    Ephemeral,
}

/// What a node needs to run.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub id: NodeId,
    pub service: Arc<ServiceSpec>,
    /// Where it listens.
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// Its environment, upstream variables excepted (they depend on the wiring).
    pub env: BTreeMap<String, String>,
}

impl NodePlan {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder its data is stored in: its service's database folder (shared by the
    /// service's replicas, as a real service's store is) where it has a database, else
    /// its own data directory. A full disk is this folder's.
    pub fn store_dir(&self) -> PathBuf {
        match self.data_dir.parent() {
            Some(data) if self.service.database => data.join(&self.id.service),
            _ => self.data_dir.clone(),
        }
    }
}

/// A proxy slot: the place on one edge, from one consumer replica to one provider
/// replica, where faults go. Each consumer replica has its own, so a fault on one node
/// touches that node's edges only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The edge; its `from` is [`CLIENT`] for the ingress.
    pub edge: Edge,
    /// The consumer replica this slot serves; `None` for the load's client.
    pub from_replica: Option<u32>,
    /// The provider replica this slot leads to.
    pub replica: u32,
    /// The provider replica's own address.
    pub upstream: SocketAddr,
}

impl Slot {
    /// The proxy's name: api-1 -> db-0 is `api-1__db__0`, the client to web-0
    /// `client__web__0` (URL-safe, and what a Toxiproxy client sees).
    pub fn proxy_name(&self) -> String {
        match self.from_replica {
            Some(r) => format!("{}-{r}__{}__{}", self.edge.from, self.edge.to, self.replica),
            None => format!("{}__{}__{}", self.edge.from, self.edge.to, self.replica),
        }
    }

    /// Whether it carries node `id`'s calls.
    pub fn serves(&self, id: &NodeId) -> bool {
        self.edge.from == id.service && self.from_replica == Some(id.replica)
    }
}

/// A whole cluster, ready to start.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub spec: Arc<ClusterSpec>,
    /// This run's folder: `logs/`, `data/`.
    pub run_dir: PathBuf,
    /// Nodes in start order.
    pub nodes: Vec<NodePlan>,
    /// Every edge slot, ingress slots first.
    pub slots: Vec<Slot>,
}

/// Replica counts that override the cluster file's.
pub type ReplicaOverrides = BTreeMap<String, u32>;

impl ClusterPlan {
    /// Plans `spec` into `run_dir`.
    pub fn new(spec: ClusterSpec, run_dir: &Path, ports: Ports, replicas: &ReplicaOverrides) -> std::io::Result<Self> {
        let mut services = spec.services.clone();
        for s in &mut services {
            if let Some(&n) = replicas.get(&s.name) {
                s.replicas = n.max(1);
            }
        }
        let spec = Arc::new(ClusterSpec { services: services.clone(), ..spec });
        let mut nodes = Vec::new();
        for svc in services {
            let svc = Arc::new(svc);
            for replica in 0..svc.replicas {
                let id = NodeId { service: svc.name.clone(), replica };
                let port = match ports {
                    Ports::Fixed => svc.port + replica as u16,
                    Ports::Ephemeral => free_port()?,
                };
                let mut env = svc.env.clone();
                let data_dir = run_dir.join("data").join(id.to_string());
                // Replicas of a service share its database (SQLite in WAL mode serves
                // several processes on one host), as replicas of a real service share
                // their store; each replica keeps its own working directory.
                let db = svc.database.then(|| {
                    run_dir.join("data").join(&svc.name).join(format!("{}.db", svc.name)).display().to_string()
                });
                svc.env_names.fill(&mut env, port, "127.0.0.1", db);
                nodes.push(NodePlan {
                    log_file: run_dir.join("logs").join(format!("{id}.log")),
                    id,
                    service: svc.clone(),
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    data_dir,
                    env,
                });
            }
        }
        let mut slots = Vec::new();
        let ingress = Edge { from: CLIENT.into(), to: spec.ingress.clone() };
        for n in nodes.iter().filter(|n| n.id.service == ingress.to) {
            slots.push(Slot { edge: ingress.clone(), from_replica: None, replica: n.id.replica, upstream: n.addr });
        }
        for edge in &spec.edges {
            for from in nodes.iter().filter(|n| n.id.service == edge.from) {
                for to in nodes.iter().filter(|n| n.id.service == edge.to) {
                    slots.push(Slot {
                        edge: edge.clone(),
                        from_replica: Some(from.id.replica),
                        replica: to.id.replica,
                        upstream: to.addr,
                    });
                }
            }
        }
        Ok(Self { spec, run_dir: run_dir.to_path_buf(), nodes, slots })
    }

    /// The node with id `id`.
    pub fn node(&self, id: &NodeId) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The URL scheme a slot's consumers reach its provider by (`http`, `nats`, ...).
    pub fn scheme_of(&self, slot: &Slot) -> &str {
        self.spec.service(&slot.edge.to).map_or("http", |s| s.scheme.as_str())
    }

    /// The slots into node `id` and those carrying its own calls: its edges, and no
    /// other replica's.
    pub fn slots_touching<'a>(&'a self, id: &'a NodeId) -> impl Iterator<Item = &'a Slot> + 'a {
        self.slots.iter().filter(move |s| (s.edge.to == id.service && s.replica == id.replica) || s.serves(id))
    }
}

/// Ports picked for nodes come from below Linux's ephemeral range (32768-60999), from
/// which the kernel hands out `bind(:0)` ports: a port we pick and release before the
/// node binds it cannot meanwhile be taken by a proxy or client socket binding `:0`.
const PICK_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A free port from [`PICK_RANGE`], starting at a random place so that concurrent runs
/// (tests in parallel) do not pick the same ones.
fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PICK_RANGE.end - PICK_RANGE.start;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
        let _ = NEXT.compare_exchange(0, (seed % u64::from(span)) as u16 + 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = PICK_RANGE.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free port left in 20000-31999"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_parse() {
        assert_eq!(NodeId::parse("api-1"), Some(NodeId { service: "api".into(), replica: 1 }));
        assert_eq!(NodeId::parse("api"), Some(NodeId { service: "api".into(), replica: 0 }));
        assert_eq!(NodeId::parse("my-svc-2").unwrap().service, "my-svc");
        assert_eq!(NodeId::parse(""), None);
    }

    #[test]
    fn every_edge_gets_a_slot_per_consumer_and_provider_replica() {
        let text = "name = \"c\"\ningress = \"a\"\nedges = [\"a->b\"]\n[defaults]\nenv_names = { database = \"DB\" }\n[services.a]\nbinary = \"x\"\nport = 7000\n[services.b]\nbinary = \"y\"\nport = 7001\nreplicas = 2\ndatabase = true\nenv_names = { port = \"B_PORT\" }\n";
        let spec = ClusterSpec::parse(text, Path::new("c.toml")).unwrap();
        let plan =
            ClusterPlan::new(spec, Path::new("/r"), Ports::Fixed, &ReplicaOverrides::from([("b".into(), 3)])).unwrap();
        let ids: Vec<String> = plan.nodes.iter().map(|n| n.id.to_string()).collect();
        assert_eq!(ids, ["b-0", "b-1", "b-2", "a-0"]);
        assert_eq!(plan.nodes[2].addr.port(), 7003);
        assert_eq!(plan.nodes[0].env["DB"], "/r/data/b/b.db");
        assert_eq!(plan.nodes[1].env["DB"], plan.nodes[0].env["DB"], "replicas share their store");
        assert_eq!(plan.nodes[1].env["B_PORT"], "7002", "a service's own names add to the defaults'");
        // Nothing is set that the file does not name.
        assert!(plan.nodes[3].env.is_empty(), "{:?}", plan.nodes[3].env);
        let names: Vec<String> = plan.slots.iter().map(Slot::proxy_name).collect();
        assert_eq!(names, ["client__a__0", "a-0__b__0", "a-0__b__1", "a-0__b__2"]);
        let b1 = NodeId { service: "b".into(), replica: 1 };
        assert_eq!(plan.slots_touching(&b1).count(), 1);
        // Two consumer replicas: each has its own slots, and a fault on one spares the other.
        let plan = ClusterPlan::new(
            plan.spec.clone().as_ref().clone(),
            Path::new("/r"),
            Ports::Fixed,
            &ReplicaOverrides::from([("a".into(), 2), ("b".into(), 2)]),
        )
        .unwrap();
        let names: Vec<String> = plan.slots.iter().map(Slot::proxy_name).collect();
        assert_eq!(names, ["client__a__0", "client__a__1", "a-0__b__0", "a-0__b__1", "a-1__b__0", "a-1__b__1"]);
        let a0 = NodeId { service: "a".into(), replica: 0 };
        let touched: Vec<String> = plan.slots_touching(&a0).map(Slot::proxy_name).collect();
        assert_eq!(touched, ["client__a__0", "a-0__b__0", "a-0__b__1"], "a-1's calls are not a-0's");
    }
}
