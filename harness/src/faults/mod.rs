//! Fault injection: the Toxiproxy HTTP API, an async client for it, and an embedded
//! Toxiproxy-compatible server built on a TCP proxy engine with live toxic chains.
//!
//! The harness injects every network fault through the Toxiproxy 2.x HTTP API, so it
//! works against the real Toxiproxy server as well as against the embedded one
//! ([`ProxyServer`], also `gauntlet proxy`), and any Toxiproxy client works against the
//! embedded one.
//!
//! # Map
//!
//! - [`model`]: the typed API values (proxies, toxics, their JSON shapes) and the strict
//!   parsers the server uses on request bodies.
//! - [`error`]: the API errors with Toxiproxy's messages and status codes.
//! - [`engine`]: the TCP proxy engine: one listener per proxy, and per connection and
//!   direction a link that runs the current toxic chain, which may change while the
//!   connection is open.
//! - [`toxics`]: one file per toxic, each a small scheduling stage.
//! - [`api`]: the axum router serving the Toxiproxy HTTP API over an [`engine::Engine`].
//! - [`server`]: binds the API and runs it ([`ProxyServer`]).
//! - [`client`]: the async client, with typed toxics and typed errors.
//! - [`spec`]: the scenario-facing fault vocabulary (`orders->payments downstream
//!   latency(latency=100ms) at 10s for 30s`).
//!
//! # Semantics, where they differ from Toxiproxy
//!
//! - Every random choice of a TCP toxic (toxicity per connection, latency jitter per
//!   byte offset, slicer sizes) comes from a generator seeded by the server seed, the
//!   proxy name, the connection's ordinal on its proxy, the toxic's name and its
//!   revision: the same seed and the same order of connections give the same decisions.
//!   An HTTP toxic decides per request (toxicity and percentage), keyed by the seed, the
//!   proxy, the toxic and the request (method, target, `Idempotency-Key` or
//!   `X-Request-Id`, and its occurrence on the proxy), whatever connection carries it.
//! - `http_abort`'s answer is written after the responses owed to the requests before
//!   it on the connection (responses are framed while answers are owed), and HTTP toxics
//!   added to an open connection start at the next request boundary.
//! - Delays are kept to well under a millisecond (a timer thread finishes tokio's
//!   1 ms-tick sleeps).
//! - Negative attribute values, a toxicity outside `0..=1` and attributes of the wrong
//!   JSON type are refused with a 400 naming the field (Toxiproxy accepts some of them).
//! - End of stream is forwarded as a TCP half-close, so a client that half-closes still
//!   gets its response.
//! - Toxics are scheduling stages, not sleeping goroutines: what a toxic holds back waits
//!   in a bounded queue (4 MiB per direction, then the source is no longer read), and
//!   removing or updating a toxic releases at once what the link held back, without loss.
//! - `bandwidth` takes a rate of at least 1 KB/s (Toxiproxy loops on 0); `slicer` takes
//!   `average_size >= 1` and `size_variation < average_size`, as Toxiproxy documents.
//! - A listen or upstream address without a host (Go's `:8080`) means `127.0.0.1`.
//! - With no toxic acting on a connection, bytes move socket to socket with `splice(2)`
//!   on Linux (no copy through user space); the chain is still watched between batches.
//! - Error bodies are `application/json` (Toxiproxy sends the same JSON as `text/plain`).
//! - `/populate` answers `"proxies": []` rather than `null` when nothing was created.
//!
//! # Gauntlet extensions: HTTP-aware toxics
//!
//! Two extra toxic types work per HTTP/1.1 request rather than per byte. They apply to
//! the `upstream` stream only (client to server), where the engine parses request framing
//! (`Content-Length` and `chunked` bodies, keep-alive connections). Both take
//! `percentage` (share of matching requests touched, `0..=100`, default 100), `method`
//! (e.g. `"POST"`, default any) and `path_prefix` (e.g. `"/v1/orders"`, default any).
//!
//! - `http_abort`: `status_code` (default 503) and `body` (default empty). A touched
//!   request is not forwarded; the proxy answers it itself with that status, a
//!   `x-gauntlet-fault: http_abort` header and keeps the connection open.
//! - `http_delay`: `delay` in milliseconds. A touched request is forwarded that much later.
//!
//! Limits: requests are assumed not pipelined (the abort answer is written after any
//! response already travelling to the client); a connection whose bytes do not parse as
//! HTTP/1.1, or that upgrades (`CONNECT`, `Upgrade`), is passed through untouched.

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod engine;
pub mod error;
pub mod model;
pub mod server;
pub mod spec;
pub mod toxics;

mod json;
mod metrics;
mod seed;

pub use client::{ClientError, ToxiproxyClient};
pub use engine::Engine;
pub use error::ApiError;
pub use model::{Proxy, ProxyConfig, Stream, Toxic, ToxicKind};
pub use server::{ProxyServer, ServerError};
pub use spec::EdgeFault;
