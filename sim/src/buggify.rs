//! The seed search's perturbations (FoundationDB's "buggify"): from each seed, fault
//! times and node targets within the scenario's bounds, the network's delays and the
//! order hosts run in each step. A run with them is as replayable as one without: they
//! are drawn from the seed, and written to `schedule.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use gauntlet::cluster::NodeId;
use gauntlet::load::slo::Window;
use gauntlet::scenario::{FaultTarget, Scenario, WindowAnchor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The largest delay per message the search draws.
pub const MAX_LATENCY: Duration = Duration::from_millis(5);

/// What a seed drew for the simulated network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Network {
    /// Each message is delayed uniformly up to this.
    pub max_latency: Duration,
    /// Hosts run in a random order in each step (else in a fixed one).
    pub random_order: bool,
}

/// Perturbs `scenario` as seed `seed` draws, within its bounds:
/// - every fault moves by one common shift, so faults keep their order and overlaps, and
///   the first starts no earlier than half its planned time and the last ends no later
///   than halfway between its planned end and the end of the load, nor later than the
///   scenario's `recovery.duration` before the end of the load; SLO windows written
///   as fixed times move with them (they were written against the planned timeline);
/// - a fault on a node strikes a replica of that service drawn among its replicas (every
///   fault on one node moves to the same one);
/// - the network's delay bound is drawn up to [`MAX_LATENCY`], and host order is random.
pub fn perturb(scenario: &mut Scenario, seed: u64) -> Network {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB066_1F7E_5EED_0000);
    let load_end = scenario.load.duration();
    if let (Some(first), Some(last)) =
        (scenario.faults.iter().map(|f| f.at).min(), scenario.faults.iter().map(|f| f.until).max())
    {
        let earlier = (first / 2).as_millis() as i64;
        // The scenario promises the load goes on `recovery.duration` after the last fault.
        let room = load_end.saturating_sub(last);
        let later = (room / 2).min(room.saturating_sub(scenario.recovery.duration)).as_millis() as i64;
        let shift = rng.random_range(-earlier..=later);
        for f in &mut scenario.faults {
            f.at = shifted(f.at, shift);
            f.until = shifted(f.until, shift);
        }
        // An SLO window written as fixed times (`after = "19s"`) was written against the
        // planned timeline, and moves with it; the whole run stays the whole run, and
        // windows tied to faults follow the faults by themselves.
        let anchors = scenario.slo_anchors.clone();
        for (slo, anchor) in
            scenario.load.workload.slos.iter_mut().zip(anchors.iter().chain(std::iter::repeat(&WindowAnchor::Fixed)))
        {
            if *anchor == WindowAnchor::Fixed && slo.window != Window::WHOLE_RUN {
                slo.window.start = shifted(slo.window.start, shift);
                slo.window.end = slo.window.end.map(|e| shifted(e, shift));
            }
        }
    }
    let replicas = |service: &str| {
        scenario
            .cluster
            .replicas
            .get(service)
            .copied()
            .or_else(|| scenario.cluster.spec.services.iter().find(|s| s.name == service).map(|s| s.replicas))
    };
    let mut moved: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut nodes: Vec<NodeId> = Vec::new();
    for f in &scenario.faults {
        if let FaultTarget::Node(id) = &f.target {
            if !nodes.contains(id) {
                nodes.push(id.clone());
            }
        }
    }
    for id in nodes {
        let n = replicas(&id.service).unwrap_or(1).max(1);
        let to = NodeId { service: id.service.clone(), replica: rng.random_range(0..n) };
        moved.insert(id, to);
    }
    for f in &mut scenario.faults {
        if let FaultTarget::Node(id) = &f.target {
            if let Some(to) = moved.get(id).filter(|to| *to != id) {
                f.label = f.label.replace(&id.to_string(), &to.to_string());
                f.target = FaultTarget::Node(to.clone());
            }
        }
    }
    let max_latency = Duration::from_micros(rng.random_range(0..=MAX_LATENCY.as_micros() as u64));
    Network { max_latency, random_order: true }
}

fn shifted(t: Duration, by_ms: i64) -> Duration {
    Duration::from_millis((t.as_millis() as i64 + by_ms).max(0) as u64)
}
