//! The damaging toxics in simulation: the shipped `payments-loss` and `payments-corrupt`
//! scenarios pass under `gauntlet sim`, their effects are counted (segments lost, bytes
//! flipped), and the same seed replays them byte for byte.

use std::path::{Path, PathBuf};

use gauntlet::scenario::Scenario;

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `name` twice with seed 1; the effect of its one fault, once both runs passed and
/// agreed file for file.
fn passes_and_replays(name: &str) -> gauntlet::scenario::effect::Effect {
    let scenario = scenario(name);
    let out = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|d| out.path().join(d)).collect();
    let mut effects = Vec::new();
    for dir in &dirs {
        let outcome = gauntlet_sim::run_seed(&scenario, 1, dir, false).unwrap();
        assert!(outcome.passed(), "{name} failed in simulation: {:?}", outcome.failure_reasons());
        effects.push(outcome.faults[0].effect.clone().expect("the fault's effect is measured"));
    }
    assert_eq!(gauntlet_sim::compare::first_divergence(&dirs[0], &dirs[1]), None, "{name} did not replay");
    assert_eq!(effects[0], effects[1]);
    effects.remove(0)
}

#[test]
fn payments_loss_passes_in_simulation_with_segments_lost_and_replays() {
    let effect = passes_and_replays("payments-loss.toml");
    assert!(effect.touched > 0, "no segment lost: {}", effect.detail);
    assert!(effect.detail.contains("segment(s) lost (retransmitted after 200"), "{}", effect.detail);
}

#[test]
fn payments_corrupt_passes_in_simulation_with_bytes_flipped_and_replays() {
    let effect = passes_and_replays("payments-corrupt.toml");
    assert!(effect.touched > 0, "no byte flipped: {}", effect.detail);
    assert!(effect.detail.contains("byte(s) flipped"), "{}", effect.detail);
}
