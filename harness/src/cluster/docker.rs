//! The docker runtime: every node a container on a private network of the run, built
//! locally from our binaries (see [`super::images`]), started through testcontainers.
//!
//! The fault proxy runs as a container on the same network (the `gauntlet` binary
//! itself), so every edge goes through it as with processes. Only the Toxiproxy API,
//! the ingress slots and each node's port are published, on 127.0.0.1 alone.
//!
//! [`ServiceContainer`] is how one service container starts (environment, data folder,
//! log, port published on 127.0.0.1); contract verification starts its providers with it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{AccessMode, IntoContainerPort, Mount};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::binaries::{check_programs, command_program, find_program, Binaries};
use super::clock::{ClockSkew, Faketime, NodeClocks};
use super::compose::{ImageBuild, VolumeMount, VolumeSource, CONTAINER_PLACEHOLDER};
use super::images::{image_for, image_for_program, LocalImage};
use super::ledger::{self, Ledger, LedgerEntry};
use super::limits::{self, LimitEffect, NodeLimit};
use super::plan::{ClusterPlan, NodeId, Slot, CLIENT};
use super::readiness::{levels, poll_ready};
use super::runtime::{NodeOp, NodeState, NodeStatus, Runtime, RuntimeError};
use super::spec::{Fill, RunSpec};
use super::wiring::{self, SlotAddressing, Wiring};
use crate::faults::client::ToxiproxyClient;

/// The Toxiproxy API port inside the proxy container.
const API_PORT: u16 = 8474;
/// The first port of the ingress slots inside the proxy container.
const INGRESS_PORT: u16 = 9000;
/// Where a service container keeps its database (see [`DataDir`]).
pub const DATA_DIR: &str = "/data";
/// The label that ties a container to the run that started it.
pub const RUN_LABEL: &str = "dev.gauntlet.run";
/// How often [`exit_probe`] asks the engine whether a container still runs.
const EXIT_PROBE_EVERY: Duration = Duration::from_millis(250);

/// Is a Docker engine reachable? `Err` says why not.
pub fn engine_available() -> Result<(), String> {
    match std::process::Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`docker info` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("the docker CLI cannot be run: {e}")),
    }
}

struct Node {
    container: Option<ContainerAsync<GenericImage>>,
    id: String,
    host_port: u16,
    state: NodeState,
}

/// Runs a cluster as containers.
pub struct DockerRuntime {
    plan: ClusterPlan,
    binaries: Binaries,
    /// The `gauntlet` binary, which the proxy container runs.
    gauntlet: PathBuf,
    ledger: Ledger,
    entry: LedgerEntry,
    prefix: String,
    network: String,
    seed: u64,
    images: BTreeMap<String, LocalImage>,
    proxy: Option<ContainerAsync<GenericImage>>,
    wiring: Wiring,
    upstreams: BTreeMap<NodeId, BTreeMap<String, String>>,
    nodes: BTreeMap<NodeId, Node>,
    partitioned: Vec<NodeId>,
    /// The nodes a clock fault targets: their containers get libfaketime and the run's
    /// clock folder mounted (see [`CLOCK_MOUNT`]) and preloaded.
    clocks: NodeClocks,
    /// Resource faults in place, by node.
    held: BTreeMap<NodeId, Held>,
}

/// A resource fault a container holds, and what it must be set back to.
enum Held {
    /// Packets dropped in the namespace of this pid.
    Loss { pid: u32, scope: String },
    /// CPUs capped; the container had `nano_cpus` before (0: none).
    Cpu { nano_cpus: u64, before: limits::cgroup::CpuStat },
    /// Memory capped; the container had `memory` and `swap` before (0: none).
    Memory { memory: i64, swap: i64, before: limits::cgroup::MemoryStat },
}

/// Where a container whose clock a fault moves finds libfaketime and the run's clock
/// files (both mounted read-only).
pub const CLOCK_MOUNT: &str = "/gauntlet-clock";

impl DockerRuntime {
    /// A runtime for `plan`; `gauntlet` is the binary the proxy container runs.
    pub fn new(
        plan: ClusterPlan,
        binaries: Binaries,
        gauntlet: PathBuf,
        ledger: Ledger,
        run_id: &str,
        seed: u64,
    ) -> Self {
        let (owner_pid, owner_start_time) = ledger::me();
        let short: String = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            run_id.hash(&mut h);
            format!("{:08x}", h.finish() as u32)
        };
        let prefix = format!("g{short}");
        let run_dir = plan.run_dir.clone();
        let network = format!("{prefix}-net");
        let entry = LedgerEntry {
            run_id: run_id.to_string(),
            runtime: "docker".into(),
            cluster: plan.spec.name.clone(),
            run_dir: plan.run_dir.clone(),
            owner_pid,
            owner_start_time,
            networks: vec![network.clone()],
            ..Default::default()
        };
        Self {
            plan,
            binaries,
            gauntlet,
            ledger,
            entry,
            prefix,
            network,
            seed,
            images: BTreeMap::new(),
            proxy: None,
            wiring: Wiring::Direct,
            upstreams: BTreeMap::new(),
            nodes: BTreeMap::new(),
            partitioned: Vec::new(),
            held: BTreeMap::new(),
            clocks: NodeClocks::new(run_dir.join("clocks")),
        }
    }

    /// Where clients reach the ingress (through its proxy slots).
    pub fn ingress_urls(&self) -> &[String] {
        &self.entry.ingress
    }

    /// The run's private network.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The Toxiproxy API of the run's proxy container.
    pub fn toxiproxy_url(&self) -> Option<String> {
        self.wiring.api_url()
    }

    fn container_name(&self, id: &NodeId) -> String {
        format!("{}-{id}", self.prefix)
    }

    fn proxy_name(&self) -> String {
        format!("{}-proxy", self.prefix)
    }

    fn record(&mut self) {
        self.entry.nodes = self.status();
        if let Err(e) = self.ledger.write(&self.entry) {
            eprintln!("warning: cannot write the run ledger: {e}");
        }
    }

    fn remember_container(&mut self, id: &str) {
        if !self.entry.containers.iter().any(|c| c == id) {
            self.entry.containers.push(id.to_string());
        }
        self.record();
    }

    async fn start_proxy(&mut self) -> Result<(), RuntimeError> {
        let image = image_for(&self.gauntlet).await?;
        let ingress_slots = self.plan.slots.iter().filter(|s| s.edge.from == CLIENT).count() as u16;
        let mut req = GenericImage::new(image.name, image.tag).with_exposed_port(API_PORT.tcp());
        for i in 0..ingress_slots {
            req = req.with_exposed_port((INGRESS_PORT + i).tcp());
        }
        let published: Vec<u16> =
            std::iter::once(API_PORT).chain((0..ingress_slots).map(|i| INGRESS_PORT + i)).collect();
        let container = req
            .with_network(self.network.clone())
            .with_container_name(self.proxy_name())
            .with_label(RUN_LABEL, self.entry.run_id.clone())
            .with_cmd(["proxy", "--listen", &format!("0.0.0.0:{API_PORT}"), "--seed", &self.seed.to_string()])
            .with_host_config_modifier(loopback_only(published))
            .start()
            .await
            .map_err(|e| RuntimeError::Start { node: "proxy".into(), detail: e.to_string() })?;
        self.remember_container(container.id());
        let api = container.get_host_port_ipv4(API_PORT).await.map_err(|e| RuntimeError::Wiring(e.to_string()))?;
        let mut ingress_ports = Vec::new();
        for i in 0..ingress_slots {
            let p = container
                .get_host_port_ipv4(INGRESS_PORT + i)
                .await
                .map_err(|e| RuntimeError::Wiring(e.to_string()))?;
            ingress_ports.push(p);
        }
        let url = format!("http://127.0.0.1:{api}");
        let log = self.plan.run_dir.join("logs").join("proxy.log");
        poll_ready("proxy", &format!("{url}/version"), Duration::from_secs(15), &log, || None).await?;
        self.proxy = Some(container);
        self.wiring = Wiring::Toxiproxy { client: ToxiproxyClient::new(url) };

        let ingress_index: BTreeMap<String, usize> = self
            .plan
            .slots
            .iter()
            .filter(|s| s.edge.from == CLIENT)
            .enumerate()
            .map(|(i, s)| (s.proxy_name(), i))
            .collect();
        let names: BTreeMap<String, String> =
            self.plan.nodes.iter().map(|n| (n.id.to_string(), self.container_name(&n.id))).collect();
        let ports: BTreeMap<String, u16> = self.plan.nodes.iter().map(|n| (n.id.to_string(), n.service.port)).collect();
        let proxy_host = self.proxy_name();
        let upstream = |s: &Slot| {
            let id = NodeId { service: s.edge.to.clone(), replica: s.replica }.to_string();
            format!("{}:{}", names[&id], ports[&id])
        };
        let listen = |s: &Slot| match ingress_index.get(&s.proxy_name()) {
            Some(i) => format!("0.0.0.0:{}", INGRESS_PORT + *i as u16),
            None => "0.0.0.0:0".to_string(),
        };
        let reach = |s: &Slot, bound: &str| match ingress_index.get(&s.proxy_name()) {
            Some(i) => format!("http://127.0.0.1:{}", ingress_ports[*i]),
            None => {
                format!("{}://{proxy_host}:{}", self.plan.scheme_of(s), bound.rsplit(':').next().unwrap_or_default())
            }
        };
        let urls = self
            .wiring
            .open(&self.plan, &SlotAddressing { upstream: &upstream, listen: &listen, reach: &reach })
            .await?;
        self.upstreams = wiring::upstream_env(&self.plan, &urls);
        self.entry.ingress = wiring::ingress_urls(&self.plan, &urls);
        self.entry.toxiproxy = self.wiring.api_url();
        self.record();
        Ok(())
    }

    async fn start_node(&mut self, id: &NodeId) -> Result<(), RuntimeError> {
        let node = self.plan.node(id).cloned().ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let image = self
            .images
            .get(&node.service.name)
            .cloned()
            .ok_or_else(|| RuntimeError::Start { node: id.to_string(), detail: "no image was built for it".into() })?;
        let data = self.plan.run_dir.join("data").join(&node.service.name);
        std::fs::create_dir_all(&data).map_err(RuntimeError::io(format!("creating {}", data.display())))?;
        let mut env = node.env.clone();
        if let (true, Some(name)) = (node.service.database, &node.service.env_names.database) {
            env.insert(name.clone(), format!("{DATA_DIR}/{}.db", node.service.name));
        }
        env.extend(self.upstreams.get(id).cloned().unwrap_or_default());
        // Placeholders, filled in for the container: it listens on every interface of its
        // own network namespace and keeps its files in the data mount.
        let fill = Fill {
            host: "0.0.0.0".into(),
            port: node.service.port,
            data_dir: PathBuf::from(DATA_DIR),
            upstreams: Fill::upstreams_of(&self.plan.spec, &node.service.name, self.upstreams.get(id)),
        };
        let env = env.into_iter().map(|(k, v)| (k, fill.fill(&v))).collect();
        for (name, template) in &node.service.files {
            let path = data.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
            }
            std::fs::write(&path, fill.fill(template))
                .map_err(RuntimeError::io(format!("writing {}", path.display())))?;
        }
        let mut args = match (&node.service.run, &node.service.image) {
            (RunSpec::Command(c), None) => c.iter().map(|a| fill.fill(a)).collect::<Vec<_>>().split_off(1),
            _ => Vec::new(),
        };
        let (mut entrypoint, mut mounts, mut data_dir) = (None, Vec::new(), DataDir::Bind(data.clone()));
        if let Some(compose) = &node.service.compose {
            // A Compose service keeps the image's file system as it is (no data
            // mount at /data) and gets its own volumes instead.
            data_dir = DataDir::None;
            let mut argv: Vec<String> = Vec::new();
            if let Some(e) = &compose.entrypoint {
                let mut e = e.iter().map(|a| fill.fill(a));
                entrypoint = e.next();
                argv.extend(e);
            }
            argv.extend(compose.command.iter().flatten().map(|a| fill.fill(a)));
            args = argv;
            mounts = compose.volumes.iter().map(|v| self.mount(v, &data)).collect();
        }
        let (env, clock_mounts) = self.clock_preload(id, env)?;
        mounts.extend(clock_mounts);
        let started = ServiceContainer {
            image,
            port: node.service.port,
            entrypoint,
            args,
            env,
            env_names: node.service.env_names.clone(),
            log: node.log_file.clone(),
            data: data_dir,
            mounts,
            name: Some(self.container_name(id)),
            network: Some(self.network.clone()),
            labels: vec![(RUN_LABEL.into(), self.entry.run_id.clone())],
        }
        .start()
        .await
        .map_err(|detail| RuntimeError::Start { node: id.to_string(), detail })?;
        let cid = started.container.id().to_string();
        self.remember_container(&cid);
        self.nodes.insert(
            id.clone(),
            Node {
                container: Some(started.container),
                id: cid,
                host_port: started.host_port,
                state: NodeState::Starting,
            },
        );
        self.record();
        Ok(())
    }

    /// `env` and the mounts that preload libfaketime into node `id`'s container, if a
    /// clock fault targets it: the library and the run's clock folder mounted read-only
    /// at [`CLOCK_MOUNT`] (the folder, not the file: a file rewritten by rename would
    /// leave a bind mount of it on the old one). Our images hold what libfaketime links
    /// (libc, libm, the loader): the binary links them too.
    fn clock_preload(
        &self,
        id: &NodeId,
        mut env: BTreeMap<String, String>,
    ) -> Result<(BTreeMap<String, String>, Vec<Mount>), RuntimeError> {
        let Some(faketime) = self.clocks.faketime().filter(|_| self.clocks.targets(id)) else {
            return Ok((env, Vec::new()));
        };
        self.clocks.ensure_file(id).map_err(RuntimeError::io(format!("making the clock file of {id}")))?;
        let library = PathBuf::from(CLOCK_MOUNT).join("libfaketime.so.1");
        let file = PathBuf::from(CLOCK_MOUNT).join("clocks").join(NodeClocks::file_name(id));
        env.extend(Faketime::env(&library, &file));
        let read_only = |host: &std::path::Path, at: &std::path::Path| {
            Mount::bind_mount(host.display().to_string(), at.display().to_string())
                .with_access_mode(testcontainers::core::AccessMode::ReadOnly)
        };
        let mounts = vec![
            read_only(&faketime.library, &library),
            read_only(self.clocks.dir(), &PathBuf::from(CLOCK_MOUNT).join("clocks")),
        ];
        Ok((env, mounts))
    }

    async fn wait_node(&mut self, id: &NodeId) -> Result<(), RuntimeError> {
        let node = self.plan.node(id).cloned().ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let port = self.nodes.get(id).map(|n| n.host_port).unwrap_or_default();
        let cid = self.nodes.get(id).map(|n| n.id.clone()).unwrap_or_default();
        // A Compose healthcheck runs in the node's container.
        let url = node.service.ready.target(&format!("127.0.0.1:{port}")).replace(CONTAINER_PLACEHOLDER, &cid);
        let result =
            poll_ready(&id.to_string(), &url, node.service.ready_timeout, &node.log_file, exit_probe(cid)).await;
        self.set_state(id, if result.is_ok() { NodeState::Ready } else { NodeState::Exited });
        result
    }

    fn set_state(&mut self, id: &NodeId, state: NodeState) {
        if let Some(n) = self.nodes.get_mut(id) {
            n.state = state;
        }
        self.record();
    }

    /// The mount of a Compose volume: a named volume of this run, a host path, or the
    /// node's rendered copy of a config file (in `data`, its data folder).
    fn mount(&self, v: &VolumeMount, data: &std::path::Path) -> Mount {
        let mount = match &v.source {
            VolumeSource::Named(n) => Mount::volume_mount(self.volume_name(n), &v.target),
            VolumeSource::Bind(p) => Mount::bind_mount(p.display().to_string(), &v.target),
            VolumeSource::Rendered(f) => Mount::bind_mount(data.join(f).display().to_string(), &v.target),
        };
        if v.read_only {
            mount.with_access_mode(AccessMode::ReadOnly)
        } else {
            mount
        }
    }

    fn volume_name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Builds the images of Compose services with a `build:` and checks the others'
    /// images are on this machine (nothing is pulled); creates their named volumes,
    /// each recorded in the ledger before it exists.
    async fn prepare_compose(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        let services: Vec<_> = self.plan.spec.services.iter().filter(|s| s.compose.is_some()).cloned().collect();
        for s in &services {
            let (Some(c), Some(image)) = (&s.compose, &s.image) else { continue };
            let log = self.plan.run_dir.join("logs").join(format!("build-{}.log", s.name));
            match &c.build {
                Some(b) => {
                    progress(&format!("building image {image} of {} (docker build {})", s.name, b.context.display()));
                    let (b, image, log) = (b.clone(), image.clone(), log.clone());
                    tokio::task::spawn_blocking(move || docker_build(&b, &image, &log))
                        .await
                        .map_err(|e| RuntimeError::Build { what: s.name.clone(), detail: e.to_string() })??;
                }
                None if !image_exists(image) => {
                    return Err(RuntimeError::Start {
                        node: s.name.clone(),
                        detail: format!(
                            "image {image} is not on this machine, and Gauntlet pulls nothing (no registry need be \
                             reachable): build it first (docker build -t {image} DIR), or give the service a \
                             `build:` context in the Compose file"
                        ),
                    });
                }
                None => {}
            }
        }
        let named: BTreeSet<String> = services
            .iter()
            .flat_map(|s| s.compose.iter().flat_map(|c| c.volumes.iter()))
            .filter_map(|v| match &v.source {
                VolumeSource::Named(n) => Some(self.volume_name(n)),
                _ => None,
            })
            .collect();
        for v in named {
            self.entry.volumes.push(v.clone());
            self.record();
            let label = format!("{RUN_LABEL}={}", self.entry.run_id);
            docker_cli(&["volume", "create", "--label", &label, &v])?;
        }
        Ok(())
    }

    fn container(&self, id: &NodeId) -> Result<&ContainerAsync<GenericImage>, RuntimeError> {
        self.nodes.get(id).and_then(|n| n.container.as_ref()).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))
    }
}

/// Where a service container keeps its database.
#[derive(Debug, Clone)]
pub enum DataDir {
    /// A host folder, mounted at [`DATA_DIR`]: the data outlives the container.
    Bind(PathBuf),
    /// A tmpfs at [`DATA_DIR`]: fresh at every start, gone with the container.
    Scratch,
    /// Nothing at [`DATA_DIR`] (a Compose service has its own volumes).
    None,
}

/// One service container to start: a locally built image, the port the service
/// listens on inside (published on 127.0.0.1 only), its environment, and the file
/// its output goes to.
#[derive(Debug, Clone)]
pub struct ServiceContainer {
    pub image: LocalImage,
    pub port: u16,
    /// The program run instead of the image's entry point.
    pub entrypoint: Option<String>,
    /// Arguments after the entry point (none for our services).
    pub args: Vec<String>,
    /// The service's; the variables `env_names` names are set from `port` (bound to
    /// every interface of the container).
    pub env: BTreeMap<String, String>,
    /// The variables of the service's own port and bind address.
    pub env_names: super::spec::EnvNames,
    pub log: PathBuf,
    pub data: DataDir,
    /// Mounts besides the data folder's (a Compose service's volumes, libfaketime).
    pub mounts: Vec<Mount>,
    /// The container's name (default: one Docker makes up).
    pub name: Option<String>,
    /// The network it joins (default: Docker's bridge).
    pub network: Option<String>,
    pub labels: Vec<(String, String)>,
}

/// A service container that has started (it may not be ready yet). Dropping it
/// removes the container; [`ContainerAsync::rm`] does so and waits.
pub struct StartedService {
    pub container: ContainerAsync<GenericImage>,
    /// Where the service's port is published, on 127.0.0.1.
    pub host_port: u16,
}

impl ServiceContainer {
    /// Starts the container (appending its output to `log`) and finds its published port.
    pub async fn start(self) -> Result<StartedService, String> {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("opening {}: {e}", self.log.display()))?,
        ));
        let data = match &self.data {
            DataDir::Bind(host) => Some(Mount::bind_mount(host.display().to_string(), DATA_DIR)),
            DataDir::Scratch => Some(Mount::tmpfs_mount(DATA_DIR)),
            DataDir::None => None,
        };
        let mut image = GenericImage::new(self.image.name, self.image.tag);
        if let Some(e) = &self.entrypoint {
            image = image.with_entrypoint(e);
        }
        let mut req = image
            .with_exposed_port(self.port.tcp())
            .with_host_config_modifier(loopback_only(vec![self.port]))
            .with_log_consumer(move |frame: &LogFrame| {
                let bytes = match frame {
                    LogFrame::StdOut(b) | LogFrame::StdErr(b) => b,
                };
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(bytes);
                }
            });
        for m in data.into_iter().chain(self.mounts) {
            req = req.with_mount(m);
        }
        if !self.args.is_empty() {
            req = req.with_cmd(self.args);
        }
        if let Some(name) = self.name {
            req = req.with_container_name(name);
        }
        if let Some(network) = self.network {
            req = req.with_network(network);
        }
        for (k, v) in self.labels {
            req = req.with_label(k, v);
        }
        let mut env = self.env;
        // Inside its container a service listens on every interface; only the
        // published port is reachable, and only from this host.
        self.env_names.fill(&mut env, self.port, "0.0.0.0", None);
        for (k, v) in env {
            req = req.with_env_var(k, v);
        }
        let container = req.start().await.map_err(|e| e.to_string())?;
        // Dropping `container` on an error removes it.
        let host_port = container.get_host_port_ipv4(self.port).await.map_err(|e| e.to_string())?;
        Ok(StartedService { container, host_port })
    }
}

/// For [`poll_ready`]: says when container `id` is no longer running (asks the engine
/// at most every [`EXIT_PROBE_EVERY`]), so a crash is reported at once, not at the
/// readiness timeout.
pub fn exit_probe(id: String) -> impl FnMut() -> Option<String> {
    let mut last: Option<Instant> = None;
    move || {
        if id.is_empty() || last.is_some_and(|t| t.elapsed() < EXIT_PROBE_EVERY) {
            return None;
        }
        last = Some(Instant::now());
        let out = std::process::Command::new("docker")
            .args(["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", &id])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().split_once(' ') {
            Some(("false", code)) => Some(format!("its container exited (code {code})")),
            _ => None,
        }
    }
}

/// Publishes `ports` on 127.0.0.1 only (Docker's default is every interface).
fn loopback_only(ports: Vec<u16>) -> impl Fn(&mut HostConfig) + Send + Sync + 'static {
    move |hc: &mut HostConfig| {
        hc.publish_all_ports = Some(false);
        hc.port_bindings = Some(
            ports
                .iter()
                .map(|p| {
                    (
                        format!("{p}/tcp"),
                        Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(String::new()) }]),
                    )
                })
                .collect(),
        );
    }
}

fn image_exists(image: &str) -> bool {
    std::process::Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success())
}

/// `docker build` of a Compose service's `build:` section, tagged `image`; its output
/// goes to `log`, whose end the error quotes.
fn docker_build(b: &ImageBuild, image: &str, log: &std::path::Path) -> Result<(), RuntimeError> {
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["build", "-t", image]);
    if let Some(f) = &b.dockerfile {
        cmd.arg("-f").arg(b.context.join(f));
    }
    for (k, v) in &b.args {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    let out = cmd.arg(&b.context).output().map_err(RuntimeError::io("running docker build"))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(log, [out.stdout.as_slice(), out.stderr.as_slice()].concat())
        .map_err(RuntimeError::io(format!("writing {}", log.display())))?;
    if out.status.success() {
        return Ok(());
    }
    Err(RuntimeError::Build {
        what: format!("image {image} from {}", b.context.display()),
        detail: format!("docker build failed; its output ends:\n{}", super::readiness::tail(log, 15)),
    })
}

fn docker_cli(args: &[&str]) -> Result<(), RuntimeError> {
    let out = std::process::Command::new("docker").args(args).output().map_err(RuntimeError::io("running docker"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RuntimeError::Unsupported(format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Runtime for DockerRuntime {
    async fn start(&mut self, progress: &(dyn Fn(&str) + Sync)) -> Result<(), RuntimeError> {
        engine_available()
            .map_err(|why| RuntimeError::Unsupported(format!("the docker runtime needs a Docker engine: {why}")))?;
        let t0 = Instant::now();
        check_programs(&self.plan.spec, true)?;
        let mut bins: Vec<(String, String)> = Vec::new();
        // A `command` without an `image` runs its installed program in an image built the
        // way ours are (FROM scratch + the program + its libraries).
        let mut programs: Vec<(String, PathBuf)> = Vec::new();
        for s in &self.plan.spec.services {
            match &s.run {
                RunSpec::Binary(b) => bins.push((s.name.clone(), b.clone())),
                RunSpec::Command(_) | RunSpec::External if s.image.is_some() => {}
                RunSpec::Command(c) => {
                    let program = command_program(&self.plan.spec, &c[0]);
                    let found = find_program(&program).ok_or_else(|| RuntimeError::Start {
                        node: s.name.clone(),
                        detail: format!("program `{}` is not on PATH", program.display()),
                    })?;
                    programs.push((s.name.clone(), found));
                }
                RunSpec::External => {
                    return Err(RuntimeError::Unsupported(format!(
                        "service {} is external (`urls`) and has no `image`: the docker runtime needs a `binary`, a `command` or an `image`",
                        s.name
                    )))
                }
            }
        }
        let names: Vec<String> = bins.iter().map(|(_, b)| b.clone()).collect();
        self.binaries.ensure(&names, progress)?;
        progress("building images (FROM scratch + binary + its libraries)");
        for (svc, bin) in &bins {
            let image = image_for(&self.binaries.path(bin)).await?;
            self.images.insert(svc.clone(), image);
        }
        for (svc, program) in &programs {
            let image = image_for_program(program).await?;
            self.images.insert(svc.clone(), image);
        }
        self.prepare_compose(progress).await?;
        for s in &self.plan.spec.services {
            if let Some(img) = &s.image {
                let (name, tag) = img.rsplit_once(':').unwrap_or((img.as_str(), "latest"));
                self.images.insert(s.name.clone(), LocalImage { name: name.into(), tag: tag.into() });
            }
        }
        progress(&format!(
            "images ready in {:.2?}; starting the fault proxy on network {}",
            t0.elapsed(),
            self.network
        ));
        let started = Instant::now();
        self.start_proxy().await?;
        progress(&format!("fault proxy ready in {:.2?}", started.elapsed()));
        for level in levels(&self.plan) {
            progress(&format!("starting {}", level.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")));
            for id in &level {
                self.start_node(id).await?;
            }
            for id in &level {
                self.wait_node(id).await?;
            }
        }
        progress(&format!("all {} containers ready in {:.2?}", self.plan.nodes.len(), started.elapsed()));
        Ok(())
    }

    async fn node_op(&mut self, id: &NodeId, op: NodeOp) -> Result<(), RuntimeError> {
        let state = self.nodes.get(id).map(|n| n.state).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let bad = || RuntimeError::BadState { op, node: id.to_string(), state };
        let running =
            matches!(state, NodeState::Ready | NodeState::Paused | NodeState::Partitioned | NodeState::Starting);
        let fail = |e: testcontainers::core::error::TestcontainersError| {
            RuntimeError::Unsupported(format!("{op} of {id} failed: {e}"))
        };
        match op {
            NodeOp::Kill | NodeOp::Stop if !running => return Err(bad()),
            NodeOp::Kill => {
                let cid = self.nodes[id].id.clone();
                docker_cli(&["kill", "--signal", "KILL", &cid])?;
                self.set_state(id, NodeState::Killed);
            }
            NodeOp::Stop => {
                if state == NodeState::Paused {
                    self.container(id)?.unpause().await.map_err(fail)?;
                }
                self.container(id)?.stop_with_timeout(Some(10)).await.map_err(fail)?;
                self.set_state(id, NodeState::Stopped);
            }
            NodeOp::Pause if !matches!(state, NodeState::Ready | NodeState::Partitioned) => return Err(bad()),
            NodeOp::Pause => {
                self.container(id)?.pause().await.map_err(fail)?;
                self.set_state(id, NodeState::Paused);
            }
            NodeOp::Resume if state != NodeState::Paused => return Err(bad()),
            NodeOp::Resume => {
                self.container(id)?.unpause().await.map_err(fail)?;
                let s = if self.partitioned.contains(id) { NodeState::Partitioned } else { NodeState::Ready };
                self.set_state(id, s);
            }
            NodeOp::Restart => {
                if state == NodeState::Paused {
                    self.container(id)?.unpause().await.map_err(fail)?;
                }
                if running {
                    self.container(id)?.stop_with_timeout(Some(10)).await.map_err(fail)?;
                }
                self.container(id)?.start().await.map_err(fail)?;
                let port = self.plan.node(id).map(|n| n.service.port).unwrap_or_default();
                let host_port = self.container(id)?.get_host_port_ipv4(port).await.map_err(fail)?;
                if let Some(n) = self.nodes.get_mut(id) {
                    n.host_port = host_port;
                }
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

    fn status(&mut self) -> Vec<NodeStatus> {
        self.plan
            .nodes
            .iter()
            .map(|n| {
                let (state, handle, port) = match self.nodes.get(&n.id) {
                    Some(c) => (c.state, c.id.chars().take(12).collect(), c.host_port),
                    None => (NodeState::Starting, String::new(), 0),
                };
                NodeStatus {
                    id: n.id.to_string(),
                    service: n.id.service.clone(),
                    addr: format!("127.0.0.1:{port}"),
                    state,
                    handle,
                }
            })
            .collect()
    }

    fn plan(&self) -> &ClusterPlan {
        &self.plan
    }

    fn prepare_limits(&mut self, limits: &[(NodeId, NodeLimit)]) -> Result<(), RuntimeError> {
        for (id, limit) in limits {
            let refuse = |why: String| RuntimeError::Unsupported(format!("`op = \"{}\"` on {id}: {why}", limit.op()));
            match limit {
                NodeLimit::Cpu { .. } | NodeLimit::Memory { .. } => {}
                NodeLimit::PacketLoss { .. } => {
                    let missing = limits::container::packet_loss_missing();
                    if !missing.is_empty() {
                        return Err(refuse(format!(
                            "real drops in the container's network namespace need {}",
                            missing.join(", ")
                        )));
                    }
                }
                NodeLimit::DiskFull { .. } => {
                    return Err(refuse(
                        "the docker runtime does not fill a container's disk (its data folder is a bind mount of \
                         the host's); run the scenario with --runtime process"
                            .into(),
                    ))
                }
            }
        }
        Ok(())
    }

    async fn limit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<(), RuntimeError> {
        use limits::container;
        let failed = |detail: String| RuntimeError::Unsupported(format!("{limit} on {id}: {detail}"));
        let cid = self.nodes.get(id).map(|n| n.id.clone()).ok_or_else(|| RuntimeError::UnknownNode(id.to_string()))?;
        let held = match limit {
            NodeLimit::PacketLoss { probability, direction, peer } => {
                let pid = container::container_pid(&cid).await.map_err(failed)?;
                if pid == 0 {
                    return Err(failed("the container is not running".into()));
                }
                let (slots, scope) = match peer {
                    None => (None, "all its traffic".to_string()),
                    Some(p) => {
                        let urls = self
                            .upstreams
                            .get(id)
                            .and_then(|u| u.get(&self.plan.spec.upstream_var(p)))
                            .cloned()
                            .unwrap_or_default();
                        let mut slots = Vec::new();
                        for url in urls.split(',').filter(|u| !u.is_empty()) {
                            let authority = url.split_once("://").map_or(url, |(_, a)| a);
                            let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
                            let ip = container::container_ip(host, &self.network).await.map_err(failed)?;
                            slots.push((ip, port.parse::<u16>().map_err(|e| failed(format!("slot {url}: {e}")))?));
                        }
                        if slots.is_empty() {
                            return Err(failed(format!("{id} reaches no proxy slot of {p}")));
                        }
                        (Some(slots), format!("its calls to {p}"))
                    }
                };
                let script =
                    container::loss_script(*probability, &container::loss_matches(*direction, slots.as_deref()));
                container::drop_packets(pid, &script).await.map_err(failed)?;
                Held::Loss { pid, scope: format!("{direction}, {scope}") }
            }
            NodeLimit::Cpu { share } => {
                let (nano_cpus, _, _) = container::container_limits(&cid).await.map_err(failed)?;
                let before = container::cap_cpu(&cid, *share).await.map_err(failed)?;
                Held::Cpu { nano_cpus, before }
            }
            NodeLimit::Memory { bytes } => {
                let (_, memory, swap) = container::container_limits(&cid).await.map_err(failed)?;
                let before = container::cap_memory(&cid, *bytes).await.map_err(failed)?;
                Held::Memory { memory, swap, before }
            }
            NodeLimit::DiskFull { .. } => return Err(failed("not held by the docker runtime".into())),
        };
        self.held.insert(id.clone(), held);
        Ok(())
    }

    async fn unlimit(&mut self, id: &NodeId, limit: &NodeLimit) -> Result<LimitEffect, RuntimeError> {
        use limits::container;
        let failed = |detail: String| RuntimeError::Unsupported(format!("lifting {limit} from {id}: {detail}"));
        let Some(held) = self.held.remove(id) else { return Ok(LimitEffect::default()) };
        let cid = self.nodes.get(id).map(|n| n.id.clone()).unwrap_or_default();
        Ok(match (held, limit) {
            (Held::Loss { pid, scope }, NodeLimit::PacketLoss { probability, .. }) => {
                let now = container::container_pid(&cid).await.unwrap_or(0);
                if now != pid {
                    // Its namespace went with the process that had it; so did the rules.
                    return Ok(LimitEffect {
                        touched: 0,
                        detail: format!(
                            "{id} stopped or restarted while it held (pid {pid}, now {now}): its network namespace \
                             and the drop counters went with it"
                        ),
                        node_ended: false,
                    });
                }
                let (covered, drops) = container::dropped(pid).await.map_err(failed)?;
                container::stop_dropping(pid).await.map_err(failed)?;
                LimitEffect {
                    touched: drops,
                    detail: container::describe_loss(*probability, covered, drops, &id.to_string(), &scope),
                    node_ended: false,
                }
            }
            (Held::Cpu { nano_cpus, before }, NodeLimit::Cpu { share }) => {
                let after = container::uncap_cpu(&cid, nano_cpus).await.map_err(failed)?;
                container::describe_cpu(*share, before, after)
            }
            (Held::Memory { memory, swap, before }, NodeLimit::Memory { bytes }) => {
                let after = container::memory_now(&cid).await;
                let oom = container::oom_killed(&cid).await;
                container::uncap_memory(&cid, memory, swap).await.map_err(failed)?;
                container::describe_memory(*bytes, before, after, oom)
            }
            _ => return Err(failed("the fault held is not the one lifted".into())),
        })
    }

    fn prepare_clocks(&mut self, nodes: &[NodeId]) -> Result<(), RuntimeError> {
        let foreign = nodes.iter().find(|id| self.plan.node(id).is_some_and(|n| n.service.image.is_some()));
        if let Some(id) = foreign {
            return Err(RuntimeError::Unsupported(format!(
                "`op = \"clock\"` on {id}: its service runs an `image` Gauntlet did not build, which may lack the \
                 libraries libfaketime needs (glibc's libc and libm); move its clock on the process runtime, or give it \
                 a `binary` or `command`"
            )));
        }
        self.clocks.prepare(nodes).map_err(RuntimeError::Unsupported)
    }

    async fn set_clock(&mut self, id: &NodeId, skew: Option<ClockSkew>) -> Result<(), RuntimeError> {
        self.clocks.set(id, skew).map_err(RuntimeError::Unsupported)
    }

    async fn teardown(&mut self) -> Result<(), RuntimeError> {
        self.clocks.stop();
        let ids: Vec<NodeId> = self.plan.nodes.iter().rev().map(|n| n.id.clone()).collect();
        for id in ids {
            if let Some(n) = self.nodes.get_mut(&id) {
                if let Some(c) = n.container.take() {
                    let _ = c.rm().await;
                }
                n.state = NodeState::Stopped;
            }
        }
        if let Some(p) = self.proxy.take() {
            let _ = p.rm().await;
        }
        // Whatever is left (a container whose handle was lost), by id, and the network.
        let leftovers = ledger::reap(&LedgerEntry { processes: Vec::new(), ..self.entry.clone() });
        let _ = leftovers;
        self.ledger.remove(&self.entry.run_id);
        Ok(())
    }
}
