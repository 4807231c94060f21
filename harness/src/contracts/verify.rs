//! Provider verification: start a provider in contract-test mode, replay every
//! interaction of every pact that names it with `pact_verifier`, and say which passed.
//!
//! Each provider runs on its own, with a fresh database and `SHOP_CONTRACT_TEST=1`, so
//! it serves the provider-state endpoint `POST /_pact/state` and, for the asynchronous
//! message interactions of message pacts, the message endpoint `POST /_pact/message`
//! (the verifier posts the interaction's description there and compares the answer, the
//! message the provider would publish, with the pact): as a process
//! (`target/<profile>/shop-<name>`) on a free loopback port, or as a container built
//! locally from that binary (see [`crate::cluster::images`]) with its port published
//! on 127.0.0.1. Its upstreams point at a closed port: a provider's own calls are not
//! part of the contract under test.

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
use super::PactDoc;

/// How long a provider may take to answer `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one replayed request (or state change) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Turns a service's contract-test mode on (`shop_kit::contract::TEST_MODE_ENV`; the
/// harness does not link the services).
pub const TEST_MODE_ENV: &str = "SHOP_CONTRACT_TEST";
/// A service's provider-state endpoint in contract-test mode (`shop_kit::contract::STATE_PATH`).
pub const STATE_PATH: &str = "/_pact/state";
/// A message provider's endpoint in contract-test mode, where the verifier asks for the
/// message an interaction describes (`shop_kit::contract::MESSAGE_PATH`).
pub const MESSAGE_PATH: &str = "/_pact/message";
/// The label on a provider's container: `docker ps --filter label=dev.gauntlet.verify`
/// finds any that a killed `gauntlet` left behind.
pub const CONTAINER_LABEL: &str = "dev.gauntlet.verify";
/// The label naming the `gauntlet` process that started a provider's container.
pub const OWNER_LABEL: &str = "dev.gauntlet.owner-pid";
/// Where every upstream of a provider under verification points: nothing listens there.
const NOWHERE: &str = "http://127.0.0.1:9";
/// The port a provider listens on inside its container.
const CONTAINER_PORT: u16 = 8080;
/// How many lines of a provider's log an error quotes.
const LOG_LINES: usize = 20;

/// The environment a provider needs beyond the defaults to honour the pacts' states.
fn provider_env(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        // "payments decline amounts over 5000".
        "payments" => &[("SHOP_PAYMENTS_DECLINE_OVER", "5000")],
        // "the saga's upstreams are slow": a new order answers 202 PENDING at once.
        "orders" => &[("SHOP_ORDERS_INLINE_DEADLINE", "100ms")],
        _ => &[],
    }
}

/// The environment of provider `name` in contract-test mode with its database at `db`,
/// whatever runs it (the listening address comes on top).
fn contract_env(name: &str, db: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        [(TEST_MODE_ENV, "1"), ("SHOP_DEV_DEFAULTS", "1"), ("SHOP_LOG", "warn"), ("SHOP_DB", db)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    for upstream in ["USERS", "CATALOG", "ORDERS", "PAYMENTS"] {
        env.insert(format!("SHOP_UPSTREAM_{upstream}"), NOWHERE.to_string());
    }
    for (k, v) in provider_env(name) {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

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
    #[error("could not find or build shop-{provider}: {detail}")]
    Binary { provider: String, detail: String },
    #[error("could not start shop-{provider}: {detail}")]
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
}

impl ProviderUnderTest {
    /// Starts `shop-<name>` on `runtime` and waits until it is ready.
    pub async fn start(runtime: ProviderRuntime, binaries: &Binaries, name: &str) -> Result<Self, VerifyError> {
        let mut provider = match runtime {
            ProviderRuntime::Process => Self::Process(ProviderProcess::start(binaries, name)?),
            ProviderRuntime::Docker => Self::Container(ProviderContainer::start(binaries, name).await?),
        };
        if let Err(e) = provider.wait_ready(name).await {
            provider.stop().await;
            return Err(e);
        }
        Ok(provider)
    }

    /// The port the provider answers on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        match self {
            Self::Process(p) => p.port,
            Self::Container(c) => c.host_port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The last lines the provider logged, indented.
    pub fn log_tail(&self) -> String {
        tail(self.log(), LOG_LINES)
    }

    fn log(&self) -> &Path {
        match self {
            Self::Process(p) => &p.log,
            Self::Container(c) => &c.log,
        }
    }

    async fn wait_ready(&mut self, name: &str) -> Result<(), VerifyError> {
        let url = format!("{}/ready", self.base_url());
        let node = format!("shop-{name}");
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
                    eprintln!("warning: could not remove the container of shop-{}: {e}", c.name);
                }
            }
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
    /// Starts `shop-<name>` on a free loopback port (it may not be ready yet).
    fn start(binaries: &Binaries, name: &str) -> Result<Self, VerifyError> {
        let err = |detail: String| VerifyError::Start { provider: name.to_string(), detail };
        let binary = binaries.path(&format!("shop-{name}"));
        let dir = tempfile::tempdir().map_err(|e| err(format!("a temporary folder: {e}")))?;
        let port = free_port().map_err(|e| err(format!("finding a free port: {e}")))?;
        let log = dir.path().join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| err(format!("creating {}: {e}", log.display())))?;
        let db = dir.path().join(format!("{name}.db"));
        let mut cmd = Command::new(&binary);
        cmd.envs(contract_env(name, &db.display().to_string()))
            .env("SHOP_BIND", "127.0.0.1")
            .env("SHOP_PORT", port.to_string());
        let stderr = log_file.try_clone().map_err(|e| err(e.to_string()))?;
        cmd.stdin(Stdio::null()).stdout(log_file).stderr(stderr).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| err(format!("running {}: {e}", binary.display())))?;
        Ok(Self { port, child, log, _dir: dir })
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
    /// Builds (or reuses) the image of `shop-<name>` and starts a container of it (it
    /// may not be ready yet). The harness's own `SHOP_*` variables pass through, as a
    /// process inherits them (`SHOP_CONTRACT_BREAK`, for one).
    async fn start(binaries: &Binaries, name: &str) -> Result<Self, VerifyError> {
        let err = |detail: String| VerifyError::Start { provider: name.to_string(), detail };
        let image = image_for(&binaries.path(&format!("shop-{name}"))).await.map_err(|e| err(e.to_string()))?;
        let dir = tempfile::tempdir().map_err(|e| err(format!("a temporary folder: {e}")))?;
        let log = dir.path().join(format!("{name}.log"));
        let mut env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("SHOP_")).collect();
        env.extend(contract_env(name, &format!("{DATA_DIR}/{name}.db")));
        let started = ServiceContainer {
            image,
            port: CONTAINER_PORT,
            args: Vec::new(),
            env,
            env_names: crate::cluster::spec::EnvNames {
                port: Some("SHOP_PORT".into()),
                bind: Some("SHOP_BIND".into()),
                database: None,
            },
            log: log.clone(),
            data: DataDir::Scratch,
            name: None,
            network: None,
            labels: vec![
                (CONTAINER_LABEL.into(), name.to_string()),
                (OWNER_LABEL.into(), std::process::id().to_string()),
            ],
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

/// Makes sure the binaries of `providers` are built from the current source (the
/// matrix records a hash of that source as the provider version): `cargo build`, a
/// no-op when they are fresh; with `rebuild` false, only the missing ones are built.
pub fn ensure_binaries(binaries: &Binaries, providers: &[String], rebuild: bool) -> Result<(), VerifyError> {
    let names: Vec<String> = providers.iter().map(|p| format!("shop-{p}")).collect();
    let failed = |detail: String| VerifyError::Binary { provider: providers.join(", "), detail };
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
    binaries: &Binaries,
    runtime: ProviderRuntime,
    provider: &str,
    provider_version: &str,
    source: Source<'_>,
) -> Result<ProviderReport, VerifyError> {
    let started = Instant::now();
    let under_test = ProviderUnderTest::start(runtime, binaries, provider).await?;
    let (sources, publish) = match &source {
        Source::Files(pacts) => {
            (pacts.iter().map(|p| PactSource::File(p.path.display().to_string())).collect::<Vec<_>>(), None)
        }
        Source::Broker(broker) => (vec![broker.pact_source(provider)], broker.publish_options(provider_version)),
    };
    let replayed = replay(provider, under_test.port(), sources, publish.as_ref()).await.map_err(|e| match e {
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

/// Replays `sources` against the provider listening on `port`.
pub async fn replay(
    provider: &str,
    port: u16,
    sources: Vec<PactSource>,
    publish: Option<&PublishOptions>,
) -> Result<ProviderReport, VerifyError> {
    #[allow(deprecated)]
    let info = ProviderInfo {
        name: provider.to_string(),
        host: "127.0.0.1".to_string(),
        port: Some(port),
        transports: vec![
            ProviderTransport { transport: "http".into(), port: Some(port), path: None, scheme: Some("http".into()) },
            // Asynchronous messages: pact_verifier posts `{description, providerStates}` here.
            ProviderTransport {
                transport: "message".into(),
                port: Some(port),
                path: Some(MESSAGE_PATH.into()),
                scheme: Some("http".into()),
            },
        ],
        ..ProviderInfo::default()
    };
    let options = VerificationOptions::<NullRequestFilterExecutor> {
        request_timeout: REQUEST_TIMEOUT.as_millis() as u64,
        coloured_output: false,
        no_pacts_is_error: true,
        broker_request_retries: 1,
        ..VerificationOptions::default()
    };
    let states = Arc::new(HttpRequestProviderStateExecutor {
        state_change_url: Some(format!("http://127.0.0.1:{port}{}", STATE_PATH)),
        state_change_teardown: false,
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
            consumer: "gateway".into(),
            provider: "catalog".into(),
            description: description.into(),
            states: vec!["products 1 to 100 exist".into()],
            failure: failure.map(str::to_string),
            pending: false,
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn a_provider_gets_the_same_contract_environment_whatever_runs_it() {
        let env = contract_env("payments", "/data/payments.db");
        assert_eq!(env[TEST_MODE_ENV], "1");
        assert_eq!(env["SHOP_DB"], "/data/payments.db");
        assert_eq!(env["SHOP_PAYMENTS_DECLINE_OVER"], "5000");
        for upstream in ["USERS", "CATALOG", "ORDERS", "PAYMENTS"] {
            assert_eq!(env[&format!("SHOP_UPSTREAM_{upstream}")], NOWHERE);
        }
        assert!(!env.contains_key("SHOP_BIND") && !env.contains_key("SHOP_PORT"), "each runtime sets its own");
        assert_eq!(ProviderRuntime::default().to_string(), "process");
        assert_eq!(ProviderRuntime::Docker.to_string(), "docker");
    }

    #[test]
    fn the_table_and_junit_show_each_interaction() {
        let report = ProviderReport {
            provider: "catalog".into(),
            provider_version: "abc".into(),
            interactions: vec![outcome("get a product", None), outcome("list <products>", Some("$.name missing"))],
            elapsed: Duration::from_millis(20),
        };
        assert!(!report.passed());
        let table = render_table(std::slice::from_ref(&report));
        assert!(table.contains("gateway->catalog") && table.contains("FAILED: $.name missing"), "{table}");
        assert!(table.ends_with("2 interactions, 1 failed\n"), "{table}");
        let xml = junit_xml(&[report]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"list &lt;products&gt;\""), "{xml}");
    }
}
