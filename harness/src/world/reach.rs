//! How the executor reaches a started world: the HTTP it reads state, gauges and
//! probes with, the edge faults' API, the load generator and the clock.
//!
//! A world on this machine (local processes, containers, an external deployment) is
//! reached over the host's network: [`Reach::host`] gives reqwest, a Toxiproxy client
//! and the open-model load generator ([`crate::load::runner::run`]). The simulation
//! gives its own: simulated HTTP, its fabric's proxies, the same flow driver paced on
//! simulated time, and a simulated wall clock. The executor runs the same code on
//! either and never asks which it has.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::future::{BoxFuture, LocalBoxFuture};

use crate::faults::client::ToxiproxyClient;
use crate::faults::model::Toxic;
use crate::load::runner::{self, Control, Progress, RunConfig, RunResult};
use crate::load::workload::Workload;
use crate::scenario::effect::{self, Counters};

/// A GET as the executor needs it: the steady-state probes, the services' admin state
/// and their `/metrics`.
pub trait Http: Send + Sync {
    /// `GET url`, with `token` as its bearer token when given, answered within
    /// `timeout`: the status and the body, or why there was no answer.
    fn get(
        &self,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, String), String>>;
    /// `GET url` answered within `timeout`: the time its `Date` header says (the
    /// answering node's wall clock, to the second), whatever the status.
    fn date(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<SystemTime, String>>;
}

/// The API of a world's edge proxies, as Toxiproxy's: toxics by name on a proxy, a
/// proxy enabled or not, and each proxy's traffic counters.
pub trait EdgeFaults: Send + Sync {
    /// Adds `toxic` to `proxy`.
    fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Removes toxic `name` from `proxy`; one already gone is no error.
    fn remove_toxic(&self, proxy: &str, name: &str) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Enables `proxy`, or disables it (connections refused, those open closed).
    fn set_enabled(&self, proxy: &str, enabled: bool) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Every proxy's counters now, if the API serves them.
    fn counters(&self) -> BoxFuture<'static, Option<Counters>>;
}

/// The progress callback a load run calls every tick.
pub type OnProgress = Box<dyn FnMut(&Progress) -> Control + Send>;

/// A load generator: runs a workload as its [`RunConfig`] says (setup, then flows on
/// the schedule, recording into the config's history, whose start it sets to the
/// measured phase's start), calling back with progress every tick.
pub trait Generator: Send + Sync {
    /// Runs `workload`, its base URL already set to the world's ingress.
    fn run(
        &self,
        workload: Arc<Workload>,
        config: RunConfig,
        on_progress: OnProgress,
    ) -> LocalBoxFuture<'static, anyhow::Result<RunResult>>;
}

/// Everything the executor reaches a world through, besides its [`crate::cluster::Runtime`].
#[derive(Clone)]
pub struct Reach {
    /// Probes, admin state, gauges.
    pub http: Arc<dyn Http>,
    /// The edge proxies' API.
    pub faults: Arc<dyn EdgeFaults>,
    /// The load generator.
    pub load: Arc<dyn Generator>,
    /// The wall clock the run's report is dated by.
    pub clock: fn() -> SystemTime,
    /// Whether the world is simulated (the report says so).
    pub simulated: bool,
}

impl Reach {
    /// A world reached over this host's network, its proxies by the Toxiproxy API at
    /// `fault_api`.
    pub fn host(fault_api: &str) -> Self {
        Self {
            http: Arc::new(HostHttp),
            faults: Arc::new(ToxiproxyClient::new(fault_api)),
            load: Arc::new(HostLoad),
            clock: SystemTime::now,
            simulated: false,
        }
    }
}

/// GETs over the host's network (reqwest, no proxy).
pub struct HostHttp;

impl Http for HostHttp {
    fn get(
        &self,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(u16, String), String>> {
        let client = reqwest::Client::builder().timeout(timeout).no_proxy().build();
        let (url, token) = (url.to_string(), token.map(str::to_string));
        Box::pin(async move {
            let client = client.map_err(|e| e.to_string())?;
            let mut req = client.get(&url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let res = req.send().await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let text = res.text().await.map_err(|e| e.to_string())?;
            Ok((status, text))
        })
    }

    fn date(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<SystemTime, String>> {
        let client = reqwest::Client::builder().timeout(timeout).no_proxy().build();
        let url = url.to_string();
        Box::pin(async move {
            let res = client.map_err(|e| e.to_string())?.get(&url).send().await.map_err(|e| e.to_string())?;
            date_of(res.headers(), &url)
        })
    }
}

/// The time the `Date` header of an answer from `url` says.
pub fn date_of(headers: &http::HeaderMap, url: &str) -> Result<SystemTime, String> {
    let date = headers.get(http::header::DATE).ok_or_else(|| format!("{url} answered without a Date header"))?;
    let text = date.to_str().map_err(|_| format!("{url} answered an unreadable Date header"))?;
    httpdate::parse_http_date(text).map_err(|e| format!("{url} answered Date: {text} ({e})"))
}

impl EdgeFaults for ToxiproxyClient {
    fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> BoxFuture<'static, anyhow::Result<()>> {
        let (api, proxy, toxic) = (self.clone(), proxy.to_string(), toxic.clone());
        Box::pin(async move {
            api.add_toxic(&proxy, &toxic).await.with_context(|| format!("adding {} to {proxy}", toxic.name))?;
            Ok(())
        })
    }

    fn remove_toxic(&self, proxy: &str, name: &str) -> BoxFuture<'static, anyhow::Result<()>> {
        let (api, proxy, name) = (self.clone(), proxy.to_string(), name.to_string());
        Box::pin(async move {
            match api.remove_toxic(&proxy, &name).await {
                // Already gone is what we want.
                Err(e) if e.status() != Some(404) => Err(anyhow::anyhow!("removing {name} from {proxy}: {e}")),
                _ => Ok(()),
            }
        })
    }

    fn set_enabled(&self, proxy: &str, enabled: bool) -> BoxFuture<'static, anyhow::Result<()>> {
        let (api, proxy) = (self.clone(), proxy.to_string());
        Box::pin(async move {
            api.set_enabled(&proxy, enabled)
                .await
                .with_context(|| format!("{} {proxy}", if enabled { "enabling" } else { "disabling" }))?;
            Ok(())
        })
    }

    fn counters(&self) -> BoxFuture<'static, Option<Counters>> {
        let api = self.clone();
        Box::pin(async move { api.metrics().await.ok().map(|t| effect::parse_counters(&t)) })
    }
}

/// The open-model load generator over the host's network, on a task of its own so its
/// pacer keeps time whatever else the run is doing.
pub struct HostLoad;

impl Generator for HostLoad {
    fn run(
        &self,
        workload: Arc<Workload>,
        config: RunConfig,
        on_progress: OnProgress,
    ) -> LocalBoxFuture<'static, anyhow::Result<RunResult>> {
        let task = tokio::spawn(runner::run(workload, config, on_progress));
        Box::pin(async move {
            let result = task.await.context("the load generator panicked")?;
            result.context("the load generator failed")
        })
    }
}
