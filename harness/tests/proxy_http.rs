//! The HTTP-aware toxics (Gauntlet extensions) through a real axum server: the share of
//! requests touched is within statistical bounds of the percentage, only matching
//! requests are touched, request framing holds over keep-alive connections with
//! `Content-Length` and `chunked` bodies, and the same seed touches the same requests.

mod proxy_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use gauntlet::faults::model::{HttpMatch, Stream, Toxic, ToxicKind};
use gauntlet::faults::ToxiproxyClient;
use proxy_common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An axum server counting the requests it served.
async fn app() -> (SocketAddr, Arc<AtomicU64>) {
    let served = Arc::new(AtomicU64::new(0));
    let count = |served: Arc<AtomicU64>| move || served.fetch_add(1, Ordering::Relaxed);
    let (a, b, c) = (count(served.clone()), count(served.clone()), count(served.clone()));
    let router = Router::new()
        .route(
            "/v1/items",
            get(move || async move {
                a();
                "items"
            }),
        )
        .route(
            "/v1/orders",
            post(move |body: String| async move {
                b();
                format!("order {body}")
            }),
        )
        .route(
            "/v1/other",
            post(move |body: String| async move {
                c();
                format!("other {body}")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, served)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

fn matching(percentage: f64, method: Option<&str>, path_prefix: Option<&str>) -> HttpMatch {
    HttpMatch { percentage, method: method.map(str::to_string), path_prefix: path_prefix.map(str::to_string) }
}

async fn abort(client: &ToxiproxyClient, proxy: &str, status_code: u16, m: HttpMatch) {
    let kind = ToxicKind::HttpAbort { status_code, body: "injected".into(), matching: m };
    add(client, proxy, kind, Stream::Upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_abort_answers_about_the_configured_share() {
    let (_server, client) = server(21).await;
    let (upstream, served) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    abort(&client, "web", 503, matching(30.0, None, None)).await;
    let http = http_client();
    let n = 400;
    let mut aborted = 0;
    for _ in 0..n {
        let resp = http.get(format!("http://{addr}/v1/items")).send().await.expect("response");
        match resp.status().as_u16() {
            503 => {
                assert_eq!(resp.headers().get("x-gauntlet-fault").map(|v| v.as_bytes()), Some(&b"http_abort"[..]));
                assert_eq!(resp.text().await.expect("body"), "injected");
                aborted += 1;
            }
            200 => assert_eq!(resp.text().await.expect("body"), "items"),
            other => panic!("status {other}"),
        }
    }
    // Binomial(400, 0.3): sd 9.2; 4.5 sd either side.
    assert!((79..=161).contains(&aborted), "{aborted} of {n} aborted at 30%");
    assert_eq!(served.load(Ordering::Relaxed), (n - aborted) as u64, "aborted requests reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_abort_touches_only_matching_requests() {
    let (_server, client) = server(22).await;
    let (upstream, served) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    abort(&client, "web", 502, matching(100.0, Some("post"), Some("/v1/orders"))).await;
    let http = http_client();
    for i in 0..20 {
        let get = http.get(format!("http://{addr}/v1/items")).send().await.expect("get");
        assert_eq!(get.status().as_u16(), 200);
        let order = http.post(format!("http://{addr}/v1/orders")).body(format!("o{i}")).send().await.expect("post");
        assert_eq!(order.status().as_u16(), 502);
        let other = http.post(format!("http://{addr}/v1/other")).body(format!("x{i}")).send().await.expect("post");
        assert_eq!(other.status().as_u16(), 200);
        assert_eq!(other.text().await.expect("body"), format!("other x{i}"));
    }
    assert_eq!(served.load(Ordering::Relaxed), 40);
}

/// Reads one HTTP/1.1 response with a `content-length`; returns its status and body.
async fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut status = 0;
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(STEP, reader.read_line(&mut line)).await.expect("response in time").expect("read");
        assert!(n > 0, "connection closed mid-response");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if status == 0 {
            status = trimmed.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        } else if let Some((k, v)) = trimmed.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().expect("length");
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_holds_over_keep_alive_with_chunked_and_sized_bodies() {
    let (_server, client) = server(23).await;
    let (upstream, served) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    abort(&client, "web", 503, matching(100.0, Some("POST"), Some("/v1/orders"))).await;
    let stream = connect(addr).await;
    let mut reader = BufReader::new(stream);
    let requests: [(&[u8], u16, &str); 4] = [
        (
            b"POST /v1/orders HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
            503,
            "injected",
        ),
        (b"GET /v1/items HTTP/1.1\r\nhost: x\r\n\r\n", 200, "items"),
        (b"POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello", 503, "injected"),
        (
            b"POST /v1/other HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            "other ok",
        ),
    ];
    for (request, status, body) in requests {
        // Written in small pieces, so framing must hold across reads.
        for piece in request.chunks(7) {
            reader.get_mut().write_all(piece).await.expect("write");
        }
        assert_eq!(read_response(&mut reader).await, (status, body.to_string()));
    }
    assert_eq!(served.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_delay_delays_about_the_configured_share_of_matching_requests() {
    let (_server, client) = server(24).await;
    let (upstream, _) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    let kind = ToxicKind::HttpDelay { delay: 60, matching: matching(50.0, None, Some("/v1/items")) };
    add(&client, "web", kind, Stream::Upstream).await;
    let http = http_client();
    let n = 80;
    let mut delayed = 0;
    for i in 0..n {
        let start = Instant::now();
        let resp = http.get(format!("http://{addr}/v1/items")).send().await.expect("get");
        assert_eq!(resp.text().await.expect("body"), "items");
        let took = start.elapsed();
        if took >= Duration::from_millis(58) {
            delayed += 1;
        } else {
            assert!(took < Duration::from_millis(40), "neither delayed nor prompt: {took:?}");
        }
        let start = Instant::now();
        let other = http.post(format!("http://{addr}/v1/other")).body(format!("{i}")).send().await.expect("post");
        assert_eq!(other.status().as_u16(), 200);
        assert!(start.elapsed() < Duration::from_millis(40), "a non-matching request was delayed");
    }
    // Binomial(80, 0.5): sd 4.5; 4.5 sd either side.
    assert!((20..=60).contains(&delayed), "{delayed} of {n} delayed at 50%");
}

async fn abort_pattern(seed: u64) -> Vec<u16> {
    let (_server, client) = server(seed).await;
    let (upstream, _) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    let toxic = Toxic::new(
        ToxicKind::HttpAbort { status_code: 500, body: String::new(), matching: matching(50.0, None, None) },
        Stream::Upstream,
    );
    client.add_toxic("web", &toxic).await.expect("added");
    let mut reader = BufReader::new(connect(addr).await);
    let mut statuses = Vec::new();
    for _ in 0..40 {
        reader.get_mut().write_all(b"GET /v1/items HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        statuses.push(read_response(&mut reader).await.0);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_aborts_the_same_requests() {
    let a = abort_pattern(5).await;
    let b = abort_pattern(5).await;
    let c = abort_pattern(6).await;
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
    assert_eq!(a, b, "same seed, different requests aborted");
    assert_ne!(a, c, "different seeds, same 40 decisions");
}

/// An axum server that answers every request with its own path, so a client can tell
/// which request an answer belongs to: `/slow/..` after 150 ms, `/chunked/..` with a
/// chunked body, `/empty/..` with 204 and no body.
async fn path_echo() -> SocketAddr {
    async fn answer(uri: axum::http::Uri) -> axum::response::Response {
        use axum::response::IntoResponse;
        let path = uri.path().to_string();
        if path.starts_with("/slow/") {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if path.starts_with("/empty/") {
            return axum::http::StatusCode::NO_CONTENT.into_response();
        }
        if path.starts_with("/chunked/") {
            let parts: Vec<Result<String, std::io::Error>> = vec![Ok(path.clone()), Ok(String::new()), Ok("!".into())];
            return axum::body::Body::from_stream(futures::stream::iter(parts)).into_response();
        }
        path.into_response()
    }
    let router = Router::new().fallback(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Reads one HTTP/1.1 response (sized, chunked, or bodiless for `HEAD` and 204) and
/// returns its status and body.
async fn read_framed_response(reader: &mut BufReader<TcpStream>, head_request: bool) -> (u16, String) {
    async fn line(reader: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP, reader.read_line(&mut line)).await.expect("response in time").expect("read");
        assert!(n > 0, "connection closed mid-response");
        line.trim_end().to_string()
    }
    let status: u16 = line(reader).await.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let header = line(reader).await;
        if header.is_empty() {
            break;
        }
        let (k, v) = header.split_once(':').expect("header");
        if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().expect("length");
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    if head_request || status == 204 || status == 304 {
        return (status, String::new());
    }
    let mut body = Vec::new();
    if chunked {
        for _ in 0..1000 {
            let size = usize::from_str_radix(&line(reader).await, 16).expect("chunk size");
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await.expect("body");
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_aborts_are_answered_in_request_order() {
    let (_server, client) = server(25).await;
    let addr = proxy_to(&client, "web", path_echo().await).await;
    abort(&client, "web", 503, matching(100.0, None, Some("/abort/"))).await;
    let mut reader = BufReader::new(connect(addr).await);
    // (method, path, expected status, expected body)
    let requests = [
        ("GET", "/slow/1", 200, "/slow/1"),
        ("GET", "/abort/2", 503, "injected"),
        ("HEAD", "/slow/3", 200, ""),
        ("GET", "/abort/4", 503, "injected"),
        ("GET", "/chunked/5", 200, "/chunked/5!"),
        ("HEAD", "/abort/6", 503, ""),
        ("GET", "/empty/7", 204, ""),
        ("POST", "/abort/8", 503, "injected"),
        ("GET", "/slow/9", 200, "/slow/9"),
    ];
    let mut wire = Vec::new();
    for (method, path, ..) in requests {
        let body = if method == "POST" { "content-length: 4\r\n\r\nbody" } else { "\r\n" };
        wire.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: x\r\n{body}").as_bytes());
    }
    // All requests in one write: the answers to aborted ones must not overtake the
    // answers still owed to the requests before them.
    reader.get_mut().write_all(&wire).await.expect("write");
    for (method, path, status, body) in requests {
        let got = read_framed_response(&mut reader, method == "HEAD").await;
        assert_eq!(got, (status, body.to_string()), "answer to {method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_added_mid_body_touches_the_next_requests_on_the_connection() {
    let (_server, client) = server(26).await;
    let (upstream, served) = app().await;
    let addr = proxy_to(&client, "web", upstream).await;
    let mut reader = BufReader::new(connect(addr).await);
    let order =
        |body: &str| format!("POST /v1/orders HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    // A request whose body is half sent when the toxics arrive.
    let first = order("0123456789");
    let (sent, rest) = first.split_at(first.len() - 5);
    reader.get_mut().write_all(sent.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    abort(&client, "web", 503, matching(100.0, None, Some("/v1/orders"))).await;
    let delay = ToxicKind::HttpDelay { delay: 120, matching: matching(100.0, None, Some("/v1/items")) };
    add(&client, "web", delay, Stream::Upstream).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    reader.get_mut().write_all(rest.as_bytes()).await.expect("write");
    assert_eq!(read_framed_response(&mut reader, false).await, (200, "order 0123456789".to_string()));
    // The requests after it on the same keep-alive connection are touched.
    for i in 0..3 {
        reader.get_mut().write_all(order(&format!("o{i}")).as_bytes()).await.expect("write");
        assert_eq!(read_framed_response(&mut reader, false).await, (503, "injected".to_string()), "order {i}");
        let start = Instant::now();
        reader.get_mut().write_all(b"GET /v1/items HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        assert_eq!(read_framed_response(&mut reader, false).await, (200, "items".to_string()));
        assert!(start.elapsed() >= Duration::from_millis(115), "request {i} not delayed: {:?}", start.elapsed());
    }
    assert_eq!(served.load(Ordering::Relaxed), 4, "aborted requests reached the server");
}

/// The paths an `http_abort` with toxicity 0.5 aborts when 8 tasks share a pooled
/// client and send 25 distinct requests each, interleaved as the scheduler pleases.
async fn aborted_under_concurrency(seed: u64) -> std::collections::BTreeSet<String> {
    let (_server, client) = server(seed).await;
    let addr = proxy_to(&client, "web", path_echo().await).await;
    let mut toxic = Toxic::new(
        ToxicKind::HttpAbort { status_code: 503, body: "injected".into(), matching: matching(100.0, None, None) },
        Stream::Upstream,
    );
    toxic.toxicity = 0.5;
    client.add_toxic("web", &toxic).await.expect("added");
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(4).build().expect("client");
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut aborted = Vec::new();
            for i in 0..25u64 {
                // Vary the interleaving from run to run.
                let nanos = u64::from(Instant::now().elapsed().subsec_nanos() ^ std::process::id());
                tokio::time::sleep(Duration::from_micros((nanos + task * 37 + i) % 700)).await;
                let path = format!("/r/{task}/{i}");
                let resp = http.get(format!("http://{addr}{path}")).send().await.expect("response");
                match resp.status().as_u16() {
                    503 => aborted.push(path),
                    200 => assert_eq!(resp.text().await.expect("body"), path),
                    other => panic!("status {other} for {path}"),
                }
            }
            aborted
        }));
    }
    let mut aborted = std::collections::BTreeSet::new();
    for task in tasks {
        aborted.extend(tokio::time::timeout(STEP, task).await.expect("in time").expect("task"));
    }
    aborted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_aborts_the_same_requests_under_concurrency() {
    let a = aborted_under_concurrency(7).await;
    let b = aborted_under_concurrency(7).await;
    let c = aborted_under_concurrency(8).await;
    // Binomial(200, 0.5): sd 7.1; 5.6 sd either side.
    assert!((60..=140).contains(&a.len()), "{} of 200 aborted at toxicity 0.5", a.len());
    assert_eq!(a, b, "same seed, different requests aborted");
    assert_ne!(a, c, "different seeds, same 200 decisions");
}

/// What happened to each request through `toxic` (toxicity 0.5) when 8 tasks share a
/// pooled client and send 20 distinct requests each: the paths answered late (over
/// 60 ms; untouched ones take well under a millisecond on loopback), and the paths that
/// failed. `order` changes the interleaving between runs: the tasks start in another
/// order, each sends its requests in another order, and short random sleeps shuffle the
/// rest, so connections open, and carry requests, in another order.
async fn touched_under_concurrency(seed: u64, toxic: &Toxic, order: u64) -> (BTreeSet<String>, BTreeSet<String>) {
    let (_server, client) = server(seed).await;
    let addr = proxy_to(&client, "web", path_echo().await).await;
    let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(4).build().expect("client");
    // Open pooled connections before the toxic comes, as a scenario's load does: the
    // toxic joins them mid-stream; more connections open while it is there.
    let warm: Vec<_> = (0..8).map(|i| http.get(format!("http://{addr}/warm/{i}")).send()).collect();
    for resp in futures::future::join_all(warm).await {
        assert!(resp.expect("warm-up").status().is_success());
    }
    client.add_toxic("web", toxic).await.expect("added");
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(((task + order * 5) % 8) * 4)).await;
            let (mut late, mut failed) = (Vec::new(), Vec::new());
            for k in 0..20u64 {
                let i = if order.is_multiple_of(2) { k } else { 19 - k };
                let nanos = u64::from(Instant::now().elapsed().subsec_nanos() ^ std::process::id());
                tokio::time::sleep(Duration::from_micros((nanos + task * 37 + i) % 700)).await;
                let path = format!("/r/{task}/{i}");
                let start = Instant::now();
                let body = match http.get(format!("http://{addr}{path}")).send().await {
                    Ok(resp) => resp.text().await,
                    Err(e) => Err(e),
                };
                match body {
                    Ok(body) => assert_eq!(body, path),
                    Err(_) => failed.push(path.clone()),
                }
                if start.elapsed() > Duration::from_millis(60) {
                    late.push(path);
                }
            }
            (late, failed)
        }));
    }
    let (mut late, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for task in tasks {
        let (l, f) = tokio::time::timeout(STEP, task).await.expect("in time").expect("task");
        late.extend(l);
        failed.extend(f);
    }
    (late, failed)
}

/// The paths a `latency` toxic (100 ms, toxicity 0.5) on `stream` delays.
async fn delayed_under_concurrency(seed: u64, stream: Stream, order: u64) -> BTreeSet<String> {
    let toxic = Toxic::new(ToxicKind::Latency { latency: 100, jitter: 0 }, stream).with_toxicity(0.5);
    let (late, failed) = touched_under_concurrency(seed, &toxic, order).await;
    assert!(failed.is_empty(), "a latency failed requests: {failed:?}");
    late
}

async fn assert_the_same_seed_delays_the_same_requests(stream: Stream) {
    let a = delayed_under_concurrency(7, stream, 0).await;
    let b = delayed_under_concurrency(7, stream, 1).await;
    let c = delayed_under_concurrency(8, stream, 0).await;
    let differ: Vec<_> = a.symmetric_difference(&b).collect();
    assert!(differ.is_empty(), "same seed, {} requests decided differently ({stream}): {differ:?}", differ.len());
    // Binomial(160, 0.5): sd 6.3; 4.7 sd either side.
    assert!((50..=110).contains(&a.len()), "{} of 160 delayed at toxicity 0.5 ({stream})", a.len());
    assert_ne!(a, c, "different seeds, same 160 decisions ({stream})");
}

/// A TCP toxic's toxicity on an HTTP link is drawn per request, keyed by the request,
/// not by the order in which pooled connections were accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_delays_the_same_requests_under_concurrency_upstream() {
    assert_the_same_seed_delays_the_same_requests(Stream::Upstream).await;
}

/// ... and a toxic on the responses decides for each response by its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_delays_the_same_responses_under_concurrency_downstream() {
    assert_the_same_seed_delays_the_same_requests(Stream::Downstream).await;
}

/// The paths a `limit_data` toxic (10 bytes, toxicity 0.5) on the responses cuts short.
async fn cut_under_concurrency(seed: u64, order: u64) -> BTreeSet<String> {
    let toxic = Toxic::new(ToxicKind::LimitData { bytes: 10 }, Stream::Downstream).with_toxicity(0.5);
    touched_under_concurrency(seed, &toxic, order).await.1
}

/// A toxic that ends the connection decides per request too: the response to a touched
/// request is cut short and its connection closed; the others are whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_cuts_the_same_responses_under_concurrency() {
    let a = cut_under_concurrency(7, 0).await;
    let b = cut_under_concurrency(7, 1).await;
    let c = cut_under_concurrency(8, 0).await;
    let differ: Vec<_> = a.symmetric_difference(&b).collect();
    assert!(differ.is_empty(), "same seed, {} requests decided differently: {differ:?}", differ.len());
    // Binomial(160, 0.5): sd 6.3; 4.7 sd either side.
    assert!((50..=110).contains(&a.len()), "{} of 160 cut at toxicity 0.5", a.len());
    assert_ne!(a, c, "different seeds, same 160 decisions");
}
