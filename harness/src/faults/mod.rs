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
//! - [`spec`]: the scenario-facing fault vocabulary (`api->db downstream
//!   latency(latency=100ms) at 10s for 30s`).
//!
//! # Semantics, where they differ from Toxiproxy
//!
//! - Every random choice comes from a generator seeded by the server seed, the proxy
//!   name, the toxic's name and its revision, and by a stable identity of what it
//!   decides for:
//!   - An HTTP toxic decides per request (toxicity and percentage), keyed by the request
//!     (method, target, `Idempotency-Key` or `X-Request-Id`, and its occurrence on the
//!     proxy), whatever connection carries it.
//!   - A TCP toxic that acts on a share of the traffic (`toxicity < 1`) or draws at
//!     random (latency jitter, slicer sizes) decides per request too on a link that
//!     carries HTTP/1.1, keyed exactly like the HTTP toxics: upstream for the request's
//!     bytes, downstream for the response to it (responses are framed and matched to the
//!     requests forwarded, in order). A latency's jitter is drawn once per request.
//!     `latency`, `bandwidth` and `slicer` act on that one exchange; `timeout`,
//!     `reset_peer` and `limit_data` draw per request until one is touched and act from
//!     that request on the rest of the connection, which they end; `slow_close`, which
//!     acts on the connection's end only, is decided by the connection's first request.
//!     Two runs with one seed so make the same decisions for the same requests however
//!     pooled clients interleave, except that which request is first on a pooled
//!     connection (for `slow_close`) depends on the interleaving.
//!   - A link carries HTTP/1.1 when the first read from its client begins with a request
//!     line (`GET /path HTTP/1.1`); a toxic added to an open HTTP link starts at the next
//!     request line. Requests are framed only while such a toxic is on the proxy, and
//!     bytes of another protocol are never held back.
//!   - Elsewhere the key is the connection's ordinal on its proxy, in accept order: on
//!     links that are not HTTP (the NATS broker edge), for bytes before a connection's
//!     first request (a `timeout` on a connection opened and left idle), and for a
//!     response to a request sent before the toxic came. There the same seed makes the
//!     same decisions only when connections open in the same order; a latency's jitter
//!     is drawn per byte offset, so it does not depend on how bytes were split into
//!     reads. A toxic acting on every connection alike (`toxicity` 1, no random draw)
//!     needs no key and frames nothing.
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
//! (e.g. `"POST"`, default any) and `path_prefix` (e.g. `"/v1/items"`, default any).
//!
//! - `http_abort`: `status_code` (default 503) and `body` (default empty). A touched
//!   request is not forwarded; the proxy answers it itself with that status, a
//!   `x-gauntlet-fault: http_abort` header and keeps the connection open.
//! - `http_delay`: `delay` in milliseconds. A touched request is forwarded that much later.
//!
//! Two more damage the stream, on either direction (Toxiproxy has neither):
//!
//! - `loss`: lost TCP segments, modelled: the stream is cut into `segment_size`-byte
//!   segments (default 1448) by byte offset, each lost with `probability` (`0..=1`) or,
//!   with `burst_enter` above 0, in Gilbert–Elliott bursts (`burst_exit`, `burst_loss`);
//!   a lost segment and the bytes after it are held for the retransmission, `rto` ms
//!   (default 200) doubling per lost retransmission up to `max_rto` (default 1600).
//! - `corrupt`: flips one bit in each byte chosen with probability `rate` (`0..=1`);
//!   `spare_head` (a boolean) leaves HTTP request and status lines and headers intact.
//!
//! Both draw from the seed per segment and per byte offset, per request on HTTP links,
//! and count what they did in `/metrics` (`gauntlet_proxy_segments_lost_total` by
//! `rto_ms`, `gauntlet_proxy_bytes_corrupted_total`).
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
