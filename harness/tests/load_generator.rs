//! The generator against a real in-process server with controlled delays: corrected
//! percentiles, coordinated omission, achieved rate, dropped starts.

mod load_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gauntlet::load::client::ClientConfig;
use gauntlet::load::recorder::FlowId;
use gauntlet::load::runner::{run, Control, RunConfig, RunResult};
use gauntlet::load::schedule::ArrivalSchedule;
use gauntlet::load::stats::ErrorKind;
use gauntlet::load::workload::Workload;
use http::Method;

/// The tests measure time: run them one at a time so they do not compete for the CPU.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(schedule: ArrivalSchedule, connections: usize, max_in_flight: usize) -> RunConfig {
    RunConfig {
        schedule,
        max_in_flight,
        client: ClientConfig { connections, timeout: Duration::from_secs(5) },
        max_flows: 1_000_000,
        tick: Duration::from_millis(250),
        history: None,
        warmup: Duration::ZERO,
        batch: gauntlet::load::runner::DEFAULT_BATCH,
    }
}

async fn run_get(url: String, cfg: RunConfig) -> RunResult {
    let workload = Arc::new(Workload::single(&url, Method::GET, vec![], None).unwrap());
    run(workload, cfg, |_| Control::Continue).await.unwrap()
}

fn p_ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn within(observed: f64, expected: f64, tolerance: f64) -> bool {
    (observed - expected).abs() <= expected * tolerance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_percentiles_match_the_injected_delays() {
    let _serial = SERIAL.lock().await;
    let (addr, _target) = load_common::start().await;
    // Delays long enough that a few milliseconds of scheduling noise on a shared
    // machine stay well inside the 5% tolerance; enough connections that no request
    // waits for one (about 35 are busy at a time).
    let schedule = ArrivalSchedule::constant(100.0, Duration::from_secs(3)).unwrap();
    let result = run_get(format!("http://{addr}/mix"), config(schedule, 128, 1000)).await;
    let overall = result.recorder.overall();
    assert_eq!(overall.total(), 300);
    assert_eq!(overall.succeeded(), 300);
    let quantile = |q| (p_ms(overall.latency(), q), p_ms(overall.service(), q));
    // The injected mix (see `mix_delay`): 60% 200ms, 30% 400ms, 10% 600ms.
    for (q, injected) in [(0.50, 200.0), (0.75, 400.0), (0.95, 600.0)] {
        let (corrected, service) = quantile(q);
        assert!(
            within(corrected, injected, 0.05),
            "corrected p{} {corrected}ms (service time {service}ms), injected {injected}ms",
            q * 100.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_corrected_latency_and_not_in_service_time() {
    let _serial = SERIAL.lock().await;
    let (addr, target) = load_common::start().await;
    let now = Instant::now();
    *target.stall.lock().unwrap() = Some((now + Duration::from_secs(1), now + Duration::from_secs(2)));
    let schedule = ArrivalSchedule::constant(100.0, Duration::from_secs(4)).unwrap();
    // Two connections: while the server stalls, two requests wait on it and the rest
    // wait to be sent, as wrk2's connections do when the server is paused.
    let result = run_get(format!("http://{addr}/stall"), config(schedule, 2, 1000)).await;
    let overall = result.recorder.overall();
    assert_eq!(overall.total(), 400);
    let corrected_p99 = p_ms(overall.latency(), 0.99);
    let corrected_p90 = p_ms(overall.latency(), 0.90);
    let service_p99 = p_ms(overall.service(), 0.99);
    assert!(corrected_p99 > 900.0, "corrected p99 {corrected_p99}ms should show the 1s stall");
    assert!(corrected_p90 > 400.0, "corrected p90 {corrected_p90}ms should show the 1s stall");
    assert!(service_p99 < 100.0, "service p99 {service_p99}ms should not show the stall");
    // The requests held back for a connection went out late, and the report says so:
    // corrected latency = send lateness + service time.
    let late_p99 = p_ms(result.recorder.send_lateness(), 0.99);
    assert!(late_p99 > 800.0, "send lateness p99 {late_p99}ms should show the requests held back");
    let series = result.recorder.overall_series().seconds();
    assert!(series.len() >= 4, "{series:?}");
    assert!(series[0].p99_ms < 100.0, "second 0: {:?}", series[0]);
    assert!(series[1].p99_ms > 500.0, "second 1: {:?}", series[1]);
    assert!(series[3].p99_ms < 100.0, "second 3: {:?}", series[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn achieved_rate_holds_at_5000_per_second() {
    let _serial = SERIAL.lock().await;
    let (addr, _target) = load_common::start().await;
    let schedule = ArrivalSchedule::constant(5000.0, Duration::from_secs(3)).unwrap();
    let result = run_get(format!("http://{addr}/fixed"), config(schedule, 64, 20_000)).await;
    assert_eq!(result.scheduled, 15_000);
    assert_eq!(result.recorder.dropped(), 0);
    assert_eq!(result.recorder.overall().succeeded(), 15_000);
    let rate = result.achieved_rate();
    assert!(within(rate, 5000.0, 0.01), "achieved {rate:.1}/s for a target of 5000/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_starts_are_counted_when_in_flight_is_capped() {
    let _serial = SERIAL.lock().await;
    let (addr, _target) = load_common::start().await;
    let schedule = ArrivalSchedule::constant(100.0, Duration::from_secs(1)).unwrap();
    let result = run_get(format!("http://{addr}/delay/200"), config(schedule, 8, 2)).await;
    let dropped = result.recorder.dropped();
    assert_eq!(result.scheduled, 100);
    assert_eq!(result.started + dropped, 100);
    assert_eq!(result.recorder.overall().total(), result.started);
    assert!(dropped >= 80, "only {dropped} of 100 starts dropped with 2 in flight at 200ms each");
    let dropped_in_series: u64 = result.recorder.overall_series().seconds().iter().map(|s| s.dropped).sum();
    assert_eq!(dropped_in_series, dropped);
    // A dropped start is an unavailable request: availability is over all 100 starts.
    let overall = result.recorder.overall();
    assert_eq!(overall.available(), result.started);
    assert_eq!(overall.availability(), result.started as f64 / 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_breach_aborts_the_run_early() {
    let _serial = SERIAL.lock().await;
    let (addr, _target) = load_common::start().await;
    let mut workload = Workload::single(&format!("http://{addr}/broken"), Method::GET, vec![], None).unwrap();
    workload.slos.push(toml::from_str("threshold = 'error_rate < 1%'\nabort_after = '1s'").unwrap());
    let schedule = ArrivalSchedule::constant(50.0, Duration::from_secs(30)).unwrap();
    let mut cfg = config(schedule, 8, 1000);
    cfg.client.timeout = Duration::from_millis(500);
    let result = run(Arc::new(workload.clone()), cfg, |_| Control::Continue).await.unwrap();
    let reason = result.stopped.as_deref().unwrap_or("");
    assert!(reason.contains("error_rate < 1%"), "stopped: {reason:?}");
    assert!(result.elapsed < Duration::from_secs(6), "aborted only after {:?}", result.elapsed);
    assert!(result.started < 300, "{} flows started before the abort", result.started);
    let overall = result.recorder.overall();
    assert_eq!(overall.status_class(5), overall.total());
    assert!(!result.recorder.verdicts(&workload.slos)[0].passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted_as_such() {
    let _serial = SERIAL.lock().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let schedule = ArrivalSchedule::constant(20.0, Duration::from_millis(500)).unwrap();
    let result = run_get(format!("http://127.0.0.1:{port}/"), config(schedule, 4, 100)).await;
    let overall = result.recorder.overall();
    assert_eq!(overall.total(), 10);
    assert_eq!(overall.errors(ErrorKind::ConnectRefused), 10);
    assert_eq!(overall.available(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_picks_the_same_flows() {
    let _serial = SERIAL.lock().await;
    let (addr, _target) = load_common::start().await;
    let text = format!(
        "base_url = 'http://{addr}'\nseed = 11\n\
         [[flow]]\nname = 'browse'\nweight = 3\n[[flow.step]]\npath = '/fixed'\n\
         [[flow]]\nname = 'buy'\nweight = 1\n[[flow.step]]\npath = '/fixed'\n"
    );
    let workload = Arc::new(Workload::parse(&text, "seeded.toml").unwrap());
    let mut counts = Vec::new();
    for _ in 0..2 {
        let schedule = ArrivalSchedule::constant(400.0, Duration::from_millis(500)).unwrap();
        let result = run(workload.clone(), config(schedule, 8, 1000), |_| Control::Continue).await.unwrap();
        let per_flow: Vec<u64> = (0..2).map(|f| result.recorder.flow(FlowId(f)).unwrap().0.total()).collect();
        counts.push(per_flow);
    }
    assert_eq!(counts[0], counts[1]);
    assert_eq!(counts[0].iter().sum::<u64>(), 200);
    assert!(counts[0][0] > counts[0][1] * 2, "weights 3:1 gave {:?}", counts[0]);
}

/// The closed loop (its own HTTP/1.1 codec): a POST with a JSON body and a capture, a
/// header built from it, a chunked answer captured, and a server that closes the
/// connection after answering; every request succeeds and every flow completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_speaks_http_1_1_with_captures_chunks_and_closes() {
    let _serial = SERIAL.lock().await;
    let (addr, target) = load_common::start().await;
    let text = format!(
        "base_url = 'http://{addr}'\n\
         [[flow]]\nname = 'buy'\n\
         [[flow.step]]\nname = 'login'\nmethod = 'POST'\npath = '/login'\nbody = {{ email = 'a@b' }}\ncapture = {{ token = '/token' }}\n\
         [[flow.step]]\nname = 'order'\nmethod = 'POST'\npath = '/orders'\nheaders = {{ authorization = 'Bearer {{{{token}}}}' }}\n\
         [[flow.step]]\nname = 'chunked'\npath = '/chunked'\ncapture = {{ n = '/n' }}\n\
         [[flow.step]]\nname = 'close'\npath = '/close?n={{{{n}}}}'\n"
    );
    let workload = Arc::new(Workload::parse(&text, "closed.toml").unwrap());
    let schedule = ArrivalSchedule::closed(4, Duration::from_millis(800)).unwrap();
    let result = run(workload, config(schedule, 4, 1000), |_| Control::Continue).await.unwrap();
    let (flow, _) = result.recorder.flow(FlowId(0)).unwrap();
    assert!(flow.total() >= 20, "only {} flows in 800 ms", flow.total());
    assert_eq!(flow.failed(), 0, "{:?}", flow);
    let overall = result.recorder.overall();
    assert_eq!(overall.total(), 4 * flow.total(), "four steps per flow");
    assert_eq!(overall.failed(), 0);
    assert_eq!(target.authorized_orders.load(std::sync::atomic::Ordering::Relaxed), flow.total());
}

/// A server that closes every connection right after answering, without saying so
/// (no `Connection: close`), as servers with short idle timeouts do; it also counts the
/// requests it received.
async fn closing_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                // Closed "while idle": a moment after the answer, no header said so.
                tokio::time::sleep(Duration::from_millis(1)).await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_counts_no_error_for_connections_the_server_closed_while_idle() {
    let _serial = SERIAL.lock().await;
    let (addr, seen) = closing_server().await;
    let schedule = ArrivalSchedule::closed(4, Duration::from_millis(800)).unwrap();
    let result = run_get(format!("http://{addr}/"), config(schedule, 4, 1000)).await;
    let overall = result.recorder.overall();
    assert!(overall.total() > 50, "it ran: {}", overall.total());
    assert_eq!(
        overall.failed(),
        0,
        "reset {} protocol {}",
        overall.errors(ErrorKind::Reset),
        overall.errors(ErrorKind::Protocol)
    );
    // Every request counted was answered once: no retry hid a request that was served.
    let served = seen.load(std::sync::atomic::Ordering::Relaxed);
    assert!(served >= overall.total() && served <= overall.total() + 4, "served {served}, counted {}", overall.total());
}

/// The open model's pool checks a kept-alive connection before reusing it: one the
/// server closed while it sat idle is replaced, not counted as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_models_pool_replaces_connections_the_server_closed_while_idle() {
    let _serial = SERIAL.lock().await;
    let (addr, seen) = closing_server().await;
    // 5 ms apart: each connection is back in the pool, and closed, before its next use.
    let schedule = ArrivalSchedule::constant(200.0, Duration::from_millis(800)).unwrap();
    let result = run_get(format!("http://{addr}/"), config(schedule, 2, 1000)).await;
    let overall = result.recorder.overall();
    assert_eq!(overall.total(), 160);
    assert_eq!(
        overall.failed(),
        0,
        "reset {} protocol {}",
        overall.errors(ErrorKind::Reset),
        overall.errors(ErrorKind::Protocol)
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 160, "each request was served once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_after_a_complete_answer_are_a_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    // Content-Length says 2, three bytes follow.
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokX").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let schedule = ArrivalSchedule::closed(1, Duration::from_millis(300)).unwrap();
    let result = run_get(format!("http://{addr}/"), config(schedule, 1, 1000)).await;
    let overall = result.recorder.overall();
    assert!(overall.total() > 0);
    assert_eq!(overall.errors(ErrorKind::Protocol), overall.total(), "every answer overran its framing");
}
