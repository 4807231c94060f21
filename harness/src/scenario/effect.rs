//! The observed effect of a fault: proof that the experiment happened.
//!
//! A fault that touched nothing proves nothing, so each fault carries what it touched,
//! from the fault proxy's own counters (`GET /metrics`, per proxy) and the run's
//! operation history:
//!
//! - an edge toxic: the bytes and connections through its proxies while it was in place;
//!   for a toxic that damages the stream, the damage it did, which is then what it
//!   touched: the segments `loss` lost (and the retransmission timeouts they waited),
//!   the bytes `corrupt` flipped;
//! - an edge `down`: the bytes its proxies carried from the start of the load until it
//!   was cut (the edge was live when it went down; once down it counts nothing);
//! - a node fault: the bytes its edges carried until it struck and the operations in
//!   flight at that moment, by how they ended (ok, fail, info);
//! - a clock fault: the node's clock as its own answers read it (their `Date` header)
//!   against the harness's, just before it was put back; a reading further than
//!   [`CLOCK_TOLERANCE`] from the setting counts as a fault that did not take.
//!
//! A measured effect of zero fails the run ("the experiment did not happen") unless the
//! fault says `expect_effect = false`. An effect that could not be measured (a Toxiproxy
//! without `/metrics`) is shown as such and does not gate.

use std::collections::BTreeMap;

use serde::Serialize;

/// Traffic through one proxy, as its counters say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes received from either side.
    pub bytes: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Segments the `loss` toxic lost, by the retransmission timeout (ms) each waited.
    pub lost: BTreeMap<u64, u64>,
    /// Bytes the `corrupt` toxic flipped a bit in.
    pub flipped: u64,
}

impl Traffic {
    /// Segments lost, at any timeout.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// What the damaging toxics did, e.g. `; 37 segment(s) lost (retransmitted after
    /// 200-1600 ms)`, or nothing.
    fn damage(&self) -> String {
        let mut out = String::new();
        let timeouts: Vec<u64> = self.lost.iter().filter(|(_, n)| **n > 0).map(|(rto, _)| *rto).collect();
        if let (Some(first), Some(last)) = (timeouts.first(), timeouts.last()) {
            let after = if first == last { format!("{first} ms") } else { format!("{first}-{last} ms") };
            out.push_str(&format!("; {} segment(s) lost (retransmitted after {after})", self.lost_total()));
        }
        if self.flipped > 0 {
            out.push_str(&format!("; {} byte(s) flipped", self.flipped));
        }
        out
    }
}

/// Every proxy's counters at one instant.
pub type Counters = BTreeMap<String, Traffic>;

/// Reads the per-proxy counters out of the proxy's Prometheus text.
pub fn parse_counters(text: &str) -> Counters {
    let mut out = Counters::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let Some(proxy) = label(series, "proxy") else { continue };
        let entry = out.entry(proxy.to_string()).or_default();
        if series.starts_with("toxiproxy_proxy_received_bytes_total{") {
            entry.bytes += value as u64;
        } else if series.starts_with("gauntlet_proxy_connections_total{") {
            entry.connections += value as u64;
        } else if series.starts_with("gauntlet_proxy_segments_lost_total{") {
            if let Some(rto) = label(series, "rto_ms").and_then(|r| r.parse::<u64>().ok()) {
                *entry.lost.entry(rto).or_insert(0) += value as u64;
            }
        } else if series.starts_with("gauntlet_proxy_bytes_corrupted_total{") {
            entry.flipped += value as u64;
        }
    }
    out
}

fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

/// The traffic through `proxies` between two readings.
pub fn between(before: &Counters, after: &Counters, proxies: &[String]) -> Traffic {
    let mut t = Traffic::default();
    let none = Traffic::default();
    for p in proxies {
        let (a, b) = (after.get(p).unwrap_or(&none), before.get(p).unwrap_or(&none));
        t.bytes += a.bytes.saturating_sub(b.bytes);
        t.connections += a.connections.saturating_sub(b.connections);
        t.flipped += a.flipped.saturating_sub(b.flipped);
        for (rto, n) in &a.lost {
            let grown = n.saturating_sub(b.lost.get(rto).copied().unwrap_or(0));
            if grown > 0 {
                *t.lost.entry(*rto).or_insert(0) += grown;
            }
        }
    }
    t
}

/// What a fault touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effect {
    /// Whether it could be measured at all.
    pub measured: bool,
    /// How much it touched, in the unit the detail names (bytes, operations); 0 is nothing.
    pub touched: u64,
    /// What was measured, for people.
    pub detail: String,
}

impl Effect {
    /// An effect that could not be measured, and why.
    pub fn unmeasured(why: impl Into<String>) -> Self {
        Self { measured: false, touched: 0, detail: format!("not measured: {}", why.into()) }
    }

    /// Whether it was measured and touched nothing.
    pub fn is_nothing(&self) -> bool {
        self.measured && self.touched == 0
    }
}

/// How far a clock read back may be from the offset set (beyond the reading's own
/// uncertainty) for the fault to count as having taken.
pub const CLOCK_TOLERANCE: f64 = 1.0;

/// What a clock fault did: node `node`'s clock read `reading`, `expected` seconds off
/// true time as set. Touched is the offset read in milliseconds, or 0 when it is not
/// the one set.
pub fn clock_effect(node: impl std::fmt::Display, reading: &super::clock::ClockReading, expected: f64) -> Effect {
    let way = if reading.offset < 0.0 { "behind" } else { "ahead" };
    let took = (reading.offset - expected).abs() <= CLOCK_TOLERANCE + reading.within;
    let mut detail = format!(
        "clock of {node} read {:.2} s {way} (Date header, ±{:.2} s), set {}",
        reading.offset.abs(),
        reading.within,
        crate::cluster::clock::signed_secs(expected)
    );
    if !took {
        detail.push_str(&format!("; not the offset set (more than {CLOCK_TOLERANCE} s off): the fault did not take"));
    }
    let touched = if took { (reading.offset.abs() * 1000.0).round() as u64 } else { 0 };
    Effect { measured: true, touched, detail }
}

/// The operations of a run's history in flight when a fault struck, by how they ended:
/// what a node fault did to any system's clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpsInFlight {
    /// Acknowledged.
    pub ok: usize,
    /// Refused.
    pub fail: usize,
    /// Indeterminate.
    pub info: usize,
}

impl OpsInFlight {
    /// The operations invoked before `at_ns` and completed after it.
    pub fn at(ops: &[crate::checks::op::Op], at_ns: u64) -> Self {
        use crate::checks::op::OpType;
        let mut n = Self::default();
        for op in ops.iter().filter(|o| o.invoke_ns < at_ns && o.complete_ns >= at_ns) {
            match op.outcome {
                OpType::Ok => n.ok += 1,
                OpType::Fail => n.fail += 1,
                OpType::Info | OpType::Invoke => n.info += 1,
            }
        }
        n
    }

    /// How many there were.
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.info
    }

    /// `effect` with a line saying how the operations in flight resolved.
    pub fn describe_in(&self, mut effect: Effect) -> Effect {
        effect.detail = format!(
            "{}; {} operation(s) in flight when it struck: {} ok, {} fail, {} info",
            effect.detail,
            self.total(),
            self.ok,
            self.fail,
            self.info
        );
        effect
    }
}

/// The effect of traffic through proxies, described as `what`, with any damage done to it.
pub fn traffic_effect(traffic: Traffic, proxies: usize, what: &str) -> Effect {
    Effect {
        measured: true,
        touched: traffic.bytes,
        detail: format!(
            "{} bytes over {} connection(s) through {proxies} proxy(ies) {what}{}",
            traffic.bytes,
            traffic.connections,
            traffic.damage()
        ),
    }
}

/// The effect of a toxic of type `toxic` through proxies while it was in place: for a
/// toxic that damages the stream, what it touched is the damage (traffic that passed
/// undamaged proves nothing of it).
pub fn toxic_effect(traffic: Traffic, proxies: usize, toxic: &str) -> Effect {
    let damage = match toxic {
        "loss" => Some((traffic.lost_total(), "no segment lost")),
        "corrupt" => Some((traffic.flipped, "no byte flipped")),
        _ => None,
    };
    let mut effect = traffic_effect(traffic, proxies, "while it was in place");
    if let Some((touched, none)) = damage {
        effect.touched = touched;
        if touched == 0 {
            effect.detail = format!("{}; {none}", effect.detail);
        }
    }
    effect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_in_flight_at_a_fault_are_counted_by_how_they_ended() {
        use crate::checks::op::{Op, OpType};
        let op = |invoke_ns, complete_ns, outcome| Op {
            index: 0,
            process: 0,
            f: "add".into(),
            key: None,
            value: serde_json::Value::Null,
            result: None,
            outcome,
            invoke_ns,
            complete_ns,
        };
        let ops = [
            op(0, 5, OpType::Ok),    // done before
            op(5, 20, OpType::Ok),   // in flight
            op(8, 30, OpType::Info), // in flight
            op(9, 11, OpType::Fail), // in flight
            op(12, 40, OpType::Ok),  // invoked after
        ];
        let n = OpsInFlight::at(&ops, 10);
        assert_eq!(n, OpsInFlight { ok: 1, fail: 1, info: 1 });
        let e = n.describe_in(Effect { measured: true, touched: 7, detail: "7 bytes".into() });
        assert_eq!(e.detail, "7 bytes; 3 operation(s) in flight when it struck: 1 ok, 1 fail, 1 info");
    }

    const TEXT: &str = "# HELP toxiproxy_proxy_received_bytes_total x\n\
        toxiproxy_proxy_received_bytes_total{direction=\"upstream\",listener=\"127.0.0.1:1\",proxy=\"a__b__0\",upstream=\"u\"} 100\n\
        toxiproxy_proxy_received_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:1\",proxy=\"a__b__0\",upstream=\"u\"} 50\n\
        toxiproxy_proxy_sent_bytes_total{direction=\"upstream\",listener=\"127.0.0.1:1\",proxy=\"a__b__0\",upstream=\"u\"} 999\n\
        gauntlet_proxy_connections_total{proxy=\"a__b__0\"} 3\n\
        gauntlet_proxy_connections_total{proxy=\"c__d__0\"} 0\n";

    #[test]
    fn counters_are_read_per_proxy() {
        let c = parse_counters(TEXT);
        assert_eq!(c["a__b__0"], Traffic { bytes: 150, connections: 3, ..Traffic::default() });
        assert_eq!(c["c__d__0"], Traffic::default());
    }

    #[test]
    fn traffic_between_two_readings_and_nothing_is_nothing() {
        let before = parse_counters(TEXT);
        let mut after = before.clone();
        after.get_mut("a__b__0").unwrap().bytes += 40;
        let t = between(&before, &after, &["a__b__0".into(), "gone".into()]);
        assert_eq!(t, Traffic { bytes: 40, connections: 0, ..Traffic::default() });
        assert!(!traffic_effect(t, 1, "while in place").is_nothing());
        let none = between(&before, &before, &["a__b__0".into()]);
        assert!(traffic_effect(none, 1, "while in place").is_nothing());
        assert!(!Effect::unmeasured("no /metrics").is_nothing(), "unmeasured is shown, not judged");
    }

    const DAMAGE: &str =
        "gauntlet_proxy_segments_lost_total{direction=\"upstream\",proxy=\"a__b__0\",rto_ms=\"200\"} 30\n\
        gauntlet_proxy_segments_lost_total{direction=\"downstream\",proxy=\"a__b__0\",rto_ms=\"200\"} 5\n\
        gauntlet_proxy_segments_lost_total{direction=\"upstream\",proxy=\"a__b__0\",rto_ms=\"1600\"} 2\n\
        gauntlet_proxy_bytes_corrupted_total{direction=\"downstream\",proxy=\"a__b__0\"} 112\n";

    #[test]
    fn damage_is_read_and_reported_as_what_loss_and_corrupt_touched() {
        let before = parse_counters(TEXT);
        let after = parse_counters(&format!("{TEXT}{DAMAGE}"));
        let t = between(&before, &after, &["a__b__0".into()]);
        assert_eq!((t.lost_total(), t.flipped), (37, 112));
        let loss = toxic_effect(t.clone(), 1, "loss");
        assert_eq!(loss.touched, 37);
        assert!(loss.detail.contains("37 segment(s) lost (retransmitted after 200-1600 ms)"), "{}", loss.detail);
        let corrupt = toxic_effect(t, 1, "corrupt");
        assert_eq!(corrupt.touched, 112);
        assert!(corrupt.detail.contains("112 byte(s) flipped"), "{}", corrupt.detail);
        // Traffic that passed undamaged: the loss did not happen.
        let clean = between(&before, &before, &["a__b__0".into()]);
        let clean = Traffic { bytes: 500, ..clean };
        assert!(toxic_effect(clean.clone(), 1, "loss").is_nothing());
        assert!(!toxic_effect(clean, 1, "latency").is_nothing());
    }
}
