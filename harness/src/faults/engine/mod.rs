//! The TCP proxy engine: the set of proxies, each with its listener, its connections
//! and its toxics, and the operations of the Toxiproxy API on them.
//!
//! Invariants: a proxy is enabled exactly when its listener runs; each direction's
//! toxic list is published on a watch channel every link of the proxy follows; a toxic
//! gets a new `uid` whenever it is added or updated, so links know to rebuild its stage;
//! the upstream list also says whether a downstream toxic decides per request, so the
//! links carrying requests tell the others which requests they forwarded, in order.

mod answers;
mod boundaries;
mod chain;
mod link;
mod listener;
#[cfg(target_os = "linux")]
mod splice;
mod timer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use super::error::ApiError;
use super::model::{Proxy, ProxyConfig, Stream, Toxic};
use super::seed::Occurrences;
use super::toxics;
use listener::Running;

/// A toxic as installed on a proxy.
#[derive(Clone, Debug)]
pub(crate) struct Installed {
    /// The toxic.
    pub toxic: Toxic,
    /// Unique id of this version of the toxic.
    pub uid: u64,
    /// How often this toxic was updated (part of its decision seed).
    pub revision: u64,
    /// How often each request came to this version of the toxic (HTTP toxics).
    pub occurrences: Arc<Occurrences>,
}

/// What the links of one direction follow.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainSpec {
    /// The toxics, in order.
    pub toxics: Vec<Installed>,
    /// Whether this direction (upstream) tells the other which requests it forwarded,
    /// because a toxic there decides per request.
    pub tell_requests: bool,
}

/// The connection-wide signal both links of a connection follow; it only ever rises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Signal {
    /// Carry on.
    Open,
    /// Close both sockets.
    Close,
    /// Reset both sockets.
    Reset,
}

/// Byte and connection counters of one proxy, indexed by [`Stream::index`].
#[derive(Debug, Default)]
pub(crate) struct ProxyMetrics {
    /// Bytes read from the source, per direction.
    pub received: [AtomicU64; 2],
    /// Bytes written to the destination, per direction.
    pub sent: [AtomicU64; 2],
    /// Connections accepted and connected upstream.
    pub connections: AtomicU64,
    /// What the toxics that damage streams did.
    pub toxics: Arc<toxics::ToxicEffects>,
}

/// What the accept loop and the links of one proxy share.
pub(crate) struct ProxyShared {
    name: Arc<str>,
    seed: u64,
    chains: [watch::Sender<Arc<ChainSpec>>; 2],
    connections: Mutex<HashMap<u64, Arc<watch::Sender<Signal>>>>,
    next_connection: AtomicU64,
    metrics: Arc<ProxyMetrics>,
}

impl ProxyShared {
    fn close_connections(&self) {
        if let Ok(set) = self.connections.lock() {
            for signal in set.values() {
                signal.send_if_modified(|s| {
                    let raise = *s < Signal::Close;
                    if raise {
                        *s = Signal::Close;
                    }
                    raise
                });
            }
        }
    }
}

struct ProxyEntry {
    config: ProxyConfig,
    toxics: [Vec<Installed>; 2],
    shared: Arc<ProxyShared>,
    running: Option<Running>,
}

impl ProxyEntry {
    fn view(&self) -> Proxy {
        Proxy {
            name: self.config.name.clone(),
            listen: self.config.listen.clone(),
            upstream: self.config.upstream.clone(),
            enabled: self.config.enabled,
            toxics: self.toxic_list(),
        }
    }

    fn toxic_list(&self) -> Vec<Toxic> {
        self.toxics.iter().flatten().map(|i| i.toxic.clone()).collect()
    }

    fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.toxics
            .iter()
            .enumerate()
            .find_map(|(d, list)| list.iter().position(|i| i.toxic.name == name).map(|p| (d, p)))
    }

    /// Publishes the toxics of `stream` to its links; the links carrying requests learn
    /// whether the responses' toxics decide per request (they must then say which
    /// requests they forward).
    fn publish(&self, stream: Stream) {
        let tell_requests = self.toxics[Stream::Downstream.index()]
            .iter()
            .any(|i| toxics::decides_per_request(&i.toxic.kind, i.toxic.toxicity));
        let up = Stream::Upstream.index();
        let spec =
            |s: usize| Arc::new(ChainSpec { toxics: self.toxics[s].clone(), tell_requests: s == up && tell_requests });
        self.shared.chains[stream.index()].send_replace(spec(stream.index()));
        if stream != Stream::Upstream {
            self.shared.chains[up].send_if_modified(|current| {
                let changed = current.tell_requests != tell_requests;
                if changed {
                    *current = spec(up);
                }
                changed
            });
        }
    }

    async fn start(&mut self) -> Result<(), ApiError> {
        if self.running.is_some() {
            return Ok(());
        }
        let (running, bound) = Running::start(&self.config.listen, self.config.upstream.clone(), self.shared.clone())?;
        self.running = Some(running);
        self.config.listen = bound;
        self.config.enabled = true;
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        self.shared.close_connections();
        self.config.enabled = false;
    }
}

/// The proxies of one server and the operations of the Toxiproxy API on them.
pub struct Engine {
    seed: u64,
    proxies: tokio::sync::Mutex<BTreeMap<String, ProxyEntry>>,
    next_uid: AtomicU64,
}

impl Engine {
    /// An engine with no proxies whose random decisions all derive from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self { seed, proxies: tokio::sync::Mutex::new(BTreeMap::new()), next_uid: AtomicU64::new(1) })
    }

    /// The seed every decision derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn new_entry(&self, config: &ProxyConfig) -> ProxyEntry {
        let shared = ProxyShared {
            name: config.name.as_str().into(),
            seed: self.seed,
            chains: [watch::Sender::new(Arc::default()), watch::Sender::new(Arc::default())],
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            metrics: Arc::new(ProxyMetrics::default()),
        };
        ProxyEntry {
            config: ProxyConfig { enabled: false, ..config.clone() },
            toxics: [Vec::new(), Vec::new()],
            shared: Arc::new(shared),
            running: None,
        }
    }

    /// All proxies with their toxics, by name.
    pub async fn proxies(&self) -> BTreeMap<String, Proxy> {
        let proxies = self.proxies.lock().await;
        proxies.iter().map(|(k, v)| (k.clone(), v.view())).collect()
    }

    /// Creates a proxy and starts it when `enabled` (`POST /proxies`).
    pub async fn create_proxy(&self, config: ProxyConfig) -> Result<Proxy, ApiError> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&config.name) {
            return Err(ApiError::ProxyAlreadyExists);
        }
        let mut entry = self.new_entry(&config);
        if config.enabled {
            entry.start().await?;
        }
        let view = entry.view();
        proxies.insert(config.name.clone(), entry);
        Ok(view)
    }

    /// Creates or replaces proxies in bulk (`POST /populate`): a proxy whose listen and
    /// upstream are unchanged is kept with its toxics; a changed one is replaced. Returns
    /// the proxies applied and the first error, if one stopped it.
    pub async fn populate(&self, configs: Vec<ProxyConfig>) -> (Vec<Proxy>, Option<ApiError>) {
        let mut proxies = self.proxies.lock().await;
        let mut applied = Vec::new();
        for config in configs {
            if let Some(existing) = proxies.get(&config.name) {
                let same = existing.config.listen == config.listen || config.listen == model_default_listen();
                if same && existing.config.upstream == config.upstream {
                    applied.push(existing.view());
                    continue;
                }
            }
            if let Some(mut old) = proxies.remove(&config.name) {
                old.stop().await;
            }
            let mut entry = self.new_entry(&config);
            if config.enabled {
                if let Err(e) = entry.start().await {
                    return (applied, Some(e));
                }
            }
            applied.push(entry.view());
            proxies.insert(config.name.clone(), entry);
        }
        (applied, None)
    }

    /// One proxy with its toxics (`GET /proxies/{proxy}`).
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ApiError> {
        let proxies = self.proxies.lock().await;
        proxies.get(name).map(ProxyEntry::view).ok_or(ApiError::ProxyNotFound)
    }

    /// Applies a partial update (`PATCH /proxies/{proxy}`): a new listen or upstream
    /// restarts the proxy; `enabled` starts or stops it.
    pub async fn update_proxy(&self, name: &str, body: &Value) -> Result<Proxy, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies.get_mut(name).ok_or(ApiError::ProxyNotFound)?;
        let next = entry.config.patched(body)?;
        if next.listen != entry.config.listen || next.upstream != entry.config.upstream {
            entry.stop().await;
            entry.config.listen = next.listen;
            entry.config.upstream = next.upstream;
        }
        if next.enabled {
            entry.start().await?;
        } else {
            entry.stop().await;
        }
        entry.config.enabled = entry.running.is_some();
        Ok(entry.view())
    }

    /// Stops and removes a proxy (`DELETE /proxies/{proxy}`).
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let mut entry = proxies.remove(name).ok_or(ApiError::ProxyNotFound)?;
        entry.stop().await;
        Ok(())
    }

    /// Enables every proxy and removes every toxic (`POST /reset`).
    pub async fn reset(&self) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.start().await?;
            for stream in Stream::BOTH {
                entry.toxics[stream.index()].clear();
                entry.publish(stream);
            }
        }
        Ok(())
    }

    /// The toxics of a proxy (`GET /proxies/{proxy}/toxics`).
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ApiError> {
        let proxies = self.proxies.lock().await;
        proxies.get(proxy).map(ProxyEntry::toxic_list).ok_or(ApiError::ProxyNotFound)
    }

    /// Adds a toxic to the end of its stream's chain; open connections take it at once.
    pub async fn add_toxic(&self, proxy: &str, toxic: Toxic) -> Result<Toxic, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(ApiError::ProxyNotFound)?;
        if entry.find(&toxic.name).is_some() {
            return Err(ApiError::ToxicAlreadyExists);
        }
        let stream = toxic.stream;
        entry.toxics[stream.index()].push(Installed {
            toxic: toxic.clone(),
            uid: self.next_uid.fetch_add(1, Ordering::Relaxed),
            revision: 0,
            occurrences: Arc::default(),
        });
        entry.publish(stream);
        Ok(toxic)
    }

    /// One toxic of a proxy (`GET /proxies/{proxy}/toxics/{toxic}`).
    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or(ApiError::ProxyNotFound)?;
        let (d, p) = entry.find(name).ok_or(ApiError::ToxicNotFound)?;
        Ok(entry.toxics[d][p].toxic.clone())
    }

    /// Applies a partial update to a toxic (`PATCH /proxies/{proxy}/toxics/{toxic}`).
    pub async fn update_toxic(&self, proxy: &str, name: &str, body: &Value) -> Result<Toxic, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(ApiError::ProxyNotFound)?;
        let (d, p) = entry.find(name).ok_or(ApiError::ToxicNotFound)?;
        let current = &entry.toxics[d][p];
        let updated = Installed {
            toxic: current.toxic.patched(body)?,
            uid: self.next_uid.fetch_add(1, Ordering::Relaxed),
            revision: current.revision + 1,
            occurrences: Arc::default(),
        };
        let toxic = updated.toxic.clone();
        entry.toxics[d][p] = updated;
        entry.publish(toxic.stream);
        Ok(toxic)
    }

    /// Removes a toxic; open connections drop it at once (`DELETE .../toxics/{toxic}`).
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies.get_mut(proxy).ok_or(ApiError::ProxyNotFound)?;
        let (d, p) = entry.find(name).ok_or(ApiError::ToxicNotFound)?;
        let removed = entry.toxics[d].remove(p);
        entry.publish(removed.toxic.stream);
        Ok(())
    }

    /// The per-proxy counters in the Prometheus text format (`GET /metrics`).
    pub async fn metrics_text(&self) -> String {
        let proxies = self.proxies.lock().await;
        let rows: Vec<super::metrics::ProxyRow<'_>> = proxies
            .values()
            .map(|e| super::metrics::ProxyRow { config: &e.config, metrics: &e.shared.metrics })
            .collect();
        super::metrics::render(&rows)
    }

    /// Stops every proxy and closes every connection.
    pub async fn shutdown(&self) {
        let mut proxies = self.proxies.lock().await;
        for entry in proxies.values_mut() {
            entry.stop().await;
        }
    }
}

fn model_default_listen() -> String {
    super::model::DEFAULT_LISTEN.to_string()
}
