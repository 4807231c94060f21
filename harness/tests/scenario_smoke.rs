//! The smoke scenario passes end to end on the process runtime with debug binaries:
//! the CI gate, under a minute.

mod scenario_common;

use std::time::{Duration, Instant};

use scenario_common::{gauntlet_run, workspace};

#[test]
fn the_smoke_scenario_passes_on_the_process_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = gauntlet_run(dir.path(), &workspace().join("scenarios/smoke.toml"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("scenario smoke (seed 1) — PASSED"), "{stdout}");
    for invariant in ["no_lost_orders", "orders_terminate", "money_conserved", "stock_conserved"] {
        assert!(stdout.contains(&format!("VALID   {invariant}")), "{invariant}: {stdout}");
    }
    assert!(stdout.contains("f1 payments slow"), "the fault table lists the fault: {stdout}");
    assert!(stdout.contains("place_order ok"), "checkouts were recorded: {stdout}");
    assert!(started.elapsed() < Duration::from_secs(90), "smoke took {:?}", started.elapsed());
}

/// The same scenario on the docker runtime; skipped without a Docker engine unless
/// `GAUNTLET_REQUIRE_DOCKER=1`.
#[test]
fn the_smoke_scenario_passes_on_the_docker_runtime() {
    match gauntlet::cluster::docker::engine_available() {
        Ok(()) => {}
        Err(why) if std::env::var("GAUNTLET_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("GAUNTLET_REQUIRE_DOCKER=1 but no Docker engine is reachable: {why}")
        }
        Err(why) => {
            eprintln!("skipped: no Docker engine is reachable ({why}); set GAUNTLET_REQUIRE_DOCKER=1 to require it");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = gauntlet_run(dir.path(), &workspace().join("scenarios/smoke.toml"), &["--runtime", "docker"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("scenario smoke (seed 1) — PASSED"), "{stdout}");
    assert!(stdout.contains("VALID   money_conserved"), "{stdout}");
}
