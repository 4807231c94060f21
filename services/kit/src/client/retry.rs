//! Retries: only for requests that are safe to repeat, with exponential backoff and full
//! jitter, and within a retry budget so retries never multiply an outage.
//!
//! The policy plugs into tower's [`Retry`](tower::retry::Retry) middleware; the budget is
//! tower's [`TpsBudget`]: every original request deposits, every retry withdraws, so
//! retries stay under a fixed share of traffic (plus a small floor per second).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;

use super::{ClientError, UpstreamRequest, UpstreamResponse};

/// How many times and how patiently a call is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The backoff before the first retry is drawn from `[0, base]`, then doubles.
    pub base: Duration,
    /// The largest backoff drawn.
    pub cap: Duration,
    /// Retries allowed as a share of original requests (0.2 = 20%).
    pub budget_ratio: f32,
    /// Retries always allowed per second, whatever the ratio says.
    pub budget_floor_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(500),
            budget_ratio: 0.2,
            budget_floor_per_sec: 5,
        }
    }
}

impl RetryConfig {
    /// The shared budget these settings describe.
    pub fn budget(&self) -> Arc<TpsBudget> {
        Arc::new(TpsBudget::new(Duration::from_secs(10), self.budget_floor_per_sec, self.budget_ratio))
    }
}

/// The backoff before retry number `retry` (1-based): uniform in `[0, min(cap, base·2^(retry-1))]`
/// ("full jitter", which spreads retries of many clients apart).
pub fn full_jitter(config: &RetryConfig, retry: u32, rng: &mut impl Rng) -> Duration {
    let exp = config.base.saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX));
    let ceiling = exp.min(config.cap);
    if ceiling.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos() as u64))
}

/// tower's retry policy for upstream calls.
#[derive(Clone)]
pub struct RetryPolicy {
    config: RetryConfig,
    budget: Arc<TpsBudget>,
    attempt: u32,
    on_retry: Arc<dyn Fn() + Send + Sync>,
}

impl RetryPolicy {
    /// A policy drawing on `budget`; `on_retry` is called for every retry made (metrics).
    pub fn new(config: RetryConfig, budget: Arc<TpsBudget>, on_retry: impl Fn() + Send + Sync + 'static) -> Self {
        Self { config, budget, attempt: 1, on_retry: Arc::new(on_retry) }
    }
}

/// Is this failed attempt worth repeating (if the request is safe to repeat)?
fn is_transient(result: &Result<UpstreamResponse, ClientError>) -> bool {
    match result {
        Ok(r) => matches!(r.status.as_u16(), 502..=504),
        Err(ClientError::Timeout { .. } | ClientError::Unavailable { .. }) => true,
        Err(_) => false,
    }
}

impl Policy<UpstreamRequest, UpstreamResponse, ClientError> for RetryPolicy {
    type Future = BoxFuture<'static, ()>;

    fn retry(
        &mut self,
        req: &mut UpstreamRequest,
        result: &mut Result<UpstreamResponse, ClientError>,
    ) -> Option<Self::Future> {
        if !req.is_retryable() || !is_transient(result) || self.attempt >= self.config.max_attempts {
            return None;
        }
        if !self.budget.withdraw() {
            return None;
        }
        let delay = full_jitter(&self.config, self.attempt, &mut crate::platform::rng());
        self.attempt += 1;
        (self.on_retry)();
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, req: &UpstreamRequest) -> Option<UpstreamRequest> {
        req.is_retryable().then(|| req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn backoff_stays_under_the_exponential_ceiling(retry in 1u32..40, seed: u64) {
            let config = RetryConfig::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = full_jitter(&config, retry, &mut rng);
            let ceiling = config.base.saturating_mul(2u32.saturating_pow(retry - 1)).min(config.cap);
            prop_assert!(d <= ceiling, "{d:?} > {ceiling:?}");
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let config = RetryConfig { base: Duration::from_millis(100), ..Default::default() };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| full_jitter(&config, 1, &mut rng)).collect();
        let low = delays.iter().filter(|d| **d < Duration::from_millis(50)).count();
        assert!((60..140).contains(&low), "about half below the midpoint, got {low}");
    }

    #[test]
    fn the_budget_caps_retries() {
        let config = RetryConfig { budget_ratio: 0.1, budget_floor_per_sec: 0, ..Default::default() };
        let budget = config.budget();
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert!((8..=12).contains(&allowed), "about 10% of 100 requests, got {allowed}");
    }
}
