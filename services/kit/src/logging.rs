//! JSON logs through `tracing`, one object per line, with the request's span fields
//! (trace id, request id, route) on every event logged while serving it.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the JSON log subscriber at `level` (overridable with `RUST_LOG`).
/// Calling it twice is harmless (the second call does nothing), so in-process tests
/// that start several services can call it freely.
pub fn init(service: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .flatten_event(true)
        .try_init();
    tracing::info!(service, "logging started");
}
