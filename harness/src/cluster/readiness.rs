//! Waiting for nodes to become ready, and the order to start them in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::plan::{ClusterPlan, NodeId, NodePlan};
use super::runtime::RuntimeError;

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(20);
/// How long one readiness check may take.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// Nodes grouped by dependency depth: level 0 calls no one; level n calls only nodes
/// of lower levels. Nodes of one level can start together.
pub fn levels(plan: &ClusterPlan) -> Vec<Vec<NodeId>> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    // Services are in start order, so every provider's depth is known before its consumers'.
    for s in &plan.spec.services {
        // A Compose service also starts after what it `depends_on`.
        let after = s.compose.iter().flat_map(|c| c.depends_on.iter().map(String::as_str));
        let d =
            plan.spec.providers_of(&s.name).chain(after).filter_map(|p| depth.get(p)).map(|d| d + 1).max().unwrap_or(0);
        depth.insert(&s.name, d);
    }
    let mut out: Vec<Vec<NodeId>> = Vec::new();
    for n in &plan.nodes {
        let d = depth.get(n.id.service.as_str()).copied().unwrap_or(0);
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(n.id.clone());
    }
    out.retain(|l| !l.is_empty());
    out
}

/// Polls `node`'s readiness probe until it holds, its process exits, or its timeout
/// passes.
pub async fn wait_ready(node: &NodePlan, mut child: Option<&mut Child>) -> Result<(), RuntimeError> {
    let url = node.service.ready.target(&node.addr.to_string());
    let exited = move || {
        let c = child.as_deref_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(format!("it exited ({status})")),
            _ => None,
        }
    };
    poll_ready(&node.id.to_string(), &url, node.service.ready_timeout, &node.log_file, exited).await
}

/// Polls `url` until it answers 2xx (a `tcp://host:port` target: until a connection is
/// accepted and kept, see [`tcp_probe`]; `exec:[argv]`: until the command exits 0;
/// `log:text`: until a line of `log` holds the text), `exited` says the node is gone,
/// or `timeout` passes; the error quotes the end of the node's log.
pub async fn poll_ready(
    node: &str,
    url: &str,
    timeout: Duration,
    log: &std::path::Path,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<(), RuntimeError> {
    let http = reqwest::Client::builder().timeout(POLL_TIMEOUT).build().expect("a plain client builds");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(how) = exited() {
            return Err(RuntimeError::Start {
                node: node.to_string(),
                detail: format!("{how} before it was ready; its log ends:\n{}", tail(log, 15)),
            });
        }
        let last = if let Some(addr) = url.strip_prefix("tcp://") {
            match tcp_probe(addr).await {
                Ok(()) => return Ok(()),
                Err(why) => format!("{url}: {why}"),
            }
        } else if let Some(argv) = url.strip_prefix("exec:") {
            match command_probe(argv).await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            }
        } else if let Some(text) = url.strip_prefix("log:") {
            if std::fs::read_to_string(log).is_ok_and(|l| l.lines().any(|line| line.contains(text))) {
                return Ok(());
            }
            format!("no line of its log says {text:?} yet")
        } else {
            match http.get(url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("{url} answered {}", r.status()),
                Err(e) => format!("{url}: {e}"),
            }
        };
        if Instant::now() >= deadline {
            return Err(RuntimeError::NotReady {
                node: node.to_string(),
                timeout,
                detail: format!("{last}; its log ends:\n{}", tail(log, 15)),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long one run of a readiness command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A readiness command (a JSON array of the program and its arguments) exits 0.
async fn command_probe(argv: &str) -> Result<(), String> {
    let argv: Vec<String> = serde_json::from_str(argv).map_err(|e| format!("a readiness command: {e}"))?;
    let shown = argv.join(" ");
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("`{shown}` ran past {COMMAND_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("`{shown}` could not run: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let said = String::from_utf8_lossy(if out.stderr.is_empty() { &out.stdout } else { &out.stderr });
            Err(format!("`{shown}` exited with {}: {}", out.status, said.trim()))
        }
    }
}

/// How long a TCP probe watches an accepted connection for a close.
const TCP_HOLD: Duration = Duration::from_millis(150);

/// A TCP node is ready when a connection is accepted and is not closed at once: Docker's
/// port publisher accepts on the host and only then finds the container's port shut,
/// and closes. A server that speaks first (NATS sends INFO) is ready at its first byte.
async fn tcp_probe(addr: &str) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let mut stream = match tokio::time::timeout(POLL_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no connection within {POLL_TIMEOUT:?}")),
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(TCP_HOLD, stream.read(&mut byte)).await {
        Ok(Ok(0)) => Err("the connection was accepted and closed at once".into()),
        Ok(Err(e)) => Err(format!("the connection was accepted, then: {e}")),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

/// The last `n` lines of a log file, indented.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}
