//! The cluster file: parsed once into typed values.
//!
//! ```toml
//! name = "store"
//! ingress = "api"
//! edges = ["api->db"]
//! upstream_env = "{PROVIDER}_URL"   # api gets DB_URL=http://<proxy> (default UPSTREAM_{PROVIDER})
//! checks = "checks.toml"     # [[final_read]]s and [[invariant]]s scenarios pick by name
//! [defaults]
//! health = "/health"
//! ready = "/ready"
//! ready_timeout = "15s"
//! env = { LOG = "info" }
//! env_names = { port = "PORT", bind = "HOST", database = "DB_PATH" }   # none by default
//! [services.api]
//! binary = "my-api"          # a cargo binary of this workspace (or `command = [...]`)
//! port = 7003
//! database = true            # gets DB_PATH=<its data dir>/<name>.db
//! replicas = 1
//! [services.db]              # an infrastructure node: any program
//! command = ["redis-server", "--port", "{port}", "--dir", "{data_dir}"]
//! port = 7010
//! scheme = "redis"           # consumers get DB_URL=redis://<proxy>
//! ready = "tcp"              # ready once it accepts a connection (no HTTP)
//! install = "apt-get install redis-server"   # said when the program is missing
//! ```
//!
//! Every mistake is a [`SpecError`] naming the file, line and column and saying what
//! to do. The start order puts providers before their consumers; a cycle is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A mistake in a cluster file, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// The placeholders of a node's own, filled in per node when it starts (beside
/// `{upstream.NAME.host}`, `.port`, `.url` and `.urls` of each provider it calls).
pub const PLACEHOLDERS: [&str; 3] = ["{port}", "{data_dir}", "{host}"];

/// What a provider's placeholder may ask for: `{upstream.NAME.<part>}`.
pub const UPSTREAM_PARTS: [&str; 4] = ["host", "port", "url", "urls"];

/// What the placeholders of one node stand for: its own address and data folder, and
/// the proxy slots of each provider it calls (one URL per provider replica).
#[derive(Debug, Clone, Default)]
pub struct Fill {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// Provider name to its slot URLs (`scheme://host:port`).
    pub upstreams: BTreeMap<String, Vec<String>>,
}

impl Fill {
    /// `text` with its placeholders filled in, `{{` and `}}` standing for `{` and `}`.
    /// Placeholders were checked when the file was read; one that names nothing known
    /// here is left as written.
    pub fn fill(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            match (tail.starts_with('{'), tail.find('}')) {
                (true, Some(close)) => {
                    let name = &tail[1..close];
                    match self.value(name) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&tail[..=close]),
                    }
                    rest = &tail[close + 1..];
                }
                _ => {
                    out.push_str(&tail[..1]);
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn value(&self, name: &str) -> Option<String> {
        match name {
            "port" => return Some(self.port.to_string()),
            "host" => return Some(self.host.clone()),
            "data_dir" => return Some(self.data_dir.display().to_string()),
            _ => {}
        }
        let (provider, part) = name.strip_prefix("upstream.")?.rsplit_once('.')?;
        let urls = self.upstreams.get(provider)?;
        let first = urls.first()?;
        let authority = first.split_once("://").map_or(first.as_str(), |(_, a)| a).trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
        Some(match part {
            "host" => host.to_string(),
            "port" => port.to_string(),
            "url" => first.clone(),
            "urls" => urls.join(","),
            _ => return None,
        })
    }

    /// The slot URLs of each provider, from a node's upstream variables (`upstream_var`
    /// of each provider `spec` says it calls, set to `url,url,...`).
    pub fn upstreams_of(
        spec: &ClusterSpec,
        service: &str,
        env: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<String, Vec<String>> {
        let Some(env) = env else { return BTreeMap::new() };
        spec.providers_of(service)
            .filter_map(|p| {
                let urls = env.get(&spec.upstream_var(p))?;
                Some((p.to_string(), urls.split(',').filter(|u| !u.is_empty()).map(str::to_string).collect()))
            })
            .collect()
    }
}

/// How a node's liveness or readiness is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET <path>` answers 2xx.
    Http(String),
    /// A TCP connection to the node's port is accepted (infrastructure without HTTP,
    /// e.g. a NATS server, which opens its client port once JetStream is up).
    Tcp,
    /// A command exits 0 (`ready = ["pg_isready", "-h", "{host}", "-p", "{port}"]`),
    /// run on this host with `{host}` and `{port}` filled in.
    Command(Vec<String>),
    /// A line of the node's log holds this text (`ready = { log = "Ready to accept
    /// connections" }`), as testcontainers' `WaitFor::message_on_stdout`.
    Log(String),
}

impl Probe {
    /// What to poll for a node listening at `authority` (`host:port`): an `http://` URL,
    /// a `tcp://host:port` address, `exec:` and the command as a JSON array, or `log:`
    /// and the text to find (see [`super::readiness::poll_ready`]).
    pub fn target(&self, authority: &str) -> String {
        match self {
            Probe::Http(path) => format!("http://{authority}{path}"),
            Probe::Tcp => format!("tcp://{authority}"),
            Probe::Command(argv) => {
                let (host, port) = authority.rsplit_once(':').unwrap_or((authority, ""));
                let argv: Vec<String> =
                    argv.iter().map(|a| a.replace("{host}", host).replace("{port}", port)).collect();
                format!("exec:{}", serde_json::to_string(&argv).unwrap_or_default())
            }
            Probe::Log(text) => format!("log:{text}"),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Http(path) => f.write_str(path),
            Probe::Tcp => f.write_str("tcp"),
            Probe::Command(argv) => write!(f, "`{}` exits 0", argv.join(" ")),
            Probe::Log(text) => write!(f, "the log says {text:?}"),
        }
    }
}

/// A probe as written: a path, "tcp", a command, or `{ log = "..." }`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RawProbe {
    /// An HTTP path answering 2xx (e.g. /ready), or "tcp" (the port accepts connections).
    Path(String),
    /// A command that exits 0 once the node is ready; {host} and {port} are filled in.
    Command(Vec<String>),
    /// A line of the node's log that says it is ready.
    Log {
        /// The text the line holds.
        log: String,
    },
}

/// How a service's process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSpec {
    /// A binary of this cargo workspace, built if missing.
    Binary(String),
    /// A program and its arguments.
    Command(Vec<String>),
    /// Nothing to run: the service is already deployed at its `urls` (external runtime).
    External,
}

/// One service of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub run: RunSpec,
    /// A prebuilt image for the docker runtime; by default one is built from the binary.
    pub image: Option<String>,
    /// Where an already-running deployment serves it, one URL per replica (external runtime).
    pub urls: Vec<String>,
    /// The port of the first replica; replica `i` listens on `port + i` (process runtime).
    pub port: u16,
    pub replicas: u32,
    pub health: Probe,
    pub ready: Probe,
    pub ready_timeout: Duration,
    /// The URL scheme consumers reach it by (`http`, or e.g. `nats` for a broker).
    pub scheme: String,
    /// What to install when its program is missing, e.g. `apt-get install nats-server`.
    pub install: Option<String>,
    /// Whether the service gets a database file (in [`EnvNames::database`]).
    pub database: bool,
    /// Its whole environment: the defaults, then its own.
    pub env: BTreeMap<String, String>,
    /// The variables through which a node learns its own port, bind address and
    /// database file: none unless the file names them.
    pub env_names: EnvNames,
    /// Config files written into the node's data folder before it starts: its name
    /// there, and the template's text (placeholders filled in per node).
    pub files: Vec<(String, String)>,
    /// What a service of a Compose file needs besides (its build, entry point,
    /// volumes, `depends_on`); `None` in a cluster file.
    pub compose: Option<super::compose::ComposeService>,
}

/// The environment variables a node's own port, bind address and database file are
/// given in (`env_names = { port = "PORT", bind = "BIND", database = "DB" }`); a
/// command can take them as `{port}`, `{host}` and `{data_dir}` instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvNames {
    /// The variable set to the port the node listens on.
    pub port: Option<String>,
    /// The variable set to the address it binds (127.0.0.1; 0.0.0.0 in a container).
    pub bind: Option<String>,
    /// The variable set to its database file (with `database = true`).
    pub database: Option<String>,
}

impl EnvNames {
    /// These names, each one `over` names instead.
    fn or(&self, over: &EnvNames) -> EnvNames {
        EnvNames {
            port: over.port.clone().or_else(|| self.port.clone()),
            bind: over.bind.clone().or_else(|| self.bind.clone()),
            database: over.database.clone().or_else(|| self.database.clone()),
        }
    }

    /// Sets the node's own `port`, `bind` address and `database` file (when it has one)
    /// in `env`, under the names the file gave.
    pub fn fill(&self, env: &mut BTreeMap<String, String>, port: u16, bind: &str, database: Option<String>) {
        if let Some(n) = &self.port {
            env.insert(n.clone(), port.to_string());
        }
        if let Some(n) = &self.bind {
            env.insert(n.clone(), bind.to_string());
        }
        if let (Some(n), Some(db)) = (&self.database, database) {
            env.insert(n.clone(), db);
        }
    }
}

/// A call from a consumer to a provider.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    pub from: String,
    pub to: String,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

/// The variable naming a provider's URLs in its consumers when the file does not say.
pub const DEFAULT_UPSTREAM_ENV: &str = "UPSTREAM_{PROVIDER}";

/// A whole cluster, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    /// The file it was read from (paths in it are relative to its folder).
    pub file: PathBuf,
    /// Services in start order: every provider before its consumers.
    pub services: Vec<ServiceSpec>,
    pub edges: Vec<Edge>,
    /// The service clients and load enter through.
    pub ingress: String,
    /// The environment variable naming a provider's URLs, `{PROVIDER}` replaced by its
    /// upper-case name.
    pub upstream_env: String,
    /// The checks file: the `[[final_read]]`s and `[[invariant]]`s this system offers,
    /// which a scenario picks by name (`invariants = [...]`).
    pub checks: Option<PathBuf>,
}

impl ClusterSpec {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The providers `name` calls.
    pub fn providers_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.edges.iter().filter(move |e| e.from == name).map(|e| e.to.as_str())
    }

    /// The environment variable through which `provider`'s URLs reach a consumer.
    pub fn upstream_var(&self, provider: &str) -> String {
        self.upstream_env.replace("{PROVIDER}", &provider.to_ascii_uppercase().replace('-', "_"))
    }

    /// Reads and parses the cluster file at `path`.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the cluster file: {e}"),
            hint: Some("pass an existing file with --cluster, e.g. services/cluster.toml".into()),
        })?;
        Self::parse(&text, path)
    }

    /// Parses cluster-file `text`; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, SpecError> {
        let at = |span: Range<usize>, message: String, hint: Option<&str>| {
            let (line, column) = line_col(text, span.start);
            SpecError { file: file.to_path_buf(), line, column, message, hint: hint.map(str::to_string) }
        };
        let raw: RawCluster = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at(span, e.message().trim().to_string(), Some("docs/cluster.md has every key"))
        })?;

        let name = raw.name.get_ref().clone();
        check_name(&name).map_err(|m| at(raw.name.span(), format!("cluster name {m}"), None))?;
        if raw.services.is_empty() {
            let span = text.find("[services").map_or(0..0, |i| i..i);
            return Err(at(span, "a cluster needs at least one service".into(), Some("add a [services.<name>] table")));
        }

        let defaults = raw.defaults.unwrap_or_default();
        let default_timeout = match &defaults.ready_timeout {
            Some(t) => parse_duration(t).map_err(|m| at(t.span(), m, Some("write a duration such as 10s or 1m30s")))?,
            None => Duration::from_secs(15),
        };
        let default_env = check_env(defaults.env.as_ref()).map_err(|(span, m)| at(span, m, None))?;

        let mut services = Vec::new();
        let mut ports: BTreeMap<u16, (String, Range<usize>)> = BTreeMap::new();
        for (svc_name, svc) in &raw.services {
            let span = svc.span();
            let svc = svc.get_ref();
            check_name(svc_name).map_err(|m| at(span.clone(), format!("service name {svc_name:?} {m}"), None))?;
            let run = match (&svc.binary, &svc.command) {
                (Some(b), None) if !b.get_ref().trim().is_empty() => RunSpec::Binary(b.get_ref().clone()),
                (Some(b), None) => {
                    return Err(at(b.span(), "`binary` is empty".into(), Some("name a cargo binary of this workspace")))
                }
                (None, Some(c)) if !c.get_ref().is_empty() => RunSpec::Command(c.get_ref().clone()),
                (None, Some(c)) => {
                    return Err(at(
                        c.span(),
                        "`command` is empty".into(),
                        Some("give the program and its arguments, e.g. [\"./bin/server\", \"--port\", \"8080\"]"),
                    ))
                }
                (Some(b), Some(_)) => {
                    return Err(at(
                        b.span(),
                        format!("service {svc_name:?} has both `binary` and `command`"),
                        Some("keep one of them"),
                    ))
                }
                (None, None) if svc.urls.is_some() => RunSpec::External,
                (None, None) => {
                    return Err(at(
                        span,
                        format!("service {svc_name:?} has no `binary` or `command`"),
                        Some("add binary = \"<cargo binary>\" or command = [\"program\", \"args\"] (or `urls` of a running deployment)"),
                    ))
                }
            };
            let mut urls = Vec::new();
            if let Some(u) = &svc.urls {
                for url in u.get_ref() {
                    let ok = url.strip_prefix("http://").is_some_and(|rest| rest.contains(':') && !rest.contains('/'));
                    if !ok {
                        return Err(at(
                            u.span(),
                            format!("{url:?} is not a base URL http://host:port"),
                            Some("e.g. urls = [\"http://10.0.0.5:7002\"]"),
                        ));
                    }
                    urls.push(url.clone());
                }
                if urls.is_empty() {
                    return Err(at(u.span(), "`urls` is empty".into(), Some("give one URL per replica")));
                }
            }
            // A deployed service's port is its first URL's unless the file says otherwise.
            let url_port = urls.first().and_then(|u| u.rsplit(':').next()).and_then(|p| p.parse::<u16>().ok());
            let (port, port_span) =
                match (&svc.port, url_port) {
                    (Some(p), _) => (*p.get_ref(), p.span()),
                    (None, Some(p)) => (p, span.clone()),
                    (None, None) => return Err(at(
                        span,
                        format!("service {svc_name:?} has no `port`"),
                        Some("give the port its first replica listens on, e.g. port = 7001 (replica i uses port + i)"),
                    )),
                };
            if port == 0 {
                return Err(at(
                    port_span.clone(),
                    "port 0 is not allowed".into(),
                    Some("give a fixed port from 1024 to 65535"),
                ));
            }
            let replicas = match &svc.replicas {
                Some(r) if !(1..=16).contains(r.get_ref()) => {
                    return Err(at(r.span(), format!("replicas must be from 1 to 16, got {}", r.get_ref()), None))
                }
                Some(r) => *r.get_ref(),
                None => 1,
            };
            // Deployed services listen wherever their URLs say: no local port is taken.
            for i in (0..replicas).filter(|_| urls.is_empty()) {
                let p = u32::from(port) + i;
                let p = u16::try_from(p).map_err(|_| {
                    at(port_span.clone(), format!("replica {i} would need port {p}, above 65535"), None)
                })?;
                if let Some((other, _)) = ports.get(&p) {
                    return Err(at(
                        port_span.clone(),
                        format!("port {p} of service {svc_name:?} is already used by service {other:?}"),
                        Some("replica i of a service listens on port + i: leave a gap of `replicas` ports between services"),
                    ));
                }
                ports.insert(p, (svc_name.clone(), port_span.clone()));
            }
            let probe = |v: &Option<Spanned<toml::Value>>,
                         default: &Option<Spanned<toml::Value>>,
                         fallback: &str|
             -> Result<Probe, SpecError> {
                let Some(p) = v.as_ref().or(default.as_ref()) else { return Ok(Probe::Http(fallback.to_string())) };
                let hint = Some(
                    "an HTTP path starts with /, e.g. /health; \"tcp\" checks that the port accepts connections; \
                     [\"pg_isready\", \"-p\", \"{port}\"] runs a command until it exits 0; { log = \"ready\" } waits for a log line",
                );
                match p.get_ref() {
                    toml::Value::String(t) if t == "tcp" => Ok(Probe::Tcp),
                    toml::Value::String(t) if t.starts_with('/') => Ok(Probe::Http(t.clone())),
                    toml::Value::String(t) => Err(at(p.span(), format!("{t:?} is not a path nor \"tcp\""), hint)),
                    toml::Value::Array(a) => {
                        let argv: Option<Vec<String>> = a.iter().map(|v| v.as_str().map(str::to_string)).collect();
                        match argv {
                            Some(argv) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
                                for arg in &argv {
                                    let mut rest = arg.as_str();
                                    while let Some(i) = rest.find('{') {
                                        let tail = &rest[i..];
                                        let known = ["{host}", "{port}"].iter().find(|k| tail.starts_with(*k));
                                        let Some(k) = known else {
                                            return Err(at(
                                                p.span(),
                                                format!(
                                                    "{arg:?}: a readiness command may hold {{host}} and {{port}} only"
                                                ),
                                                hint,
                                            ));
                                        };
                                        rest = &tail[k.len()..];
                                    }
                                }
                                Ok(Probe::Command(argv))
                            }
                            _ => Err(at(
                                p.span(),
                                "a readiness command is a program and its arguments, as strings".into(),
                                hint,
                            )),
                        }
                    }
                    toml::Value::Table(t) => match (t.get("log").and_then(|l| l.as_str()), t.len()) {
                        (Some(text), 1) if !text.is_empty() => Ok(Probe::Log(text.to_string())),
                        _ => Err(at(p.span(), "a log probe is { log = \"the text a ready node logs\" }".into(), hint)),
                    },
                    other => Err(at(
                        p.span(),
                        format!("a probe is a path, \"tcp\", a command or {{ log = ... }}, not a {}", other.type_str()),
                        hint,
                    )),
                }
            };
            let scheme = match &svc.scheme {
                Some(s) if !valid_scheme(s.get_ref()) => {
                    return Err(at(
                        s.span(),
                        format!("{:?} is not a URL scheme", s.get_ref()),
                        Some("lower-case letters, digits, '+', '-' or '.', starting with a letter, e.g. \"nats\""),
                    ))
                }
                Some(s) => s.get_ref().clone(),
                None => "http".to_string(),
            };
            let install = match &svc.install {
                Some(i) if i.get_ref().trim().is_empty() => {
                    return Err(at(
                        i.span(),
                        "`install` is empty".into(),
                        Some("say how to get the program, e.g. \"apt-get install nats-server\""),
                    ))
                }
                Some(i) if !matches!(run, RunSpec::Command(_)) => {
                    return Err(at(
                        i.span(),
                        "`install` applies only to a `command`".into(),
                        Some("remove it, or run the service with `command`"),
                    ))
                }
                Some(i) => Some(i.get_ref().trim().to_string()),
                None => None,
            };
            let ready_timeout = match &svc.ready_timeout {
                Some(t) => {
                    parse_duration(t).map_err(|m| at(t.span(), m, Some("write a duration such as 10s or 1m30s")))?
                }
                None => default_timeout,
            };
            let mut env = default_env.clone();
            env.extend(check_env(svc.env.as_ref()).map_err(|(span, m)| at(span, m, None))?);
            services.push(ServiceSpec {
                name: svc_name.clone(),
                run,
                image: svc.image.as_ref().map(|i| i.get_ref().clone()),
                urls,
                port,
                replicas,
                health: probe(&svc.health, &defaults.health, "/health")?,
                ready: probe(&svc.ready, &defaults.ready, "/ready")?,
                ready_timeout,
                scheme,
                install,
                database: svc.database.unwrap_or(false),
                env,
                env_names: defaults
                    .env_names
                    .clone()
                    .unwrap_or_default()
                    .or(&svc.env_names.clone().unwrap_or_default()),
                files: Vec::new(),
                compose: None,
            });
        }

        let known: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        let known_list = known.iter().copied().collect::<Vec<_>>().join(", ");
        let mut edges: Vec<(Edge, Range<usize>)> = Vec::new();
        for e in &raw.edges {
            let text = e.get_ref();
            let Some((from, to)) = text.split_once("->") else {
                return Err(at(
                    e.span(),
                    format!("edge {text:?} is not \"consumer->provider\""),
                    Some("write e.g. \"api->db\""),
                ));
            };
            let (from, to) = (from.trim(), to.trim());
            for end in [from, to] {
                if !known.contains(end) {
                    return Err(at(
                        e.span(),
                        format!("edge {text:?} names unknown service {end:?}"),
                        Some(&format!("known services: {known_list}")),
                    ));
                }
            }
            if from == to {
                return Err(at(e.span(), format!("edge {text:?} goes from a service to itself"), None));
            }
            let edge = Edge { from: from.into(), to: to.into() };
            if edges.iter().any(|(x, _)| *x == edge) {
                return Err(at(e.span(), format!("edge {text:?} is listed twice"), None));
            }
            edges.push((edge, e.span()));
        }

        // Placeholders, once the edges say which providers each service calls.
        let hint = Some(
            "{port}, {host}, {data_dir} and {upstream.NAME.host|port|url|urls} of a provider are filled in per node",
        );
        let mut rendered: Vec<(String, String, String)> = Vec::new();
        for (svc_name, svc) in &raw.services {
            let providers: Vec<&str> =
                edges.iter().filter(|(e, _)| &e.from == svc_name).map(|(e, _)| e.to.as_str()).collect();
            let svc = svc.get_ref();
            if let Some(c) = &svc.command {
                check_placeholders(c.get_ref().iter().map(String::as_str), &providers)
                    .map_err(|m| at(c.span(), m, hint))?;
            }
            if let Some(env) = &svc.env {
                check_placeholders(env.get_ref().values().map(String::as_str), &providers)
                    .map_err(|m| at(env.span(), m, hint))?;
            }
            if let Some(files) = &svc.files {
                for (target, template) in files.get_ref() {
                    let safe = !target.is_empty()
                        && Path::new(target).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                    if !safe {
                        return Err(at(
                            files.span(),
                            format!("file {target:?} is not a plain path inside the node's data folder"),
                            Some("name it like \"nginx.conf\" or \"conf/app.json\""),
                        ));
                    }
                    let path = file.parent().unwrap_or(Path::new(".")).join(template);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        at(files.span(), format!("template {} of {target:?}: {e}", path.display()), None)
                    })?;
                    check_placeholders([text.as_str()], &providers)
                        .map_err(|m| at(files.span(), format!("template {}: {m}", path.display()), hint))?;
                    rendered.push((svc_name.clone(), target.clone(), text));
                }
            }
        }

        let ingress = match &raw.ingress {
            Some(i) if !known.contains(i.get_ref().as_str()) => {
                return Err(at(
                    i.span(),
                    format!("ingress {:?} is not a service of this cluster", i.get_ref()),
                    Some(&format!("known services: {known_list}")),
                ))
            }
            Some(i) => i.get_ref().clone(),
            None if services.len() == 1 => services[0].name.clone(),
            None => {
                return Err(at(
                    0..0,
                    "`ingress` is missing".into(),
                    Some("name the service clients call first, e.g. ingress = \"web\""),
                ))
            }
        };

        let order = start_order(&services, &edges).map_err(|(cycle, span)| {
            at(
                span,
                format!("the edges form a cycle ({cycle}): no service of it can start first"),
                Some("remove one edge of the cycle"),
            )
        })?;
        for (svc, target, text) in rendered {
            if let Some(s) = services.iter_mut().find(|s| s.name == svc) {
                s.files.push((target, text));
            }
        }
        let mut by_name: BTreeMap<String, ServiceSpec> = services.into_iter().map(|s| (s.name.clone(), s)).collect();
        let services = order.iter().filter_map(|n| by_name.remove(n)).collect();

        let upstream_env = raw.upstream_env.map(|u| u.into_inner()).unwrap_or_else(|| DEFAULT_UPSTREAM_ENV.into());
        let checks = match raw.checks {
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(at(c.span(), "`checks` names a file of [[final_read]]s and [[invariant]]s".into(), None))
            }
            Some(c) => Some(file.parent().unwrap_or(Path::new(".")).join(c.into_inner())),
            None => None,
        };
        Ok(ClusterSpec {
            name,
            file: file.to_path_buf(),
            services,
            edges: edges.into_iter().map(|(e, _)| e).collect(),
            ingress,
            upstream_env,
            checks,
        })
    }
}

/// Providers before consumers (Kahn's algorithm; ties by name, so the order is stable).
fn start_order(
    services: &[ServiceSpec],
    edges: &[(Edge, Range<usize>)],
) -> Result<Vec<String>, (String, Range<usize>)> {
    let mut pending: BTreeMap<&str, BTreeSet<&str>> =
        services.iter().map(|s| (s.name.as_str(), BTreeSet::new())).collect();
    for (e, _) in edges {
        pending.get_mut(e.from.as_str()).expect("edge ends were checked").insert(e.to.as_str());
    }
    let mut order = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<&str> = pending.iter().filter(|(_, deps)| deps.is_empty()).map(|(n, _)| *n).collect();
        if ready.is_empty() {
            let stuck: BTreeSet<&str> = pending.keys().copied().collect();
            let (edge, span) = edges
                .iter()
                .find(|(e, _)| stuck.contains(e.from.as_str()) && stuck.contains(e.to.as_str()))
                .expect("a stuck set has an edge inside it");
            let names = stuck.iter().copied().collect::<Vec<_>>().join(", ");
            return Err((format!("through {names}, e.g. {edge}"), span.clone()));
        }
        for n in ready {
            pending.remove(n);
            for deps in pending.values_mut() {
                deps.remove(n);
            }
            order.push(n.to_string());
        }
    }
    Ok(order)
}

/// Every `{...}` in `texts` is one of [`PLACEHOLDERS`] or `{upstream.P.part}` of a
/// provider in `providers`; `{{` and `}}` are literal braces. The error says which.
fn check_placeholders<'a>(texts: impl IntoIterator<Item = &'a str>, providers: &[&str]) -> Result<(), String> {
    for text in texts {
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!("{text:?} has a '}}' without its '{{' (write }}}} for a literal brace)"));
            }
            let Some(close) = tail.find('}') else {
                return Err(format!("{text:?} has a '{{' without its '}}' (write {{{{ for a literal brace)"));
            };
            let placeholder = &tail[..=close];
            let upstream = placeholder
                .strip_prefix("{upstream.")
                .and_then(|p| p.strip_suffix('}'))
                .and_then(|p| p.rsplit_once('.'));
            match upstream {
                _ if PLACEHOLDERS.contains(&placeholder) => {}
                Some((p, part)) if providers.contains(&p) && UPSTREAM_PARTS.contains(&part) => {}
                Some((p, part)) if providers.contains(&p) => {
                    return Err(format!(
                        "{placeholder} in {text:?}: a provider's part is host, port, url or urls, not {part}"
                    ))
                }
                Some((p, _)) => {
                    let known = if providers.is_empty() { "none".to_string() } else { providers.join(", ") };
                    return Err(format!(
                        "{placeholder} in {text:?}: this service calls no `{p}` (an edge \"this->{p}\" makes it a provider; it calls: {known})"
                    ));
                }
                None => {
                    return Err(format!(
                        "unknown placeholder {placeholder} in {text:?} (write {{{{ and }}}} for literal braces)"
                    ))
                }
            }
            rest = &tail[close + 1..];
        }
    }
    Ok(())
}

fn valid_scheme(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err("must be 1-40 lower-case letters, digits or '-', starting with a letter".into())
    }
}

fn check_env(
    env: Option<&Spanned<BTreeMap<String, String>>>,
) -> Result<BTreeMap<String, String>, (Range<usize>, String)> {
    let Some(env) = env else { return Ok(BTreeMap::new()) };
    for k in env.get_ref().keys() {
        let ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err((
                env.span(),
                format!("environment variable name {k:?} must be upper-case letters, digits and '_'"),
            ));
        }
    }
    Ok(env.get_ref().clone())
}

fn parse_duration(s: &Spanned<String>) -> Result<Duration, String> {
    humantime::parse_duration(s.get_ref()).map_err(|e| format!("{:?} is not a duration: {e}", s.get_ref()))
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The cluster file as written (see the module docs). Its JSON Schema is
/// [`json_schema`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Gauntlet cluster file")]
struct RawCluster {
    /// The cluster's name.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// The service clients and load enter through.
    #[schemars(with = "Option<String>")]
    ingress: Option<Spanned<String>>,
    /// Calls between services, "consumer->provider".
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    edges: Vec<Spanned<String>>,
    /// The variable naming a provider's URLs in a consumer; default UPSTREAM_{PROVIDER}.
    #[schemars(with = "Option<String>")]
    upstream_env: Option<Spanned<String>>,
    /// A file of `[[final_read]]`s and `[[invariant]]`s (as a scenario writes them) that
    /// scenarios of this cluster pick by name with `invariants = [...]`, e.g. "checks.toml".
    #[schemars(with = "Option<String>")]
    checks: Option<Spanned<String>>,
    /// Settings every service inherits.
    defaults: Option<RawDefaults>,
    /// The services, by name.
    #[schemars(with = "BTreeMap<String, RawService>")]
    services: BTreeMap<String, Spanned<RawService>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    /// Liveness: an HTTP path (default /health), "tcp", a command, or { log = "..." }.
    #[schemars(with = "Option<RawProbe>")]
    health: Option<Spanned<toml::Value>>,
    /// Readiness: an HTTP path (default /ready), "tcp", a command that exits 0 (with
    /// {host} and {port}), or { log = "a line the node logs once ready" }.
    #[schemars(with = "Option<RawProbe>")]
    ready: Option<Spanned<toml::Value>>,
    /// How long a service may take to become ready, e.g. "15s".
    #[schemars(with = "Option<String>")]
    ready_timeout: Option<Spanned<String>>,
    /// Environment of every service.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    env: Option<Spanned<BTreeMap<String, String>>>,
    /// The variables through which each node learns its own port, bind address and
    /// database file, e.g. { port = "PORT", bind = "HOST", database = "DB_PATH" }; none by default.
    env_names: Option<EnvNames>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawService {
    /// A cargo binary of this workspace (built when missing).
    #[schemars(with = "Option<String>")]
    binary: Option<Spanned<String>>,
    /// Or a program and its arguments; {port}, {data_dir} and {host} are filled in per node.
    #[schemars(with = "Option<Vec<String>>")]
    command: Option<Spanned<Vec<String>>>,
    /// A prebuilt image for the docker runtime.
    #[schemars(with = "Option<String>")]
    image: Option<Spanned<String>>,
    /// Base URLs of an already-running deployment, one per replica (external runtime).
    #[schemars(with = "Option<Vec<String>>")]
    urls: Option<Spanned<Vec<String>>>,
    /// Port of the first replica; replica i uses port + i. Required unless the service
    /// is deployed at `urls` (then its first URL's port).
    #[schemars(with = "Option<u16>")]
    port: Option<Spanned<u16>>,
    /// Replicas, 1 to 16 (default 1).
    #[schemars(with = "Option<u32>")]
    replicas: Option<Spanned<u32>>,
    /// Liveness: an HTTP path, "tcp" (the port accepts connections), a command, or
    /// { log = "..." }.
    #[schemars(with = "Option<RawProbe>")]
    health: Option<Spanned<toml::Value>>,
    /// Readiness: an HTTP path, "tcp" (the port accepts connections), a command that
    /// exits 0 (with {host} and {port}), or { log = "a line the node logs once ready" }.
    #[schemars(with = "Option<RawProbe>")]
    ready: Option<Spanned<toml::Value>>,
    /// Readiness timeout, e.g. "15s".
    #[schemars(with = "Option<String>")]
    ready_timeout: Option<Spanned<String>>,
    /// The URL scheme its consumers get in their upstream variable, default "http" (e.g. "nats").
    #[schemars(with = "Option<String>")]
    scheme: Option<Spanned<String>>,
    /// What to install when the `command`'s program is missing, e.g. "apt-get install nats-server".
    #[schemars(with = "Option<String>")]
    install: Option<Spanned<String>>,
    /// Whether the service gets a database file (in the variable `env_names.database` names).
    database: Option<bool>,
    /// Environment added to the defaults.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    env: Option<Spanned<BTreeMap<String, String>>>,
    /// The variables of its own port, bind address and database file, over the defaults'.
    env_names: Option<EnvNames>,
    /// Config files rendered into the node's data folder before it starts, from
    /// templates (relative to this file) holding the same placeholders as `command`:
    /// { "nginx.conf" = "nginx.conf.in" }.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    files: Option<Spanned<BTreeMap<String, String>>>,
}

/// The JSON Schema of the cluster file, generated from the types above (editors use
/// it to complete and check the file; `gauntlet schema cluster` prints it).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawCluster)).expect("a schema is JSON")
}
