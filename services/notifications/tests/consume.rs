//! The notifications binary against a real NATS JetStream broker, driven as the shop
//! drives it: order events published as orders' relay publishes them, the consumer
//! killed with SIGKILL mid-consume and started again (redelivery), the same event
//! published twice under different message ids (a duplicate the broker cannot drop),
//! and poison messages. Every terminal order ends with exactly one notification for
//! its user; a poison message goes to the dead-letter subject without blocking the rest.
//!
//! Skips (saying why) without `nats-server`; fails instead under `GAUNTLET_REQUIRE_NATS=1`.

#[path = "../../nats_support.rs"]
mod nats_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use nats_support::{free_port, NatsServer};
use serde_json::{json, Value};

const ADMIN: &str = "gauntlet-dev-secret-change-me";

/// A running `shop-notifications` binary (killed when dropped).
struct Notifications {
    child: Child,
    url: String,
}

impl Notifications {
    fn start(db: &Path, log: &Path, broker: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shop-notifications"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHOP_DEV_DEFAULTS", "1")
            .env("SHOP_DB", db)
            .env("SHOP_PORT", port.to_string())
            .env("SHOP_UPSTREAM_BROKER", broker)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the shop-notifications binary starts");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn state(&self, http: &reqwest::Client) -> Option<Value> {
        let r = http.get(format!("{}/v1/admin/state", self.url)).bearer_auth(ADMIN).send().await.ok()?;
        r.json().await.ok()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn jetstream(url: &str) -> jetstream::Context {
    let js = jetstream::new(async_nats::connect(url).await.expect("the test connects to the broker"));
    // As orders' relay makes it.
    js.get_or_create_stream(stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .unwrap();
    js
}

/// Publishes one order event as orders' relay does (its event id as `Nats-Msg-Id`,
/// unless `msg_id` says otherwise).
async fn publish(js: &jetstream::Context, kind: &str, order: usize, msg_id: Option<&str>) {
    let (version, status) = match kind {
        "ORDER_PLACED" => (1, "PENDING"),
        "ORDER_PAID" => (4, "PAID"),
        _ => (3, "CANCELLED"),
    };
    let event_id = format!("order-{order}:{version}");
    let body = json!({"event_id": event_id, "type": kind, "order_id": format!("order-{order}"),
        "user_id": format!("user-{}", order % 5), "version": version, "status": status,
        "total_minor": 1250, "currency": "EUR", "reason": null, "at": "2026-12-03T00:00:00.000Z"});
    let subject = format!("orders.{}", kind.trim_start_matches("ORDER_").to_ascii_lowercase());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.unwrap_or(&event_id));
    js.publish_with_headers(subject, headers, body.to_string().into()).await.unwrap().await.unwrap();
}

/// Polls the admin state (at most `within`) until `done` holds; the last state read.
async fn wait_for(n: &Notifications, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(state) = n.state(&http).await {
            if done(&state) {
                return state;
            }
            last = state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn count(state: &Value, key: &str) -> usize {
    state[key].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_terminal_order_is_notified_exactly_once_across_a_kill_and_duplicates() {
    if !NatsServer::available() {
        return;
    }
    const ORDERS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let broker = NatsServer::start(&dir.path().join("broker"));
    let js = jetstream(&broker.url()).await;
    for i in 0..ORDERS {
        publish(&js, "ORDER_PLACED", i, None).await;
        publish(&js, if i.is_multiple_of(3) { "ORDER_CANCELLED" } else { "ORDER_PAID" }, i, None).await;
    }
    // The same terminal event again under other message ids: the broker keeps them,
    // the consumer must not act on them.
    for i in (0..ORDERS).step_by(10) {
        let kind = if i.is_multiple_of(3) { "ORDER_CANCELLED" } else { "ORDER_PAID" };
        publish(&js, kind, i, Some(&format!("again-{i}"))).await;
    }

    let db = dir.path().join("notifications.db");
    let log = dir.path().join("notifications.log");
    // A slow sender, so the kill lands mid-consume; a short ack wait, so what was
    // delivered and not acked comes back soon.
    let slow = [("SHOP_NOTIFICATIONS_SEND_DELAY", "3ms"), ("SHOP_NOTIFICATIONS_ACK_WAIT", "1s")];
    let mut first = Notifications::start(&db, &log, &broker.url(), &slow);
    let state = wait_for(&first, Duration::from_secs(30), |s| count(s, "notifications") >= 30).await;
    assert!(count(&state, "notifications") >= 30, "consuming started: {state}\n{}", log_tail(&log));
    first.kill9();
    let at_kill = count(&first_state_after_kill(&db).await, "notifications");
    assert!(at_kill < ORDERS, "the kill came before everything was consumed ({at_kill} of {ORDERS})");

    let second = Notifications::start(&db, &log, &broker.url(), &slow);
    let all = Some(2 * ORDERS as i64);
    let state = wait_for(&second, Duration::from_secs(60), |s| s["processed_events"].as_i64() == all).await;
    assert_eq!(state["processed_events"].as_i64(), all, "every event processed once\n{}", log_tail(&log));
    // Let any redelivery still due arrive, then look again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let state = wait_for(&second, Duration::from_secs(5), |_| true).await;

    let mut per_order: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for n in state["notifications"].as_array().unwrap() {
        per_order.entry(n["order_id"].as_str().unwrap().to_string()).or_default().push(n);
    }
    assert_eq!(per_order.len(), ORDERS, "every terminal order is notified\n{}", log_tail(&log));
    for (order, notes) in &per_order {
        assert_eq!(notes.len(), 1, "order {order} notified {} times: {notes:?}", notes.len());
        let i: usize = order.trim_start_matches("order-").parse().unwrap();
        assert_eq!(notes[0]["user_id"], format!("user-{}", i % 5), "the order's own user");
        let kind = if i.is_multiple_of(3) { "ORDER_CANCELLED" } else { "ORDER_PAID" };
        assert_eq!(notes[0]["kind"], kind);
    }
    assert_eq!(count(&state, "dead_letters"), 0);
}

/// Reads the database of a killed instance directly.
async fn first_state_after_kill(db: &Path) -> Value {
    let conn = shop_kit::db::Db::open(db, shop_notifications::store::MIGRATIONS, shop_kit::db::Sync::Normal).unwrap();
    let (notes, _, _) = shop_notifications::store::Store::new(conn).state().await.unwrap();
    json!({ "notifications": notes })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_its_attempts_and_blocks_nothing() {
    if !NatsServer::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = NatsServer::start(&dir.path().join("broker"));
    let js = jetstream(&broker.url()).await;
    publish(&js, "ORDER_PAID", 1, None).await;
    js.publish("orders.paid", "{\"not\": \"an order event\"}".into()).await.unwrap().await.unwrap();
    publish(&js, "ORDER_CANCELLED", 3, None).await;

    let log = dir.path().join("notifications.log");
    let n = Notifications::start(
        &dir.path().join("n.db"),
        &log,
        &broker.url(),
        &[("SHOP_NOTIFICATIONS_MAX_ATTEMPTS", "3"), ("SHOP_NOTIFICATIONS_ACK_WAIT", "1s")],
    );
    let state = wait_for(&n, Duration::from_secs(30), |s| count(s, "dead_letters") == 1).await;
    assert_eq!(count(&state, "dead_letters"), 1, "the poison message is dead-lettered: {state}\n{}", log_tail(&log));
    let letter = &state["dead_letters"][0];
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["subject"], "orders.paid");
    assert!(letter["reason"].as_str().unwrap().contains("not an order event"), "{letter}");
    assert_eq!(count(&state, "notifications"), 2, "the messages around it are handled: {state}");

    let mut dlq = js.get_stream("ORDERS_DLQ").await.unwrap();
    assert_eq!(dlq.info().await.unwrap().state.messages, 1, "published to the dead-letter subject");
    let kept = dlq.get_last_raw_message_by_subject("dlq.orders.paid").await.unwrap();
    assert_eq!(&kept.payload[..], b"{\"not\": \"an order event\"}");

    let http = reqwest::Client::new();
    let mine: Value =
        http.get(format!("{}/v1/notifications?user_id=user-1", n.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    let bad = http.get(format!("{}/v1/notifications", n.url)).send().await.unwrap();
    assert_eq!(bad.status(), 400, "a list needs its user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sender_is_retried_until_every_order_is_notified_once() {
    if !NatsServer::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = NatsServer::start(&dir.path().join("broker"));
    let js = jetstream(&broker.url()).await;
    for order in 0..20 {
        publish(&js, if order % 2 == 0 { "ORDER_PAID" } else { "ORDER_CANCELLED" }, order, None).await;
    }
    let log = dir.path().join("notifications.log");
    // Half the sends fail; 30 attempts make a dead letter a one-in-a-billion event.
    let settings = [("SHOP_NOTIFICATIONS_SEND_FAILURES", "0.5"), ("SHOP_NOTIFICATIONS_MAX_ATTEMPTS", "30")];
    let n = Notifications::start(&dir.path().join("n.db"), &log, &broker.url(), &settings);
    let state = wait_for(&n, Duration::from_secs(60), |s| count(s, "notifications") >= 20).await;
    assert_eq!(count(&state, "notifications"), 20, "every order notified, once: {state}\n{}", log_tail(&log));
    assert_eq!(count(&state, "dead_letters"), 0, "{state}");
    let metrics = reqwest::get(format!("{}/metrics", n.url)).await.unwrap().text().await.unwrap();
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("shop_notifications_events_total") && l.contains("outcome=\"failed\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(failed >= 1, "sends failed and were retried:\n{metrics}");
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
