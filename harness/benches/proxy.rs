//! The embedded fault proxy with no toxics, against a direct connection, side by side:
//!
//! - `round_trip/{direct,proxied}`: one 64-byte request/response over an open TCP
//!   connection to an echo server (goal: the proxy adds under 50 µs at the median);
//! - `throughput/{direct,proxied}`: 16 MiB over one connection to a sink that acks
//!   every 16 MiB (goal: at least 2 GB/s through the proxy on loopback).
//!
//! After criterion's runs a summary prints the medians of a plain measurement of the
//! same things and the proxied/direct ratios.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use gauntlet::faults::model::ProxyConfig;
use gauntlet::faults::{ProxyServer, ToxiproxyClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const MESSAGE: usize = 64;
const BULK: usize = 16 * 1024 * 1024;
const WRITE: usize = 256 * 1024;

struct Targets {
    echo: SocketAddr,
    echo_proxied: SocketAddr,
    sink: SocketAddr,
    sink_proxied: SocketAddr,
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads everything; writes one byte back after every [`BULK`] bytes.
async fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut count = 0usize;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    count += n;
                    while count >= BULK {
                        count -= BULK;
                        if s.write_all(&[1]).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Starts the proxy server and the upstream servers on `rt`, with proxies to both.
fn setup(rt: &Runtime) -> (ProxyServer, Targets) {
    rt.block_on(async {
        let server = ProxyServer::start("127.0.0.1:0", 0).await.expect("proxy server");
        let client = ToxiproxyClient::new(server.url());
        let echo = echo_server().await;
        let sink = sink_server().await;
        let proxy = |name: &str, to: SocketAddr| ProxyConfig::new(name, "127.0.0.1:0", to.to_string());
        let e = client.create_proxy(&proxy("echo", echo)).await.expect("proxy");
        let s = client.create_proxy(&proxy("sink", sink)).await.expect("proxy");
        let targets = Targets {
            echo,
            echo_proxied: e.listen.parse().expect("addr"),
            sink,
            sink_proxied: s.listen.parse().expect("addr"),
        };
        (server, targets)
    })
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn round_trips(addr: SocketAddr, n: u64) -> Vec<Duration> {
    let mut s = connect(addr).await;
    let msg = [7u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut times = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        let start = Instant::now();
        s.write_all(&msg).await.expect("write");
        s.read_exact(&mut back).await.expect("read");
        times.push(start.elapsed());
    }
    times
}

async fn bulk(addr: SocketAddr, n: u64) -> Duration {
    let mut s = connect(addr).await;
    let data = vec![3u8; WRITE];
    let mut ack = [0u8; 1];
    let start = Instant::now();
    for _ in 0..n {
        for _ in 0..BULK / WRITE {
            s.write_all(&data).await.expect("write");
        }
        s.read_exact(&mut ack).await.expect("ack");
    }
    start.elapsed()
}

fn benches(c: &mut Criterion, rt: &Runtime, t: &Targets) {
    let mut group = c.benchmark_group("round_trip");
    for (name, addr) in [("direct", t.echo), ("proxied", t.echo_proxied)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| rt.block_on(round_trips(addr, iters)).into_iter().sum())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Bytes(BULK as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for (name, addr) in [("direct", t.sink), ("proxied", t.sink_proxied)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| rt.block_on(bulk(addr, iters)))
        });
    }
    group.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Round trips on two open connections, alternating, so both see the same machine load.
async fn interleaved_round_trips(a: SocketAddr, b: SocketAddr, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut sa = connect(a).await;
    let mut sb = connect(b).await;
    let msg = [7u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        for (s, times) in [(&mut sa, &mut ta), (&mut sb, &mut tb)] {
            let start = Instant::now();
            s.write_all(&msg).await.expect("write");
            s.read_exact(&mut back).await.expect("read");
            times.push(start.elapsed());
        }
    }
    (ta, tb)
}

/// Prints the headline figures, measured alternately direct and proxied: added
/// round-trip latency at the median and the throughput ratio.
fn summary(rt: &Runtime, t: &Targets) {
    let (direct, proxied) = rt.block_on(interleaved_round_trips(t.echo, t.echo_proxied, 5000));
    let (direct, proxied) = (median(direct), median(proxied));
    let added = proxied.saturating_sub(direct);
    let rounds = 8;
    let per_round = 8;
    let (mut direct_time, mut proxied_time) = (Duration::ZERO, Duration::ZERO);
    let (mut direct_cpu, mut proxied_cpu) = (0.0, 0.0);
    for _ in 0..rounds {
        let c0 = cpu_seconds();
        direct_time += rt.block_on(bulk(t.sink, per_round));
        let c1 = cpu_seconds();
        proxied_time += rt.block_on(bulk(t.sink_proxied, per_round));
        let c2 = cpu_seconds();
        direct_cpu += c1 - c0;
        proxied_cpu += c2 - c1;
    }
    let rate = |d: Duration| (BULK as u64 * per_round * rounds) as f64 / d.as_secs_f64() / 1e9;
    let (direct_rate, proxied_rate) = (rate(direct_time), rate(proxied_time));
    println!("\nsummary, direct and proxied alternately (5000 round trips of {MESSAGE} B; 1 GiB each way):");
    println!(
        "  round trip median: direct {direct:?}, proxied {proxied:?}, added {added:?} (goal < 50µs), ratio {:.2}",
        proxied.as_secs_f64() / direct.as_secs_f64().max(1e-9)
    );
    println!(
        "  throughput: direct {direct_rate:.2} GB/s, proxied {proxied_rate:.2} GB/s (goal >= 2 GB/s), ratio {:.2}",
        proxied_rate / direct_rate.max(1e-9)
    );
    // CPU time is steadier than wall time on a machine shared with other work.
    let gb = (BULK as u64 * per_round * rounds) as f64 / 1e9;
    println!(
        "  process CPU per GB (all threads: client, proxy, sink): direct {:.2} s, proxied {:.2} s, ratio {:.2}",
        direct_cpu / gb,
        proxied_cpu / gb,
        proxied_cpu / direct_cpu.max(1e-9)
    );
}

/// CPU time (user and system) of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime")
}

fn main() {
    // One runtime of two threads for the proxy and both ends: the machine has two cores.
    let rt = runtime(2);
    let (_server, targets) = setup(&rt);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &rt, &targets);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not want the long summary.
    if std::env::args().any(|a| a == "--bench") {
        summary(&rt, &targets);
    }
}
