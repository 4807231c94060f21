//! Provider verification: start a provider as the providers file says
//! ([`super::providers`]), replay every interaction of every pact that names it with
//! `pact_verifier`, and say which passed.
//!
//! Each provider runs on its own, with a fresh database and the environment the file
//! gives it (a contract-test mode is turned on there, if it has one): a `binary` or `command`
//! as a process on a free loopback port, a `binary` as a container built locally from it
//! (see [`crate::cluster::images`]) with its port published on 127.0.0.1, or a `url`
//! already serving. Provider states are set up (and torn down) by POSTing the standard
//! Pact body, `{"state", "params", "action"}`, to its `states` path; for the
//! asynchronous message interactions of message pacts, the verifier posts the
//! interaction's description to its `messages` path and compares the answer, the
//! message the provider would publish, with the pact.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pact_verifier::callback_executors::{HttpRequestProviderStateExecutor, NullRequestFilterExecutor};
use pact_verifier::{
    verify_provider_async, FilterInfo, MismatchResult, PactSource, ProviderInfo, ProviderTransport, PublishOptions,
    VerificationOptions,
};
use testcontainers::{ContainerAsync, GenericImage};
use tokio::process::{Child, Command};

use crate::cluster::binaries::Binaries;
use crate::cluster::docker::{exit_probe, DataDir, ServiceContainer, DATA_DIR};
use crate::cluster::images::image_for;
use crate::cluster::readiness::{poll_ready, tail};

use super::broker::BrokerSource;
use super::providers::{ProviderRun, ProviderSpec};
use super::PactDoc;

/// How long a provider may take to answer `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one replayed request (or state change) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The label on a provider's container: `docker ps --filter label=dev.gauntlet.verify`
/// finds any that a killed `gauntlet` left behind.
pub const CONTAINER_LABEL: &str = "dev.gauntlet.verify";
/// The label naming the `gauntlet` process that started a provider's container.
pub const OWNER_LABEL: &str = "dev.gauntlet.owner-pid";
/// The port a provider listens on inside its container.
const CONTAINER_PORT: u16 = 8080;
/// How many lines of a provider's log an error quotes.
const LOG_LINES: usize = 20;

/// Where the providers under verification run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProviderRuntime {
    /// A child process on a free loopback port.
    #[default]
    Process,
    /// A container built locally from the binary, its port published on 127.0.0.1.
    Docker,
}

impl fmt::Display for ProviderRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Process => "process",
            Self::Docker => "docker",
        })
    }
}

/// Why verification could not run (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("could not find or build the binary of provider {provider}: {detail}")]
    Binary { provider: String, detail: String },
    #[error("could not start provider {provider}: {detail}")]
    Start { provider: String, detail: String },
    #[error("verifying {provider} failed to run: {detail}")]
    Verifier { provider: String, detail: String },
}

/// The outcome of replaying one interaction.
#[derive(Clone, Debug)]
pub struct InteractionOutcome {
    pub consumer: String,
    pub provider: String,
    pub description: String,
    pub states: Vec<String>,
    /// `None` when it passed; what did not match otherwise.
    pub failure: Option<String>,
    /// A pending pact's failure does not fail the run (broker mode).
    pub pending: bool,
    pub duration: Duration,
}

impl InteractionOutcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Where a provider's pacts come from.
#[derive(Clone, Debug)]
pub enum Source<'a> {
    /// Pact files (from `contracts/pacts/`).
    Files(Vec<&'a PactDoc>),
    /// A Pact Broker, with consumer version selectors.
    Broker(&'a BrokerSource),
}

/// Everything one provider's verification found.
#[derive(Clone, Debug)]
pub struct ProviderReport {
    pub provider: String,
    pub provider_version: String,
    pub interactions: Vec<InteractionOutcome>,
    pub elapsed: Duration,
}

impl ProviderReport {
    /// Every non-pending interaction passed.
    pub fn passed(&self) -> bool {
        self.interactions.iter().all(|i| i.passed() || i.pending)
    }

    /// Whether the pact of `consumer` passed in full.
    pub fn consumer_passed(&self, consumer: &str) -> bool {
        self.interactions.iter().filter(|i| i.consumer == consumer).all(InteractionOutcome::passed)
    }
}

/// A provider running in contract-test mode, reachable on 127.0.0.1. Dropping it ends
/// the provider (kills the process, removes the container); [`Self::stop`] does so and
/// waits.
pub enum ProviderUnderTest {
    Process(ProviderProcess),
    Container(ProviderContainer),
    /// A provider that was already serving (`url`): nothing to start or end.
    Serving {
        host: String,
        port: u16,
        scheme: String,
    },
}

impl ProviderUnderTest {
    /// Starts provider `spec` on `runtime` (its binary from `binaries`) and waits until
    /// it is ready; one that serves already (`url`) is only checked for readiness.
    pub async fn start(
        runtime: ProviderRuntime,
        binaries: Option<&Binaries>,
        spec: &ProviderSpec,
        dir: &Path,
    ) -> Result<Self, VerifyError> {
        let name = spec.name.as_str();
        let err = |detail: String| VerifyError::Start { provider: name.to_string(), detail };
        let no_binaries = || err("its binary has no cargo workspace to be built in".into());
        let mut provider =
            match (&spec.run, runtime) {
                (ProviderRun::Url(url), _) => {
                    let u = reqwest::Url::parse(url).map_err(|e| err(format!("url {url:?}: {e}")))?;
                    let port = u.port_or_known_default().ok_or_else(|| err(format!("url {url:?} has no port")))?;
                    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
                    Self::Serving { host, port, scheme: u.scheme().to_string() }
                }
                (ProviderRun::Binary(b), ProviderRuntime::Process) => {
                    let program = binaries.ok_or_else(no_binaries)?.path(b);
                    Self::Process(ProviderProcess::start(spec, vec![program.display().to_string()], dir)?)
                }
                (ProviderRun::Command(c), ProviderRuntime::Process) => {
                    Self::Process(ProviderProcess::start(spec, c.clone(), dir)?)
                }
                (ProviderRun::Binary(b), ProviderRuntime::Docker) => {
                    Self::Container(ProviderContainer::start(&binaries.ok_or_else(no_binaries)?.path(b), spec).await?)
                }
                (ProviderRun::Command(_), ProviderRuntime::Docker) => return Err(err(
                    "a `command` provider runs as a process: verify it with --runtime process, or give it a `binary`"
                        .into(),
                )),
            };
        if let Err(e) = provider.wait_ready(spec).await {
            provider.stop().await;
            return Err(e);
        }
        Ok(provider)
    }

    /// The host the provider answers on (127.0.0.1 unless it was already serving).
    pub fn host(&self) -> &str {
        match self {
            Self::Serving { host, .. } => host,
            _ => "127.0.0.1",
        }
    }

    /// The port the provider answers on.
    pub fn port(&self) -> u16 {
        match self {
            Self::Process(p) => p.port,
            Self::Container(c) => c.host_port,
            Self::Serving { port, .. } => *port,
        }
    }

    /// `http://<host>:<port>`.
    pub fn base_url(&self) -> String {
        let scheme = match self {
            Self::Serving { scheme, .. } => scheme.as_str(),
            _ => "http",
        };
        format!("{scheme}://{}:{}", self.host(), self.port())
    }

    /// The last lines the provider logged, indented (none for one already serving).
    pub fn log_tail(&self) -> String {
        match self.log() {
            Some(log) => tail(log, LOG_LINES),
            None => "    (it was already serving: its log is its own)".into(),
        }
    }

    fn log(&self) -> Option<&Path> {
        match self {
            Self::Process(p) => Some(&p.log),
            Self::Container(c) => Some(&c.log),
            Self::Serving { .. } => None,
        }
    }

    async fn wait_ready(&mut self, spec: &ProviderSpec) -> Result<(), VerifyError> {
        let name = spec.name.as_str();
        let url = format!("{}{}", self.base_url(), spec.ready);
        let node = format!("provider {name}");
        let ready = match self {
            Self::Process(p) => {
                let child = &mut p.child;
                let exited = move || match child.try_wait() {
                    Ok(Some(status)) => Some(format!("it exited ({status})")),
                    _ => None,
                };
                poll_ready(&node, &url, READY_TIMEOUT, &p.log, exited).await
            }
            Self::Container(c) => {
                poll_ready(&node, &url, READY_TIMEOUT, &c.log, exit_probe(c.container.id().to_string())).await
            }
            Self::Serving { .. } => {
                let log = std::env::temp_dir().join("gauntlet-no-log");
                poll_ready(&node, &url, READY_TIMEOUT, &log, || None).await
            }
        };
        ready.map_err(|e| VerifyError::Start { provider: name.to_string(), detail: e.to_string() })
    }

    /// Ends the provider and waits until it is gone (its container removed).
    pub async fn stop(self) {
        match self {
            Self::Process(mut p) => {
                let _ = p.child.kill().await;
            }
            Self::Container(c) => {
                if let Err(e) = (*c.container).rm().await {
                    eprintln!("warning: could not remove the container of provider {}: {e}", c.name);
                }
            }
            Self::Serving { .. } => {}
        }
    }
}

/// A provider process in contract-test mode, killed when dropped.
pub struct ProviderProcess {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProviderProcess {
    /// Starts `argv` (`{port}` filled in; a relative program is `dir`'s) for provider
    /// `spec` on a free loopback port, in a fresh folder (it may not be ready yet).
    fn start(spec: &ProviderSpec, argv: Vec<String>, dir: &Path) -> Result<Self, VerifyError> {
        let name = spec.name.as_str();
        let err = |detail: String| VerifyError::Start { provider: name.to_string(), detail };
        let scratch = tempfile::tempdir().map_err(|e| err(format!("a temporary folder: {e}")))?;
        let port = free_port().map_err(|e| err(format!("finding a free port: {e}")))?;
        let log = scratch.path().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| err(format!("creating {}: {e}", log.display())))?;
        let db = scratch.path().join(format!("{name}.db"));
        let argv: Vec<String> = argv.into_iter().map(|a| a.replace("{port}", &port.to_string())).collect();
        let program = PathBuf::from(&argv[0]);
        let program = if program.components().count() > 1 && program.is_relative() {
            std::path::absolute(dir.join(&program)).unwrap_or(program)
        } else {
            program
        };
        let mut env = spec.env.clone();
        spec.env_names.fill(&mut env, port, "127.0.0.1", Some(db.display().to_string()));
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..]).envs(env).current_dir(dir);
        let stderr = log_file.try_clone().map_err(|e| err(e.to_string()))?;
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(stderr).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| err(format!("running {}: {e}", program.display())))?;
        Ok(Self { port, child, log, _dir: scratch })
    }
}

/// A provider container in contract-test mode (its database on a tmpfs), removed when
/// dropped.
pub struct ProviderContainer {
    name: String,
    /// Boxed: a container handle is some 900 bytes.
    container: Box<ContainerAsync<GenericImage>>,
    host_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProviderContainer {
    /// Builds (or reuses) the image of `binary` and starts a container of it for
    /// provider `spec` (it may not be ready yet). The harness's own variables whose
    /// names start with one of the spec's `pass_env` prefixes pass through, as a process
    /// inherits them (a break switch a test sets, for one).
    async fn start(binary: &Path, spec: &ProviderSpec) -> Result<Self, VerifyError> {
        let name = spec.name.as_str();
        let err = |detail: String| VerifyError::Start { provider: name.to_string(), detail };
        let image = image_for(binary).await.map_err(|e| err(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| err(format!("a temporary folder: {e}")))?;
        let log = dir.path().join(format!("{name}.log"));
        let mut env: BTreeMap<String, String> =
            std::env::vars().filter(|(k, _)| spec.pass_env.iter().any(|p| k.starts_with(p.as_str()))).collect();
        env.extend(spec.env.clone());
        if let Some(db) = &spec.env_names.database {
            env.insert(db.clone(), format!("{DATA_DIR}/{name}.db"));
        }
        let started = ServiceContainer {
            image,
            port: CONTAINER_PORT,
            args: Vec::new(),
            env,
            env_names: crate::cluster::spec::EnvNames { database: None, ..spec.env_names.clone() },
            log: log.clone(),
            data: DataDir::Scratch,
            name: None,
            network: None,
            labels: vec![
                (CONTAINER_LABEL.into(), name.to_string()),
                (OWNER_LABEL.into(), std::process::id().to_string()),
            ],
            mounts: Vec::new(),
        }
        .start()
        .await
        .map_err(|e| err(format!("its container: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            container: Box::new(started.container),
            host_port: started.host_port,
            log,
            _dir: dir,
        })
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes sure the `binary` of each of `providers` is built from the current source (the
/// matrix records a hash of that source as the provider version): `cargo build`, a
/// no-op when they are fresh; with `rebuild` false, only the missing ones are built.
pub fn ensure_binaries(binaries: &Binaries, providers: &[&ProviderSpec], rebuild: bool) -> Result<(), VerifyError> {
    let names: Vec<String> = providers
        .iter()
        .filter_map(|p| match &p.run {
            ProviderRun::Binary(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let failed = |detail: String| VerifyError::Binary { provider: shown.join(", "), detail };
    if !rebuild {
        return binaries.ensure(&names, &|msg| eprintln!("{msg}")).map_err(|e| failed(e.to_string()));
    }
    let mut cmd = std::process::Command::new("cargo");
    cmd.args(["build", "--quiet"]).current_dir(&binaries.workspace);
    match binaries.profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    for name in &names {
        cmd.args(["--bin", name]);
    }
    let status = cmd.status().map_err(|e| failed(format!("running `cargo build`: {e}")))?;
    if !status.success() {
        return Err(failed(format!("`cargo build` exited with {status}")));
    }
    Ok(())
}

/// Starts `provider` on `runtime` and verifies it against `source`; `publish` sends
/// the results to the broker (broker sources only). The provider is ended afterwards,
/// whatever happened.
pub async fn verify_provider(
    binaries: Option<&Binaries>,
    runtime: ProviderRuntime,
    (spec, dir): (&ProviderSpec, &Path),
    provider_version: &str,
    source: Source<'_>,
) -> Result<ProviderReport, VerifyError> {
    let started = Instant::now();
    let provider = spec.name.as_str();
    let under_test = ProviderUnderTest::start(runtime, binaries, spec, dir).await?;
    let (sources, publish) = match &source {
        Source::Files(pacts) => {
            (pacts.iter().map(|p| PactSource::File(p.path.display().to_string())).collect::<Vec<_>>(), None)
        }
        Source::Broker(broker) => (vec![broker.pact_source(provider)], broker.publish_options(provider_version)),
    };
    let at = (under_test.host().to_string(), under_test.port());
    let replayed = replay(spec, at, sources, publish.as_ref()).await.map_err(|e| match e {
        VerifyError::Verifier { provider, detail } => {
            VerifyError::Verifier { provider, detail: format!("{detail}\nits log ends:\n{}", under_test.log_tail()) }
        }
        other => other,
    });
    under_test.stop().await;
    let mut report = replayed?;
    report.provider_version = provider_version.to_string();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Replays `sources` against provider `spec` answering at `host:port`.
pub async fn replay(
    spec: &ProviderSpec,
    (host, port): (String, u16),
    sources: Vec<PactSource>,
    publish: Option<&PublishOptions>,
) -> Result<ProviderReport, VerifyError> {
    let provider = spec.name.as_str();
    let mut transports =
        vec![ProviderTransport { transport: "http".into(), port: Some(port), path: None, scheme: Some("http".into()) }];
    if let Some(path) = &spec.messages {
        // Asynchronous messages: pact_verifier posts `{description, providerStates}` here.
        transports.push(ProviderTransport {
            transport: "message".into(),
            port: Some(port),
            path: Some(path.clone()),
            scheme: Some("http".into()),
        });
    }
    #[allow(deprecated)]
    let info = ProviderInfo {
        name: provider.to_string(),
        host: host.clone(),
        port: Some(port),
        transports,
        ..ProviderInfo::default()
    };
    let options = VerificationOptions::<NullRequestFilterExecutor> {
        request_timeout: REQUEST_TIMEOUT.as_millis() as u64,
        coloured_output: false,
        no_pacts_is_error: true,
        broker_request_retries: 1,
        ..VerificationOptions::default()
    };
    // The standard state change: `{"state", "params", "action": "setup"|"teardown"}`.
    let states = Arc::new(HttpRequestProviderStateExecutor {
        state_change_url: spec.states.as_ref().map(|path| format!("http://{host}:{port}{path}")),
        state_change_teardown: spec.teardown,
        state_change_body: true,
        retries: 0,
    });
    let result = verify_provider_async(info, sources, FilterInfo::None, vec![], &options, publish, &states, None)
        .await
        .map_err(|e| VerifyError::Verifier { provider: provider.to_string(), detail: format!("{e:#}") })?;
    if result.interaction_results.is_empty() && !result.result {
        let detail = result.output.join("\n");
        return Err(VerifyError::Verifier { provider: provider.to_string(), detail });
    }
    let interactions = result
        .interaction_results
        .iter()
        .map(|r| InteractionOutcome {
            consumer: r.consumer.clone(),
            provider: r.provider.clone(),
            description: r.interaction_description.clone(),
            states: r.provider_states.clone(),
            failure: r.result.as_ref().err().map(describe),
            pending: r.pending,
            duration: r.duration,
        })
        .collect();
    Ok(ProviderReport {
        provider: provider.to_string(),
        provider_version: String::new(),
        interactions,
        elapsed: Duration::ZERO,
    })
}

fn describe(m: &MismatchResult) -> String {
    match m {
        MismatchResult::Mismatches { mismatches, .. } => {
            mismatches.iter().map(|m| m.description()).collect::<Vec<_>>().join("; ")
        }
        MismatchResult::Error(e, _) => e.clone(),
    }
}

/// The per-interaction table, grouped by edge.
pub fn render_table(reports: &[ProviderReport]) -> String {
    let mut out = format!("{:<22} {:<40} {:<52} {:>7}  {}\n", "EDGE", "INTERACTION", "STATE", "TIME", "RESULT");
    for report in reports {
        for i in &report.interactions {
            let result = match (&i.failure, i.pending) {
                (None, _) => "ok".to_string(),
                (Some(f), true) => format!("FAILED (pending, not gating): {f}"),
                (Some(f), false) => format!("FAILED: {f}"),
            };
            let state = if i.states.is_empty() { "-".to_string() } else { i.states.join(" & ") };
            out += &format!(
                "{:<22} {:<40} {:<52} {:>5}ms  {}\n",
                format!("{}->{}", i.consumer, i.provider),
                i.description,
                state,
                i.duration.as_millis(),
                result
            );
        }
    }
    let total: usize = reports.iter().map(|r| r.interactions.len()).sum();
    let failed: usize = reports.iter().flat_map(|r| &r.interactions).filter(|i| !i.passed() && !i.pending).count();
    out += &format!("{total} interactions, {failed} failed\n");
    out
}

/// The verification as JUnit XML: a test suite per provider, a test case per interaction.
pub fn junit_xml(reports: &[ProviderReport]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"contracts\">\n");
    for r in reports {
        let failures = r.interactions.iter().filter(|i| !i.passed() && !i.pending).count();
        out += &format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n",
            xml(&format!("verify {}", r.provider)),
            r.interactions.len(),
            r.elapsed.as_secs_f64()
        );
        for i in &r.interactions {
            out += &format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&format!("{}->{}", i.consumer, i.provider)),
                xml(&i.description),
                i.duration.as_secs_f64()
            );
            match (&i.failure, i.pending) {
                (None, _) => out += "/>\n",
                (Some(f), true) => {
                    out += &format!(">\n      <skipped message=\"pending: {}\"/>\n    </testcase>\n", xml(f))
                }
                (Some(f), false) => {
                    out += &format!(">\n      <failure message=\"{}\"/>\n    </testcase>\n", xml(f));
                }
            }
        }
        out += "  </testsuite>\n";
    }
    out += "</testsuites>\n";
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Groups the outcome per consumer: (consumer, passed).
pub fn per_consumer(report: &ProviderReport) -> HashMap<String, bool> {
    let mut out = HashMap::new();
    for i in &report.interactions {
        let ok = out.entry(i.consumer.clone()).or_insert(true);
        *ok &= i.passed();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(description: &str, failure: Option<&str>) -> InteractionOutcome {
        InteractionOutcome {
            consumer: "web".into(),
            provider: "db".into(),
            description: description.into(),
            states: vec!["products 1 to 100 exist".into()],
            failure: failure.map(str::to_string),
            pending: false,
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn runtimes_are_named_as_the_flag_writes_them() {
        assert_eq!(ProviderRuntime::default().to_string(), "process");
        assert_eq!(ProviderRuntime::Docker.to_string(), "docker");
    }

    #[test]
    fn the_table_and_junit_show_each_interaction() {
        let report = ProviderReport {
            provider: "db".into(),
            provider_version: "abc".into(),
            interactions: vec![outcome("get a product", None), outcome("list <products>", Some("$.name missing"))],
            elapsed: Duration::from_millis(20),
        };
        assert!(!report.passed());
        let table = render_table(std::slice::from_ref(&report));
        assert!(table.contains("web->db") && table.contains("FAILED: $.name missing"), "{table}");
        assert!(table.ends_with("2 interactions, 1 failed\n"), "{table}");
        let xml = junit_xml(&[report]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"list &lt;products&gt;\""), "{xml}");
    }
}
