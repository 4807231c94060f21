//! Durability: the real `shop-orders` binary is killed with SIGKILL in the middle of
//! many sagas, twice, and restarted on the same database. Every order must still reach
//! `PAID` or `CANCELLED`, and stock, charges and orders must agree.
//!
//! Clients recover as real ones would: each order is placed under its own
//! `Idempotency-Key`, and after a crash the client sends it again, which returns the
//! order if it was recorded and places it if not.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{consistency_violations, Backends, OrderView, DECLINE_OVER};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Orders placed in all.
const ORDERS: usize = 40;

/// A running `shop-orders` process, killed when dropped.
struct OrdersProcess {
    child: Child,
    url: String,
}

impl OrdersProcess {
    fn start(db: &Path, log: &Path, catalog: &str, payments: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shop-orders"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SHOP_DEV_DEFAULTS", "1")
            .env("SHOP_DB", db)
            .env("SHOP_PORT", port.to_string())
            .env("SHOP_UPSTREAM_CATALOG", catalog)
            .env("SHOP_UPSTREAM_PAYMENTS", payments)
            .env("SHOP_ORDERS_SWEEP_INTERVAL", "500ms")
            .env("SHOP_ORDERS_SETTLE", "500ms")
            .env("SHOP_LOG", "info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the shop-orders binary starts");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("shop-orders exited at start-up: {status}");
            }
            if let Ok(r) = http.get(format!("{}/ready", self.url)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("shop-orders was not ready within 15s");
    }

    fn sigkill(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OrdersProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Order number `i`: one of 20 products, 1–3 units (the priciest lines are declined).
fn order_body(i: usize) -> Value {
    json!({
        "user_id": format!("user-{}", i % 7),
        "items": [{"product_id": (i % 20) + 1, "quantity": (i % 3) + 1}],
    })
}

/// Places order `i` under its key; `None` when the service did not answer (it died).
async fn place(http: &reqwest::Client, url: &str, i: usize) -> Option<(u16, Value)> {
    let res = http
        .post(format!("{url}/v1/orders"))
        .header("Idempotency-Key", format!("crash-order-{i}"))
        .json(&order_body(i))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.ok()?))
}

/// Places orders `range` at a steady pace, concurrently, without waiting for answers.
fn place_paced(http: &reqwest::Client, url: &str, range: std::ops::Range<usize>, every: Duration) {
    for (n, i) in range.enumerate() {
        let (http, url) = (http.clone(), url.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(every * n as u32).await;
            let _ = place(&http, &url, i).await;
        });
    }
}

/// Counts the orders recorded in `db` that are not terminal (the process must be dead).
async fn pending_in(db: &Path) -> (usize, usize) {
    let store = shop_orders::store::Store::open(db, shop_kit::db::Sync::Normal).unwrap();
    let all = store.list_all().await.unwrap();
    let pending = all.iter().filter(|o| o.status == shop_orders::events::Status::Pending).count();
    (all.len(), pending)
}

fn log_tail(log: &PathBuf) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_timeout_compensation_against_fakes_still_refunds() {
    timeout_crash_scenario(Backends::fakes().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_timeout_compensation_against_the_real_services_still_refunds() {
    timeout_crash_scenario(Backends::real().await).await;
}

/// Payments takes the money but answers too late for the saga deadline; orders is
/// killed while it compensates (releasing, waiting for stragglers, refunding) and
/// restarted. Every order must end `CANCELLED` with its stock back and its money refunded.
async fn timeout_crash_scenario(backends: Backends) {
    const N: usize = 10;
    let (catalog_url, payments_url) = (backends.catalog_url(), backends.payments_url());
    backends.slow_charges(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let log = dir.path().join("orders.log");
    let http = reqwest::Client::new();
    // The settle outlasts the inline wait, so the kill lands while compensation waits
    // for straggling charges, whatever the breaker does.
    let settings = [("SHOP_ORDERS_SAGA_DEADLINE", "1500ms"), ("SHOP_ORDERS_SETTLE", "4s")];

    let mut proc = OrdersProcess::start(&db, &log, &catalog_url, &payments_url, &settings);
    proc.wait_ready(&http).await;
    // Cheap lines only, so the decline rule plays no part.
    let ids: Vec<String> = futures_join(N, |i| {
        let (http, url) = (http.clone(), proc.url.clone());
        async move {
            let body = json!({"user_id": "late", "items": [{"product_id": i + 1, "quantity": 1}]});
            let res = http.post(format!("{url}/v1/orders")).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 202, "the inline deadline passes first");
            res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    })
    .await;
    // The inline wait (3s) outlasted the saga deadline: every order is compensating now.
    proc.sigkill();
    let store = shop_orders::store::Store::open(&db, shop_kit::db::Sync::Normal).unwrap();
    let mut compensating = 0;
    for id in &ids {
        let s = store.load(id).await.unwrap().unwrap();
        compensating += usize::from(s.stage == shop_orders::events::Stage::Compensating);
    }
    drop(store);
    assert!(compensating > 0, "the kill must land during compensation");
    assert!(backends.charge_count().await >= N, "payments took every order's money");

    backends.slow_charges(Duration::ZERO);
    let mut proc = OrdersProcess::start(&db, &log, &catalog_url, &payments_url, &settings);
    proc.wait_ready(&http).await;
    let orders = wait_all_terminal(&http, &proc.url, Duration::from_secs(60)).await;
    assert_eq!(orders.len(), N);
    for o in &orders {
        assert_eq!(o.status, "CANCELLED", "{o:?}\n--- log ---\n{}", log_tail(&log));
        assert!(o.reason.as_deref().unwrap_or("").starts_with("timeout: "), "{o:?}");
    }
    let (reservations, charges, stock_problems) = backends.views().await;
    let mut bad = consistency_violations(&orders, &reservations, &charges);
    bad.extend(stock_problems);
    assert!(
        bad.is_empty(),
        "inconsistent after a crash in compensation:\n{}\n--- log ---\n{}",
        bad.join("\n"),
        log_tail(&log)
    );
    let refunded = charges.iter().filter(|c| c.status == "refunded").count();
    assert_eq!(refunded, N, "every late charge was found and refunded: {charges:?}");
    eprintln!("timeout crash test: {compensating} of {N} orders compensating at the kill; all cancelled and refunded");
    drop(proc);
}

/// Runs `n` futures made by `make(i)` concurrently and collects their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_saga_against_fakes_then_restart_is_consistent() {
    crash_scenario(Backends::fakes().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_saga_against_the_real_catalog_and_payments_is_consistent() {
    crash_scenario(Backends::real().await).await;
}

/// Places [`ORDERS`] orders, kills orders twice mid-saga, restarts it, and checks every
/// order ends terminal with stock and charges agreeing.
async fn crash_scenario(backends: Backends) {
    let (catalog_url, payments_url) = (backends.catalog_url(), backends.payments_url());
    // Payments takes the money, then answers slowly: a kill in between leaves charges
    // that orders has not recorded.
    backends.slow_charges(Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let log = dir.path().join("orders.log");
    let http = reqwest::Client::new();

    // Round 1: orders arrive over ~1.2s; the process dies in the middle of them.
    let mut proc = OrdersProcess::start(&db, &log, &catalog_url, &payments_url, &[]);
    proc.wait_ready(&http).await;
    place_paced(&http, &proc.url, 0..ORDERS, Duration::from_millis(30));
    let started = Instant::now();
    while backends.charge_count().await < 8 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    proc.sigkill();
    let (recorded, pending) = pending_in(&db).await;
    assert!(pending > 0, "the kill must land mid-saga ({recorded} recorded, none pending)");

    // Round 2: restart; recovery resumes in-flight orders while clients retry; kill again.
    let mut proc = OrdersProcess::start(&db, &log, &catalog_url, &payments_url, &[]);
    proc.wait_ready(&http).await;
    place_paced(&http, &proc.url, 0..ORDERS, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(400)).await;
    proc.sigkill();
    let (_, pending_again) = pending_in(&db).await;

    // Round 3: restart and let everything finish.
    backends.slow_charges(Duration::from_millis(100));
    let mut proc = OrdersProcess::start(&db, &log, &catalog_url, &payments_url, &[]);
    proc.wait_ready(&http).await;
    // First with no client help: only the recovery worker drives the recorded orders.
    let resumed = wait_all_terminal(&http, &proc.url, Duration::from_secs(60)).await;
    let stuck: Vec<&OrderView> = resumed.iter().filter(|o| o.status == "PENDING").collect();
    assert!(stuck.is_empty(), "recovery left orders pending: {stuck:?}\n--- log ---\n{}", log_tail(&log));
    // Then clients retry every order; the ones never recorded are placed now.
    let mut ids = std::collections::HashSet::new();
    for i in 0..ORDERS {
        let (status, order) = place(&http, &proc.url, i).await.expect("the restarted service answers");
        assert!(matches!(status, 200..=202), "order {i}: {status} {order}");
        ids.insert(order["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), ORDERS, "each key names exactly one order");

    let orders = wait_all_terminal(&http, &proc.url, Duration::from_secs(60)).await;
    let not_done: Vec<&OrderView> = orders.iter().filter(|o| o.status == "PENDING").collect();
    assert!(not_done.is_empty(), "orders still pending: {not_done:?}\n--- log ---\n{}", log_tail(&log));
    assert_eq!(orders.len(), ORDERS);
    let (reservations, charges, stock_problems) = backends.views().await;
    let mut bad = consistency_violations(&orders, &reservations, &charges);
    bad.extend(stock_problems);
    assert!(bad.is_empty(), "inconsistent after crashes:\n{}\n--- log ---\n{}", bad.join("\n"), log_tail(&log));

    let paid = orders.iter().filter(|o| o.status == "PAID").count();
    let cancelled: Vec<&OrderView> = orders.iter().filter(|o| o.status == "CANCELLED").collect();
    assert!(paid > 0 && !cancelled.is_empty(), "both outcomes exercised: {paid} paid, {} cancelled", cancelled.len());
    for o in &cancelled {
        // Only the decline rule cancels here: no crash turned into a lost order.
        assert!(o.reason.as_deref().unwrap_or("").starts_with("payment declined"), "{o:?}");
        assert!(o.total_minor.unwrap() > DECLINE_OVER, "{o:?}");
    }
    for o in orders.iter().filter(|o| o.status == "PAID") {
        assert!(o.total_minor.unwrap() <= DECLINE_OVER, "{o:?}");
    }
    eprintln!(
        "crash test: {recorded} orders recorded at the first kill ({pending} pending), {pending_again} pending at the second, {} resumed by recovery; {paid} paid, {} cancelled",
        resumed.len(),
        cancelled.len()
    );
    drop(proc);
}

async fn wait_all_terminal(http: &reqwest::Client, url: &str, within: Duration) -> Vec<OrderView> {
    let started = Instant::now();
    loop {
        let body: Value = http
            .get(format!("{url}/v1/admin/state"))
            .bearer_auth(shop_kit::config::DEV_SECRET)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let orders: Vec<OrderView> = serde_json::from_value(body["orders"].clone()).unwrap();
        if orders.iter().all(|o| o.status != "PENDING") || started.elapsed() > within {
            return orders;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
