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

/// The one invariant clause of `events_delivered` named `name`, from the report.
fn events_clause(report: &serde_json::Value, name: &str) -> serde_json::Value {
    let events = report["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "events_delivered").unwrap();
    events["clauses"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// The fault labelled by `target` in the report, with its observed effect.
fn fault(report: &serde_json::Value, target: &str) -> serde_json::Value {
    let faults = report["faults"].as_array().unwrap();
    faults.iter().find(|f| f["target"] == target).unwrap_or_else(|| panic!("no fault on {target}: {faults:?}")).clone()
}

/// The SLO whose threshold starts with `threshold`, from the report.
fn slo(report: &serde_json::Value, threshold: &str) -> serde_json::Value {
    let slos = report["slos"].as_array().unwrap();
    slos.iter()
        .find(|s| s["name"].as_str().unwrap().starts_with(threshold))
        .unwrap_or_else(|| panic!("no SLO `{threshold}`: {slos:?}"))
        .clone()
}

/// Runs `body` on the events cluster; returns the exit code, stdout and the report.
fn run_events(name: &str, body: &str) -> (Option<i32>, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(dir.path(), name, body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = report_json(&stdout);
    eprintln!("{name}: exit {:?}\n{}", out.status.code(), show(&out));
    (out.status.code(), stdout, report)
}

const INVARIANTS: &str =
    "invariants = [\"no_lost_orders\", \"orders_terminate\", \"money_conserved\", \"stock_conserved\", \"events_delivered\"]\n";

/// The `[cluster] env` line with the switch that breaks the de-duplication at both ends
/// (orders' relay publishes without `Nats-Msg-Id`, notifications acts on a repeat
/// again), after each service's other settings (`orders`, `notifications`: `K = "v", `).
fn skip_dedup(orders: &str, notifications: &str) -> String {
    format!(
        "env = {{ orders = {{ {orders}SHOP_TEST_BREAK = \"skip-dedup\" }}, \
         notifications = {{ {notifications}SHOP_TEST_BREAK = \"skip-dedup\" }} }}\n"
    )
}

/// A broken run failed by `events_delivered` alone, naming `clause`.
fn assert_broken_by(clause: &str, code: Option<i32>, stdout: &str, report: &serde_json::Value) {
    assert_eq!(code, Some(1), "the broken build fails:\n{stdout}");
    let line = verdict_line(stdout, |l| l.contains("events_delivered"));
    assert!(line.contains("INVALID") && line.contains(clause), "{stdout}");
    assert!(events_clause(report, clause)["violations"].as_u64().unwrap() > 0);
}

/// `scenarios/broker-latency.toml`, shortened: 250 ms on the broker's answers to a
/// relay that waits 250 ms for an ack; `env` is the `[cluster]` env line.
fn broker_latency(env: &str) -> String {
    let env = if env.is_empty() { "env = { orders = { SHOP_OUTBOX_ACK_TIMEOUT = \"250ms\" } }\n" } else { env };
    format!(
        "{INVARIANTS}[cluster]\nfile = \"EVENTS_CLUSTER\"\n{env}\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 8, duration = \"14s\" }}\n\
         [[fault]]\nedge = \"orders->broker\"\nstream = \"downstream\"\ntoxic = \"latency\"\nattributes = {{ latency = \"250ms\", jitter = \"50ms\" }}\nat = \"3s\"\nfor = \"8s\"\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\
         [[slo]]\nthreshold = \"p95 < 1s\"\nflow = \"checkout\"\nduring = \"faults\"\n\
         [[slo]]\nthreshold = \"metric orders:shop_outbox_unsent_events max < 1000\"\n\
         [[slo]]\nthreshold = \"metric orders:shop_outbox_duplicate_acks_total max >= 1\"\n\
         [recovery]\nduration = \"3s\"\nsettle = \"60s\"\n"
    )
}

#[test]
fn slow_broker_acks_back_the_outbox_up_but_checkouts_are_untouched_and_nothing_is_lost() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("broker-latency", &broker_latency(""));
    assert_eq!(code, Some(0), "the healthy build passes:\n{stdout}");
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
    let slow = fault(&report, "orders->broker");
    assert!(slow["touched"].as_u64().unwrap() > 0, "the toxic delayed traffic: {slow}");
    let backlog = slo(&report, "metric orders:shop_outbox_unsent_events max");
    assert!(backlog["observed"].as_f64().unwrap() >= 2.0, "the outbox lag is visible: {backlog}");
    let checkouts = slo(&report, "p95 < 1s");
    assert_eq!(checkouts["status"], "passed", "checkouts did not wait for the broker: {checkouts}");
    let repeats = slo(&report, "metric orders:shop_outbox_duplicate_acks_total max");
    assert_eq!(repeats["status"], "passed", "late acks were retried and the broker dropped the repeats: {repeats}");
}

#[test]
fn slow_broker_acks_without_de_duplication_publish_an_event_twice() {
    if !nats_server_installed() {
        return;
    }
    let env = skip_dedup("SHOP_OUTBOX_ACK_TIMEOUT = \"250ms\", ", "");
    let (code, stdout, report) = run_events("broker-latency-broken", &broker_latency(&env));
    assert_broken_by("published-twice", code, &stdout, &report);
}

/// `scenarios/broker-reset-peer.toml`, shortened: resets on every connection carrying
/// the broker's answers to orders (the shipped file resets half of them; the relay
/// keeps one connection, so a short run could draw none); the counter of failed
/// publishes is read as a gauge to see them retried.
fn broker_reset_peer(env: &str) -> String {
    format!(
        "{INVARIANTS}[cluster]\nfile = \"EVENTS_CLUSTER\"\n{env}\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 8, duration = \"12s\" }}\n\
         [[fault]]\nedge = \"orders->broker\"\nstream = \"downstream\"\ntoxic = \"reset_peer\"\nattributes = {{ timeout = 0 }}\nat = \"3s\"\nfor = \"6s\"\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\
         [[slo]]\nthreshold = \"metric orders:shop_outbox_publish_failures_total max >= 1\"\n\
         [[slo]]\nthreshold = \"metric orders:shop_outbox_duplicate_acks_total max >= 1\"\n\
         [recovery]\nduration = \"3s\"\nsettle = \"60s\"\n"
    )
}

#[test]
fn broker_resets_fail_publishes_which_are_retried_and_no_event_is_lost_or_doubled() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("broker-reset-peer", &broker_reset_peer(""));
    assert_eq!(code, Some(0), "the healthy build passes:\n{stdout}");
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
    let resets = fault(&report, "orders->broker");
    assert!(resets["touched"].as_u64().unwrap() > 0, "the resets touched traffic: {resets}");
    let failed = slo(&report, "metric orders:shop_outbox_publish_failures_total max");
    assert_eq!(failed["status"], "passed", "publishes failed and were retried: {failed}");
    let repeats = slo(&report, "metric orders:shop_outbox_duplicate_acks_total max");
    assert_eq!(repeats["status"], "passed", "a reset cut an ack and the broker dropped the repeat: {repeats}");
    for clause in ["notification-missing", "notified-twice"] {
        let c = events_clause(&report, clause);
        assert!(c["checked"].as_u64().unwrap() > 0 && c["violations"] == 0, "{c}");
    }
}

#[test]
fn broker_resets_without_de_duplication_publish_an_event_twice() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("broker-reset-peer-broken", &broker_reset_peer(&skip_dedup("", "")));
    assert_broken_by("published-twice", code, &stdout, &report);
}

/// `scenarios/notifications-killed.toml`, shortened: acks held on the wire, then
/// notifications killed and restarted; `brk` is its break switches.
fn notifications_killed(brk: &str) -> String {
    format!(
        "{INVARIANTS}[cluster]\nfile = \"EVENTS_CLUSTER\"\nenv = {{ notifications = {{ SHOP_NOTIFICATIONS_ACK_WAIT = \"2s\"{brk} }} }}\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 8, duration = \"12s\" }}\n\
         [[fault]]\nedge = \"notifications->broker\"\nstream = \"upstream\"\ntoxic = \"timeout\"\nattributes = {{ timeout = 0 }}\nat = \"3s\"\nfor = \"3s\"\n\
         [[fault]]\nnode = \"notifications-0\"\nop = \"kill\"\nat = \"5s\"\nfor = \"3s\"\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n[recovery]\nduration = \"2s\"\nsettle = \"60s\"\n"
    )
}

#[test]
fn notifications_killed_mid_consume_gets_its_unacknowledged_events_again_and_notifies_once() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("notifications-killed", &notifications_killed(""));
    assert_eq!(code, Some(0), "the healthy build passes:\n{stdout}");
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
    let kill = fault(&report, "notifications-0");
    assert!(kill["touched"].as_u64().unwrap() > 0, "notifications was consuming when it was killed: {kill}");
    assert!(kill["effect"].as_str().unwrap().contains("in and out of the node before it struck"), "{kill}");
}

#[test]
fn notifications_killed_with_skip_dedup_notifies_a_redelivered_event_twice() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) =
        run_events("notifications-killed-broken", &notifications_killed(", SHOP_TEST_BREAK = \"skip-dedup\""));
    assert_broken_by("notified-twice", code, &stdout, &report);
}

/// `scenarios/slow-consumer.toml`, shortened: a 600 ms sender with a 3 s ack wait
/// behind a burst of checkouts, then a quiet stretch; `bound` is the SLO on its lag,
/// `brk` its break switches.
fn slow_consumer(bound: &str, brk: &str) -> String {
    format!(
        "{INVARIANTS}[cluster]\nfile = \"EVENTS_CLUSTER\"\nenv = {{ notifications = {{ SHOP_NOTIFICATIONS_SEND_DELAY = \"600ms\", SHOP_NOTIFICATIONS_ACK_WAIT = \"3s\"{brk} }} }}\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"ramping\", start_rate = 8, stages = [{{ duration = \"8s\", target = 8 }}, {{ duration = \"1s\", target = 1 }}, {{ duration = \"20s\", target = 1 }}] }}\n\
         [[slo]]\nthreshold = \"metric notifications:shop_notifications_consumer_lag_seconds max < {bound}\"\n\
         [[slo]]\nthreshold = \"metric notifications:shop_notifications_consumer_lag_seconds max < 3\"\nafter = \"26s\"\n\
         [[slo]]\nthreshold = \"metric notifications:shop_notifications_redeliveries_total max >= 1\"\n\
         [recovery]\nsettle = \"60s\"\n"
    )
}

#[test]
fn a_slow_sender_lags_behind_a_burst_and_recovers_within_the_slo_on_its_lag() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("slow-consumer", &slow_consumer("30", ""));
    assert_eq!(code, Some(0), "the healthy build passes:\n{stdout}");
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
    let peak = slo(&report, "metric notifications:shop_notifications_consumer_lag_seconds max < 30");
    assert!(peak["observed"].as_f64().unwrap() > 1.0, "the lag grew: {peak}");
    assert!(peak["samples"].as_u64().unwrap() >= 10, "sampled once a second: {peak}");
    let after = slo(&report, "metric notifications:shop_notifications_consumer_lag_seconds max < 3");
    assert_eq!(after["status"], "passed", "and recovered: {after}");
    let again = slo(&report, "metric notifications:shop_notifications_redeliveries_total max");
    assert_eq!(again["status"], "passed", "the broker delivered again what waited past the ack wait: {again}");
}

#[test]
fn a_slow_sender_without_de_duplication_sends_a_redelivered_event_twice() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) =
        run_events("slow-consumer-broken", &slow_consumer("30", ", SHOP_TEST_BREAK = \"skip-dedup\""));
    assert_broken_by("notified-twice", code, &stdout, &report);
}

#[test]
fn a_lag_over_its_slo_fails_the_run_by_that_slo_alone() {
    if !nats_server_installed() {
        return;
    }
    let (code, stdout, report) = run_events("slow-consumer-over", &slow_consumer("0.5", ""));
    assert_eq!(code, Some(1), "a lag over its bound fails:\n{stdout}");
    let line = verdict_line(&stdout, |l| l.contains("lag_seconds max < 0.5"));
    assert!(line.starts_with("FAIL") || line.trim_start().starts_with("FAIL"), "{stdout}");
    let reasons: Vec<&str> =
        report["verdict"]["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 1, "only the lag SLO fails: {reasons:?}");
    assert!(reasons[0].contains("shop_notifications_consumer_lag_seconds max < 0.5"), "{reasons:?}");
    assert!(verdict_line(&stdout, |l| l.contains("events_delivered")).contains("VALID"), "{stdout}");
}
