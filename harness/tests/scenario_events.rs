//! The event invariant, judged on real runs of the shop with its event-driven half
//! (`services/cluster-events.toml`: a NATS JetStream broker, orders' outbox relay,
//! notifications): while the acks of notifications to the broker are lost for a few
//! seconds (a `timeout` toxic on `notifications->broker`, upstream), the broker
//! redelivers what was acted on but never acknowledged. A healthy build recognises each
//! redelivery and `events_delivered` holds; the build with `skip-dedup` acts on it again,
//! and the checker names the order notified twice.
//!
//! Skips (saying why) without `nats-server`; fails instead under `GAUNTLET_REQUIRE_NATS=1`.

mod scenario_common;

use scenario_common::{gauntlet_run, report_json, scenario_file, verdict_line};

fn nats_server_installed() -> bool {
    let found = std::process::Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)");
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// A scenario on the events cluster that loses notifications' acks for 3 s under
/// checkout load; `brk` is its break switches.
fn ack_loss(brk: &str) -> String {
    format!(
        "invariants = [\"no_lost_orders\", \"orders_terminate\", \"money_conserved\", \"stock_conserved\", \"events_delivered\"]\n\
         [cluster]\nfile = \"EVENTS_CLUSTER\"\nenv = {{ notifications = {{ SHOP_NOTIFICATIONS_ACK_WAIT = \"1s\"{brk} }} }}\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 8, duration = \"10s\" }}\n\
         [[fault]]\nedge = \"notifications->broker\"\nstream = \"upstream\"\ntoxic = \"timeout\"\nattributes = {{ timeout = 0 }}\nat = \"3s\"\nfor = \"3s\"\n\
         [[slo]]\nthreshold = \"availability >= 90%\"\n[recovery]\nduration = \"2s\"\nsettle = \"60s\"\n"
    )
}

fn show(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn lost_acks_are_redelivered_and_a_healthy_consumer_notifies_each_order_once() {
    if !nats_server_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "ack-loss", &ack_loss(""));
    let out = gauntlet_run(dir.path(), &file, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "the healthy build passes:\n{}", show(&out));
    let line = verdict_line(&stdout, |l| l.contains("events_delivered"));
    assert!(line.contains("VALID"), "{stdout}");
    let report = report_json(&stdout);
    let events = report["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "events_delivered").unwrap();
    let checked = events["clauses"].as_array().unwrap().iter().find(|c| c["name"] == "notification-missing").unwrap();
    assert!(checked["checked"].as_u64().unwrap() >= 20, "paid and cancelled orders were checked: {events}");
}

#[test]
fn with_skip_dedup_a_redelivery_notifies_twice_and_events_delivered_names_the_order() {
    if !nats_server_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), "ack-loss-broken", &ack_loss(", SHOP_TEST_BREAK = \"skip-dedup\""));
    let out = gauntlet_run(dir.path(), &file, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "the broken build fails:\n{}", show(&out));
    let line = verdict_line(&stdout, |l| l.contains("events_delivered"));
    eprintln!("broken build:{line}");
    assert!(line.contains("INVALID") && line.contains("notified-twice"), "{stdout}");
    let report = report_json(&stdout);
    let events = report["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "events_delivered").unwrap();
    let clause = events["clauses"].as_array().unwrap().iter().find(|c| c["name"] == "notified-twice").unwrap();
    let first = &clause["first"];
    assert!(first["subject"].as_str().unwrap().starts_with("order "), "{clause}");
    let detail = first["detail"].as_str().unwrap();
    assert!(detail.starts_with("notified ") && detail.contains(" times (by event "), "{clause}");
    // Only the de-duplication is broken: every other clause holds.
    let broken: Vec<&str> = events["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["violations"].as_u64() > Some(0))
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(broken, ["notified-twice"], "{events}");
}

#[test]
fn the_broker_killed_scenario_loses_no_event_and_checkouts_keep_working() {
    if !nats_server_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_common::workspace().join("scenarios/broker-killed.toml");
    let out = gauntlet_run(dir.path(), &file, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "the shipped scenario passes:\n{}", show(&out));
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
    let report = report_json(&stdout);
    let text = report.to_string();
    assert!(text.contains("broker-0"), "the report names the killed broker: {text}");
}
