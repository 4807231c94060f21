//! The scenario-facing fault vocabulary: what fault, where, which way, when, how long.
//!
//! One line:
//!
//! ```text
//! orders->payments downstream latency(latency=100ms, jitter=10ms) toxicity=0.5 at 10s for 30s
//! client->gateway http_abort(status_code=503, percentage=10, path_prefix=/api/v1/orders)
//! payments down at 20s for 5s
//! catalog kill at 1m
//! ```
//!
//! or a TOML table:
//!
//! ```toml
//! edge = "orders->payments"      # or node = "payments"
//! direction = "downstream"       # upstream | downstream | both
//! toxic = "latency"              # a toxic type, or an action: down, kill, stop, pause, restart
//! attributes = { latency = "100ms", jitter = "10ms" }
//! toxicity = 0.5
//! at = "10s"
//! for = "30s"
//! ```
//!
//! Times are human durations (`250ms`, `1m30s`); a bare integer attribute is taken in
//! Toxiproxy's unit (milliseconds; microseconds for the slicer's `delay`). `direction`
//! defaults to `downstream` (Toxiproxy's default), and to `upstream` for the HTTP-aware
//! toxics, which act on requests. `at` defaults to 0; without `for` a fault lasts until
//! the end of the run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::model::{Stream, Toxic, ToxicKind, TOXIC_TYPES};

/// Why a fault description was refused; the message says which part and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fault `{text}`: {reason}")]
pub struct SpecError {
    /// The description (or the TOML table, rendered) that was refused.
    pub text: String,
    /// What is wrong and what would be right.
    pub reason: String,
}

/// Where a fault acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A network edge, from a caller to a callee (`client` is the load generator).
    Edge {
        /// The caller, e.g. `orders` or `client`.
        from: String,
        /// The callee, e.g. `payments`.
        to: String,
    },
    /// A service (all its replicas).
    Node(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edge { from, to } => write!(f, "{from}->{to}"),
            Self::Node(n) => f.write_str(n),
        }
    }
}

/// Which way through an edge a toxic acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Caller to callee (requests).
    Upstream,
    /// Callee to caller (responses).
    Downstream,
    /// Both ways: one toxic per stream.
    Both,
}

impl Direction {
    /// The streams this direction covers.
    pub fn streams(self) -> Vec<Stream> {
        match self {
            Self::Upstream => vec![Stream::Upstream],
            Self::Downstream => vec![Stream::Downstream],
            Self::Both => Stream::BOTH.to_vec(),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "upstream" => Some(Self::Upstream),
            "downstream" => Some(Self::Downstream),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
            Self::Both => "both",
        }
    }
}

/// What a fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A toxic on the edge's proxy (or on every edge into the node).
    Toxic(ToxicKind),
    /// The proxy refuses connections (Toxiproxy's `enabled=false`).
    Down,
    /// Node only: kill the process (SIGKILL); it is restarted when the fault ends.
    Kill,
    /// Node only: stop the process gracefully (SIGTERM).
    Stop,
    /// Node only: freeze the process (SIGSTOP), resumed when the fault ends.
    Pause,
    /// Node only: restart the process.
    Restart,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Self::Toxic(k) => k.type_name(),
            Self::Down => "down",
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Restart => "restart",
        }
    }
}

/// One fault of a scenario: a typed value, valid by construction.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// Where.
    pub target: Target,
    /// Which way (toxics only).
    pub direction: Direction,
    /// What.
    pub action: Action,
    /// Share of connections a toxic acts on (`0..=1`).
    pub toxicity: f32,
    /// When it starts, from the start of the run.
    pub at: Duration,
    /// How long it lasts; until the end of the run when `None`.
    pub duration: Option<Duration>,
}

impl FaultSpec {
    /// The toxics this fault installs on one proxy of its edge, named
    /// `<prefix>_<type>_<stream>`; empty for actions that are not toxics.
    pub fn toxics(&self, prefix: &str) -> Vec<Toxic> {
        let Action::Toxic(kind) = &self.action else {
            return Vec::new();
        };
        self.direction
            .streams()
            .into_iter()
            .map(|stream| {
                let toxic = Toxic::new(kind.clone(), stream).with_toxicity(self.toxicity);
                let name = format!("{prefix}_{}", toxic.name);
                toxic.named(name)
            })
            .collect()
    }

    /// Reads a fault from a TOML table (see the module docs for its keys).
    pub fn from_toml(value: &toml::Value) -> Result<Self, SpecError> {
        let text = value.to_string();
        let err = |reason: String| SpecError { text: text.trim().to_string(), reason };
        let table = value.as_table().ok_or_else(|| err("a fault must be a table".into()))?;
        for key in table.keys() {
            if !["edge", "node", "direction", "toxic", "action", "attributes", "toxicity", "at", "for"]
                .contains(&key.as_str())
            {
                return Err(err(format!(
                    "unknown key `{key}`; a fault takes edge or node, direction, toxic, attributes, toxicity, at, for"
                )));
            }
        }
        let string = |key: &str| -> Result<Option<&str>, SpecError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(err(format!("`{key}` must be a string, got {}", other.type_str()))),
            }
        };
        let target = match (string("edge")?, string("node")?) {
            (Some(e), None) => parse_target(e).map_err(err)?,
            (None, Some(n)) => Target::Node(parse_name(n).map_err(err)?),
            (Some(_), Some(_)) => return Err(err("give either `edge` or `node`, not both".into())),
            (None, None) => return Err(err("missing `edge` (e.g. \"orders->payments\") or `node`".into())),
        };
        let action_name = match (string("toxic")?, string("action")?) {
            (Some(a), None) | (None, Some(a)) => a,
            (Some(_), Some(_)) => return Err(err("give either `toxic` or `action`, not both".into())),
            (None, None) => return Err(err("missing `toxic` (e.g. \"latency\") or `action` (e.g. \"down\")".into())),
        };
        let mut attrs = Vec::new();
        match table.get("attributes") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (k, v) in t {
                    let raw = match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        other => {
                            return Err(err(format!(
                                "attributes.{k} must be a string or a number, got {}",
                                other.type_str()
                            )))
                        }
                    };
                    attrs.push((k.clone(), raw));
                }
            }
            Some(other) => return Err(err(format!("`attributes` must be a table, got {}", other.type_str()))),
        }
        let toxicity = match table.get("toxicity") {
            None => 1.0,
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(other) => return Err(err(format!("`toxicity` must be a number, got {}", other.type_str()))),
        };
        let parts = Parts {
            target,
            direction: string("direction")?,
            action: action_name,
            attrs,
            toxicity,
            at: string("at")?,
            duration: string("for")?,
        };
        parts.build().map_err(err)
    }
}

/// The pieces of a fault before they are checked together.
struct Parts<'a> {
    target: Target,
    direction: Option<&'a str>,
    action: &'a str,
    attrs: Vec<(String, String)>,
    toxicity: f64,
    at: Option<&'a str>,
    duration: Option<&'a str>,
}

impl Parts<'_> {
    fn build(self) -> Result<FaultSpec, String> {
        let action = parse_action(self.action, &self.attrs)?;
        let is_node = matches!(self.target, Target::Node(_));
        let node_only = matches!(action, Action::Kill | Action::Stop | Action::Pause | Action::Restart);
        if node_only && !is_node {
            return Err(format!("`{}` acts on a node (a service), not on an edge", action.name()));
        }
        let direction = match self.direction {
            None => match &action {
                Action::Toxic(k) if k.is_http() => Direction::Upstream,
                _ => Direction::Downstream,
            },
            Some(d) => Direction::parse(d)
                .ok_or_else(|| format!("direction `{d}` is not one of upstream, downstream, both"))?,
        };
        if let Action::Toxic(k) = &action {
            if k.is_http() && direction != Direction::Upstream {
                return Err(format!("{} acts on requests: its direction is upstream", k.type_name()));
            }
        }
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(format!("toxicity must be between 0 and 1, got {}", self.toxicity));
        }
        let at = match self.at {
            None => Duration::ZERO,
            Some(s) => parse_duration("at", s)?,
        };
        let duration = match self.duration {
            None => None,
            Some(s) => {
                let d = parse_duration("for", s)?;
                if d.is_zero() {
                    return Err("`for` must be longer than 0s".into());
                }
                Some(d)
            }
        };
        Ok(FaultSpec { target: self.target, direction, action, toxicity: self.toxicity as f32, at, duration })
    }
}

fn parse_duration(what: &str, s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{what}` must be a duration like 250ms or 1m30s, got `{s}` ({e})"))
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not a service name (letters, digits, - _ .)"))
    }
}

fn parse_target(s: &str) -> Result<Target, String> {
    match s.split_once("->") {
        Some((from, to)) => {
            let from = parse_name(from.trim()).map_err(|e| format!("edge `{s}`: {e}"))?;
            let to = parse_name(to.trim()).map_err(|e| format!("edge `{s}`: {e}"))?;
            Ok(Target::Edge { from, to })
        }
        None => Err(format!("edge `{s}` must read caller->callee, e.g. orders->payments")),
    }
}

/// Attributes whose values are times, with the number of their unit in a second.
fn time_unit(toxic: &str, attr: &str) -> Option<u128> {
    match (toxic, attr) {
        ("slicer", "delay") => Some(1_000_000),
        (_, "latency" | "jitter" | "delay" | "timeout") => Some(1_000),
        _ => None,
    }
}

fn parse_action(name: &str, attrs: &[(String, String)]) -> Result<Action, String> {
    let simple = match name {
        "down" => Some(Action::Down),
        "kill" => Some(Action::Kill),
        "stop" => Some(Action::Stop),
        "pause" => Some(Action::Pause),
        "restart" => Some(Action::Restart),
        _ => None,
    };
    if let Some(action) = simple {
        if let Some((k, _)) = attrs.first() {
            return Err(format!("`{name}` takes no attributes, got `{k}`"));
        }
        return Ok(action);
    }
    if !TOXIC_TYPES.contains(&name) {
        return Err(format!(
            "`{name}` is not a fault; use one of {}, down, kill, stop, pause, restart",
            TOXIC_TYPES.join(", ")
        ));
    }
    let mut map = Map::new();
    for (key, raw) in attrs {
        map.insert(key.clone(), attribute_value(name, key, raw)?);
    }
    ToxicKind::from_attributes(name, &map)
        .map(Action::Toxic)
        .map_err(|e| e.to_string().trim_start_matches("bad request body: ").to_string())
}

fn attribute_value(toxic: &str, key: &str, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return Ok(Value::from(n));
    }
    if let Some(per_second) = time_unit(toxic, key) {
        if raw.starts_with('-') {
            return Err(format!("attributes.{key} must not be negative, got `{raw}`"));
        }
        if let Ok(d) = humantime::parse_duration(raw) {
            let units = d.as_nanos() * per_second / 1_000_000_000;
            return Ok(Value::from(u64::try_from(units).unwrap_or(u64::MAX)));
        }
        return Err(format!("attributes.{key} must be a duration like 100ms, got `{raw}`"));
    }
    if let Ok(f) = raw.parse::<f64>() {
        if let Some(n) = serde_json::Number::from_f64(f) {
            return Ok(Value::Number(n));
        }
    }
    Ok(Value::String(raw.to_string()))
}

impl FromStr for FaultSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_line(text).map_err(|reason| SpecError { text: text.trim().to_string(), reason })
    }
}

fn parse_line(text: &str) -> Result<FaultSpec, String> {
    let mut words = Tokens::new(text)?;
    let target_word = words.next().ok_or("empty fault; e.g. `orders->payments latency(latency=100ms)`")?;
    let target =
        if target_word.contains("->") { parse_target(&target_word)? } else { Target::Node(parse_name(&target_word)?) };
    let mut direction = None;
    let mut action = None;
    let mut toxicity = 1.0;
    let mut at = None;
    let mut duration = None;
    while let Some(word) = words.next() {
        match word.as_str() {
            "upstream" | "downstream" | "both" if direction.is_none() && action.is_none() => direction = Some(word),
            "at" => at = Some(words.next().ok_or("`at` needs a duration, e.g. `at 10s`")?),
            "for" => duration = Some(words.next().ok_or("`for` needs a duration, e.g. `for 30s`")?),
            w if w.starts_with("toxicity=") => {
                let v = &w["toxicity=".len()..];
                toxicity = v.parse().map_err(|_| format!("toxicity must be a number, got `{v}`"))?;
            }
            _ if action.is_none() => action = Some(parse_call(&word)?),
            _ => return Err(format!("unexpected `{word}`; after the fault come toxicity=, at and for")),
        }
    }
    let (name, attrs) = action.ok_or("missing the fault, e.g. `latency(latency=100ms)` or `down`")?;
    Parts {
        target,
        direction: direction.as_deref(),
        action: &name,
        attrs,
        toxicity,
        at: at.as_deref(),
        duration: duration.as_deref(),
    }
    .build()
}

/// Splits `name(k=v, k=v)` into the name and its attributes.
fn parse_call(word: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((name, rest)) = word.split_once('(') else {
        return Ok((word.to_string(), Vec::new()));
    };
    let inner = rest.strip_suffix(')').ok_or_else(|| format!("`{word}`: missing `)`"))?;
    let mut attrs = Vec::new();
    for pair in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("attribute `{pair}` must read key=value"))?;
        attrs.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((name.to_string(), attrs))
}

/// Whitespace-separated words, where a parenthesised attribute list is one word.
struct Tokens {
    words: std::vec::IntoIter<String>,
}

impl Tokens {
    fn new(text: &str) -> Result<Self, String> {
        let mut words = Vec::new();
        let mut current = String::new();
        let mut depth = 0usize;
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    current.push(c);
                }
                ')' => {
                    depth = depth.checked_sub(1).ok_or("unbalanced `)`")?;
                    current.push(c);
                }
                c if c.is_whitespace() && depth == 0 => {
                    if !current.is_empty() {
                        words.push(std::mem::take(&mut current));
                    }
                }
                c => current.push(c),
            }
        }
        if depth != 0 {
            return Err("unbalanced `(`".into());
        }
        if !current.is_empty() {
            words.push(current);
        }
        Ok(Self { words: words.into_iter() })
    }
}

impl Iterator for Tokens {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.words.next()
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if let Action::Toxic(kind) = &self.action {
            write!(f, " {} {}(", self.direction.as_str(), kind.type_name())?;
            if let Value::Object(attrs) = kind.attributes() {
                let list: Vec<String> = attrs
                    .iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) if s.is_empty() => None,
                        Value::String(s) => Some(format!("{k}={s}")),
                        other => Some(format!("{k}={other}")),
                    })
                    .collect();
                write!(f, "{}", list.join(", "))?;
            }
            write!(f, ")")?;
            if self.toxicity != 1.0 {
                write!(f, " toxicity={}", self.toxicity)?;
            }
        } else {
            write!(f, " {}", self.action.name())?;
        }
        write!(f, " at {}", humantime::format_duration(self.at))?;
        if let Some(d) = self.duration {
            write!(f, " for {}", humantime::format_duration(d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FaultSpec {
        match s.parse() {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    fn refuse(s: &str) -> String {
        match s.parse::<FaultSpec>() {
            Ok(f) => panic!("accepted {f:?}"),
            Err(e) => e.reason,
        }
    }

    #[test]
    fn parses_an_edge_toxic_with_times() {
        let f = parse("orders->payments downstream latency(latency=100ms, jitter=10) toxicity=0.5 at 10s for 30s");
        assert_eq!(f.target, Target::Edge { from: "orders".into(), to: "payments".into() });
        assert_eq!(f.direction, Direction::Downstream);
        assert_eq!(f.action, Action::Toxic(ToxicKind::Latency { latency: 100, jitter: 10 }));
        assert_eq!(f.toxicity, 0.5);
        assert_eq!(f.at, Duration::from_secs(10));
        assert_eq!(f.duration, Some(Duration::from_secs(30)));
        let toxics = f.toxics("f1");
        assert_eq!(toxics.len(), 1);
        assert_eq!(toxics[0].name, "f1_latency_downstream");
    }

    #[test]
    fn http_toxics_default_to_upstream_and_nodes_take_actions() {
        let f = parse("client->gateway http_abort(status_code=503, percentage=10, path_prefix=/api/v1/orders)");
        assert_eq!(f.direction, Direction::Upstream);
        let f = parse("payments kill at 1m");
        assert_eq!(f.target, Target::Node("payments".into()));
        assert_eq!(f.action, Action::Kill);
        assert_eq!(f.at, Duration::from_secs(60));
        let f = parse("a->b both slicer(average_size=10, size_variation=2, delay=1ms)");
        assert_eq!(f.toxics("x").len(), 2);
        assert_eq!(f.action, Action::Toxic(ToxicKind::Slicer { average_size: 10, size_variation: 2, delay: 1000 }));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(refuse("orders->payments latency(latency=-5ms)").contains("attributes.latency"));
        assert!(refuse("orders->payments jam").contains("not a fault"));
        assert!(refuse("orders->payments kill").contains("node"));
        assert!(refuse("orders->payments sideways latency").contains("unexpected"));
        assert!(refuse("a->b latency at soon").contains("`at` must be a duration"));
        assert!(refuse("a->b downstream http_delay(delay=5)").contains("upstream"));
        assert!(refuse("a->b latency(latency=5").contains("unbalanced"));
        assert!(refuse("a->b latency toxicity=2").contains("toxicity"));
        assert!(refuse("").contains("empty"));
    }

    #[test]
    fn display_parses_back() {
        for s in [
            "orders->payments downstream latency(latency=100ms, jitter=10) toxicity=0.5 at 10s for 30s",
            "client->gateway http_abort(status_code=503, percentage=10, method=POST, path_prefix=/api)",
            "payments down at 20s for 5s",
            "a->b both bandwidth(rate=100)",
        ] {
            let f = parse(s);
            assert_eq!(parse(&f.to_string()), f, "{f}");
        }
    }

    #[test]
    fn reads_toml_tables() {
        let v: toml::Value = toml::from_str(
            r#"
            edge = "orders->payments"
            toxic = "latency"
            attributes = { latency = "100ms", jitter = 5 }
            at = "1s"
            for = "2s"
            "#,
        )
        .unwrap();
        let f = FaultSpec::from_toml(&v).unwrap();
        assert_eq!(f.action, Action::Toxic(ToxicKind::Latency { latency: 100, jitter: 5 }));
        assert_eq!(f.duration, Some(Duration::from_secs(2)));
        let bad: toml::Value = toml::from_str("edge = \"a->b\"\ntoxic = \"latency\"\nstart = \"1s\"").unwrap();
        let e = FaultSpec::from_toml(&bad).unwrap_err();
        assert!(e.reason.contains("unknown key `start`"), "{e}");
    }
}
