//! Answer rules against a real in-process server: a stale answer (marked by a header)
//! counts as degraded and a wrong body as a failed check; neither is available, in the
//! open model (pooled client) and in the closed loop (its own HTTP/1.1 codec). Drawn
//! template values follow the seed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gauntlet::load::client::ClientConfig;
use gauntlet::load::recorder::FlowId;
use gauntlet::load::runner::{run, Control, RunConfig, RunResult};
use gauntlet::load::schedule::ArrivalSchedule;
use gauntlet::load::workload::Workload;
use serde_json::json;

/// Serialises the tests: they share two cores with everything else.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server whose `n`-th `/item/{id}` answer is stale for `n % 10` in {0, 1} (right
/// body, `x-gauntlet-stale` header), wrong for `n % 10 == 2` (`"status": "CANCELLED"`)
/// and right otherwise; it keeps the ids asked for.
#[derive(Default)]
struct Shop {
    served: AtomicU64,
    ids: Mutex<Vec<u64>>,
}

/// How many of the first `n` answers are stale and how many wrong.
fn expected(n: u64) -> (u64, u64) {
    let count = |k: u64| (0..n).filter(|i| i % 10 == k).count() as u64;
    (count(0) + count(1), count(2))
}

async fn item(State(shop): State<Arc<Shop>>, Path(id): Path<u64>) -> Response {
    shop.ids.lock().unwrap().push(id);
    let n = shop.served.fetch_add(1, Ordering::Relaxed);
    match n % 10 {
        0 | 1 => ([("x-gauntlet-stale", "1")], Json(json!({"id": id, "status": "PAID"}))).into_response(),
        2 => Json(json!({"id": id, "status": "CANCELLED"})).into_response(),
        _ => Json(json!({"id": id, "status": "PAID"})).into_response(),
    }
}

async fn start() -> (SocketAddr, Arc<Shop>) {
    let shop = Arc::new(Shop::default());
    let app =
        Router::new().route("/item/{id}", get(item)).route("/next", get(|| async { "ok" })).with_state(shop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shop)
}

fn workload(addr: SocketAddr, seed: u64) -> Workload {
    let text = format!(
        r#"
base_url = "http://{addr}"
seed = {seed}
degraded = {{ header = "x-gauntlet-stale" }}

[[flow]]
name = "browse"
[[flow.step]]
name = "item"
path = "/item/{{{{uniform 1 100}}}}"
expect = {{ status = [200], json = {{ "/status" = "PAID" }}, exists = ["/id"] }}
[[flow.step]]
name = "next"
path = "/next"

[[slo]]
threshold = "availability >= 99%"
[[slo]]
threshold = "availability_including_degraded >= 89%"
[[slo]]
threshold = "checks >= 99%"
[[slo]]
threshold = "degraded <= 25%"
"#
    );
    Workload::parse(&text, "answers.toml").unwrap()
}

async fn drive(workload: &Workload, schedule: ArrivalSchedule) -> RunResult {
    let config = RunConfig {
        schedule,
        max_in_flight: 1000,
        client: ClientConfig { connections: 8, timeout: Duration::from_secs(5) },
        max_flows: 1_000_000,
        tick: Duration::from_millis(250),
        history: None,
        warmup: Duration::ZERO,
        batch: gauntlet::load::runner::DEFAULT_BATCH,
    };
    run(Arc::new(workload.clone()), config, |_| Control::Continue).await.unwrap()
}

/// Checks the counts of a run whose server answered `n` item requests.
fn assert_judged(result: &RunResult, n: u64) {
    let (stale, wrong) = expected(n);
    let rec = &result.recorder;
    let item = rec.step(rec.step_id(FlowId(0), 0)).unwrap().0.counts();
    assert_eq!((item.total, item.degraded, item.checks_failed, item.checks_passed), (n, stale, wrong, n - wrong));
    assert_eq!(item.available, n - stale - wrong, "neither a stale nor a wrong answer is available");
    assert_eq!(item.available_including_degraded, n - wrong);
    let next = rec.step(rec.step_id(FlowId(0), 1)).unwrap().0.counts();
    assert_eq!(next.total, n - wrong, "a failed check ends its flow");
    let flow = rec.flow(FlowId(0)).unwrap().0.counts();
    assert_eq!((flow.total, flow.degraded, flow.checks_failed, flow.available), (n, stale, wrong, n - stale - wrong));
    let overall = rec.overall();
    assert_eq!(overall.total(), 2 * n - wrong);
    assert_eq!(overall.available(), 2 * n - wrong - stale - wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_wrong_answers_are_not_available() {
    let _serial = SERIAL.lock().await;
    let (addr, shop) = start().await;
    let w = workload(addr, 5);
    let result = drive(&w, ArrivalSchedule::constant(100.0, Duration::from_secs(1)).unwrap()).await;
    assert_eq!(result.started, 100);
    let n = shop.served.load(Ordering::Relaxed);
    assert_eq!(n, 100);
    assert_judged(&result, n);
    let (stale, wrong) = expected(n);
    assert_eq!((stale, wrong), (20, 10));
    let verdicts = result.recorder.verdicts(&w.slos);
    let observed: Vec<(String, Option<f64>, bool)> =
        verdicts.iter().map(|v| (v.spec.threshold.to_string(), v.observed, v.passed())).collect();
    let overall = |part: f64| Some(part / 190.0);
    assert_eq!(
        observed,
        [
            ("availability >= 99%".to_owned(), overall(160.0), false),
            ("availability_including_degraded >= 89%".to_owned(), overall(180.0), true),
            ("checks >= 99%".to_owned(), Some(0.9), false),
            ("degraded <= 25%".to_owned(), overall(20.0), true),
        ]
    );
    let ids = shop.ids.lock().unwrap().clone();
    assert!(ids.iter().all(|id| (1..=100).contains(id)), "{ids:?}");
    assert!(ids.iter().collect::<BTreeSet<_>>().len() > 40, "100 draws from 1..=100: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_judges_answers_the_same_way() {
    let _serial = SERIAL.lock().await;
    let (addr, shop) = start().await;
    let result = drive(&workload(addr, 5), ArrivalSchedule::closed(2, Duration::from_millis(500)).unwrap()).await;
    let n = shop.served.load(Ordering::Relaxed);
    assert!(n >= 20, "only {n} requests in 500 ms");
    assert_judged(&result, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_draws_the_same_ids() {
    let _serial = SERIAL.lock().await;
    let mut drawn = Vec::new();
    for seed in [5, 5, 6] {
        let (addr, shop) = start().await;
        let result =
            drive(&workload(addr, seed), ArrivalSchedule::constant(200.0, Duration::from_millis(250)).unwrap()).await;
        assert_eq!(result.started, 50);
        // Concurrent flows reach the server in any order; which start drew what does not change.
        let mut ids = shop.ids.lock().unwrap().clone();
        ids.sort_unstable();
        drawn.push(ids);
    }
    assert_eq!(drawn[0], drawn[1], "seed 5 twice");
    assert_ne!(drawn[0], drawn[2], "seed 5 and seed 6");
}
