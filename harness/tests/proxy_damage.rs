//! The toxics that damage a stream, `loss` and `corrupt`, measured through real TCP
//! servers on 127.0.0.1: losses and flips counted against their probability (seeded, so
//! each count is deterministic), the same seed giving the same damage, HTTP heads
//! spared, the proxy's `/metrics` counting what was done, and traffic clean again once
//! the toxic is removed.

mod proxy_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use gauntlet::faults::model::{Stream, Toxic, ToxicKind};
use gauntlet::faults::ToxiproxyClient;
use proxy_common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Segments sent in the loss tests, and their size.
const SEGMENTS: u64 = 400;
const SEGMENT_SIZE: u64 = 1000;

fn loss(probability: f64) -> ToxicKind {
    // Short timeouts keep the test short; the backoff ladder is 20, 40, 80 ms.
    ToxicKind::Loss { probability, rto: 20, max_rto: 80, segment_size: SEGMENT_SIZE, burst: None }
}

/// The value of every series of `metric` on the proxy's `/metrics`, by its labels.
async fn series(client: &ToxiproxyClient, metric: &str) -> BTreeMap<String, u64> {
    let text = client.metrics().await.expect("metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(labels, v)| (labels.to_string(), v.parse().expect("a counter")))
        .collect()
}

/// Everything a fresh connection through `addr` reads until the server closes it.
async fn fetch(addr: SocketAddr) -> Vec<u8> {
    let mut stream = connect(addr).await;
    let (bytes, error) = read_to_end(&mut stream).await;
    assert!(error.is_none(), "the stream failed: {error:?}");
    bytes
}

/// The segments lost downstream on one connection carrying `payload`, under seed
/// `seed`, by retransmission timeout; the bytes must arrive whole.
async fn lost_with_seed(seed: u64, payload: &[u8]) -> BTreeMap<String, u64> {
    let (_server, client) = server(seed).await;
    let addr = proxy_to(&client, "lossy", sender_server(payload.to_vec()).await).await;
    add(&client, "lossy", loss(0.2), Stream::Downstream).await;
    assert_eq!(fetch(addr).await, payload, "a lost segment was not retransmitted whole");
    series(&client, "gauntlet_proxy_segments_lost_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_holds_back_segments_at_the_probability_with_backoff_and_a_seed_replays_it() {
    let payload: Vec<u8> = (0..SEGMENTS * SEGMENT_SIZE).map(|i| (i % 251) as u8).collect();
    let lost = lost_with_seed(7, &payload).await;
    let total: u64 = lost.values().sum();
    // Each transmission is lost with 0.2: first losses ~ Binomial(400, 0.2) = 80 ± 8,
    // retransmissions lost too add a quarter; 4 standard deviations either way.
    let first: u64 = lost.iter().filter(|(k, _)| k.contains("rto_ms=\"20\"")).map(|(_, v)| v).sum();
    assert!((48..=112).contains(&first), "{first} of {SEGMENTS} segments lost at 0.2: {lost:?}");
    assert!(total > first, "no retransmission was lost too (no backoff): {lost:?}");
    for key in lost.keys() {
        assert!(key.contains("direction=\"downstream\""), "a loss upstream: {key}");
        assert!(["20", "40", "80"].iter().any(|r| key.contains(&format!("rto_ms=\"{r}\""))), "off the ladder: {key}");
    }
    assert_eq!(lost, lost_with_seed(7, &payload).await, "the same seed lost other segments");
    assert_ne!(lost, lost_with_seed(8, &payload).await, "another seed lost the same segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_removed_leaves_the_stream_clean() {
    let (_server, client) = server(3).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let toxic = add(&client, "echo", loss(0.5), Stream::Upstream).await;
    let mut stream = connect(addr).await;
    let msg = vec![b'x'; 20 * SEGMENT_SIZE as usize];
    assert_eq!(round_trip(&mut stream, &msg).await.0, msg);
    let lost = series(&client, "gauntlet_proxy_segments_lost_total").await;
    assert!(lost.values().sum::<u64>() > 0, "nothing lost at 0.5 over 20 segments");
    client.remove_toxic("echo", &toxic.name).await.expect("removed");
    for _ in 0..5 {
        assert_eq!(round_trip(&mut stream, &msg).await.0, msg);
    }
    assert_eq!(series(&client, "gauntlet_proxy_segments_lost_total").await, lost, "a loss after the toxic was removed");
}

/// The offsets of the bytes that differ from zero after `payload_len` zeros crossed a
/// `corrupt` toxic with `rate` under `seed`, and the flips the proxy counted.
async fn flips_with_seed(seed: u64, rate: f64, payload_len: usize) -> (Vec<usize>, u64) {
    let (_server, client) = server(seed).await;
    let addr = proxy_to(&client, "noisy", sender_server(vec![0; payload_len]).await).await;
    add(&client, "noisy", ToxicKind::Corrupt { rate, spare_head: false }, Stream::Downstream).await;
    let got = fetch(addr).await;
    assert_eq!(got.len(), payload_len, "corruption changed the length");
    assert!(got.iter().all(|b| b.count_ones() <= 1), "more than one bit flipped in a byte");
    let flipped = got.iter().enumerate().filter(|(_, b)| **b != 0).map(|(i, _)| i).collect();
    let counted = series(&client, "gauntlet_proxy_bytes_corrupted_total").await;
    let downstream = counted.iter().find(|(k, _)| k.contains("downstream")).map_or(0, |(_, v)| *v);
    (flipped, downstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_flips_bytes_at_the_rate_counts_them_and_a_seed_replays_them() {
    let (flipped, counted) = flips_with_seed(5, 0.001, 200_000).await;
    // Binomial(200000, 0.001): 200 ± 14; 4 standard deviations either way.
    assert!((144..=256).contains(&flipped.len()), "{} bytes flipped at 0.001", flipped.len());
    assert_eq!(counted, flipped.len() as u64, "/metrics counts other flips than the bytes found");
    assert_eq!(flips_with_seed(5, 0.001, 200_000).await.0, flipped, "the same seed flipped other bytes");
    assert_ne!(flips_with_seed(6, 0.001, 200_000).await.0, flipped, "another seed flipped the same bytes");
}

/// An HTTP/1.1 server that reads one request head and answers it with a JSON body of
/// `len` bytes, then closes.
async fn http_server(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = vec![b'7'; len];
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Sends one GET through `addr`; the head and body of the answer.
async fn get(addr: SocketAddr) -> (String, Vec<u8>) {
    let mut stream = connect(addr).await;
    stream.write_all(b"GET /v1/charges/1 HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n").await.expect("write");
    let (bytes, error) = read_to_end(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("the head's end is intact") + 4;
    (String::from_utf8(bytes[..end].to_vec()).expect("the head is text"), bytes[end..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_head_leaves_the_status_line_and_headers_intact_and_corrupts_the_body() {
    let len = 20_000;
    let (_server, client) = server(9).await;
    let addr = proxy_to(&client, "http", http_server(len).await).await;
    let toxic = add(&client, "http", ToxicKind::Corrupt { rate: 0.01, spare_head: true }, Stream::Downstream).await;
    let mut damaged = 0;
    for _ in 0..5 {
        let (head, body) = get(addr).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "the status line was corrupted: {head:?}");
        assert!(head.contains(&format!("content-length: {len}\r\n")), "a header was corrupted: {head:?}");
        assert_eq!(body.len(), len);
        damaged += body.iter().filter(|b| **b != b'7').count();
    }
    // 5 × Binomial(20000, 0.01): 1000 ± 31.
    assert!((876..=1124).contains(&damaged), "{damaged} body bytes flipped at 0.01");
    client.remove_toxic("http", &toxic.name).await.expect("removed");
    let (_, body) = get(addr).await;
    assert!(body.iter().all(|b| *b == b'7'), "a byte flipped after the toxic was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxiproxy_client_creates_both_through_the_api_and_bad_attributes_are_refused() {
    let (server, client) = server(1).await;
    proxy_to(&client, "api", echo_server().await).await;
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let url = format!("{}/proxies/api/toxics", server.url());
    // As any Toxiproxy client sends a toxic: type, stream, toxicity, attributes.
    let bodies = [
        json!({"type": "loss", "stream": "upstream", "toxicity": 1.0,
               "attributes": {"probability": 0.02, "rto": 200, "max_rto": 1600,
                              "burst_enter": 0.01, "burst_exit": 0.3, "burst_loss": 0.8}}),
        json!({"type": "corrupt", "stream": "downstream", "attributes": {"rate": 0.001, "spare_head": true}}),
    ];
    for body in bodies {
        let answer = http.post(&url).json(&body).send().await.expect("POST");
        assert_eq!(answer.status(), 200, "{body}: {}", answer.text().await.unwrap_or_default());
    }
    let toxics: Vec<Toxic> = client.toxics("api").await.expect("toxics");
    let names: Vec<&str> = toxics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["loss_upstream", "corrupt_downstream"]);
    let shown = http.get(format!("{url}/corrupt_downstream")).send().await.expect("GET").json::<serde_json::Value>();
    let shown = shown.await.expect("JSON");
    assert_eq!(shown["attributes"], json!({"rate": 0.001, "spare_head": true}));

    let bad = http
        .post(&url)
        .json(&json!({"type": "loss", "name": "bad", "attributes": {"probability": 2}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.expect("body");
    assert!(text.contains("attributes.probability must be between 0 and 1"), "{text}");
}
