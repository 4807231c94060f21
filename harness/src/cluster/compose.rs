//! Docker Compose files as clusters: each service of the file becomes a service of a
//! [`ClusterSpec`] that the docker runtime runs like any other, so node faults, the
//! fault proxy and the ledger work on it unchanged.
//!
//! The file is normalised by the installed Compose tool (`docker-compose config`, or
//! `docker compose config`): it resolves `${VAR}` interpolation, `extends`, short
//! syntax and relative paths, and Gauntlet reads the YAML it prints. The top-level
//! `x-gauntlet` extension, which the tool drops, is read from the file as written:
//!
//! ```yaml
//! x-gauntlet:
//!   name: shop                 # default: the Compose project (the file's folder)
//!   ingress: front             # default: the one service that publishes `ports`
//!   edges:                     # where each consumer holds each provider's address
//!     - { from: front, to: api, env: API_URL }            # an environment variable
//!     - { from: api, to: db, arg: "--db" }                # `--db ADDR` or `--db=ADDR`
//!     - { from: web, to: api, file: ./nginx.conf }        # a bind-mounted config file
//!     - { from: api, to: db, env: DB_HOST, port_env: DB_PORT }   # host and port apart
//!     - { from: api, to: db, file: ./api.json, port: 5432 }      # "db" and 5432 apart
//! services:
//!   api:
//!     x-gauntlet: { port: 8080, ready: /health, ready_timeout: 30s, scheme: http }
//! ```
//!
//! An edge's value is rewritten so the consumer calls the provider's proxy slot: every
//! `HOST:PORT` and every `//HOST` naming the provider becomes the slot's host and port
//! (`http://api:8080/v1` → `http://<proxy>:<port>/v1`). Services reach each other only
//! through the edges named: nothing bypasses the fault proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use super::spec::{
    check_name, ClusterSpec, Edge, EnvNames, Probe, RunSpec, ServiceSpec, SpecError, DEFAULT_UPSTREAM_ENV,
};

/// How long a Compose service may take to become ready unless its `x-gauntlet` says.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The placeholder a readiness command holds for the node's container id; the docker
/// runtime fills it in (a `healthcheck` runs as `docker exec {container} ...`).
pub const CONTAINER_PLACEHOLDER: &str = "{container}";

/// The service keys Gauntlet runs. Every other key is refused, naming the service.
const SUPPORTED: [&str; 12] = [
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "expose",
    "depends_on",
    "healthcheck",
    "volumes",
    "restart",
    "x-gauntlet",
];

/// What a Compose service needs beyond a cluster file's service: how its image is
/// built, its entry point and command, its volumes, and what it starts after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// Build the image locally (tagged [`ServiceSpec::image`]) before the run.
    pub build: Option<ImageBuild>,
    /// The entry point, overriding the image's.
    pub entrypoint: Option<Vec<String>>,
    /// The command, overriding the image's.
    pub command: Option<Vec<String>>,
    pub volumes: Vec<VolumeMount>,
    /// Services it starts after (`depends_on`), besides the providers it calls.
    pub depends_on: Vec<String>,
}

/// A `build:` section: `docker build -f <dockerfile> <context>` with its build args.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBuild {
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
}

/// One volume of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// Where it is mounted in the container.
    pub target: String,
    pub read_only: bool,
}

/// Where a volume's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A named volume of the file, created for the run and removed at its end.
    Named(String),
    /// A host path (relative paths were resolved against the Compose file's folder).
    Bind(PathBuf),
    /// A config file an edge rewired: the node's rendered copy, named as in
    /// [`ServiceSpec::files`].
    Rendered(String),
}

/// Reads the Compose file at `path` into a cluster (see the module docs).
pub fn load(path: &Path) -> Result<ClusterSpec, SpecError> {
    load_with_edges(path, &[])
}

/// How an error about an edge of `[cluster] edges` (a scenario's) begins.
pub const SCENARIO_EDGE: &str = "[cluster] edge";

/// [`load`], with `more` edges beside the file's `x-gauntlet` ones (a scenario's
/// `[cluster] edges`; an error about one begins with [`SCENARIO_EDGE`]).
pub fn load_with_edges(path: &Path, more: &[EdgeSpec]) -> Result<ClusterSpec, SpecError> {
    let raw_text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        message: format!("cannot read the Compose file: {e}"),
        hint: Some("pass an existing docker-compose.yml".into()),
    })?;
    let normalised = normalise(path)?;
    parse(&raw_text, &normalised, path, more)
}

/// The file as the installed Compose tool normalises it (YAML).
fn normalise(path: &Path) -> Result<String, SpecError> {
    let err = |message: String, hint: &str| SpecError {
        file: path.to_path_buf(),
        line: 1,
        column: 1,
        message,
        hint: Some(hint.to_string()),
    };
    let tools: [(&str, &[&str]); 2] = [("docker-compose", &[]), ("docker", &["compose"])];
    let mut tried = Vec::new();
    for (program, pre) in tools {
        let out = std::process::Command::new(program).args(pre).arg("-f").arg(path).arg("config").output();
        match out {
            Ok(o) if o.status.success() => return Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            // `docker` without its compose plugin says it knows no `compose` command.
            Ok(o) if program == "docker" && String::from_utf8_lossy(&o.stderr).contains("is not a docker command") => {
                tried.push("docker compose (no plugin)".to_string());
            }
            Ok(o) => {
                return Err(err(
                    format!(
                        "`{} config` refused the file: {}",
                        std::iter::once(program).chain(pre.iter().copied()).collect::<Vec<_>>().join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    "fix the file until `docker-compose -f FILE config` accepts it",
                ))
            }
            Err(e) => tried.push(format!("{program}: {e}")),
        }
    }
    Err(err(
        format!("no Compose tool to normalise the file ({})", tried.join("; ")),
        "install one: apt-get install docker-compose (or Docker's compose plugin)",
    ))
}

/// Parses a Compose file: `raw` as written (for `x-gauntlet` and positions),
/// `normalised` as the Compose tool printed it; `file` names it in errors.
pub fn parse(raw: &str, normalised: &str, file: &Path, more: &[EdgeSpec]) -> Result<ClusterSpec, SpecError> {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let at = |service: Option<&str>, key: Option<&str>, message: String, hint: Option<String>| {
        let (line, column) = locate(raw, service, key);
        SpecError { file: file.to_path_buf(), line, column, message, hint }
    };
    let doc: RawCompose = serde_norway::from_str(normalised)
        .map_err(|e| at(None, None, format!("the normalised Compose file: {e}"), None))?;
    let raw_doc: Value = serde_norway::from_str(raw).map_err(|e| at(None, None, format!("not YAML: {e}"), None))?;
    let ext: RawExtension = match raw_doc.get("x-gauntlet") {
        Some(v) => serde_norway::from_value(v.clone())
            .map_err(|e| at(Some("x-gauntlet"), None, format!("x-gauntlet: {e}"), Some(EXT_HINT.into())))?,
        None => RawExtension::default(),
    };
    if doc.services.is_empty() {
        return Err(at(None, None, "the Compose file has no services".into(), None));
    }

    // Every key of every service is one Gauntlet runs, or refused by name.
    let mut services: BTreeMap<String, RawService> = BTreeMap::new();
    for (name, value) in &doc.services {
        check_name(name).map_err(|m| {
            at(
                Some(name),
                None,
                format!("service name {name:?} {m}"),
                Some("rename the service in the Compose file".into()),
            )
        })?;
        if let Some(map) = value.as_mapping() {
            for key in map.keys().filter_map(Value::as_str) {
                if !SUPPORTED.contains(&key) {
                    return Err(at(
                        Some(name),
                        Some(key),
                        format!("service {name}: `{key}` is not supported"),
                        Some(refusal_hint(key)),
                    ));
                }
            }
        }
        let svc: RawService = serde_norway::from_value(value.clone())
            .map_err(|e| at(Some(name), None, format!("service {name}: {e}"), None))?;
        services.insert(name.clone(), svc);
    }
    let known = |n: &str| services.contains_key(n);
    let names = services.keys().cloned().collect::<Vec<_>>().join(", ");

    // Edges, each rewiring one value of its consumer.
    let mut edges: Vec<Edge> = Vec::new();
    let mut env: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut commands: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    let mut files: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    for (name, svc) in &services {
        let vars = svc.environment(name).map_err(|m| at(Some(name), Some("environment"), m, None))?;
        env.insert(name.clone(), vars.into_iter().map(|(k, v)| (k, escape(&v))).collect());
        let command =
            svc.command.as_ref().map(|c| c.argv()).transpose().map_err(|m| at(Some(name), Some("command"), m, None))?;
        commands.insert(name.clone(), command.map(|c| c.iter().map(|a| escape(a)).collect()));
    }
    let mut edge_ports: BTreeMap<String, u16> = BTreeMap::new();
    let all = ext.edges.iter().map(|e| (e, "x-gauntlet edge")).chain(more.iter().map(|e| (e, SCENARIO_EDGE)));
    for (e, origin) in all {
        let shown = format!("{}->{}", e.from, e.to);
        let here =
            |m: String, hint: Option<String>| at(Some("x-gauntlet"), None, format!("{origin} {shown}: {m}"), hint);
        for end in [&e.from, &e.to] {
            if !known(end) {
                return Err(here(format!("no service {end:?}"), Some(format!("services: {names}"))));
            }
        }
        if e.from == e.to {
            return Err(here("a service cannot call itself through the proxy".into(), None));
        }
        let edge = Edge { from: e.from.clone(), to: e.to.clone() };
        if edges.contains(&edge) {
            return Err(here("named twice: one edge carries every call of the consumer to the provider".into(), None));
        }
        let port = match (&e.env, &e.arg, &e.file) {
            (Some(var), None, None) => {
                let vars = env.get_mut(&e.from).expect("every service has its env");
                let Some(value) = vars.get(var) else {
                    return Err(here(
                        format!("service {} has no environment variable {var}", e.from),
                        Some(format!(
                            "add `{var}: http://{}:PORT` to its environment, or name the variable it has",
                            e.to
                        )),
                    ));
                };
                let rewired = match &e.port_env {
                    None => rewire(value, &e.to),
                    Some(_) => rewire_host(value, &e.to).map(|v| (v, None)),
                };
                let (rewired, port) = rewired.ok_or_else(|| {
                    here(
                        format!(
                            "{var} of service {} is {:?}, which names no address of {}",
                            e.from,
                            unescape(value),
                            e.to
                        ),
                        Some(format!(
                            "give it as {0}:PORT or a URL such as http://{0}:PORT/ (or the host alone, with \
                             port_env naming the variable of its port)",
                            e.to
                        )),
                    )
                })?;
                vars.insert(var.clone(), rewired);
                match &e.port_env {
                    None => port,
                    Some(pv) => {
                        let Some(p) = vars.get(pv) else {
                            return Err(here(format!("service {} has no environment variable {pv}", e.from), None));
                        };
                        let p = p.trim().parse().ok();
                        vars.insert(pv.clone(), format!("{{upstream.{}.port}}", e.to));
                        p
                    }
                }
            }
            (None, Some(flag), None) => {
                let argv = commands.get_mut(&e.from).expect("every service has its command");
                let Some(argv) = argv.as_mut() else {
                    return Err(here(
                        format!("service {} has no `command` holding {flag}", e.from),
                        Some("give the command in the Compose file".into()),
                    ));
                };
                rewire_arg(argv, flag, &e.to).ok_or_else(|| {
                    here(
                        format!("no argument {flag} of service {}'s command names an address of {}", e.from, e.to),
                        Some(format!("write `{flag} {0}:PORT` or `{flag}=http://{0}:PORT` in its command", e.to)),
                    )
                })?
            }
            (None, None, Some(f)) => {
                let path = lexical(&dir.join(f));
                let list = files.entry(e.from.clone()).or_default();
                let i = match list.iter().position(|(p, _)| *p == path) {
                    Some(i) => i,
                    None => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|err| here(format!("cannot read {}: {err}", path.display()), None))?;
                        list.push((path.clone(), escape(&text)));
                        list.len() - 1
                    }
                };
                let rewired = match e.port {
                    None => rewire(&list[i].1, &e.to),
                    Some(p) => {
                        rewire_host(&list[i].1, &e.to).and_then(|t| rewire_port(&t, p, &e.to)).map(|t| (t, Some(p)))
                    }
                };
                let (rewired, port) = rewired.ok_or_else(|| {
                    here(
                        format!("{} names no address of {}", path.display(), e.to),
                        Some(format!(
                            "write it as {0}:PORT or http://{0}:PORT in the file, or give the edge `port: PORT` \
                             when the file holds the host {0} and its port apart",
                            e.to
                        )),
                    )
                })?;
                list[i].1 = rewired;
                port
            }
            _ => {
                return Err(here(
                    "say where the consumer holds the provider's address: exactly one of env, arg or file".into(),
                    Some(EXT_HINT.into()),
                ))
            }
        };
        if let Some(p) = port {
            edge_ports.entry(e.to.clone()).or_insert(p);
        }
        edges.push(edge);
    }

    let ingress = match &ext.ingress {
        Some(i) if !known(i) => {
            return Err(at(
                Some("x-gauntlet"),
                None,
                format!("x-gauntlet ingress {i:?} is not a service"),
                Some(format!("services: {names}")),
            ))
        }
        Some(i) => i.clone(),
        None => {
            let published: Vec<&String> =
                services.iter().filter(|(_, s)| !s.ports.is_empty()).map(|(n, _)| n).collect();
            match (published.as_slice(), services.len()) {
                ([one], _) => (*one).clone(),
                (_, 1) => services.keys().next().cloned().unwrap_or_default(),
                _ => {
                    return Err(at(
                        None,
                        None,
                        "which service do clients call first? No single service publishes `ports`".into(),
                        Some("name it: x-gauntlet: { ingress: SERVICE }".into()),
                    ))
                }
            }
        }
    };

    let mut specs = Vec::new();
    for (name, svc) in &services {
        let x = svc.x_gauntlet.clone().unwrap_or_default();
        let port = x
            .port
            .or_else(|| svc.expose.iter().find_map(port_of))
            .or_else(|| svc.ports.iter().find_map(target_port))
            .or_else(|| edge_ports.get(name).copied())
            .ok_or_else(|| {
                at(
                    Some(name),
                    None,
                    format!("service {name}: on which port does it listen?"),
                    Some("add `expose: [PORT]` to it, or `x-gauntlet: { port: PORT }`".into()),
                )
            })?;
        let build = svc.build.as_ref().map(|b| ImageBuild {
            context: dir.join(&b.context),
            dockerfile: b.dockerfile.clone(),
            args: b.args.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_default())).collect(),
        });
        let image = match (&svc.image, &build) {
            (Some(i), _) => i.clone(),
            (None, Some(_)) => format!("gauntlet-compose/{}-{name}:latest", project(&ext, file)),
            (None, None) => {
                return Err(at(
                    Some(name),
                    None,
                    format!("service {name} has neither `image` nor `build`"),
                    Some("give it a `build:` context (no registry is reachable to pull from)".into()),
                ))
            }
        };
        let entrypoint = svc
            .entrypoint
            .as_ref()
            .map(|c| c.argv())
            .transpose()
            .map_err(|m| at(Some(name), Some("entrypoint"), m, None))?;
        let mut volumes = Vec::new();
        for v in &svc.volumes {
            let mut mount = volume(v, dir).map_err(|m| {
                at(
                    Some(name),
                    Some("volumes"),
                    format!("service {name}: {m}"),
                    Some("write SOURCE:TARGET[:ro] with a named volume or a path".into()),
                )
            })?;
            if let VolumeSource::Named(n) = &mount.source {
                match doc.volumes.get(n) {
                    None => {
                        return Err(at(
                            Some(name),
                            Some("volumes"),
                            format!("service {name}: volume {n:?} is not declared under the top-level `volumes:`"),
                            None,
                        ))
                    }
                    Some(Some(decl)) if decl.get("external").is_some_and(|x| x.as_bool() == Some(true)) => {
                        return Err(at(
                            Some(name),
                            Some("volumes"),
                            format!("volume {n} is external"),
                            Some(
                                "Gauntlet creates every named volume for the run and removes it after: drop `external`"
                                    .into(),
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            if let VolumeSource::Bind(p) = &mount.source {
                if let Some(i) = files.get(name).and_then(|l| l.iter().position(|(f, _)| f == p)) {
                    mount.source = VolumeSource::Rendered(rendered_name(i, p));
                }
            }
            volumes.push(mount);
        }
        let mut rendered = Vec::new();
        for (i, (path, text)) in files.get(name).into_iter().flatten().enumerate() {
            let mounted = volumes.iter().any(|v| v.source == VolumeSource::Rendered(rendered_name(i, path)));
            if !mounted {
                return Err(at(
                    Some("x-gauntlet"),
                    None,
                    format!("x-gauntlet edge of {name}: {} is not bind-mounted into {name}", path.display()),
                    Some(format!("mount it as a file: volumes: [\"{}:/path/in/container:ro\"]", path.display())),
                ));
            }
            rendered.push((rendered_name(i, path), text.clone()));
        }
        let mut depends_on = Vec::new();
        for (dep, cond) in &svc.depends_on {
            if !known(dep) {
                return Err(at(
                    Some(name),
                    Some("depends_on"),
                    format!("service {name} depends on unknown service {dep:?}"),
                    None,
                ));
            }
            let condition = cond.as_ref().and_then(|c| c.condition.as_deref()).unwrap_or("service_started");
            if !["service_started", "service_healthy"].contains(&condition) {
                return Err(at(
                    Some(name),
                    Some("depends_on"),
                    format!("service {name}: depends_on {dep} with condition {condition} is not supported"),
                    Some("use service_started or service_healthy: Gauntlet starts a service once all it depends on are ready".into()),
                ));
            }
            depends_on.push(dep.clone());
        }
        let ready = match (&x.ready, svc.healthcheck.as_ref().map_or(Ok(None), RawHealthcheck::probe)) {
            (Some(r), _) if r == "tcp" => Probe::Tcp,
            (Some(r), _) if r.starts_with('/') => Probe::Http(r.clone()),
            (Some(r), _) => {
                return Err(at(
                    Some(name),
                    Some("x-gauntlet"),
                    format!("service {name}: x-gauntlet ready {r:?} is not \"tcp\" or an HTTP path"),
                    None,
                ))
            }
            (None, Err(m)) => return Err(at(Some(name), Some("healthcheck"), format!("service {name}: {m}"), None)),
            (None, Ok(Some(p))) => p,
            (None, Ok(None)) => Probe::Tcp,
        };
        let ready_timeout = match &x.ready_timeout {
            Some(t) => humantime::parse_duration(t)
                .map_err(|e| at(Some(name), Some("x-gauntlet"), format!("ready_timeout {t:?}: {e}"), None))?,
            None => DEFAULT_READY_TIMEOUT,
        };
        specs.push(ServiceSpec {
            name: name.clone(),
            run: RunSpec::Command(commands[name].clone().unwrap_or_default()),
            image: Some(image),
            urls: Vec::new(),
            port,
            replicas: 1,
            health: ready.clone(),
            ready,
            ready_timeout,
            scheme: x.scheme.clone().unwrap_or_else(|| "http".into()),
            install: None,
            database: false,
            env: env.remove(name).unwrap_or_default(),
            env_names: EnvNames::default(),
            files: rendered,
            compose: Some(ComposeService {
                build,
                entrypoint: entrypoint.map(|e| e.iter().map(|a| escape(a)).collect()),
                command: commands[name].clone(),
                volumes,
                depends_on,
            }),
        });
    }
    let order = start_order(&specs, &edges).map_err(|cycle| {
        at(
            None,
            None,
            format!("edges and depends_on form a cycle through {cycle}"),
            Some("remove one edge or dependency of the cycle".into()),
        )
    })?;
    let mut by_name: BTreeMap<String, ServiceSpec> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
    let services = order.iter().filter_map(|n| by_name.remove(n)).collect();
    let name = project(&ext, file);
    check_name(&name).map_err(|m| {
        at(
            Some("x-gauntlet"),
            None,
            format!("cluster name {name:?} {m}"),
            Some("name it: x-gauntlet: { name: my-system }".into()),
        )
    })?;
    Ok(ClusterSpec {
        name,
        file: file.to_path_buf(),
        services,
        edges,
        ingress,
        upstream_env: DEFAULT_UPSTREAM_ENV.into(),
        checks: None,
    })
}

const EXT_HINT: &str =
    "x-gauntlet: { edges: [ { from: CONSUMER, to: PROVIDER, env: VARIABLE } ] } (or arg: FLAG, or file: PATH)";

/// What to do instead of a key Gauntlet does not run.
fn refusal_hint(key: &str) -> String {
    match key {
        "network_mode" | "networks" | "links" | "extra_hosts" => {
            "every service runs on the run's own network and calls its providers through the fault proxy \
             (x-gauntlet edges): remove it"
                .into()
        }
        "deploy" | "scale" => {
            "give replicas in the scenario ([cluster] replicas = { SERVICE = N }) or with --replicas: remove it".into()
        }
        "container_name" | "hostname" => "Gauntlet names each run's containers itself so runs never collide: remove it".into(),
        _ => format!(
            "Gauntlet runs {}; remove `{key}` (or run this service outside Gauntlet and give its URL in a cluster file)",
            SUPPORTED.join(", ")
        ),
    }
}

/// The cluster's name: `x-gauntlet.name`, else the Compose project (the file's folder).
fn project(ext: &RawExtension, file: &Path) -> String {
    if let Some(n) = &ext.name {
        return n.clone();
    }
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().to_lowercase()));
    let name: String =
        dir.unwrap_or_default().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "compose".into()
    } else {
        name
    }
}

fn rendered_name(i: usize, path: &Path) -> String {
    format!("compose-files/{i}-{}", path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
}

/// Braces doubled: the docker runtime fills placeholders in what it is given, and a
/// Compose value means its braces literally.
fn escape(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

fn unescape(s: &str) -> String {
    s.replace("{{", "{").replace("}}", "}")
}

/// `value` with every address of `host` (`host:PORT`, or `//host` in a URL) made the
/// provider's proxy slot (`{upstream.HOST.host}:{upstream.HOST.port}`), and the port
/// the first one named; `None` when no address of `host` is in it.
fn rewire(value: &str, host: &str) -> Option<(String, Option<u16>)> {
    let word = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let mut out = String::with_capacity(value.len());
    let mut port = None;
    let mut found = false;
    let mut i = 0;
    while let Some(off) = value[i..].find(host) {
        let start = i + off;
        let end = start + host.len();
        let before = value[..start].chars().next_back();
        let after = value[end..].chars().next();
        let digits: String = match after {
            Some(':') => value[end + 1..].chars().take_while(char::is_ascii_digit).collect(),
            _ => String::new(),
        };
        let with_port = !digits.is_empty()
            && !value[end + 1 + digits.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let url_host = value[..start].ends_with("//") && !after.is_some_and(|c| word(c) || c == ':');
        let standalone = !before.is_some_and(word);
        if standalone && (with_port || url_host) {
            out.push_str(&value[i..start]);
            out.push_str(&format!("{{upstream.{host}.host}}:{{upstream.{host}.port}}"));
            if with_port {
                port = port.or_else(|| digits.parse().ok());
                i = end + 1 + digits.len();
            } else {
                i = end;
            }
            found = true;
        } else {
            out.push_str(&value[i..end]);
            i = end;
        }
    }
    out.push_str(&value[i..]);
    found.then_some((out, port))
}

/// `text` with every `host` standing alone (`"store"`, `DB_HOST=db`) made the provider's
/// slot host; `None` when it names no such host.
fn rewire_host(text: &str, host: &str) -> Option<String> {
    replace_standalone(text, host, &format!("{{upstream.{host}.host}}"))
}

/// `text` with `port` standing alone made `provider`'s slot port; `None` when absent.
fn rewire_port(text: &str, port: u16, provider: &str) -> Option<String> {
    replace_standalone(text, &port.to_string(), &format!("{{upstream.{provider}.port}}"))
}

/// Every `word` in `text` that no letter, digit, `-`, `_` or `.` touches, replaced by `with`.
fn replace_standalone(text: &str, word: &str, with: &str) -> Option<String> {
    let part = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let mut out = String::with_capacity(text.len());
    let (mut i, mut found) = (0, false);
    while let Some(off) = text[i..].find(word) {
        let (start, end) = (i + off, i + off + word.len());
        let alone =
            !text[..start].chars().next_back().is_some_and(part) && !text[end..].chars().next().is_some_and(part);
        out.push_str(&text[i..start]);
        out.push_str(if alone { with } else { word });
        found |= alone;
        i = end;
    }
    out.push_str(&text[i..]);
    found.then_some(out)
}

/// Rewires the value of `flag` in `argv` (`FLAG VALUE` or `FLAG=VALUE`); `None` when
/// no such argument names an address of `host`.
fn rewire_arg(argv: &mut [String], flag: &str, host: &str) -> Option<Option<u16>> {
    let prefix = format!("{flag}=");
    for i in 0..argv.len() {
        if let Some(v) = argv[i].strip_prefix(&prefix) {
            let (new, port) = rewire(v, host)?;
            argv[i] = format!("{prefix}{new}");
            return Some(port);
        }
        if argv[i] == flag && i + 1 < argv.len() {
            let (new, port) = rewire(&argv[i + 1], host)?;
            argv[i + 1] = new;
            return Some(port);
        }
    }
    None
}

/// Providers and dependencies before their dependents (Kahn's algorithm, ties by
/// name); `Err` names the services of a cycle.
fn start_order(services: &[ServiceSpec], edges: &[Edge]) -> Result<Vec<String>, String> {
    let mut pending: BTreeMap<&str, BTreeSet<&str>> =
        services.iter().map(|s| (s.name.as_str(), BTreeSet::new())).collect();
    for e in edges {
        pending.entry(e.from.as_str()).or_default().insert(e.to.as_str());
    }
    for s in services {
        for d in s.compose.iter().flat_map(|c| &c.depends_on) {
            pending.entry(s.name.as_str()).or_default().insert(d.as_str());
        }
    }
    let mut order = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending.iter().filter(|(_, d)| d.is_empty()).map(|(n, _)| *n).collect();
        if ready.is_empty() {
            return Err(pending.keys().copied().collect::<Vec<_>>().join(", "));
        }
        for n in ready {
            pending.remove(n);
            pending.values_mut().for_each(|d| {
                d.remove(n);
            });
            order.push(n.to_string());
        }
    }
    Ok(order)
}

/// 1-based line and column of `key` under `service` in the file as written (of the
/// service, or of the file's start, when not found): for error messages only.
fn locate(raw: &str, service: Option<&str>, key: Option<&str>) -> (usize, usize) {
    let lines: Vec<&str> = raw.lines().collect();
    let Some(service) = service else { return (1, 1) };
    let head = format!("{service}:");
    let Some(s) = lines.iter().position(|l| l.trim_start().starts_with(&head)) else { return (1, 1) };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(lines[s]);
    if let Some(key) = key {
        let want = format!("{key}:");
        for (i, l) in lines.iter().enumerate().skip(s + 1) {
            if !l.trim().is_empty() && indent(l) <= base {
                break;
            }
            if l.trim_start().starts_with(&want) {
                return (i + 1, indent(l) + 1);
            }
        }
    }
    (s + 1, base + 1)
}

fn port_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.split('/').next()?.trim().parse().ok(),
        _ => None,
    }
}

/// The container side of a `ports` entry (`{target: 80, published: 8080}`, `"8080:80"`, `80`).
fn target_port(v: &Value) -> Option<u16> {
    match v {
        Value::Mapping(_) => v.get("target").and_then(port_of),
        Value::String(s) => port_of(&Value::String(s.rsplit(':').next()?.to_string())),
        other => port_of(other),
    }
}

/// One `volumes` entry, short (`SOURCE:TARGET[:MODE]`) or long (`{type, source, target, read_only}`).
fn volume(v: &Value, dir: &Path) -> Result<VolumeMount, String> {
    let (source, target, read_only) = match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [src, dst] => (src.to_string(), dst.to_string(), false),
                [src, dst, mode] => (src.to_string(), dst.to_string(), mode.split(',').any(|m| m == "ro")),
                _ => return Err(format!("volume {s:?} has no source: an anonymous volume needs a name")),
            }
        }
        Value::Mapping(_) => {
            let get = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
            let kind = get("type").unwrap_or_else(|| "volume".into());
            if !["volume", "bind"].contains(&kind.as_str()) {
                return Err(format!("a volume of type {kind} is not supported (bind or volume)"));
            }
            let source = get("source").ok_or("a volume without a source: an anonymous volume needs a name")?;
            let target = get("target").ok_or("a volume without a target")?;
            (source, target, v.get("read_only").and_then(Value::as_bool).unwrap_or(false))
        }
        _ => return Err("a volume is SOURCE:TARGET or a mapping".into()),
    };
    let is_path = source.starts_with(['/', '.', '~']);
    let source = if is_path { VolumeSource::Bind(lexical(&dir.join(source))) } else { VolumeSource::Named(source) };
    Ok(VolumeMount { source, target, read_only })
}

/// `path` made absolute with its `.` and `..` resolved by name (the Compose tool writes
/// bind sources so; a file reached as `/tmp/x/../y/f` must compare equal to `/tmp/y/f`).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct RawCompose {
    #[serde(default)]
    services: BTreeMap<String, Value>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<Value>>,
}

/// A service as `docker-compose config` prints it (keys checked against [`SUPPORTED`] first).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
struct RawService {
    image: Option<String>,
    build: Option<RawBuild>,
    command: Option<Words>,
    entrypoint: Option<Words>,
    #[serde(default)]
    environment: Option<Value>,
    #[serde(default)]
    ports: Vec<Value>,
    #[serde(default)]
    expose: Vec<Value>,
    #[serde(default)]
    depends_on: BTreeMap<String, Option<RawDependency>>,
    healthcheck: Option<RawHealthcheck>,
    #[serde(default)]
    volumes: Vec<Value>,
    /// Ignored: a killed service stays down until a fault restarts it.
    #[allow(dead_code)]
    restart: Option<String>,
    #[serde(rename = "x-gauntlet")]
    x_gauntlet: Option<RawServiceExt>,
}

impl RawService {
    /// Its environment; a variable without a value takes this process's (as Compose does).
    fn environment(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let mut out = BTreeMap::new();
        match &self.environment {
            None => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let k = k.as_str().ok_or_else(|| format!("service {name}: an environment name is not a string"))?;
                    let v = match v {
                        Value::Null => std::env::var(k).ok(),
                        v => Some(scalar(v).ok_or_else(|| format!("service {name}: {k} is not a plain value"))?),
                    };
                    if let Some(v) = v {
                        out.insert(k.to_string(), v);
                    }
                }
            }
            Some(Value::Sequence(list)) => {
                for item in list {
                    let s =
                        item.as_str().ok_or_else(|| format!("service {name}: environment entries are NAME=VALUE"))?;
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), v.to_string()),
                        None => std::env::var(s).ok().and_then(|v| out.insert(s.to_string(), v)),
                    };
                }
            }
            Some(_) => return Err(format!("service {name}: environment is a mapping or a list")),
        }
        Ok(out)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    context: String,
    dockerfile: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize)]
struct RawDependency {
    condition: Option<String>,
}

/// A command as Compose takes it: a list, or a string split as a shell would.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Words {
    List(Vec<String>),
    Line(String),
}

impl Words {
    fn argv(&self) -> Result<Vec<String>, String> {
        match self {
            Words::List(l) => Ok(l.clone()),
            Words::Line(s) => shlex::split(s).ok_or_else(|| format!("{s:?} has an unclosed quote")),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawHealthcheck {
    test: Option<Words>,
    #[serde(default)]
    disable: bool,
}

impl RawHealthcheck {
    /// Readiness: the test, run in the container with `docker exec` until it exits 0.
    fn probe(&self) -> Result<Option<Probe>, String> {
        let test = match (&self.test, self.disable) {
            (None, _) | (_, true) => return Ok(None),
            (Some(Words::Line(s)), _) => vec!["CMD-SHELL".to_string(), s.clone()],
            (Some(Words::List(l)), _) => l.clone(),
        };
        let mut argv = vec!["docker".to_string(), "exec".into(), CONTAINER_PLACEHOLDER.into()];
        match test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => argv.extend(rest.iter().cloned()),
            Some((kind, [line])) if kind == "CMD-SHELL" => argv.extend(["/bin/sh".into(), "-c".into(), line.clone()]),
            Some((kind, _)) if kind == "NONE" => return Ok(None),
            _ => {
                return Err(format!(
                    "healthcheck test {test:?} is not [\"CMD\", ...], [\"CMD-SHELL\", \"...\"] or [\"NONE\"]"
                ))
            }
        }
        Ok(Some(Probe::Command(argv)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtension {
    name: Option<String>,
    ingress: Option<String>,
    #[serde(default)]
    edges: Vec<EdgeSpec>,
}

/// An edge of a Compose file and where its consumer holds the provider's address:
/// exactly one of `env`, `arg` or `file`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The consumer service.
    pub from: String,
    /// The provider service.
    pub to: String,
    /// The consumer's environment variable holding the provider's address (a URL or HOST:PORT).
    pub env: Option<String>,
    /// The flag of the consumer's command whose value holds it (`--db ADDR` or `--db=ADDR`).
    pub arg: Option<String>,
    /// A config file bind-mounted into the consumer that holds it (relative to the Compose file).
    pub file: Option<String>,
    /// With `file`: the provider's port as the file writes it apart from its host.
    pub port: Option<u16>,
    /// With `env` holding the host alone: the variable holding the port.
    pub port_env: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceExt {
    port: Option<u16>,
    ready: Option<String>,
    ready_timeout: Option<String>,
    scheme: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reached_through_dot_dot_is_the_file_the_compose_tool_names() {
        assert_eq!(
            lexical(Path::new("/tmp/x/../fresh/./api/webdis.json")),
            PathBuf::from("/tmp/fresh/api/webdis.json")
        );
        assert_eq!(lexical(Path::new("/a/b/../../c")), PathBuf::from("/c"));
    }

    #[test]
    fn an_address_is_rewired_in_the_shape_it_was_written() {
        let r = |v: &str| rewire(v, "api");
        let slot = "{upstream.api.host}:{upstream.api.port}";
        assert_eq!(r("http://api:8080/v1"), Some((format!("http://{slot}/v1"), Some(8080))));
        assert_eq!(r("api:6379"), Some((slot.to_string(), Some(6379))));
        assert_eq!(r("http://api/x"), Some((format!("http://{slot}/x"), None)));
        assert_eq!(r("redis://u:p@api:1,api:2"), Some((format!("redis://u:p@{slot},{slot}"), Some(1))));
        assert_eq!(r("api"), None, "a bare host has no port to rewire");
        assert_eq!(r("http://api.example.com:80"), None);
        assert_eq!(r("http://myapi:80"), None);
        assert_eq!(
            r("upstream api { server api:7379; }"),
            Some((format!("upstream api {{ server {slot}; }}"), Some(7379)))
        );
    }

    #[test]
    fn a_host_and_port_written_apart_are_both_rewired() {
        let json = "{ \"redis_host\": \"store\", \"redis_port\": 6379, \"threads\": 16379 }";
        let t = rewire_host(json, "store").and_then(|t| rewire_port(&t, 6379, "store")).unwrap();
        let want =
            "{ \"redis_host\": \"{upstream.store.host}\", \"redis_port\": {upstream.store.port}, \"threads\": 16379 }";
        assert_eq!(t, want);
        assert_eq!(rewire_host("db.example", "db"), None);
    }

    #[test]
    fn an_argument_is_rewired_after_its_flag() {
        let mut argv: Vec<String> = ["x", "--db", "db:5432", "--api=http://api:1/"].map(String::from).to_vec();
        assert_eq!(rewire_arg(&mut argv, "--db", "db"), Some(Some(5432)));
        assert_eq!(rewire_arg(&mut argv, "--api", "api"), Some(Some(1)));
        assert_eq!(argv[2], "{upstream.db.host}:{upstream.db.port}");
        assert_eq!(argv[3], "--api=http://{upstream.api.host}:{upstream.api.port}/");
        assert_eq!(rewire_arg(&mut argv, "--nope", "db"), None);
    }

    const NORMALISED: &str = "services:\n  api:\n    build:\n      context: /p/api\n    expose: ['8080']\n    healthcheck:\n      test: [CMD, /app/check]\n  web:\n    image: web:1\n    environment:\n      API_URL: http://api:8080/v1\n      LIT: '{x}'\n    ports:\n    - published: 80\n      target: 8000\n    depends_on:\n      api:\n        condition: service_healthy\n    volumes:\n    - data:/var/data:rw\nvolumes:\n  data: {}\n";

    #[test]
    fn services_become_docker_nodes_with_their_edges_rewired() {
        let raw = "x-gauntlet:\n  name: shop\n  edges:\n    - { from: web, to: api, env: API_URL }\n";
        let spec = parse(raw, NORMALISED, Path::new("/p/docker-compose.yml"), &[]).unwrap();
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.ingress, "web", "the one service that publishes ports");
        let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        let api = spec.service("api").unwrap();
        assert_eq!(api.port, 8080);
        assert_eq!(api.image.as_deref(), Some("gauntlet-compose/shop-api:latest"));
        assert_eq!(
            api.ready,
            Probe::Command(["docker", "exec", "{container}", "/app/check"].map(String::from).to_vec())
        );
        let web = spec.service("web").unwrap();
        assert_eq!(web.port, 8000, "the container side of ports");
        assert_eq!(web.env["API_URL"], "http://{upstream.api.host}:{upstream.api.port}/v1");
        assert_eq!(web.env["LIT"], "{{x}}", "literal braces survive the placeholder filling");
        let c = web.compose.as_ref().unwrap();
        assert_eq!(c.depends_on, ["api"]);
        assert_eq!(c.volumes[0].source, VolumeSource::Named("data".into()));
        assert_eq!(spec.edges, [Edge { from: "web".into(), to: "api".into() }]);
    }

    #[test]
    fn a_scenario_can_name_edges_the_file_does_not() {
        let file = Path::new("/p/docker-compose.yml");
        let edge = |env: &str| EdgeSpec {
            from: "web".into(),
            to: "api".into(),
            env: Some(env.into()),
            arg: None,
            file: None,
            port: None,
            port_env: None,
        };
        let spec = parse("services: {}\n", NORMALISED, file, &[edge("API_URL")]).unwrap();
        assert_eq!(spec.edges, [Edge { from: "web".into(), to: "api".into() }]);
        let e = parse("services: {}\n", NORMALISED, file, &[edge("NOPE")]).unwrap_err();
        assert!(e.message.starts_with("[cluster] edge web->api: service web has no environment variable NOPE"), "{e}");
    }

    #[test]
    fn what_cannot_run_is_refused_naming_the_service_and_the_key() {
        let file = Path::new("/p/docker-compose.yml");
        let host = "services:\n  api:\n    image: a\n    network_mode: host\n";
        let e = parse(host, host, file, &[]).unwrap_err();
        assert!(e.message.contains("service api: `network_mode` is not supported"), "{e}");
        assert_eq!((e.line, e.column), (4, 5));
        let raw = "x-gauntlet:\n  edges: [{ from: web, to: api, env: API }]\n";
        let e = parse(raw, NORMALISED, file, &[]).unwrap_err();
        assert!(e.message.contains("service web has no environment variable API"), "{e}");
        let raw = "x-gauntlet:\n  edges: [{ from: web, to: api, env: LIT }]\n";
        let e = parse(raw, NORMALISED, file, &[]).unwrap_err();
        assert!(e.message.contains("LIT of service web is \"{x}\", which names no address of api"), "{e}");
    }
}
