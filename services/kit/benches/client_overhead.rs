//! The kit's hot path: what the resilient client adds to each upstream call.
//!
//! Side by side in one run: the breaker state machine alone; a plain reqwest call to an
//! in-process server; the same call through the full `UpstreamClient` stack (retry
//! policy, budget, round-robin, breaker, timeout, trace headers). The ratio of the last
//! two is the client's overhead.

use std::time::Duration;

use tokio::time::Instant;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use shop_kit::client::{BreakerConfig, CircuitBreaker, ClientConfig, UpstreamClient, UpstreamRequest};

fn breaker(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut b = CircuitBreaker::new(BreakerConfig::default(), t0);
    let mut i = 0u64;
    c.bench_function("breaker/acquire+record", |bench| {
        bench.iter(|| {
            i += 1;
            let now = t0 + Duration::from_micros(i);
            if b.try_acquire(now).is_ok() {
                b.on_result(now, !i.is_multiple_of(50));
            }
        })
    });
}

fn calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/ping", get(|| async { "{}" }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let url = format!("http://{addr}");
    let raw = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let client = UpstreamClient::new("bench", std::slice::from_ref(&url), ClientConfig::default(), None);

    let mut group = c.benchmark_group("call");
    group.bench_function("reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let res = raw.get(format!("{url}/ping")).send().await.unwrap();
            res.bytes().await.unwrap()
        })
    });
    group.bench_function("upstream_client", |b| {
        b.to_async(&rt).iter(|| async { client.send(UpstreamRequest::get("/ping")).await.unwrap().body })
    });
    group.finish();
}

criterion_group!(benches, breaker, calls);
criterion_main!(benches);
