//! Conformance of the embedded server with `toxiproxy_rust`, an independent public
//! Toxiproxy client: every call it makes works against the embedded server, and the
//! toxics it creates act on real connections.
//!
//! `toxiproxy_rust` is blocking, so the server and the echo upstream run on a runtime
//! of their own, on other threads, and the test body is plain blocking code.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gauntlet::faults::ProxyServer;
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

/// The server and an echo upstream, kept alive by their runtime.
struct Fixture {
    _runtime: tokio::runtime::Runtime,
    api: SocketAddr,
    echo: SocketAddr,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (api, echo) = runtime.block_on(async {
        let server = ProxyServer::start("127.0.0.1:0", 42).await.expect("server");
        let api = server.addr();
        // Kept running for the runtime's life.
        std::mem::forget(server);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (api, echo)
    });
    Fixture { _runtime: runtime, api, echo }
}

fn round_trip(addr: &str, msg: &[u8]) -> std::io::Result<(Vec<u8>, Duration)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let start = Instant::now();
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok((back, start.elapsed()))
}

#[test]
fn toxiproxy_rust_drives_the_embedded_server() {
    let f = fixture();
    let client = Client::new(f.api);
    assert!(client.is_running());
    let version = client.version().expect("version");
    assert!(version.contains("\"version\""), "{version}");
    client.reset().expect("reset");

    let proxies = client
        .populate(vec![ProxyPack::new("socket".into(), "127.0.0.1:0".into(), f.echo.to_string())])
        .expect("populate");
    assert_eq!(proxies.len(), 1);
    let listen = proxies[0].proxy_pack.listen.clone();
    assert!(!listen.ends_with(":0"), "{listen}");
    assert!(client.all().expect("all").contains_key("socket"));
    assert!(client.find_proxy("nope").is_err(), "a missing proxy was found");

    let proxy = client.find_and_reset_proxy("socket").expect("find");
    let (back, fast) = round_trip(&listen, b"hi").expect("round trip");
    assert_eq!(back, b"hi");

    proxy.with_latency("downstream".into(), 100, 0, 1.0);
    let (_, slow) = round_trip(&listen, b"hi").expect("round trip");
    assert!(slow >= Duration::from_millis(98), "latency toxic had no effect: {slow:?} (was {fast:?})");

    proxy
        .with_bandwidth("upstream".into(), 1000, 1.0)
        .with_slow_close("upstream".into(), 10, 1.0)
        .with_slicer("upstream".into(), 64, 8, 10, 1.0)
        .with_limit_data("upstream".into(), 1_000_000, 1.0)
        .with_timeout("downstream".into(), 0, 0.0);
    let toxics = proxy.toxics().expect("toxics");
    let mut names: Vec<String> = toxics.iter().map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bandwidth_upstream",
            "latency_downstream",
            "limit_data_upstream",
            "slicer_upstream",
            "slow_close_upstream",
            "timeout_downstream"
        ]
    );
    let latency = toxics.iter().find(|t| t.name == "latency_downstream").expect("latency");
    assert_eq!(latency.attributes.get("latency"), Some(&100));
    assert_eq!(latency.r#type, "latency");
    assert_eq!(latency.stream, "downstream");

    proxy.delete_all_toxics().expect("delete all");
    assert!(proxy.toxics().expect("toxics").is_empty());

    proxy
        .with_down(|| {
            assert!(TcpStream::connect(&listen).is_err(), "a down proxy accepted");
        })
        .expect("down and up");
    assert_eq!(round_trip(&listen, b"up").expect("round trip").0, b"up");

    proxy.disable().expect("disable");
    let shown = client.find_proxy("socket").expect("find");
    assert!(!shown.proxy_pack.enabled);
    let reset = client.find_and_reset_proxy("socket").expect("reset");
    assert!(reset.proxy_pack.toxics.is_empty());
    assert_eq!(round_trip(&listen, b"again").expect("round trip").0, b"again");

    reset.delete().expect("delete");
    assert!(client.find_proxy("socket").is_err());
}
