//! Shared helpers of the proxy tests: a seeded server, real upstream servers on
//! 127.0.0.1, and small timing tools. Every wait is bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gauntlet::faults::model::{ProxyConfig, Stream, Toxic, ToxicKind};
use gauntlet::faults::{ProxyServer, ToxiproxyClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest any single step of a test may wait.
pub const STEP: Duration = Duration::from_secs(10);

/// A proxy server on a free port, and a client of its API.
pub async fn server(seed: u64) -> (ProxyServer, ToxiproxyClient) {
    let server = ProxyServer::start("127.0.0.1:0", seed).await.expect("server starts");
    let client = ToxiproxyClient::new(server.url());
    (server, client)
}

/// Creates proxy `name` to `upstream` on a free port and returns its address.
pub async fn proxy_to(client: &ToxiproxyClient, name: &str, upstream: SocketAddr) -> SocketAddr {
    let proxy =
        client.create_proxy(&ProxyConfig::new(name, "127.0.0.1:0", upstream.to_string())).await.expect("proxy created");
    proxy.listen.parse().expect("listen is an address")
}

/// Adds a toxic acting on every connection.
pub async fn add(client: &ToxiproxyClient, proxy: &str, kind: ToxicKind, stream: Stream) -> Toxic {
    client.add_toxic(proxy, &Toxic::new(kind, stream)).await.expect("toxic added")
}

/// A TCP echo server; returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if socket.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A server that writes `payload` to each connection and closes it.
pub async fn sender_server(payload: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let payload = bytes::Bytes::from(payload);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let payload = payload.clone();
            tokio::spawn(async move {
                let _ = socket.write_all(&payload).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Connects to `addr` with Nagle off.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = tokio::time::timeout(STEP, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Sends `msg` and reads the same number of bytes back; returns them and the time.
pub async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    stream.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(STEP, stream.read_exact(&mut back)).await.expect("echo in time").expect("echo");
    (back, start.elapsed())
}

/// Reads until end of stream (bounded by [`STEP`]); the bytes and the result's error.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
            Err(_) => panic!("stream did not end within {STEP:?}"),
            Ok(Ok(0)) => return (out, None),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (out, Some(e)),
        }
    }
}

/// The median of some durations.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
