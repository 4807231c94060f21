//! Consumer contract test of notifications: the order events it consumes from orders'
//! relay, as Pact V4 asynchronous messages (one per event kind). Each message's contents
//! go through notifications' own decoding (`event::OrderEvent::parse`) and store, and its
//! subject through the consumer's subscription, so the pact says what notifications
//! needs and nothing more: the fields it reads, matched by type where orders chooses the
//! value (ids, amounts, reasons). The test writes its pact into a scratch directory and
//! fails if the committed one in `contracts/pacts/` differs; `GAUNTLET_UPDATE_PACTS=1`
//! rewrites it. Orders verifies it through its contract-test message endpoint.

// Only the message half of the shared support is used here.
#[allow(dead_code)]
#[path = "../../pact_support.rs"]
mod pact;

use pact_consumer::prelude::*;
use serde_json::Value;
use shop_kit::db::{Db, Sync};
use shop_notifications::consumer::SUBJECTS;
use shop_notifications::event::{EventKind, OrderEvent};
use shop_notifications::store::{Applied, Store, MIGRATIONS};

use pact::PactFile;

/// An order id as orders makes them (a UUIDv7); the pact matches any string.
const ORDER_ID: &str = "01938f3c-5b2a-7c41-9d8e-0f1a2b3c4d5e";

/// What notifications must make of each message: its kind and the text the user reads.
fn expected(description: &str) -> (EventKind, &'static str) {
    match description {
        "an order was placed" => (EventKind::Placed, "was placed"),
        "an order was paid" => (EventKind::Paid, "is paid: 37.25 EUR."),
        "an order was cancelled" => (EventKind::Cancelled, "was cancelled: payment declined"),
        other => panic!("no expectation for message {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_from_orders() {
    let pact = PactFile::new("notifications", "orders");
    let mut builder = pact.builder();
    builder
        .message_interaction("an order was placed", |mut i| {
            i.metadata("subject", "orders.placed");
            i.json_body(json_pattern!({
                "event_id": like!(format!("{ORDER_ID}:1")),
                "type": "ORDER_PLACED",
                "order_id": like!(ORDER_ID),
                "user_id": like!("7"),
            }));
            i
        })
        .message_interaction("an order was paid", |mut i| {
            i.metadata("subject", "orders.paid");
            i.json_body(json_pattern!({
                "event_id": like!(format!("{ORDER_ID}:4")),
                "type": "ORDER_PAID",
                "order_id": like!(ORDER_ID),
                "user_id": like!("7"),
                "total_minor": like!(3725),
                "currency": like!("EUR"),
            }));
            i
        })
        .message_interaction("an order was cancelled", |mut i| {
            i.metadata("subject", "orders.cancelled");
            i.json_body(json_pattern!({
                "event_id": like!(format!("{ORDER_ID}:5")),
                "type": "ORDER_CANCELLED",
                "order_id": like!(ORDER_ID),
                "user_id": like!("7"),
                "reason": like!("payment declined: amount over the limit"),
            }));
            i
        });

    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(Db::open(&dir.path().join("notifications.db"), MIGRATIONS, Sync::Normal).unwrap());
    let mut seen = Vec::new();
    // Dropping the iterator writes the pact.
    for message in builder.messages() {
        let description = message.description.clone();
        let subject = message.contents.metadata.get("subject").and_then(Value::as_str).unwrap_or_default();
        let filter = SUBJECTS.trim_end_matches('>');
        assert!(subject.starts_with(filter), "{description}: subject {subject:?} is outside {SUBJECTS}");
        let body = message.contents.contents.value().expect("a message body");
        let event =
            OrderEvent::parse(&body).unwrap_or_else(|e| panic!("{description}: notifications cannot read it: {e}"));
        let (kind, says) = expected(&description);
        assert_eq!(event.kind, kind, "{description}");
        assert_eq!((event.order_id.as_str(), event.user_id.as_str()), (ORDER_ID, "7"), "{description}");
        assert!(event.text().contains(says), "{description}: {:?}", event.text());
        let applied = store.apply(event, 1).await.unwrap();
        let due = if kind.is_terminal() { Applied::Notified } else { Applied::NothingToTell };
        assert_eq!(applied, due, "{description}");
        seen.push(description);
    }
    seen.sort();
    assert_eq!(seen, ["an order was cancelled", "an order was paid", "an order was placed"]);
    let told = store.for_user("7", 10).await.unwrap();
    assert_eq!(told.len(), 2, "one notification per ended order: {told:?}");
    pact.check_committed();
}
