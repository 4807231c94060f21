//! Seed search finds planted bugs: with a break switch on (debug builds honour them), a
//! search fails naming the invariant the switch breaks, and replaying the failing seed
//! gives the same counterexample. Without the switch the same seeds pass.

use std::path::Path;

use gauntlet::scenario::Scenario;

/// `base` with `env` added to its cluster's environment for `service`.
fn with_env(base: &str, service: &str, env: &str) -> Scenario {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let path = root.join(base);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let entry = format!("{service} = {{ {env} }}");
    let own = format!("\n[cluster]\nenv = {{ {service} = {{ ");
    if let Some(i) = text.find(&own) {
        text.insert_str(i + own.len(), &format!("{env}, "));
    } else if let Some(i) = text.find("\n[cluster]\nenv = { ") {
        let at = i + "\n[cluster]\nenv = { ".len();
        text.insert_str(at, &format!("{entry}, "));
    } else if text.contains("\n[cluster]\n") {
        text = text.replacen("\n[cluster]\n", &format!("\n[cluster]\nenv = {{ {entry} }}\n"), 1);
    } else {
        text = text.replacen("\n[load]\n", &format!("\n[cluster]\nenv = {{ {entry} }}\n\n[load]\n"), 1);
    }
    Scenario::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Each broken invariant with its broken clauses.
type Broken = Vec<(String, Vec<String>)>;

/// Runs seeds `seeds` with buggify; the first failing seed and its broken checks.
fn search(scenario: &Scenario, seeds: std::ops::Range<u64>, out: &Path) -> Option<(u64, Broken)> {
    for seed in seeds {
        let outcome = gauntlet_sim::run_seed(scenario, seed, &gauntlet_sim::seed_dir(out, seed), true).unwrap();
        let broken: Broken = outcome
            .checks
            .iter()
            .filter(|c| !c.valid())
            .map(|c| (c.invariant.clone(), c.broken_clauses().iter().map(|s| s.to_string()).collect()))
            .collect();
        if !broken.is_empty() {
            return Some((seed, broken));
        }
    }
    None
}

fn finds(base: &str, service: &str, switch: &str, invariant: &str, clause: &str) {
    let out = tempfile::tempdir().unwrap();
    let broken = with_env(base, service, &format!("SHOP_TEST_BREAK = \"{switch}\""));
    let (seed, checks) =
        search(&broken, 1..4, out.path()).unwrap_or_else(|| panic!("{switch}: no seed of 1..4 failed"));
    let names: Vec<&str> = checks.iter().map(|(i, _)| i.as_str()).collect();
    let clauses = checks.iter().find(|(i, _)| i == invariant).map(|(_, c)| c.clone()).unwrap_or_default();
    assert!(clauses.iter().any(|c| c == clause), "{switch}: seed {seed} broke {checks:?}, not {invariant} [{clause}]");
    assert!(names.contains(&invariant), "{names:?}");
    // The replay reproduces the same counterexample, file for file.
    let replay = out.path().join("replay");
    gauntlet_sim::run_seed(&broken, seed, &replay, true).unwrap();
    let first = gauntlet_sim::seed_dir(out.path(), seed);
    assert_eq!(
        gauntlet_sim::compare::first_divergence(&first, &replay),
        None,
        "{switch}: seed {seed} replayed differently"
    );
    // The same seed without the switch passes.
    let healthy = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(base)).unwrap();
    let outcome = gauntlet_sim::run_seed(&healthy, seed, &out.path().join("healthy"), true).unwrap();
    assert!(outcome.passed(), "{base} seed {seed} without {switch}: {:?}", outcome.failure_reasons());
}

#[test]
fn a_repeated_idempotency_key_charging_again_is_found_as_money_not_conserved() {
    finds("payments-reset-peer.toml", "payments", "skip-idempotency", "money_conserved", "key-charged-twice");
}

#[test]
fn a_paid_order_releasing_its_stock_is_found_as_stock_not_conserved() {
    finds("smoke.toml", "orders", "release-paid", "stock_conserved", "paid-not-committed");
}

#[test]
fn a_repeated_order_key_placing_a_second_order_is_found_as_an_order_placed_twice() {
    finds("orders-answers-lost.toml", "orders", "duplicate-order", "no_lost_orders", "duplicate-order");
}

#[test]
fn compensation_that_releases_nothing_is_found_as_stock_not_conserved() {
    finds("payments-down.toml", "orders", "skip-compensation", "stock_conserved", "held-at-end");
}

#[test]
fn compensation_that_commits_the_stock_is_found_as_stock_not_conserved() {
    finds("payments-down.toml", "orders", "commit-cancelled", "stock_conserved", "cancelled-committed");
}

#[test]
fn a_refund_recorded_but_not_made_is_found_as_money_not_conserved() {
    finds("payments-past-deadline.toml", "orders", "skip-refund", "money_conserved", "cancelled-kept-money");
}
