//! A circuit breaker per upstream replica: a pure state machine plus a tower layer.
//!
//! Closed: calls flow, outcomes land in a rolling window of time buckets. When the
//! window holds at least `min_requests` outcomes and the failure rate reaches
//! `failure_rate`, the breaker opens. Open: calls fail fast for `open_for`. Then it is
//! half-open: up to `probes` calls go through at once; one failure re-opens it, `probes`
//! successes close it with a fresh window.
//!
//! Time is passed in (`now`), never read inside the state machine, so property tests
//! drive it through any sequence of events and instants.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{ClientError, UpstreamResponse};
use crate::metrics::BreakerGauge;

/// When a breaker opens and how it recovers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    /// The span of the rolling window of outcomes.
    pub window: Duration,
    /// How many buckets the window is cut into.
    pub buckets: u32,
    /// The fewest outcomes in the window before the failure rate is trusted.
    pub min_requests: u32,
    /// The failure rate (0..=1) at which the breaker opens.
    pub failure_rate: f64,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Concurrent probes while half-open, and successes needed to close.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            buckets: 10,
            min_requests: 10,
            failure_rate: 0.5,
            open_for: Duration::from_secs(3),
            probes: 3,
        }
    }
}

/// Where a breaker is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl BreakerState {
    /// The state as the metrics export it.
    pub fn gauge(self) -> BreakerGauge {
        match self {
            Self::Closed => BreakerGauge::Closed,
            Self::Open { .. } => BreakerGauge::Open,
            Self::HalfOpen { .. } => BreakerGauge::HalfOpen,
        }
    }
}

/// A call refused because the breaker is open (or half-open with all probes out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    tick: u64,
    successes: u32,
    failures: u32,
}

/// The breaker state machine.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    epoch: Instant,
    buckets: Vec<Bucket>,
}

impl CircuitBreaker {
    /// A closed breaker whose clock starts at `epoch`.
    pub fn new(config: BreakerConfig, epoch: Instant) -> Self {
        let n = config.buckets.max(1) as usize;
        Self {
            config,
            state: BreakerState::Closed,
            epoch,
            buckets: vec![Bucket { tick: u64::MAX, ..Default::default() }; n],
        }
    }

    /// The current state, moving from open to half-open when the open time is over.
    pub fn state(&mut self, now: Instant) -> BreakerState {
        if let BreakerState::Open { until } = self.state {
            if now >= until {
                self.state = BreakerState::HalfOpen { in_flight: 0, successes: 0 };
            }
        }
        self.state
    }

    /// Would a call be let through now? (Does not take a probe slot.)
    pub fn is_accepting(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { in_flight, .. } => in_flight < self.config.probes,
        }
    }

    /// Asks to make a call; a granted call must be reported with [`Self::on_result`]
    /// or [`Self::on_cancel`].
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Rejected> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open { .. } => Err(Rejected),
            BreakerState::HalfOpen { in_flight, successes } if in_flight < self.config.probes => {
                self.state = BreakerState::HalfOpen { in_flight: in_flight + 1, successes };
                Ok(())
            }
            BreakerState::HalfOpen { .. } => Err(Rejected),
        }
    }

    /// Reports the outcome of a granted call.
    pub fn on_result(&mut self, now: Instant, success: bool) {
        match self.state(now) {
            BreakerState::Closed => {
                self.record(now, success);
                let (ok, failed) = self.totals(now);
                let total = ok + failed;
                if total >= self.config.min_requests && f64::from(failed) >= self.config.failure_rate * f64::from(total)
                {
                    self.trip(now);
                }
            }
            BreakerState::HalfOpen { in_flight, successes } => {
                if !success {
                    self.trip(now);
                } else if successes + 1 >= self.config.probes {
                    self.reset_window();
                    self.state = BreakerState::Closed;
                } else {
                    self.state =
                        BreakerState::HalfOpen { in_flight: in_flight.saturating_sub(1), successes: successes + 1 };
                }
            }
            // A call granted before the breaker opened: its outcome no longer matters.
            BreakerState::Open { .. } => {}
        }
    }

    /// Reports that a granted call was abandoned before it had an outcome.
    pub fn on_cancel(&mut self, now: Instant) {
        if let BreakerState::HalfOpen { in_flight, successes } = self.state(now) {
            self.state = BreakerState::HalfOpen { in_flight: in_flight.saturating_sub(1), successes };
        }
    }

    /// Outcomes (successes, failures) in the rolling window ending at `now`.
    pub fn totals(&self, now: Instant) -> (u32, u32) {
        let tick = self.tick(now);
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.tick != u64::MAX && b.tick + n > tick && b.tick <= tick)
            .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures))
    }

    fn trip(&mut self, now: Instant) {
        self.state = BreakerState::Open { until: now + self.config.open_for };
        self.reset_window();
    }

    fn reset_window(&mut self) {
        for b in &mut self.buckets {
            *b = Bucket { tick: u64::MAX, ..Default::default() };
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        let width = self.config.window.as_nanos() / u128::from(self.config.buckets.max(1));
        (now.saturating_duration_since(self.epoch).as_nanos() / width.max(1)) as u64
    }

    fn record(&mut self, now: Instant, success: bool) {
        let tick = self.tick(now);
        let n = self.buckets.len();
        let b = &mut self.buckets[(tick % n as u64) as usize];
        if b.tick != tick {
            *b = Bucket { tick, successes: 0, failures: 0 };
        }
        if success {
            b.successes += 1;
        } else {
            b.failures += 1;
        }
    }
}

/// A breaker shared by every clone of a service, with a hook for state changes.
#[derive(Clone)]
pub struct SharedBreaker {
    inner: Arc<Mutex<CircuitBreaker>>,
    on_change: Arc<dyn Fn(BreakerState) + Send + Sync>,
}

impl SharedBreaker {
    /// A closed breaker; `on_change` sees every state it moves to (e.g. to set a gauge).
    pub fn new(config: BreakerConfig, on_change: impl Fn(BreakerState) + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CircuitBreaker::new(config, Instant::now()))),
            on_change: Arc::new(on_change),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut CircuitBreaker, Instant) -> T) -> T {
        let now = Instant::now();
        let mut b = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = b.state(now).gauge();
        let out = f(&mut b, now);
        let after = b.state(now);
        drop(b);
        if after.gauge() != before {
            (self.on_change)(after);
        }
        out
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.with(|b, now| b.state(now))
    }

    /// Would a call be let through now?
    pub fn is_accepting(&self) -> bool {
        self.with(|b, now| b.is_accepting(now))
    }
}

/// Wraps a service with a [`SharedBreaker`]: fail fast when open; transport errors and
/// 5xx answers count as failures.
#[derive(Clone)]
pub struct BreakerLayer {
    breaker: SharedBreaker,
    upstream: Arc<str>,
}

impl BreakerLayer {
    /// A layer guarding calls to `upstream` with `breaker`.
    pub fn new(upstream: &str, breaker: SharedBreaker) -> Self {
        Self { breaker, upstream: upstream.into() }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breakered<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Breakered { inner, breaker: self.breaker.clone(), upstream: self.upstream.clone() }
    }
}

/// A service behind a circuit breaker.
#[derive(Clone)]
pub struct Breakered<S> {
    inner: S,
    breaker: SharedBreaker,
    upstream: Arc<str>,
}

impl<S> Breakered<S> {
    /// The breaker guarding this service.
    pub fn breaker(&self) -> &SharedBreaker {
        &self.breaker
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Reports a cancelled call to the breaker unless it was resolved.
struct Grant(Option<SharedBreaker>);

impl Grant {
    fn resolve(mut self, success: bool) {
        if let Some(b) = self.0.take() {
            b.with(|b, now| b.on_result(now, success));
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.with(|b, now| b.on_cancel(now));
        }
    }
}

impl<S, Req> Service<Req> for Breakered<S>
where
    S: Service<Req, Response = UpstreamResponse, Error = ClientError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    type Response = UpstreamResponse;
    type Error = ClientError;
    type Future = BoxFuture<'static, Result<UpstreamResponse, ClientError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let granted = self.breaker.with(|b, now| b.try_acquire(now));
        let upstream = self.upstream.clone();
        if granted.is_err() {
            return Box::pin(async move {
                Err(ClientError::Unavailable { upstream: upstream.to_string(), reason: "circuit breaker open".into() })
            });
        }
        let grant = Grant(Some(self.breaker.clone()));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let success = matches!(&result, Ok(r) if !r.status.is_server_error());
            grant.resolve(success);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            buckets: 10,
            min_requests: 4,
            failure_rate: 0.5,
            open_for: Duration::from_secs(2),
            probes: 2,
        }
    }

    #[test]
    fn opens_on_failure_rate_then_probes_and_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        for i in 0..3 {
            b.try_acquire(t0).unwrap();
            b.on_result(t0, i == 0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed, "below min_requests");
        b.try_acquire(t0).unwrap();
        b.on_result(t0, false);
        assert!(matches!(b.state(t0), BreakerState::Open { .. }), "3 of 4 failed");
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(1)), Err(Rejected));
        let t1 = t0 + Duration::from_secs(2);
        b.try_acquire(t1).unwrap();
        b.try_acquire(t1).unwrap();
        assert_eq!(b.try_acquire(t1), Err(Rejected), "only two probes at once");
        b.on_result(t1, true);
        b.on_result(t1, true);
        assert_eq!(b.state(t1), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        for _ in 0..4 {
            b.try_acquire(t0).unwrap();
            b.on_result(t0, false);
        }
        let t1 = t0 + Duration::from_secs(3);
        b.try_acquire(t1).unwrap();
        b.on_result(t1, false);
        assert_eq!(b.state(t1), BreakerState::Open { until: t1 + Duration::from_secs(2) });
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0);
        for _ in 0..3 {
            b.try_acquire(t0).unwrap();
            b.on_result(t0, false);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.totals(later), (0, 0));
        b.try_acquire(later).unwrap();
        b.on_result(later, false);
        assert_eq!(b.state(later), BreakerState::Closed, "only one failure is in the window now");
    }

    #[derive(Clone, Debug)]
    enum Event {
        Call { ok: bool },
        Cancel,
        Wait(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => any::<bool>().prop_map(|ok| Event::Call { ok }),
            1 => Just(Event::Cancel),
            2 => (0u64..4000).prop_map(Event::Wait),
        ]
    }

    proptest! {
        /// Against any sequence of calls, cancellations and waits: an open breaker never
        /// lets a call through before its time; half-open never has more probes out than
        /// allowed; the breaker only opens with at least `min_requests` outcomes of which
        /// the failure share reached the threshold, or on a failed probe; and it never
        /// stays open past `open_for`.
        #[test]
        fn state_machine_invariants(events in proptest::collection::vec(event(), 1..200)) {
            let config = cfg();
            let t0 = Instant::now();
            let mut now = t0;
            let mut b = CircuitBreaker::new(config, t0);
            for e in events {
                match e {
                    Event::Wait(ms) => now += Duration::from_millis(ms),
                    Event::Cancel => {
                        let before = b.state(now);
                        if b.try_acquire(now).is_ok() {
                            b.on_cancel(now);
                            prop_assert_eq!(b.state(now), before, "a cancelled call gives its slot back");
                        }
                    }
                    Event::Call { ok } => {
                        let before = b.state(now);
                        let (s, f) = b.totals(now);
                        match b.try_acquire(now) {
                            Err(Rejected) => {
                                match before {
                                    BreakerState::Open { until } => prop_assert!(now < until),
                                    BreakerState::HalfOpen { in_flight, .. } => prop_assert!(in_flight >= config.probes),
                                    BreakerState::Closed => prop_assert!(false, "closed breaker rejected a call"),
                                }
                                continue;
                            }
                            Ok(()) => {
                                let was_open = matches!(before, BreakerState::Open { .. });
                                prop_assert!(!was_open, "an open breaker let a call through");
                            }
                        }
                        let half_open = matches!(b.state(now), BreakerState::HalfOpen { .. });
                        b.on_result(now, ok);
                        if let BreakerState::Open { until } = b.state(now) {
                            prop_assert_eq!(until, now + config.open_for);
                            if !half_open {
                                let (s, f) = (s + u32::from(ok), f + u32::from(!ok));
                                prop_assert!(s + f >= config.min_requests);
                                prop_assert!(f64::from(f) >= config.failure_rate * f64::from(s + f));
                            } else {
                                prop_assert!(!ok, "a successful probe never opens the breaker");
                            }
                        }
                    }
                }
                if let BreakerState::HalfOpen { in_flight, .. } = b.state(now) {
                    prop_assert!(in_flight <= config.probes);
                }
            }
        }
    }
}
