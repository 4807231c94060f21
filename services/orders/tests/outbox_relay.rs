//! The outbox relay against a real NATS JetStream broker, driven as an operator would
//! hurt it: the broker killed with SIGKILL while events keep being recorded, then
//! restarted on its store; and the orders binary itself killed with SIGKILL mid-relay
//! and started again on its database. Either way the stream ends holding every
//! published event exactly once, in the order orders recorded them.
//!
//! Skips (saying why) without `nats-server`; fails instead under `GAUNTLET_REQUIRE_NATS=1`.

#[path = "../../nats_support.rs"]
mod nats_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use nats_support::NatsServer;
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_orders::events::{LineItem, OrderEvent, OrderState, Timestamp};
use shop_orders::outbox::{OrderEventMessage, Outbox, STREAM};
use shop_orders::relay::{self, RelayConfig, RelayMetrics};
use shop_orders::store::Store;

/// Records orders `from..to`, each ending paid (even index) or cancelled (odd).
async fn record_orders(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let at = |n: u64| Timestamp::from_millis(1_000_000 + i as u64 * 10 + n);
        let id = format!("order-{i:05}");
        let user = format!("user-{}", i % 7);
        let s = OrderState::placed(&id, &user, vec![LineItem { product_id: 1, quantity: 1 }], at(0));
        store.place(s.clone(), None).await.unwrap();
        let steps = if i.is_multiple_of(2) {
            vec![
                OrderEvent::StockReserved { reservation_id: format!("r{i}"), total_minor: 500, currency: "EUR".into() },
                OrderEvent::PaymentCaptured { charge_id: format!("c{i}") },
                OrderEvent::Paid,
            ]
        } else {
            vec![
                OrderEvent::CompensationStarted { reason: "declined".into(), in_doubt: false },
                OrderEvent::Cancelled { reason: "declined".into() },
            ]
        };
        let mut s = s;
        for (n, ev) in steps.iter().enumerate() {
            s = s.apply(ev, at(n as u64 + 1)).unwrap();
            store.append(&s, ev).await.unwrap();
        }
    }
}

/// Every event id of the outbox, in the order it was recorded.
async fn recorded(store: &Store) -> Vec<String> {
    store
        .db()
        .read(|c| {
            let mut stmt = c.prepare("SELECT event_id FROM outbox ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

async fn jetstream(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("the test connects to the broker"))
}

/// How many messages the stream holds (0 before it exists).
async fn stream_len(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The stream's messages in stream order: (the `Nats-Msg-Id` header, the payload's event id).
async fn stream_contents(js: &jetstream::Context, expect: usize) -> Vec<(String, String)> {
    let stream = js.get_stream(STREAM).await.unwrap();
    let reader = stream
        .create_consumer(consumer::pull::Config { ack_policy: consumer::AckPolicy::None, ..Default::default() })
        .await
        .unwrap();
    let mut messages = reader.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < expect {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let body: OrderEventMessage = serde_json::from_slice(&m.payload).unwrap();
        out.push((id, body.event_id));
    }
    // Nothing more than expected.
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), messages.next()).await {
        out.push((String::from("unexpected"), String::from_utf8_lossy(&m.payload).into_owned()));
    }
    out
}

/// Waits (at most `within`) until the outbox has nothing unsent.
async fn drained(outbox: &Outbox, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if outbox.lag(Timestamp::now()).await.unwrap().unsent == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn assert_exactly_once_in_order(contents: &[(String, String)], recorded: &[String]) {
    let by_header: Vec<&str> = contents.iter().map(|(h, _)| h.as_str()).collect();
    let by_body: Vec<&str> = contents.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(by_header, by_body, "each message's Nats-Msg-Id is its event id");
    if by_body != recorded {
        let first = by_body.iter().zip(recorded).position(|(a, b)| a != b).unwrap_or(by_body.len().min(recorded.len()));
        panic!(
            "the stream holds {} messages, {} events were recorded; first difference at {first}: stream {:?}, recorded {:?}",
            by_body.len(),
            recorded.len(),
            by_body.get(first),
            recorded.get(first)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_loses_nothing_and_the_outbox_drains_in_order_when_it_is_back() {
    if !NatsServer::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut broker = NatsServer::start(&dir.path().join("broker"));
    let store = Store::open(&dir.path().join("orders.db"), Sync::Normal).unwrap();
    let outbox = Outbox::new(store.db().clone());
    record_orders(&store, 0, 200).await;

    let metrics = Metrics::new("orders");
    let config = RelayConfig {
        backoff: (Duration::from_millis(20), Duration::from_millis(300)),
        ack_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let relay = tokio::spawn(relay::run(outbox.clone(), vec![broker.url()], config, RelayMetrics::register(&metrics)));
    assert!(drained(&outbox, Duration::from_secs(30)).await, "the first 200 orders' events are published");

    // The broker dies; orders keep being recorded, and the outbox backs up.
    broker.kill();
    record_orders(&store, 200, 300).await;
    let backed_up = "shop_outbox_unsent_events{service=\"orders\"} 200";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics.render().contains(backed_up) {
        assert!(Instant::now() < deadline, "no lag of 200 on /metrics within 10 s:\n{}", metrics.render());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lag = outbox.lag(Timestamp::now()).await.unwrap();
    assert_eq!(lag.unsent, 200, "100 orders' placed and terminal events wait: {lag:?}");
    assert!(lag.oldest_unsent_age_ms.unwrap() >= 500, "{lag:?}");
    assert!(!metrics.render().contains("shop_outbox_publish_failures_total{service=\"orders\"} 0"), "failures counted");

    // Back on the same store: everything drains, once each, in recorded order.
    broker.restart();
    assert!(drained(&outbox, Duration::from_secs(30)).await, "the outbox drains once the broker is back");
    let recorded = recorded(&store).await;
    assert_eq!(recorded.len(), 300 * 2);
    let js = jetstream(&broker.url()).await;
    assert_exactly_once_in_order(&stream_contents(&js, recorded.len()).await, &recorded);
    relay.abort();
}

/// A running `shop-orders` binary (killed when dropped).
struct OrdersProcess(Child);

impl OrdersProcess {
    fn start(db: &Path, log: &Path, broker: &str) -> Self {
        let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shop-orders"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHOP_DEV_DEFAULTS", "1")
            .env("SHOP_DB", db)
            .env("SHOP_PORT", nats_support::free_port().to_string())
            // Every recorded order is terminal: nothing calls these.
            .env("SHOP_UPSTREAM_CATALOG", "http://127.0.0.1:9")
            .env("SHOP_UPSTREAM_PAYMENTS", "http://127.0.0.1:9")
            .env("SHOP_UPSTREAM_BROKER", broker)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the shop-orders binary starts");
        Self(child)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OrdersProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_relay_publishes_every_event_once_in_order_after_restart() {
    if !NatsServer::available() {
        return;
    }
    const ORDERS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = NatsServer::start(&dir.path().join("broker"));
    let db = dir.path().join("orders.db");
    let store = Store::open(&db, Sync::Normal).unwrap();
    record_orders(&store, 0, ORDERS).await;
    let recorded = recorded(&store).await;
    let js = jetstream(&broker.url()).await;
    let log = dir.path().join("orders.log");

    // Kill -9 twice while it relays, each time once some but not all are published.
    let mut kills = Vec::new();
    for _ in 0..2 {
        let before = stream_len(&js).await;
        let mut orders = OrdersProcess::start(&db, &log, &broker.url());
        let deadline = Instant::now() + Duration::from_secs(20);
        while stream_len(&js).await <= before {
            assert!(Instant::now() < deadline, "orders published nothing in 20 s; its log:\n{}", log_of(&log));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        orders.kill9();
        kills.push(stream_len(&js).await);
    }
    assert!(
        kills[1] < recorded.len() as u64,
        "the second kill came before the outbox drained (published {kills:?} of {}): the test proves nothing otherwise",
        recorded.len()
    );

    let _orders = OrdersProcess::start(&db, &log, &broker.url());
    let outbox = Outbox::new(Store::open(&db, Sync::Normal).unwrap().db().clone());
    assert!(drained(&outbox, Duration::from_secs(60)).await, "the outbox drains after the restart:\n{}", log_of(&log));
    assert_exactly_once_in_order(&stream_contents(&js, recorded.len()).await, &recorded);
}

fn log_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Publishes the outbox of 20 orders, then makes it look unsent again (as if orders had
/// died between the broker's ack and the mark) and relays it a second time with
/// `breakage`; returns the stream's length and the relay's duplicate-ack count.
async fn relay_twice(breakage: shop_kit::breakage::Breakage) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let broker = NatsServer::start(&dir.path().join("broker"));
    let store = Store::open(&dir.path().join("orders.db"), Sync::Normal).unwrap();
    let outbox = Outbox::new(store.db().clone());
    record_orders(&store, 0, 20).await;
    let metrics = Metrics::new("orders");
    let relay_metrics = RelayMetrics::register(&metrics);
    let config = RelayConfig { breakage, ..RelayConfig::default() };
    for _ in 0..2 {
        let relay = tokio::spawn(relay::run(outbox.clone(), vec![broker.url()], config.clone(), relay_metrics.clone()));
        assert!(drained(&outbox, Duration::from_secs(30)).await, "the outbox drains");
        relay.abort();
        store
            .db()
            .write(|tx| Ok::<_, shop_kit::db::DbError>(tx.execute("UPDATE outbox SET sent_ms = NULL", [])?))
            .await
            .unwrap();
    }
    let js = jetstream(&broker.url()).await;
    let duplicates = metrics
        .render()
        .lines()
        .find(|l| l.starts_with("shop_outbox_duplicate_acks_total"))
        .unwrap_or_default()
        .to_string();
    (stream_len(&js).await, duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_publish_is_dropped_by_its_message_id_and_counted_and_without_the_id_it_is_kept_twice() {
    if !NatsServer::available() {
        return;
    }
    let (len, duplicates) = relay_twice(shop_kit::breakage::Breakage::NONE).await;
    assert_eq!(len, 40, "20 orders' placed and terminal events, once each");
    assert!(duplicates.ends_with(" 40"), "every repeat was acknowledged as a duplicate: {duplicates}");

    // Debug builds honour the break switch: the relay leaves the id out and the broker
    // keeps every repeat.
    if cfg!(debug_assertions) {
        let skip = shop_kit::breakage::Breakage::NONE.with(shop_kit::breakage::Switch::SkipDedup);
        let (len, duplicates) = relay_twice(skip).await;
        assert_eq!(len, 80, "without Nats-Msg-Id the broker keeps the repeats");
        assert!(duplicates.ends_with(" 0"), "{duplicates}");
    }
}
