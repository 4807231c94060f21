//! The typed values of the Toxiproxy API: proxies and toxics, their JSON shapes, and the
//! strict parsers the server runs on request bodies.
//!
//! Shapes, as Toxiproxy 2.x writes them:
//!
//! ```json
//! {"name": "api_db", "listen": "127.0.0.1:21001", "upstream": "127.0.0.1:9003",
//!  "enabled": true, "toxics": [
//!    {"attributes": {"latency": 100, "jitter": 10}, "name": "latency_downstream",
//!     "type": "latency", "stream": "downstream", "toxicity": 1}]}
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::json::{bad, object, opt_bool, opt_f64, opt_str, opt_u64};

/// Which way data flows through a toxic: `upstream` is client to server, `downstream`
/// server to client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// From the client to the upstream server.
    Upstream,
    /// From the upstream server back to the client.
    Downstream,
}

impl Stream {
    /// Both streams, in the order Toxiproxy lists toxics: upstream first.
    pub const BOTH: [Stream; 2] = [Stream::Upstream, Stream::Downstream];

    /// The wire name, `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }

    /// Parses a wire name, ignoring case as Toxiproxy does.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("upstream") {
            Some(Self::Upstream)
        } else if s.eq_ignore_ascii_case("downstream") {
            Some(Self::Downstream)
        } else {
            None
        }
    }

    /// The index of this stream in per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Self::Upstream => 0,
            Self::Downstream => 1,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which HTTP requests an HTTP-aware toxic touches (a Gauntlet extension).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpMatch {
    /// Share of matching requests touched, in percent (`0..=100`).
    pub percentage: f64,
    /// Only requests with this method (case-insensitive); any when `None`.
    pub method: Option<String>,
    /// Only requests whose path starts with this; any when `None`.
    pub path_prefix: Option<String>,
}

impl Default for HttpMatch {
    fn default() -> Self {
        Self { percentage: 100.0, method: None, path_prefix: None }
    }
}

impl HttpMatch {
    /// Whether a request with this method and target matches (ignoring `percentage`).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }

    fn write(&self, attrs: &mut Map<String, Value>) {
        attrs.insert("percentage".into(), json!(self.percentage));
        attrs.insert("method".into(), json!(self.method.clone().unwrap_or_default()));
        attrs.insert("path_prefix".into(), json!(self.path_prefix.clone().unwrap_or_default()));
    }

    fn read(attrs: &Map<String, Value>) -> Result<Self, ApiError> {
        let percentage = opt_f64(attrs, ATTR, "percentage")?.unwrap_or(100.0);
        if !(0.0..=100.0).contains(&percentage) {
            return Err(bad(format!("attributes.percentage must be between 0 and 100, got {percentage}")));
        }
        let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Ok(Self {
            percentage,
            method: non_empty(opt_str(attrs, ATTR, "method")?),
            path_prefix: non_empty(opt_str(attrs, ATTR, "path_prefix")?),
        })
    }
}

/// A Gilbert–Elliott burst model for the `loss` toxic: a two-state chain (good, bad)
/// stepped once per segment; in the bad state segments are lost with `loss`.
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    /// Probability, per segment, of going from the good state to the bad one.
    pub enter: f64,
    /// Probability, per segment, of going from the bad state back to the good one.
    pub exit: f64,
    /// Probability that a segment is lost in the bad state.
    pub loss: f64,
}

/// What a toxic does, with its attributes; times in milliseconds unless named otherwise.
#[derive(Clone, Debug, PartialEq)]
pub enum ToxicKind {
    /// Delays each chunk by `latency` ± `jitter` milliseconds.
    Latency {
        /// Added delay, ms.
        latency: u64,
        /// Random spread around `latency`, ms.
        jitter: u64,
    },
    /// Limits the rate to `rate` KB/s (1 KB = 1000 bytes).
    Bandwidth {
        /// KB per second, at least 1.
        rate: u64,
    },
    /// Delays the close (end of stream) by `delay` ms.
    SlowClose {
        /// ms.
        delay: u64,
    },
    /// Drops all data and closes the connection after `timeout` ms; 0 holds it open
    /// until the toxic is removed, which then closes it.
    Timeout {
        /// ms; 0 means never.
        timeout: u64,
    },
    /// On the first data, waits `timeout` ms and resets the connection (TCP RST).
    ResetPeer {
        /// ms.
        timeout: u64,
    },
    /// Slices data into chunks of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        /// Bytes, at least 1.
        average_size: u64,
        /// Bytes, less than `average_size`.
        size_variation: u64,
        /// Microseconds between slices.
        delay: u64,
    },
    /// Lets `bytes` bytes through, then closes the connection.
    LimitData {
        /// Bytes.
        bytes: u64,
    },
    /// Gauntlet extension: answers matching HTTP requests itself with `status_code`.
    HttpAbort {
        /// The status answered, `200..=599`.
        status_code: u16,
        /// The body answered.
        body: String,
        /// Which requests.
        matching: HttpMatch,
    },
    /// Gauntlet extension: forwards matching HTTP requests `delay` ms late.
    HttpDelay {
        /// ms.
        delay: u64,
        /// Which requests.
        matching: HttpMatch,
    },
    /// Gauntlet extension: what lost TCP segments do to a stream. The stream is cut into
    /// segments of `segment_size` bytes; each is lost with `probability` (or by the
    /// `burst` model), and a lost segment, with what follows it, is held back for a
    /// retransmission timeout that starts at `rto` and doubles while its retransmissions
    /// are lost too, up to `max_rto`.
    Loss {
        /// Probability that a segment is lost (`0..=1`), in the good state of `burst`.
        probability: f64,
        /// The first retransmission timeout, ms, at least 1.
        rto: u64,
        /// The longest retransmission timeout, ms, at least `rto`.
        max_rto: u64,
        /// Bytes per segment, at least 1.
        segment_size: u64,
        /// Losses in bursts, when set.
        burst: Option<Burst>,
    },
    /// Gauntlet extension: flips one bit in each byte chosen with probability `rate`;
    /// with `spare_head`, on a link carrying HTTP/1.1 the request and status lines and
    /// headers are left intact, so the damage lands in bodies.
    Corrupt {
        /// Probability that a byte is corrupted (`0..=1`).
        rate: f64,
        /// Leave HTTP heads intact.
        spare_head: bool,
    },
}

/// The `loss` toxic's first retransmission timeout when none is given: Linux's
/// `TCP_RTO_MIN`.
pub const DEFAULT_RTO_MS: u64 = 200;
/// The `loss` toxic's longest retransmission timeout when none is given (three
/// doublings of the default).
pub const DEFAULT_MAX_RTO_MS: u64 = 1_600;
/// The `loss` toxic's segment size when none is given: an Ethernet MSS.
pub const DEFAULT_SEGMENT_SIZE: u64 = 1_448;

const ATTR: &str = "attributes.";

/// The toxic type names this server knows, Toxiproxy's then Gauntlet's.
pub const TOXIC_TYPES: [&str; 11] = [
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "http_abort",
    "http_delay",
    "loss",
    "corrupt",
];

impl ToxicKind {
    /// The wire name of the type, e.g. `latency`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Bandwidth { .. } => "bandwidth",
            Self::SlowClose { .. } => "slow_close",
            Self::Timeout { .. } => "timeout",
            Self::ResetPeer { .. } => "reset_peer",
            Self::Slicer { .. } => "slicer",
            Self::LimitData { .. } => "limit_data",
            Self::HttpAbort { .. } => "http_abort",
            Self::HttpDelay { .. } => "http_delay",
            Self::Loss { .. } => "loss",
            Self::Corrupt { .. } => "corrupt",
        }
    }

    /// Whether this is a Gauntlet HTTP-aware toxic (upstream only).
    pub fn is_http(&self) -> bool {
        matches!(self, Self::HttpAbort { .. } | Self::HttpDelay { .. })
    }

    /// The `attributes` object as Toxiproxy writes it.
    pub fn attributes(&self) -> Value {
        let mut m = Map::new();
        match self {
            Self::Latency { latency, jitter } => {
                m.insert("latency".into(), json!(latency));
                m.insert("jitter".into(), json!(jitter));
            }
            Self::Bandwidth { rate } => {
                m.insert("rate".into(), json!(rate));
            }
            Self::SlowClose { delay } => {
                m.insert("delay".into(), json!(delay));
            }
            Self::Timeout { timeout } | Self::ResetPeer { timeout } => {
                m.insert("timeout".into(), json!(timeout));
            }
            Self::Slicer { average_size, size_variation, delay } => {
                m.insert("average_size".into(), json!(average_size));
                m.insert("size_variation".into(), json!(size_variation));
                m.insert("delay".into(), json!(delay));
            }
            Self::LimitData { bytes } => {
                m.insert("bytes".into(), json!(bytes));
            }
            Self::HttpAbort { status_code, body, matching } => {
                m.insert("status_code".into(), json!(status_code));
                m.insert("body".into(), json!(body));
                matching.write(&mut m);
            }
            Self::HttpDelay { delay, matching } => {
                m.insert("delay".into(), json!(delay));
                matching.write(&mut m);
            }
            Self::Loss { probability, rto, max_rto, segment_size, burst } => {
                m.insert("probability".into(), json!(probability));
                m.insert("rto".into(), json!(rto));
                m.insert("max_rto".into(), json!(max_rto));
                m.insert("segment_size".into(), json!(segment_size));
                if let Some(b) = burst {
                    m.insert("burst_enter".into(), json!(b.enter));
                    m.insert("burst_exit".into(), json!(b.exit));
                    m.insert("burst_loss".into(), json!(b.loss));
                }
            }
            Self::Corrupt { rate, spare_head } => {
                m.insert("rate".into(), json!(rate));
                m.insert("spare_head".into(), json!(spare_head));
            }
        }
        Value::Object(m)
    }

    /// Reads a toxic of type `type_name` from its `attributes` object; absent attributes
    /// take Toxiproxy's defaults (zero).
    pub fn from_attributes(type_name: &str, attrs: &Map<String, Value>) -> Result<Self, ApiError> {
        let num = |key: &str| opt_u64(attrs, ATTR, key).map(Option::unwrap_or_default);
        let kind = match type_name {
            "latency" => Self::Latency { latency: num("latency")?, jitter: num("jitter")? },
            "bandwidth" => Self::Bandwidth { rate: num("rate")? },
            "slow_close" => Self::SlowClose { delay: num("delay")? },
            "timeout" => Self::Timeout { timeout: num("timeout")? },
            "reset_peer" => Self::ResetPeer { timeout: num("timeout")? },
            "slicer" => Self::Slicer {
                average_size: num("average_size")?,
                size_variation: num("size_variation")?,
                delay: num("delay")?,
            },
            "limit_data" => Self::LimitData { bytes: num("bytes")? },
            "http_abort" => Self::HttpAbort {
                status_code: status_code(attrs)?,
                body: opt_str(attrs, ATTR, "body")?.unwrap_or_default().to_string(),
                matching: HttpMatch::read(attrs)?,
            },
            "http_delay" => Self::HttpDelay { delay: num("delay")?, matching: HttpMatch::read(attrs)? },
            "loss" => Self::Loss {
                probability: probability(attrs, "probability")?.unwrap_or(0.0),
                rto: opt_u64(attrs, ATTR, "rto")?.unwrap_or(DEFAULT_RTO_MS),
                max_rto: opt_u64(attrs, ATTR, "max_rto")?.unwrap_or(DEFAULT_MAX_RTO_MS),
                segment_size: opt_u64(attrs, ATTR, "segment_size")?.unwrap_or(DEFAULT_SEGMENT_SIZE),
                burst: burst(attrs)?,
            },
            "corrupt" => Self::Corrupt {
                rate: probability(attrs, "rate")?.unwrap_or(0.0),
                spare_head: opt_bool(attrs, ATTR, "spare_head")?.unwrap_or(false),
            },
            _ => return Err(ApiError::InvalidToxicType),
        };
        kind.validate()?;
        Ok(kind)
    }

    /// Checks the values Toxiproxy would misbehave on.
    fn validate(&self) -> Result<(), ApiError> {
        match self {
            Self::Bandwidth { rate: 0 } => Err(bad("attributes.rate must be at least 1 (KB/s)".into())),
            Self::Slicer { average_size, size_variation, .. } => {
                if *average_size == 0 {
                    Err(bad("attributes.average_size must be at least 1".into()))
                } else if size_variation >= average_size {
                    Err(bad(format!(
                        "attributes.size_variation must be less than attributes.average_size ({average_size}), got {size_variation}"
                    )))
                } else {
                    Ok(())
                }
            }
            Self::Loss { rto, max_rto, segment_size, .. } => {
                if *rto == 0 {
                    Err(bad("attributes.rto must be at least 1 (ms)".into()))
                } else if max_rto < rto {
                    Err(bad(format!("attributes.max_rto must be at least attributes.rto ({rto} ms), got {max_rto}")))
                } else if *segment_size == 0 {
                    Err(bad("attributes.segment_size must be at least 1 (bytes)".into()))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// A probability attribute, `0..=1`.
fn probability(attrs: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match opt_f64(attrs, ATTR, key)? {
        Some(p) if !(0.0..=1.0).contains(&p) => Err(bad(format!("attributes.{key} must be between 0 and 1, got {p}"))),
        p => Ok(p),
    }
}

/// The burst model of a `loss` toxic: on when `burst_enter` is above 0.
fn burst(attrs: &Map<String, Value>) -> Result<Option<Burst>, ApiError> {
    let enter = probability(attrs, "burst_enter")?.unwrap_or(0.0);
    let exit = probability(attrs, "burst_exit")?;
    let loss = probability(attrs, "burst_loss")?.unwrap_or(1.0);
    if enter == 0.0 {
        return Ok(None);
    }
    match exit {
        Some(exit) if exit > 0.0 => Ok(Some(Burst { enter, exit, loss })),
        _ => Err(bad(
            "attributes.burst_exit must be above 0 when attributes.burst_enter is (or a burst never ends)".into()
        )),
    }
}

/// A toxic on a proxy: what it does, on which stream, for which share of connections.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    /// Unique on its proxy; defaults to `<type>_<stream>`.
    pub name: String,
    /// The direction it acts on.
    pub stream: Stream,
    /// Probability that the toxic acts (`0..=1`): decided per request for the HTTP
    /// toxics, and for TCP toxics on links carrying HTTP/1.1; once per connection
    /// elsewhere.
    pub toxicity: f32,
    /// What it does.
    pub kind: ToxicKind,
}

impl Toxic {
    /// A toxic acting on every connection, named `<type>_<stream>` as Toxiproxy names it.
    pub fn new(kind: ToxicKind, stream: Stream) -> Self {
        Self { name: format!("{}_{}", kind.type_name(), stream), stream, toxicity: 1.0, kind }
    }

    /// The same toxic under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same toxic acting on this share of connections.
    pub fn with_toxicity(mut self, toxicity: f32) -> Self {
        self.toxicity = toxicity;
        self
    }

    /// The JSON object Toxiproxy writes for a toxic.
    pub fn to_json(&self) -> Value {
        json!({
            "attributes": self.kind.attributes(),
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream,
            "toxicity": self.toxicity,
        })
    }

    /// Parses the body of `POST /proxies/{proxy}/toxics`, with Toxiproxy's defaults
    /// (downstream, toxicity 1, name `<type>_<stream>`) and its order of checks.
    pub fn from_create_json(body: &Value) -> Result<Self, ApiError> {
        let map = object(body, "the toxic")?;
        let name = opt_str(map, "", "name")?.unwrap_or_default();
        let type_name = opt_str(map, "", "type")?.unwrap_or_default();
        let stream = match opt_str(map, "", "stream")? {
            None => Stream::Downstream,
            Some(s) => Stream::parse(s).ok_or(ApiError::InvalidStream)?,
        };
        let toxicity = read_toxicity(map)?.unwrap_or(1.0);
        if !TOXIC_TYPES.contains(&type_name) {
            return Err(ApiError::InvalidToxicType);
        }
        let empty = Map::new();
        let attrs = match map.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(v) => object(v, "attributes")?,
        };
        let kind = ToxicKind::from_attributes(type_name, attrs)?;
        if kind.is_http() && stream != Stream::Upstream {
            return Err(bad(format!("stream: {type_name} acts on HTTP requests and takes the upstream stream only")));
        }
        let name = if name.is_empty() { format!("{type_name}_{stream}") } else { name.to_string() };
        Ok(Self { name, stream, toxicity, kind })
    }

    /// Applies the body of `PATCH /proxies/{proxy}/toxics/{toxic}`: given attributes and
    /// `toxicity` replace the current ones, the rest stays (name, type and stream never
    /// change, as in Toxiproxy).
    pub fn patched(&self, body: &Value) -> Result<Self, ApiError> {
        let map = object(body, "the toxic")?;
        let mut attrs = match self.kind.attributes() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        match map.get("attributes") {
            None | Some(Value::Null) => {}
            Some(v) => {
                for (k, v) in object(v, "attributes")? {
                    attrs.insert(k.clone(), v.clone());
                }
            }
        }
        let kind = ToxicKind::from_attributes(self.kind.type_name(), &attrs)?;
        let toxicity = read_toxicity(map)?.unwrap_or(self.toxicity);
        Ok(Self { name: self.name.clone(), stream: self.stream, toxicity, kind })
    }
}

fn status_code(attrs: &Map<String, Value>) -> Result<u16, ApiError> {
    let code = opt_u64(attrs, ATTR, "status_code")?.unwrap_or(503);
    match u16::try_from(code) {
        Ok(c) if (200..=599).contains(&c) => Ok(c),
        _ => Err(bad(format!("attributes.status_code must be between 200 and 599, got {code}"))),
    }
}

fn read_toxicity(map: &Map<String, Value>) -> Result<Option<f32>, ApiError> {
    match opt_f64(map, "", "toxicity")? {
        None => Ok(None),
        Some(t) if (0.0..=1.0).contains(&t) => Ok(Some(t as f32)),
        Some(t) => Err(bad(format!("toxicity must be between 0 and 1, got {t}"))),
    }
}

impl Serialize for Toxic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Toxic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Toxic::from_create_json(&value).map_err(serde::de::Error::custom)
    }
}

/// The settings of a proxy, without its toxics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Unique name.
    pub name: String,
    /// The address the proxy listens on; after start, the address it really bound.
    pub listen: String,
    /// The address it forwards to.
    pub upstream: String,
    /// Whether it accepts connections; a disabled proxy refuses them (the `down` fault).
    pub enabled: bool,
}

/// The address a proxy created without `listen` binds: a free loopback port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

impl ProxyConfig {
    /// A proxy named `name` from `listen` to `upstream`, enabled.
    pub fn new(name: impl Into<String>, listen: impl Into<String>, upstream: impl Into<String>) -> Self {
        Self { name: name.into(), listen: listen.into(), upstream: upstream.into(), enabled: true }
    }

    /// Parses the body of `POST /proxies`, or one element of `POST /populate` (`at` then
    /// names it in a missing-field error, as Toxiproxy does: `name at proxy 2`).
    pub fn from_create_json(body: &Value, at: Option<usize>) -> Result<Self, ApiError> {
        let map = object(body, "the proxy")?;
        let suffix = at.map(|i| format!(" at proxy {i}")).unwrap_or_default();
        let name = opt_str(map, "", "name")?.unwrap_or_default();
        if name.is_empty() {
            return Err(ApiError::MissingField(format!("name{suffix}")));
        }
        let upstream = opt_str(map, "", "upstream")?.unwrap_or_default();
        if upstream.is_empty() {
            return Err(ApiError::MissingField(format!("upstream{suffix}")));
        }
        let listen = opt_str(map, "", "listen")?.filter(|l| !l.is_empty()).unwrap_or(DEFAULT_LISTEN);
        Ok(Self {
            name: name.to_string(),
            listen: listen.to_string(),
            upstream: upstream.to_string(),
            enabled: opt_bool(map, "", "enabled")?.unwrap_or(true),
        })
    }

    /// Applies the body of `PATCH /proxies/{proxy}`: fields given replace the current
    /// ones, the rest stays (so `{"enabled": false}` alone disables the proxy).
    pub fn patched(&self, body: &Value) -> Result<Self, ApiError> {
        let map = object(body, "the proxy")?;
        let mut next = self.clone();
        if let Some(listen) = opt_str(map, "", "listen")? {
            next.listen = listen.to_string();
        }
        if let Some(upstream) = opt_str(map, "", "upstream")? {
            next.upstream = upstream.to_string();
        }
        if let Some(enabled) = opt_bool(map, "", "enabled")? {
            next.enabled = enabled;
        }
        Ok(next)
    }
}

/// A proxy with its toxics, as `GET /proxies/{proxy}` answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    /// Unique name.
    pub name: String,
    /// The address it listens on.
    pub listen: String,
    /// The address it forwards to.
    pub upstream: String,
    /// Whether it accepts connections.
    pub enabled: bool,
    /// Its toxics, upstream ones first, each stream in the order added.
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

impl Proxy {
    /// The settings part of this proxy.
    pub fn config(&self) -> ProxyConfig {
        ProxyConfig {
            name: self.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_defaults_follow_toxiproxy() {
        let t = Toxic::from_create_json(&json!({"type": "latency", "attributes": {"latency": 5}})).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.kind, ToxicKind::Latency { latency: 5, jitter: 0 });
    }

    #[test]
    fn bad_toxics_are_refused_with_the_field_named() {
        let e = |v: Value| Toxic::from_create_json(&v).unwrap_err();
        assert_eq!(e(json!({"type": "nope"})), ApiError::InvalidToxicType);
        assert_eq!(e(json!({"type": "latency", "stream": "sideways"})), ApiError::InvalidStream);
        let neg = e(json!({"type": "latency", "attributes": {"latency": -1}}));
        assert!(neg.to_string().contains("attributes.latency"), "{neg}");
        let tox = e(json!({"type": "latency", "toxicity": 1.5}));
        assert!(tox.to_string().contains("toxicity"), "{tox}");
        let http = e(json!({"type": "http_abort", "stream": "downstream"}));
        assert!(http.to_string().contains("upstream"), "{http}");
        let sl = e(json!({"type": "slicer", "attributes": {"average_size": 4, "size_variation": 4}}));
        assert!(sl.to_string().contains("size_variation"), "{sl}");
        let p = e(json!({"type": "loss", "attributes": {"probability": 1.5}}));
        assert!(p.to_string().contains("attributes.probability must be between 0 and 1"), "{p}");
        let rto = e(json!({"type": "loss", "attributes": {"rto": 400, "max_rto": 200}}));
        assert!(rto.to_string().contains("attributes.max_rto"), "{rto}");
        let burst = e(json!({"type": "loss", "attributes": {"burst_enter": 0.1}}));
        assert!(burst.to_string().contains("attributes.burst_exit"), "{burst}");
        let rate = e(json!({"type": "corrupt", "attributes": {"rate": -0.1}}));
        assert!(rate.to_string().contains("attributes.rate"), "{rate}");
        let spare = e(json!({"type": "corrupt", "attributes": {"spare_head": "yes"}}));
        assert!(spare.to_string().contains("attributes.spare_head must be a boolean"), "{spare}");
    }

    #[test]
    fn toxic_json_round_trips() {
        let t = Toxic::new(
            ToxicKind::HttpAbort {
                status_code: 502,
                body: "x".into(),
                matching: HttpMatch { percentage: 50.0, method: Some("POST".into()), path_prefix: Some("/v1".into()) },
            },
            Stream::Upstream,
        )
        .with_toxicity(0.5);
        let back: Toxic = serde_json::from_value(t.to_json()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn loss_and_corrupt_take_defaults_and_round_trip() {
        let t = Toxic::from_create_json(&json!({"type": "loss", "attributes": {"probability": 0.1}})).unwrap();
        assert_eq!(
            t.kind,
            ToxicKind::Loss {
                probability: 0.1,
                rto: DEFAULT_RTO_MS,
                max_rto: DEFAULT_MAX_RTO_MS,
                segment_size: DEFAULT_SEGMENT_SIZE,
                burst: None
            }
        );
        let bursty = Toxic::new(
            ToxicKind::Loss {
                probability: 0.01,
                rto: 100,
                max_rto: 800,
                segment_size: 500,
                burst: Some(Burst { enter: 0.05, exit: 0.5, loss: 0.9 }),
            },
            Stream::Upstream,
        );
        let corrupt = Toxic::new(ToxicKind::Corrupt { rate: 0.001, spare_head: true }, Stream::Downstream);
        for t in [bursty, corrupt] {
            let back: Toxic = serde_json::from_value(t.to_json()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn patches_merge() {
        let t = Toxic::new(ToxicKind::Latency { latency: 5, jitter: 2 }, Stream::Upstream);
        let p = t.patched(&json!({"attributes": {"latency": 9}})).unwrap();
        assert_eq!(p.kind, ToxicKind::Latency { latency: 9, jitter: 2 });
        assert_eq!(p.toxicity, 1.0);
        let c = ProxyConfig::new("a", "127.0.0.1:1", "127.0.0.1:2");
        let d = c.patched(&json!({"enabled": false})).unwrap();
        assert!(!d.enabled);
        assert_eq!(d.upstream, c.upstream);
    }

    #[test]
    fn missing_proxy_fields_are_named() {
        let e = ProxyConfig::from_create_json(&json!({"upstream": "x"}), None).unwrap_err();
        assert_eq!(e.to_string(), "missing required field: name");
        let e = ProxyConfig::from_create_json(&json!({"name": "x"}), Some(2)).unwrap_err();
        assert_eq!(e.to_string(), "missing required field: upstream at proxy 2");
    }
}
