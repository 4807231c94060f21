//! One test per toxic, each measuring the effect the toxic promises through a real TCP
//! echo (or sender) server on 127.0.0.1, plus live chain changes, toxicity and seeding.

mod proxy_common;

use std::time::{Duration, Instant};

use gauntlet::faults::model::{Stream, Toxic, ToxicKind};
use proxy_common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_the_configured_delay_at_the_median() {
    let (_server, client) = server(1).await;
    let echo = echo_server().await;
    let addr = proxy_to(&client, "echo", echo).await;
    let mut direct = connect(echo).await;
    let mut proxied = connect(addr).await;
    let mut base = Vec::new();
    for _ in 0..15 {
        base.push(round_trip(&mut direct, b"ping").await.1);
    }
    add(&client, "echo", ToxicKind::Latency { latency: 40, jitter: 0 }, Stream::Downstream).await;
    let mut slowed = Vec::new();
    for _ in 0..15 {
        let (back, took) = round_trip(&mut proxied, b"ping").await;
        assert_eq!(back, b"ping");
        slowed.push(took);
    }
    let added = median(slowed).saturating_sub(median(base));
    assert!(added >= ms(38) && added <= ms(42), "latency 40ms added {added:?} at the median");
}

/// The median round trip added by a `latency` toxic of `latency_ms`, against the same
/// echo server reached directly; samples alternate so both see the same machine.
async fn added_round_trip(latency_ms: u64) -> Duration {
    let (_server, client) = server(11).await;
    let echo = echo_server().await;
    let addr = proxy_to(&client, "echo", echo).await;
    add(&client, "echo", ToxicKind::Latency { latency: latency_ms, jitter: 0 }, Stream::Downstream).await;
    let mut direct = connect(echo).await;
    let mut proxied = connect(addr).await;
    let (mut base, mut slowed) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        base.push(round_trip(&mut direct, b"ping").await.1);
        let (back, took) = round_trip(&mut proxied, b"ping").await;
        assert_eq!(back, b"ping");
        slowed.push(took);
    }
    let (base, slowed) = (median(base), median(slowed));
    let added = slowed.saturating_sub(base);
    eprintln!("latency {latency_ms} ms: median round trip direct {base:?}, proxied {slowed:?}, added {added:?}");
    added
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_precise_to_well_under_a_millisecond() {
    for latency in [1, 20] {
        let added = added_round_trip(latency).await;
        let error = added.as_secs_f64() * 1000.0 - latency as f64;
        assert!(error.abs() <= 0.3, "latency {latency} ms added {added:?} at the median ({error:+.3} ms)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_spreads_the_delay_within_its_bounds() {
    let (_server, client) = server(2).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::Latency { latency: 30, jitter: 20 }, Stream::Upstream).await;
    let mut stream = connect(addr).await;
    let mut times = Vec::new();
    for _ in 0..20 {
        times.push(round_trip(&mut stream, b"j").await.1);
    }
    // A loaded machine can delay any one sample; a jitter that leaves its bounds puts a
    // quarter of them outside, so at most two of twenty may stray.
    let inside = times.iter().filter(|t| **t >= ms(9) && **t <= ms(60)).count();
    assert!(inside >= 18, "only {inside} of 20 round trips within latency ± jitter: {times:?}");
    assert!(times.iter().all(|t| *t >= ms(9)), "a round trip below latency - jitter: {times:?}");
    let (min, max) = (times.iter().min().copied(), times.iter().max().copied());
    assert!(max.zip(min).is_some_and(|(a, b)| a - b >= ms(10)), "no spread: {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_holds_the_rate_within_five_percent() {
    let (_server, client) = server(3).await;
    let size = 1_000_000;
    let addr = proxy_to(&client, "sender", sender_server(vec![7u8; size]).await).await;
    add(&client, "sender", ToxicKind::Bandwidth { rate: 2000 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let start = Instant::now();
    let (data, err) = read_to_end(&mut stream).await;
    let took = start.elapsed();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(data.len(), size);
    // 1 MB at 2000 KB/s is 500 ms.
    let rate = size as f64 / took.as_secs_f64() / 1000.0;
    assert!((1900.0..=2100.0).contains(&rate), "rate {rate:.0} KB/s over {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_drops_data_then_closes_after_the_timeout() {
    let (_server, client) = server(4).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::Timeout { timeout: 150 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let start = Instant::now();
    stream.write_all(b"lost").await.expect("write");
    let (data, _) = read_to_end(&mut stream).await;
    let took = start.elapsed();
    assert!(data.is_empty(), "data passed a timeout toxic: {data:?}");
    assert!(took >= ms(140) && took <= ms(400), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_zero_holds_until_removed_then_closes() {
    let (_server, client) = server(5).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::Timeout { timeout: 0 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"held").await.expect("write");
    let mut buf = [0u8; 8];
    let held = tokio::time::timeout(ms(300), tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await;
    assert!(held.is_err(), "a timeout 0 toxic let something through: {held:?}");
    client.remove_toxic("echo", "timeout_downstream").await.expect("removed");
    let start = Instant::now();
    let (data, _) = read_to_end(&mut stream).await;
    assert!(data.is_empty());
    assert!(start.elapsed() < ms(500), "not closed on removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_the_connection_after_the_timeout() {
    let (_server, client) = server(6).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::ResetPeer { timeout: 100 }, Stream::Upstream).await;
    let mut stream = connect(addr).await;
    let start = Instant::now();
    stream.write_all(b"boom").await.expect("write");
    let (data, err) = read_to_end(&mut stream).await;
    let took = start.elapsed();
    assert!(data.is_empty());
    let kind = err.map(|e| e.kind());
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionReset), "after {took:?}");
    assert!(took >= ms(95) && took <= ms(400), "reset after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_passes_the_limit_then_closes() {
    let (_server, client) = server(7).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::LimitData { bytes: 100 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let msg: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&msg).await.expect("write");
    let (data, _) = read_to_end(&mut stream).await;
    assert_eq!(data, msg[..100].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_close_delays_only_the_close() {
    let (_server, client) = server(8).await;
    let addr = proxy_to(&client, "sender", sender_server(b"bye".to_vec()).await).await;
    add(&client, "sender", ToxicKind::SlowClose { delay: 200 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let start = Instant::now();
    let mut first = [0u8; 3];
    tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_exact(&mut stream, &mut first))
        .await
        .expect("data in time")
        .expect("data");
    let data_after = start.elapsed();
    let (rest, _) = read_to_end(&mut stream).await;
    let closed_after = start.elapsed();
    assert_eq!(&first, b"bye");
    assert!(rest.is_empty());
    assert!(data_after < ms(100), "data delayed by slow_close: {data_after:?}");
    assert!(closed_after >= ms(195) && closed_after <= ms(500), "closed after {closed_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_delivers_small_delayed_slices_intact() {
    let (_server, client) = server(9).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let slicer = ToxicKind::Slicer { average_size: 10, size_variation: 4, delay: 2000 };
    add(&client, "echo", slicer, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let msg: Vec<u8> = (0..500u32).map(|i| (i % 241) as u8).collect();
    let start = Instant::now();
    stream.write_all(&msg).await.expect("write");
    let mut got = Vec::new();
    let mut reads = 0;
    let mut largest = 0;
    let mut buf = [0u8; 4096];
    while got.len() < msg.len() {
        let n = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
            .await
            .expect("slice in time")
            .expect("read");
        assert!(n > 0, "closed early");
        reads += 1;
        largest = largest.max(n);
        got.extend_from_slice(&buf[..n]);
    }
    let took = start.elapsed();
    assert_eq!(got, msg);
    // About 500/10 slices, 2 ms apart.
    assert!(took >= ms(60), "slices not delayed: {took:?}");
    assert!(reads >= 10, "only {reads} reads: not sliced");
    assert!(largest <= 200, "a read of {largest} bytes: slices too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_added_to_an_open_connection_acts_on_it_and_removal_restores_it() {
    let (_server, client) = server(10).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let mut stream = connect(addr).await;
    let (_, before) = round_trip(&mut stream, b"one").await;
    add(&client, "echo", ToxicKind::Latency { latency: 100, jitter: 0 }, Stream::Upstream).await;
    let (back, during) = round_trip(&mut stream, b"two").await;
    assert_eq!(back, b"two");
    client.remove_toxic("echo", "latency_upstream").await.expect("removed");
    let (back, after) = round_trip(&mut stream, b"three").await;
    assert_eq!(back, b"three");
    assert!(before < ms(30), "{before:?}");
    assert!(during >= ms(98), "the open connection was not slowed: {during:?}");
    assert!(after < ms(30), "the open connection was not restored: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_toxic_releases_held_data_without_loss() {
    let (_server, client) = server(11).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::Latency { latency: 5000, jitter: 0 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let start = Instant::now();
    stream.write_all(b"held back").await.expect("write");
    tokio::time::sleep(ms(100)).await;
    client.remove_toxic("echo", "latency_downstream").await.expect("removed");
    let mut back = [0u8; 9];
    tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_exact(&mut stream, &mut back))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(&back, b"held back");
    assert!(start.elapsed() < ms(1000), "held data waited for the removed toxic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_a_toxic_changes_open_connections() {
    let (_server, client) = server(12).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    add(&client, "echo", ToxicKind::Latency { latency: 10, jitter: 0 }, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    let (_, small) = round_trip(&mut stream, b"a").await;
    client.update_toxic("echo", "latency_downstream", json!({"attributes": {"latency": 120}})).await.expect("updated");
    let (_, large) = round_trip(&mut stream, b"b").await;
    assert!(small < ms(60), "{small:?}");
    assert!(large >= ms(118), "{large:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_proxy_refuses_and_closes_connections() {
    let (_server, client) = server(13).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let mut open = connect(addr).await;
    round_trip(&mut open, b"up").await;
    client.set_enabled("echo", false).await.expect("disabled");
    let (_, _) = read_to_end(&mut open).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a disabled proxy accepted");
    client.set_enabled("echo", true).await.expect("enabled");
    let mut again = connect(addr).await;
    assert_eq!(round_trip(&mut again, b"back").await.0, b"back");
}

/// Whether one new connection through `addr` is touched by a `limit_data 1` toxic.
async fn touched(addr: std::net::SocketAddr) -> bool {
    let mut stream = connect(addr).await;
    stream.write_all(b"hello").await.expect("write");
    let (data, _) = {
        let _ = stream.shutdown().await;
        read_to_end(&mut stream).await
    };
    match data.len() {
        5 => false,
        1 => true,
        n => panic!("{n} bytes: neither touched nor untouched"),
    }
}

async fn decisions(seed: u64, connections: usize) -> Vec<bool> {
    let (_server, client) = server(seed).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let toxic = Toxic::new(ToxicKind::LimitData { bytes: 1 }, Stream::Downstream).with_toxicity(0.5);
    client.add_toxic("echo", &toxic).await.expect("added");
    let mut out = Vec::with_capacity(connections);
    for _ in 0..connections {
        out.push(touched(addr).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_half_touches_about_half_of_the_connections() {
    let n = 300;
    let hits = decisions(14, n).await.iter().filter(|t| **t).count();
    // Binomial(300, 0.5): sd 8.7; 4.5 sd either side.
    assert!((111..=189).contains(&hits), "{hits} of {n} connections touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_decisions() {
    let a = decisions(99, 40).await;
    let b = decisions(99, 40).await;
    let c = decisions(100, 40).await;
    assert_eq!(a, b, "same seed, different decisions");
    assert_ne!(a, c, "different seeds, same 40 decisions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_attribute_values_hold_data_without_a_panic() {
    let (_server, client) = server(15).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let huge = u64::MAX;
    add(&client, "echo", ToxicKind::Latency { latency: huge, jitter: huge / 2 }, Stream::Upstream).await;
    let slicer = ToxicKind::Slicer { average_size: huge, size_variation: huge - 1, delay: huge };
    add(&client, "echo", slicer, Stream::Downstream).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"patience").await.expect("write");
    let mut buf = [0u8; 8];
    let early = tokio::time::timeout(ms(200), tokio::io::AsyncReadExt::read(&mut stream, &mut buf)).await;
    assert!(early.is_err(), "a year-long latency let data through: {early:?}");
    client.remove_toxic("echo", "latency_upstream").await.expect("removed");
    tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_exact(&mut stream, &mut buf))
        .await
        .expect("released in time")
        .expect("read");
    assert_eq!(&buf, b"patience");
}

/// With no toxic, a streaming source is spliced and small messages are read and written:
/// bulk and small messages alternate on one connection intact and in order, and a toxic
/// added after a bulk transfer still acts on that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_and_small_messages_alternate_intact_and_a_toxic_still_acts_after_bulk() {
    use tokio::io::AsyncReadExt;
    let (_server, client) = server(12).await;
    let addr = proxy_to(&client, "echo", echo_server().await).await;
    let (mut rd, mut wr) = connect(addr).await.into_split();
    for round in 0..3u8 {
        let bulk: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i.wrapping_mul(31) >> 3) as u8 ^ round).collect();
        let expected = bulk.clone();
        // Written while it is read back: the echo's buffers could not hold it all.
        let writer = tokio::spawn(async move {
            wr.write_all(&bulk).await.expect("bulk written");
            wr
        });
        let mut back = vec![0u8; expected.len()];
        tokio::time::timeout(STEP, rd.read_exact(&mut back)).await.expect("bulk back in time").expect("bulk back");
        wr = writer.await.expect("writer");
        assert!(back == expected, "round {round}: the bulk bytes came back changed");
        let small = [b's', b'm', b'a', b'l', b'l', round];
        wr.write_all(&small).await.expect("small written");
        let mut back = [0u8; 6];
        tokio::time::timeout(STEP, rd.read_exact(&mut back)).await.expect("small back in time").expect("small");
        assert_eq!(back, small, "round {round}: the small message after the bulk");
    }
    add(&client, "echo", ToxicKind::Latency { latency: 100, jitter: 0 }, Stream::Upstream).await;
    let start = Instant::now();
    wr.write_all(b"late").await.expect("written");
    let mut back = [0u8; 4];
    tokio::time::timeout(STEP, rd.read_exact(&mut back)).await.expect("back in time").expect("back");
    assert_eq!(&back, b"late");
    assert!(start.elapsed() >= ms(98), "the toxic did not act after bulk: {:?}", start.elapsed());
}
