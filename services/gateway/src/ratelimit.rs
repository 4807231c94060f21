//! Per-client token-bucket rate limiting (GCRA, from the `governor` crate), as an axum
//! middleware layer: over the limit, a client gets 429 with `Retry-After`.
//!
//! A client is the subject of a valid bearer token, else its peer IP address.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use shop_kit::auth::JwtKeys;
use shop_kit::{ApiError, ProblemKind};

/// Most clients tracked before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A keyed token bucket: `rate` requests per second per client, bursts up to `burst`.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<std::time::Instant>>>,
}

/// The limiter's clock: tokio's monotonic clock, which is the system's in a real process
/// and the simulated one in a simulation (so the same seed refuses the same requests).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A limit that cannot work (zero rate or burst).
#[derive(Debug, thiserror::Error)]
#[error("rate and burst must both be at least 1")]
pub struct ZeroLimit;

impl RateLimit {
    /// `rate` requests per second per client, with bursts of up to `burst`.
    pub fn new(rate: u32, burst: u32) -> Result<Self, ZeroLimit> {
        let rate = NonZeroU32::new(rate).ok_or(ZeroLimit)?;
        let burst = NonZeroU32::new(burst).ok_or(ZeroLimit)?;
        let quota = Quota::per_second(rate).allow_burst(burst);
        Ok(Self { limiter: Arc::new(RateLimiter::new(quota, DefaultKeyedStateStore::default(), TokioClock)) })
    }

    /// Takes one token for `client`; on refusal, the seconds to wait.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if self.limiter.len() > MAX_TRACKED_CLIENTS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(TokioClock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// The middleware state: the limit and the keys that identify a client.
#[derive(Clone)]
pub struct LimitState {
    pub limit: RateLimit,
    pub keys: JwtKeys,
}

/// The client a request counts against.
fn client_of(req: &Request, keys: &JwtKeys) -> String {
    if let Ok(claims) = keys.verify_headers(req.headers()) {
        return format!("user:{}", claims.sub);
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".to_string(),
    }
}

/// Refuses requests over the client's rate with 429 and `Retry-After`.
pub async fn limit(State(state): State<LimitState>, req: Request, next: Next) -> Response {
    let client = client_of(&req, &state.keys);
    match state.limit.check(&client) {
        Ok(()) => next.run(req).await,
        Err(wait) => ApiError::new(ProblemKind::RateLimited, "too many requests from this client; slow down")
            .retry_after(wait.max(1))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_client() {
        let l = RateLimit::new(1, 3).unwrap();
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait >= 1, "{wait}");
        assert!(l.check("b").is_ok(), "clients are limited separately");
        assert!(RateLimit::new(0, 1).is_err());
    }
}
