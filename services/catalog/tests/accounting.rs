//! Reservation accounting, property-tested against a model: any sequence of reserve,
//! commit and release keeps `initial = available + reserved + sold` with nothing
//! negative, and the store answers every operation as the model says it should.

use std::collections::HashMap;

use proptest::prelude::*;
use shop_catalog::domain::{IdempotencyKey, OrderRef, ReservationRequest, ReservationStatus};
use shop_catalog::store::{CatalogStore, Reserved, Seed, StoreError};
use shop_kit::db::Sync;
use shop_kit::Db;

const PRODUCTS: i64 = 3;
const STOCK: i64 = 8;

#[derive(Clone, Debug)]
enum Op {
    /// Reserve under key `key` for order `order`; product ids up to PRODUCTS + 1, so
    /// some lines name a product that does not exist.
    Reserve {
        key: u8,
        order: u8,
        lines: Vec<(i64, i64)>,
    },
    /// Commit the n-th reservation made so far (modulo their number), or an unknown one.
    Commit(usize),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, 0u8..3, prop::collection::vec((1..=PRODUCTS + 1, 1i64..=6), 1..4))
            .prop_map(|(key, order, lines)| Op::Reserve { key, order, lines }),
        1 => any::<usize>().prop_map(Op::Commit),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// Reservation lines as `(product_id, quantity)`.
type Lines = Vec<(i64, i64)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    available: i64,
    reserved: i64,
    sold: i64,
}

/// What the catalog should do, in the simplest terms.
#[derive(Default)]
struct Model {
    levels: HashMap<i64, Level>,
    /// Reservations in creation order: id, status, (product, quantity) lines.
    reservations: Vec<(i64, ReservationStatus, Lines)>,
    /// Keys used so far: the request they carried and the reservation they made.
    keys: HashMap<u8, ((u8, Lines), i64)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    New,
    Existing(i64),
    KeyReused,
    UnknownProduct(i64),
    OutOfStock { product_id: i64, requested: i64, available: i64 },
    Settled(ReservationStatus),
    WrongState,
    UnknownReservation,
}

impl Model {
    fn new() -> Self {
        let levels = (1..=PRODUCTS).map(|id| (id, Level { available: STOCK, reserved: 0, sold: 0 })).collect();
        Self { levels, ..Default::default() }
    }

    fn reserve(&self, key: u8, order: u8, lines: &[(i64, i64)]) -> Outcome {
        if let Some((request, id)) = self.keys.get(&key) {
            return if *request == (order, lines.to_vec()) { Outcome::Existing(*id) } else { Outcome::KeyReused };
        }
        let mut demand: Vec<(i64, i64)> = Vec::new();
        for &(p, q) in lines {
            match demand.iter_mut().find(|(id, _)| *id == p) {
                Some((_, total)) => *total += q,
                None => demand.push((p, q)),
            }
        }
        if let Some(&(p, _)) = demand.iter().find(|(p, _)| !self.levels.contains_key(p)) {
            return Outcome::UnknownProduct(p);
        }
        for &(p, q) in &demand {
            let available = self.levels[&p].available;
            if available < q {
                return Outcome::OutOfStock { product_id: p, requested: q, available };
            }
        }
        Outcome::New
    }

    fn apply_new(&mut self, id: i64, key: u8, order: u8, lines: Vec<(i64, i64)>) {
        for &(p, q) in &lines {
            let l = self.levels.get_mut(&p).unwrap();
            l.available -= q;
            l.reserved += q;
        }
        self.keys.insert(key, ((order, lines.clone()), id));
        self.reservations.push((id, ReservationStatus::Held, lines));
    }

    fn settle(&mut self, index: usize, target: ReservationStatus) -> Outcome {
        let Some((_, status, lines)) = self.reservations.get_mut(index) else {
            return Outcome::UnknownReservation;
        };
        if *status == target {
            return Outcome::Settled(target);
        }
        if *status != ReservationStatus::Held {
            return Outcome::WrongState;
        }
        *status = target;
        for &(p, q) in lines.iter() {
            let l = self.levels.get_mut(&p).unwrap();
            l.reserved -= q;
            match target {
                ReservationStatus::Committed => l.sold += q,
                _ => l.available += q,
            }
        }
        Outcome::Settled(target)
    }
}

fn outcome_of(r: Result<Reserved, StoreError>) -> (Outcome, Option<i64>) {
    match r {
        Ok(Reserved::New(res)) => (Outcome::New, Some(res.id)),
        Ok(Reserved::Existing(res)) => (Outcome::Existing(res.id), None),
        Err(StoreError::KeyReused(_)) => (Outcome::KeyReused, None),
        Err(StoreError::UnknownProduct(p)) => (Outcome::UnknownProduct(p), None),
        Err(StoreError::OutOfStock { product_id, requested, available }) => {
            (Outcome::OutOfStock { product_id, requested, available }, None)
        }
        Err(e) => panic!("unexpected reserve failure: {e}"),
    }
}

fn settle_outcome(r: Result<shop_catalog::domain::Reservation, StoreError>) -> Outcome {
    match r {
        Ok(res) => Outcome::Settled(res.status),
        Err(StoreError::WrongState { .. }) => Outcome::WrongState,
        Err(StoreError::UnknownReservation(_)) => Outcome::UnknownReservation,
        Err(e) => panic!("unexpected settle failure: {e}"),
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("c.db"), shop_catalog::store::MIGRATIONS, Sync::Normal).unwrap();
    let store = CatalogStore::new(db);
    store.seed_once(Seed { products: PRODUCTS, stock_each: STOCK }).await.unwrap();
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Reserve { key, order, lines } => {
                let expected = model.reserve(key, order, &lines);
                let raw: Vec<_> = lines.iter().map(|&(p, q)| (Some(p), Some(q))).collect();
                let request = ReservationRequest::parse(OrderRef::Number(i64::from(order) + 1), &raw).unwrap();
                let key_value = IdempotencyKey::parse(&format!("key-{key}")).unwrap();
                let (got, new_id) = outcome_of(store.reserve(key_value, request).await);
                prop_assert_eq!(&got, &expected);
                if let Some(id) = new_id {
                    model.apply_new(id, key, order, lines);
                }
            }
            Op::Commit(n) | Op::Release(n) => {
                let target = if matches!(op, Op::Commit(_)) {
                    ReservationStatus::Committed
                } else {
                    ReservationStatus::Released
                };
                let count = model.reservations.len();
                // One time in five (or when there is none yet) aim at an id that does not exist.
                let (index, id) = if count == 0 || n % 5 == 0 {
                    (usize::MAX, 1_000_000)
                } else {
                    (n % count, model.reservations[n % count].0)
                };
                let expected = model.settle(index, target);
                let got = match target {
                    ReservationStatus::Committed => settle_outcome(store.commit(id).await),
                    _ => settle_outcome(store.release(id).await),
                };
                prop_assert_eq!(got, expected);
            }
        }
        let (levels, reservations) = store.state().await.unwrap();
        for l in &levels {
            prop_assert!(l.is_conserved(), "{:?}", l);
            prop_assert_eq!(l.initial_stock, STOCK);
            prop_assert_eq!(Level { available: l.available, reserved: l.reserved, sold: l.sold }, model.levels[&l.id]);
        }
        let statuses: Vec<_> = reservations.iter().map(|r| (r.id, r.status)).collect();
        let expected: Vec<_> = model.reservations.iter().map(|(id, s, _)| (*id, *s)).collect();
        prop_assert_eq!(statuses, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reservation_accounting_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}

/// Two stores on one file share no in-process lock (as two replicas would not): SQLite's
/// write transactions alone must keep them from overselling or double-reserving a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let open = || CatalogStore::new(Db::open(&path, shop_catalog::store::MIGRATIONS, Sync::Normal).unwrap());
    let (a, b) = (open(), open());
    a.seed_once(Seed { products: 1, stock_each: 10 }).await.unwrap();
    assert!(!b.seed_once(Seed { products: 1, stock_each: 10 }).await.unwrap(), "seeded once");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Keys repeat in pairs across the two stores: each pair must reserve once.
            let key = IdempotencyKey::parse(&format!("k-{}", i / 2)).unwrap();
            let request = ReservationRequest::parse(OrderRef::Number(i / 2 + 1), &[(Some(1), Some(1))]).unwrap();
            tokio::spawn(async move { store.reserve(key, request).await })
        })
        .collect();
    let (mut new, mut existing, mut out_of_stock) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Reserved::New(_)) => new += 1,
            Ok(Reserved::Existing(_)) => existing += 1,
            Err(StoreError::OutOfStock { .. }) => out_of_stock += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(new, 10, "exactly the stock was reserved");
    assert_eq!(existing + out_of_stock, 30);
    let (levels, reservations) = a.state().await.unwrap();
    assert_eq!((levels[0].available, levels[0].reserved), (0, 10));
    assert!(levels[0].is_conserved());
    assert_eq!(reservations.len(), 10);
}
