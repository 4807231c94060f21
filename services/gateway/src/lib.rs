//! The gateway: the shop's only public edge.
//!
//! It routes `/api/v1/...` to the four services, checks JWTs (register and login are
//! public), limits each client's request rate, calls every upstream through the kit's
//! resilient client (timeouts, retries of safe requests, circuit breakers), and serves
//! the last good product listing, marked stale, when the catalog is down.

mod fallback;
mod forward;
mod ratelimit;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use shop_kit::auth::JwtKeys;
use shop_kit::client::{ClientConfig, UpstreamClient};
use shop_kit::metrics::Metrics;
use shop_kit::{Env, ServiceApp, ServiceConfig};

pub use ratelimit::RateLimit;

/// What every gateway handler shares.
#[derive(Clone)]
pub struct Gateway {
    users: UpstreamClient,
    catalog: UpstreamClient,
    orders: UpstreamClient,
    /// Present where the deployment has the event-driven half (`SHOP_UPSTREAM_NOTIFICATIONS`).
    notifications: Option<UpstreamClient>,
    keys: JwtKeys,
    products: Arc<fallback::StaleCache>,
}

/// Builds the gateway from its configuration: upstreams `users`, `catalog`, `orders`
/// and, optionally, `notifications`;
/// `SHOP_GATEWAY_RATE` (requests per second per client, default 200) and
/// `SHOP_GATEWAY_BURST` (default 400).
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let rate: u32 = env.or("SHOP_GATEWAY_RATE", 200, "a whole number of requests per second, at least 1")?;
    let burst: u32 = env.or("SHOP_GATEWAY_BURST", rate.saturating_mul(2), "a whole number of requests, at least 1")?;
    let limit = RateLimit::new(rate, burst).map_err(|e| shop_kit::ConfigError::Malformed {
        var: "SHOP_GATEWAY_RATE".into(),
        value: format!("{rate} (burst {burst})"),
        expected: e.to_string(),
    })?;
    let client = |name: &str, timeout: Duration| -> Result<UpstreamClient, shop_kit::ConfigError> {
        let cfg = ClientConfig { timeout, ..ClientConfig::default() };
        Ok(UpstreamClient::new(name, &config.upstream(name)?, cfg, Some(metrics.clone())))
    };
    let gateway = Gateway {
        users: client("users", Duration::from_secs(2))?,
        catalog: client("catalog", Duration::from_secs(1))?,
        // Placing an order waits for the saga (up to the orders service's inline deadline).
        orders: client("orders", Duration::from_secs(6))?,
        notifications: match config.upstreams.contains_key("notifications") {
            true => Some(client("notifications", Duration::from_secs(2))?),
            false => None,
        },
        keys: JwtKeys::hs256(&config.jwt_secret),
        products: Arc::new(fallback::StaleCache::new(1024)),
    };
    let router = routes::router(gateway, limit);
    Ok(ServiceApp::new(config, metrics, router))
}
