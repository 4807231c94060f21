//! The ledger store without the HTTP layer: guarantees that must hold even between two
//! processes (replicas) sharing one database file.

use shop_kit::db::Sync;
use shop_kit::Db;
use shop_payments::domain::{ChargeRequest, DeclineRule, IdempotencyKey, OrderRef};
use shop_payments::store::{Charged, LedgerStore};

/// Two stores on one file share no in-process lock: SQLite's write transactions and the
/// unique index alone must keep one key from charging twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_charge_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let open = || LedgerStore::new(Db::open(&path, shop_payments::store::MIGRATIONS, Sync::Normal).unwrap());
    let (a, b) = (open(), open());
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = IdempotencyKey::parse(&format!("order-{}:charge", i % 5)).unwrap();
            let request = ChargeRequest::parse(OrderRef::Number(i % 5 + 1), 1000, "EUR").unwrap();
            tokio::spawn(async move { store.charge(key, request, DeclineRule::default()).await })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        if let Charged::New(_) = t.await.unwrap().unwrap() {
            new += 1;
        }
    }
    assert_eq!(new, 5, "one charge per key");
    let (charges, summary) = b.state().await.unwrap();
    assert_eq!(charges.len(), 5);
    assert_eq!(summary.captured_minor, 5000);
}
