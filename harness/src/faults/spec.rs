//! An edge fault as a scenario file states it, turned into the toxics it installs.
//!
//! ```toml
//! [[fault]]
//! edge = "api->db"
//! toxic = "latency"                          # a toxic type, or "down"
//! stream = "downstream"                      # upstream | downstream | both
//! attributes = { latency = "100ms", jitter = "10ms" }
//! toxicity = 0.5
//! ```
//!
//! This is the one place a scenario's toxic is checked; where and when it acts (the
//! edge, `at`, `for`) are the scenario model's. Times are human durations (`250ms`,
//! `1m30s`); a bare integer is taken in Toxiproxy's unit (milliseconds; microseconds for
//! the slicer's `delay`). `stream` defaults to `downstream` (Toxiproxy's default), and
//! to `upstream` for the HTTP-aware toxics, which act on requests.

use serde_json::{Map, Value};

use super::model::{Stream, Toxic, ToxicKind, TOXIC_TYPES};

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
}

/// What an edge fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum EdgeAction {
    /// A toxic on each proxy of the edge.
    Toxic(ToxicKind),
    /// The proxies refuse connections (Toxiproxy's `enabled=false`).
    Down,
}

/// One edge fault, checked: valid by construction.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeFault {
    /// Which way (toxics only).
    pub direction: Direction,
    /// What.
    pub action: EdgeAction,
    /// Share of connections a toxic acts on (`0..=1`).
    pub toxicity: f32,
}

/// Node operations, refused on an edge with a pointer to the right form.
const NODE_OPS: [&str; 5] = ["kill", "stop", "pause", "restart", "partition"];

impl EdgeFault {
    /// Checks a toxic as written: its type (or `down`), `stream`, `attributes` and
    /// `toxicity`. The error says what is wrong and what would be right.
    pub fn parse(
        toxic: &str,
        stream: Option<&str>,
        attributes: Option<&toml::Table>,
        toxicity: Option<f64>,
    ) -> Result<Self, String> {
        let mut attrs = Vec::new();
        for (k, v) in attributes.into_iter().flatten() {
            let raw = match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                // A flag (`spare_head = true`): the toxic's own check says which take one.
                toml::Value::Boolean(b) => Err(Value::Bool(*b)),
                other => {
                    return Err(format!(
                        "attributes.{k} must be a string, a number or a boolean, got {}",
                        other.type_str()
                    ))
                }
            };
            attrs.push((k.clone(), raw));
        }
        let action = if toxic == "down" {
            if let Some((k, _)) = attrs.first() {
                return Err(format!("`down` takes no attributes, got `{k}`"));
            }
            EdgeAction::Down
        } else if NODE_OPS.contains(&toxic) {
            return Err(format!("`{toxic}` acts on a node; use node = ... and op = \"{toxic}\""));
        } else if !TOXIC_TYPES.contains(&toxic) {
            return Err(format!("`{toxic}` is not a fault; use one of {}, down", TOXIC_TYPES.join(", ")));
        } else {
            let mut map = Map::new();
            for (key, raw) in &attrs {
                let value = match raw {
                    Ok(raw) => attribute_value(toxic, key, raw)?,
                    Err(flag) => flag.clone(),
                };
                map.insert(key.clone(), value);
            }
            EdgeAction::Toxic(
                ToxicKind::from_attributes(toxic, &map)
                    .map_err(|e| e.to_string().trim_start_matches("bad request body: ").to_string())?,
            )
        };
        let direction = match stream {
            None => match &action {
                EdgeAction::Toxic(k) if k.is_http() => Direction::Upstream,
                _ => Direction::Downstream,
            },
            Some(d) => {
                Direction::parse(d).ok_or_else(|| format!("stream `{d}` is not one of upstream, downstream, both"))?
            }
        };
        if let EdgeAction::Toxic(k) = &action {
            if k.is_http() && direction != Direction::Upstream {
                return Err(format!("{} acts on requests: its stream is upstream", k.type_name()));
            }
        }
        let toxicity = toxicity.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&toxicity) {
            return Err(format!("toxicity must be between 0 and 1, got {toxicity}"));
        }
        Ok(Self { direction, action, toxicity: toxicity as f32 })
    }

    /// The name of what it does: the toxic's type, or `down`.
    pub fn name(&self) -> &'static str {
        match &self.action {
            EdgeAction::Toxic(k) => k.type_name(),
            EdgeAction::Down => "down",
        }
    }

    /// The toxics this fault installs on one proxy of its edge, named
    /// `<prefix>_<type>_<stream>`; empty for `down`.
    pub fn toxics(&self, prefix: &str) -> Vec<Toxic> {
        let EdgeAction::Toxic(kind) = &self.action else {
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
}

/// Attributes whose values are times, with the number of their unit in a second.
fn time_unit(toxic: &str, attr: &str) -> Option<u128> {
    match (toxic, attr) {
        ("slicer", "delay") => Some(1_000_000),
        (_, "latency" | "jitter" | "delay" | "timeout") | ("loss", "rto" | "max_rto") => Some(1_000),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("test attributes are TOML")
    }

    fn refuse(toxic: &str, stream: Option<&str>, attrs: &str, toxicity: Option<f64>) -> String {
        match EdgeFault::parse(toxic, stream, Some(&table(attrs)), toxicity) {
            Ok(f) => panic!("accepted {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn reads_a_toxic_in_human_units() {
        let f = EdgeFault::parse("latency", None, Some(&table("latency = \"100ms\"\njitter = 10")), Some(0.5)).unwrap();
        assert_eq!(f.direction, Direction::Downstream);
        assert_eq!(f.action, EdgeAction::Toxic(ToxicKind::Latency { latency: 100, jitter: 10 }));
        assert_eq!(f.toxicity, 0.5);
        let toxics = f.toxics("f1");
        assert_eq!(toxics.len(), 1);
        assert_eq!(toxics[0].name, "f1_latency_downstream");
        let f = EdgeFault::parse(
            "slicer",
            Some("both"),
            Some(&table("average_size = 10\nsize_variation = 2\ndelay = \"1ms\"")),
            None,
        )
        .unwrap();
        assert_eq!(f.action, EdgeAction::Toxic(ToxicKind::Slicer { average_size: 10, size_variation: 2, delay: 1000 }));
        assert_eq!(f.toxics("x").len(), 2, "one toxic per stream");
    }

    #[test]
    fn reads_loss_and_corrupt_with_durations_and_flags() {
        let attrs = table("probability = 0.05\nrto = \"100ms\"\nmax_rto = \"1s\"\nburst_enter = 0.1\nburst_exit = 0.5");
        let f = EdgeFault::parse("loss", Some("both"), Some(&attrs), None).unwrap();
        assert_eq!(
            f.action,
            EdgeAction::Toxic(ToxicKind::Loss {
                probability: 0.05,
                rto: 100,
                max_rto: 1000,
                segment_size: crate::faults::model::DEFAULT_SEGMENT_SIZE,
                burst: Some(crate::faults::model::Burst { enter: 0.1, exit: 0.5, loss: 1.0 }),
            })
        );
        let f = EdgeFault::parse("corrupt", None, Some(&table("rate = 0.001\nspare_head = true")), None).unwrap();
        assert_eq!(f.direction, Direction::Downstream);
        assert_eq!(f.action, EdgeAction::Toxic(ToxicKind::Corrupt { rate: 0.001, spare_head: true }));
    }

    #[test]
    fn http_toxics_act_on_requests_and_down_installs_nothing() {
        let attrs = table("status_code = 503\npercentage = 10\npath_prefix = \"/api/v1/items\"");
        let f = EdgeFault::parse("http_abort", None, Some(&attrs), None).unwrap();
        assert_eq!(f.direction, Direction::Upstream);
        let f = EdgeFault::parse("down", None, None, None).unwrap();
        assert_eq!((f.action.clone(), f.name()), (EdgeAction::Down, "down"));
        assert!(f.toxics("f1").is_empty());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert!(refuse("latency", None, "latency = \"-5ms\"", None).contains("attributes.latency"));
        assert!(refuse("jam", None, "", None).contains("not a fault"));
        assert!(refuse("kill", None, "", None).contains("acts on a node"));
        assert!(refuse("latency", Some("sideways"), "", None).contains("upstream, downstream, both"));
        assert!(refuse("http_delay", Some("downstream"), "delay = 5", None).contains("upstream"));
        assert!(refuse("latency", None, "", Some(2.0)).contains("toxicity"));
        assert!(refuse("down", None, "latency = 5", None).contains("no attributes"));
        assert!(refuse("latency", None, "latency = [1]", None).contains("a string, a number or a boolean"));
        assert!(
            refuse("loss", None, "probability = 2", None).contains("attributes.probability must be between 0 and 1")
        );
        assert!(refuse("loss", None, "rto = \"1s\"\nmax_rto = \"200ms\"", None).contains("attributes.max_rto"));
        assert!(
            refuse("corrupt", None, "spare_head = \"yes\"", None).contains("attributes.spare_head must be a boolean")
        );
        assert!(refuse("latency", None, "latency = true", None).contains("attributes.latency must be a number"));
    }
}
