//! `gauntlet-sim` as a user runs it: exit codes, refusals that name what is refused.

use std::path::Path;
use std::process::Command;

fn sim(args: &[&str]) -> (i32, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet-sim")).args(args).current_dir(&root).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_scenario_with_a_node_fault_is_refused_naming_the_fault() {
    let (code, text) = sim(&["scenarios/orders-killed.toml", "--seed", "1"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot be simulated") && text.contains("Kill"), "{text}");
}

#[test]
fn a_scenario_on_the_event_driven_shop_is_refused_naming_the_service() {
    let (code, text) = sim(&["scenarios/broker-killed.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("service `broker`") || text.contains("service `notifications`"), "{text}");
}

#[test]
fn a_bad_seed_range_is_a_usage_error() {
    let (code, text) = sim(&["scenarios/smoke.toml", "--seeds", "5..2"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("empty"), "{text}");
}

#[test]
fn a_missing_scenario_file_is_bad_input() {
    let (code, text) = sim(&["scenarios/nope.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nope.toml"), "{text}");
}
