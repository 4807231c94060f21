//! `gauntlet init`: a starter cluster file, workload and scenario, commented, for a
//! system given as its programs, which `gauntlet run` accepts as written.
//!
//! ```text
//! gauntlet init --service 'web=python3 -m http.server {port}' --service 'store=redis-server --port {port}' \
//!               --edge 'web->store' --dir my-system
//! gauntlet init --url 'api=http://127.0.0.1:8080' --path /health --dir staging
//! gauntlet init --compose docker-compose.yml --dir chaos     # the Compose file is the cluster
//! ```
//!
//! Programs run as local processes; URLs are a deployment already running, which the
//! scenario reaches on the external runtime (nothing started, the load and faults through
//! a proxy of Gauntlet's in front of the ingress).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit::{CliError, Outcome};

/// Flags of `gauntlet init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// A service as NAME=COMMAND, its program and arguments split on spaces; `{port}`,
    /// `{host}` and `{data_dir}` are filled in per node (repeatable; the first is where
    /// clients enter unless --ingress says otherwise).
    #[arg(long = "service", value_name = "NAME=COMMAND", conflicts_with = "compose")]
    pub services: Vec<String>,
    /// A service already running, as NAME=URL (http://host:port; repeatable, and the
    /// same NAME again for each replica): the scenario runs on the external runtime,
    /// starting nothing, with a fault on the clients' edge. Not with --service.
    #[arg(long = "url", value_name = "NAME=URL", conflicts_with = "compose")]
    pub urls: Vec<String>,
    /// Or a docker-compose file: its services are the cluster (edges from its
    /// `x-gauntlet`); a scenario and a workload are written for it.
    #[arg(long, value_name = "FILE")]
    pub compose: Option<PathBuf>,
    /// A call from one service to another, CONSUMER->PROVIDER (repeatable): it goes
    /// through the fault proxy, where faults can be injected. Quote it: the shell reads
    /// `>` as a redirection (--edge 'web->store').
    #[arg(long = "edge", value_name = "CONSUMER->PROVIDER")]
    pub edges: Vec<String>,
    /// The service clients and load enter through (default: the first).
    #[arg(long)]
    pub ingress: Option<String>,
    /// The path the load and the steady-state probe GET (default /).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Where to write cluster.toml, workload.toml and scenario.toml.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The cluster's name (default: the folder's).
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite files that exist.
    #[arg(long)]
    pub force: bool,
}

/// The first port given to a service; the next get the following ones, two apart.
const FIRST_PORT: u16 = 7800;

fn bad(msg: impl Into<String>) -> CliError {
    CliError::BadInput(msg.into())
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 40
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `NAME=VALUE`, the name checked.
fn split(s: &str, flag: &str, example: &str) -> Result<(String, String), CliError> {
    let (name, value) =
        s.split_once('=').ok_or_else(|| bad(format!("{flag} {s:?} is not NAME=...; e.g. {flag} '{example}'")))?;
    let (name, value) = (name.trim(), value.trim());
    if !valid_name(name) {
        return Err(bad(format!(
            "{flag} {s:?}: the name {name:?} must be lower-case letters, digits and '-', starting with a letter"
        )));
    }
    if value.is_empty() {
        return Err(bad(format!("{flag} {s:?} gives {name} nothing after '='; e.g. {flag} '{example}'")));
    }
    Ok((name.to_string(), value.to_string()))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The files, as text, for `args` (checked): cluster, workload, scenario; for a Compose
/// file, workload and scenario.
pub fn render(args: &InitArgs) -> Result<Vec<(String, String)>, CliError> {
    if let Some(compose) = &args.compose {
        if !args.edges.is_empty() || args.ingress.is_some() {
            return Err(bad("--edge and --ingress come from the Compose file's x-gauntlet with --compose"));
        }
        return render_compose(args, compose);
    }
    let commands: Vec<(String, String)> = args
        .services
        .iter()
        .map(|s| split(s, "--service", "web=python3 -m http.server {port}"))
        .collect::<Result<_, _>>()?;
    let deployed = deployed(&args.urls)?;
    if !commands.is_empty() && !deployed.is_empty() {
        return Err(bad(
            "give --service (programs Gauntlet starts) or --url (a deployment already running), not both: \
             the external runtime starts nothing",
        ));
    }
    let external = !deployed.is_empty();
    let commands = if external { deployed } else { commands };
    if commands.is_empty() {
        return Err(bad(
            "name the system's services: --service 'NAME=COMMAND' for each program Gauntlet starts, e.g. \
             --service 'web=python3 -m http.server {port}', or --url 'NAME=http://host:port' for each one \
             already running",
        ));
    }
    let services: Vec<&(String, String)> = commands.iter().collect();
    for (i, (name, _)) in services.iter().enumerate() {
        if services[..i].iter().any(|(n, _)| n == name) {
            return Err(bad(format!("service {name:?} is named twice")));
        }
    }
    let known = |n: &str| services.iter().any(|(s, _)| s == n);
    let names = services.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let mut edges = Vec::new();
    for e in &args.edges {
        let Some((from, to)) = e.split_once("->").map(|(a, b)| (a.trim(), b.trim())) else {
            return Err(bad(format!("--edge {e:?} is not CONSUMER->PROVIDER, e.g. --edge 'web->store' (quoted: the shell reads > as a redirection)")));
        };
        for end in [from, to] {
            if !known(end) {
                return Err(bad(format!("--edge {e:?}: no service {end:?} (services: {names})")));
            }
        }
        edges.push((from.to_string(), to.to_string()));
    }
    let ingress = args.ingress.clone().unwrap_or_else(|| services[0].0.clone());
    if !known(&ingress) {
        return Err(bad(format!("--ingress {ingress:?} is not a service (services: {names})")));
    }
    if !args.path.starts_with('/') {
        return Err(bad(format!("--path {:?} must start with /, e.g. /health", args.path)));
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => std::path::absolute(&args.dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().to_lowercase()))
            .map(|n| n.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>())
            .filter(|n| valid_name(n))
            .unwrap_or_else(|| "my-system".into()),
    };

    let mut cluster = String::new();
    let _ = writeln!(
        cluster,
        "# How the system starts and which service calls which (`gauntlet schema cluster` prints the\n\
         # JSON Schema; `gauntlet check cluster.toml` checks it without running anything).\n"
    );
    let _ = writeln!(cluster, "name = {}", quote(&name));
    let _ = writeln!(cluster, "# Where clients and the load enter.\ningress = {}", quote(&ingress));
    let edge_list = edges.iter().map(|(a, b)| quote(&format!("{a}->{b}"))).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        cluster,
        "# Every edge consumer->provider goes through the fault proxy: the consumer finds the\n\
         # provider's proxy slot in UPSTREAM_<PROVIDER> (see upstream_env), or in its command,\n\
         # env or config files as {{upstream.<provider>.host}}, .port, .url.\nedges = [{edge_list}]"
    );
    let _ = writeln!(
        cluster,
        "\n[defaults]\n# A node is ready once its port accepts connections; an HTTP path (\"/ready\"), a\n\
             # command ([\"pg_isready\", \"-p\", \"{{port}}\"]) or a log line ({{ log = \"ready\" }}) work too.\n\
             health = \"tcp\"\nready = \"tcp\"\nready_timeout = \"30s\""
    );
    for (i, (svc, value)) in services.iter().enumerate() {
        let _ = writeln!(cluster, "\n[services.{svc}]");
        if external {
            let urls: Vec<String> = value.split(',').map(quote).collect();
            let _ = writeln!(cluster, "# Already running: one URL per replica. Nothing is started or stopped.");
            let _ = writeln!(cluster, "urls = [{}]", urls.join(", "));
            continue;
        }
        let argv: Vec<String> = value.split_whitespace().map(quote).collect();
        let _ =
            writeln!(cluster, "# {{port}}, {{host}} and {{data_dir}} are this node's own, filled in when it starts.");
        let _ = writeln!(cluster, "command = [{}]", argv.join(", "));
        let _ = writeln!(cluster, "port = {}", FIRST_PORT + 2 * i as u16);
    }

    let workload = workload(&args.path);

    // The clients' edge always carries the load, so the fault touches something; an
    // internal edge does once the consumer calls its provider through the proxy slot.
    let fault_target = format!("client->{ingress}");
    let fault_comment = format!("the clients' calls to {ingress}");
    let internal = match edges.first() {
        Some((a, b)) => {
            format!("\n# An internal edge, once {a} calls {b} through its proxy slot: edge = \"{a}->{b}\".")
        }
        None => String::new(),
    };
    let scenario = format!(
        "# A first experiment: `gauntlet run scenario.toml`. Change the hypothesis, the fault and the\n\
         # SLOs to what you want to learn; `gauntlet check scenario.toml` checks it.\n\
         name = {name}\n\
         description = \"\"\"\n\
         Hypothesis: with 100 ms of extra latency on {fault_comment} for 10 s, the system keeps \\\n\
         answering (availability >= 99%) and p95 stays under 1 s.\"\"\"\n\
         seed = 1\n\n\
         [cluster]\nfile = \"cluster.toml\"\n{runtime}\n\
         [steady_state]\ntimeout = \"30s\"\n[[steady_state.probe]]\nname = \"it answers\"\npath = {path}\nexpect = 200\n\n\
         [load]\nworkload = \"workload.toml\"\nschedule = {{ mode = \"constant\", rate = 10, duration = \"30s\" }}\ntimeout = \"5s\"\n\n\
         # One fault on one edge; node faults (op = \"kill\", \"stop\", \"pause\", \"restart\") name a node, e.g. {ingress}-0.{internal}\n\
         [[fault]]\nname = \"slow\"\nedge = {target}\ntoxic = \"latency\"\nattributes = {{ latency = \"100ms\", jitter = \"10ms\" }}\nat = \"10s\"\nfor = \"10s\"\n\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\n\
         [[slo]]\nthreshold = \"p95 < 1s\"\nduring = \"faults\"\n\n\
         # To judge the data too: [[final_read]]s and [[invariant]]s (docs/checkers.md).\n\n\
         [recovery]\nduration = \"10s\"\n",
        name = quote(&format!("{name}-latency")),
        path = quote(&args.path),
        target = quote(&fault_target),
        runtime = if external {
            "# A deployment already running: nothing is started, node faults are refused, and the clients'\n\
             # calls go through a proxy of Gauntlet's in front of it (--toxiproxy URL of the deployment's own\n\
             # edge proxies reaches its inner edges).\nruntime = \"external\"\n"
        } else {
            ""
        },
    );
    Ok(vec![("cluster.toml".into(), cluster), ("workload.toml".into(), workload), ("scenario.toml".into(), scenario)])
}

/// The starter workload: one flow that GETs `path`.
fn workload(path: &str) -> String {
    format!(
        "# What the load does, flow by flow (docs/workload.md). A step may record an\n\
         # operation for the data checkers: op = {{ f = \"add\", value = \"{{{{iteration}}}}\" }}.\n\n\
         [[flow]]\nname = \"read\"\n[[flow.step]]\nname = \"get\"\npath = {}\n",
        quote(path)
    )
}

/// A scenario and a workload for the Compose file at `compose`: a latency fault on its
/// first `x-gauntlet` edge (else on the clients' calls), and a kill to try, commented.
fn render_compose(args: &InitArgs, compose: &Path) -> Result<Vec<(String, String)>, CliError> {
    if !args.path.starts_with('/') {
        return Err(bad(format!("--path {:?} must start with /, e.g. /health", args.path)));
    }
    let spec = crate::cluster::compose::load(compose).map_err(|e| bad(e.to_string()))?;
    let relative = relative_to(compose, &args.dir);
    let (target, what) = match spec.edges.first() {
        Some(e) => (e.to_string(), format!("{}'s calls to {}", e.from, e.to)),
        None => (format!("client->{}", spec.ingress), format!("the clients' calls to {}", spec.ingress)),
    };
    let edges = if spec.edges.is_empty() {
        "# The file names no edge between its services yet: add to it, at the top level,\n\
         #   x-gauntlet: { edges: [ { from: CONSUMER, to: PROVIDER, env: VARIABLE_HOLDING_ITS_URL } ] }\n\
         # and each such call goes through the fault proxy, where `edge = \"CONSUMER->PROVIDER\"` faults it.\n"
            .to_string()
    } else {
        let list = spec.edges.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        format!("# The edges the file's x-gauntlet names, each through the fault proxy: {list}.\n")
    };
    let victim = spec.services.first().map_or(spec.ingress.clone(), |s| s.name.clone());
    let scenario = format!(
        "# A first experiment on {file}: `gauntlet run scenario.toml`. Change the hypothesis, the\n\
         # faults and the SLOs to what you want to learn; `gauntlet check scenario.toml` checks it.\n\
         name = {name}\n\
         description = \"\"\"\n\
         Hypothesis: with 100 ms of extra latency on {what} for 5 s, the system keeps \\\n\
         answering (availability >= 99%) and p95 stays under 1 s.\"\"\"\n\
         seed = 1\n\n\
         # The Compose file is the cluster: its services run as containers of the docker runtime,\n\
         # each image built from its `build:` context or already on this machine (nothing is pulled).\n\
         [cluster]\ncompose = {rel}\n\n\
         [steady_state]\ntimeout = \"60s\"\n[[steady_state.probe]]\nname = \"it answers\"\npath = {path}\nexpect = 200\n\n\
         [load]\nworkload = \"workload.toml\"\nschedule = {{ mode = \"constant\", rate = 10, duration = \"15s\" }}\ntimeout = \"5s\"\n\n\
         {edges}\
         [[fault]]\nname = \"slow\"\nedge = {target}\ntoxic = \"latency\"\nattributes = {{ latency = \"100ms\", jitter = \"10ms\" }}\nat = \"5s\"\nfor = \"5s\"\n\n\
         # A node fault on a service of the file (kill, stop, pause, restart or partition):\n\
         # [[fault]]\n# name = \"{victim} killed\"\n# node = \"{victim}-0\"\n# op = \"kill\"\n# at = \"11s\"\n# for = \"2s\"\n\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\n\
         [[slo]]\nthreshold = \"p95 < 1s\"\nduring = \"faults\"\n\n\
         [recovery]\nduration = \"5s\"\n",
        file = compose.display(),
        name = quote(&format!("{}-latency", spec.name)),
        rel = quote(&relative.display().to_string()),
        path = quote(&args.path),
        target = quote(&target),
    );
    Ok(vec![("workload.toml".into(), workload(&args.path)), ("scenario.toml".into(), scenario)])
}

/// `file` as a path from folder `dir` (`../docker-compose.yml`); absolute when the two
/// share no root.
fn relative_to(file: &Path, dir: &Path) -> PathBuf {
    let (Ok(file), Ok(dir)) = (std::path::absolute(file), std::path::absolute(dir)) else {
        return file.to_path_buf();
    };
    let (f, d): (Vec<_>, Vec<_>) = (file.components().collect(), dir.components().collect());
    let common = f.iter().zip(&d).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return file;
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &f[common..] {
        out.push(c);
    }
    out
}

/// The `--url NAME=URL` flags as (name, comma list of its URLs), in the order first named.
fn deployed(flags: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for flag in flags {
        let (name, url) = split(flag, "--url", "api=http://127.0.0.1:8080")?;
        let base = url.strip_prefix("http://").is_some_and(|rest| {
            rest.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
        if !base {
            return Err(bad(format!(
                "--url {flag:?}: give a base URL http://host:port (a path goes in --path, e.g. --path /health)"
            )));
        }
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, urls)) => {
                urls.push(',');
                urls.push_str(&url);
            }
            None => out.push((name, url)),
        }
    }
    Ok(out)
}

/// Writes the starter files, refusing to overwrite one unless `--force`.
pub fn run(args: InitArgs) -> Result<Outcome, CliError> {
    let files = render(&args)?;
    let dir: &Path = &args.dir;
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    if !args.force {
        if let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
            return Err(bad(format!(
                "{} exists: pass --force to overwrite it, or --dir another folder",
                dir.join(name).display()
            )));
        }
    }
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| CliError::Harness(anyhow::anyhow!("writing {}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    let d = dir.display();
    match args.compose {
        Some(_) => println!("next: gauntlet check {d}/scenario.toml && gauntlet run {d}/scenario.toml"),
        None => println!("next: gauntlet check {d}/cluster.toml {d}/scenario.toml && gauntlet run {d}/scenario.toml"),
    }
    Ok(Outcome::Passed)
}
