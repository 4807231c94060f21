//! A trivial HTTP target for benchmarking load generators: `GET /` answers `ok`.
//!
//! `cargo run --release -p gauntlet --example load_target -- [PORT]` listens on
//! 127.0.0.1 (port 0 picks a free one) and prints `listening on 127.0.0.1:PORT`.
//! It stops by itself after an hour so that a forgotten one does not linger.

use std::time::Duration;

use axum::routing::get;
use axum::Router;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new().route("/", get(|| async { "ok" }));
        let serve = axum::serve(listener, app);
        tokio::select! {
            r = serve => r,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
        }
    })
}
