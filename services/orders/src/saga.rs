//! The place-order saga: reserve stock → charge → commit the reservation → `PAID`; on a
//! definite failure, or transient failures past the deadline, compensate → `CANCELLED`.
//!
//! The decisions are pure functions of the folded order ([`next_action`]) and of a
//! step's failure ([`classify`], [`on_failure`]); the [`Saga`] executor performs one step,
//! records its outcome as an event, and only then decides the next. A crash at any point
//! therefore resumes from the last recorded outcome, and every step is idempotent
//! (idempotency keys, no-op repeats) so redoing the step in flight is harmless.
//!
//! Once the payment is captured (the saga's pivot) the saga only goes forward: committing
//! is retried until it succeeds, since compensating would need the same catalog anyway.
//!
//! Invariant: a `CANCELLED` order holds no stock and has no captured charge left.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use shop_kit::breakage::{Breakage, Switch};
use shop_kit::client::ClientError;
use shop_kit::config::{ConfigError, Env};

use crate::events::{FoldError, OrderEvent, OrderState, Stage, Timestamp};
use crate::store::{Store, StoreError};
use crate::upstreams::Upstreams;

/// How patient the saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SagaConfig {
    /// How long after its creation an order may keep retrying forward
    /// (`SHOP_ORDERS_SAGA_DEADLINE`, default 30s); then it is compensated.
    pub deadline: Duration,
    /// When a forward call went unanswered, how long compensation waits before it looks
    /// for what that call did (asks for the reservation again, lists the charges), so a
    /// request still travelling lands first and is undone (`SHOP_ORDERS_SETTLE`, default 5s).
    pub settle: Duration,
    /// Attempts per drive at a step that has no deadline (commit and compensation)
    /// before the executor leaves the order to the next recovery sweep.
    pub step_attempts: u32,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self { deadline: Duration::from_secs(30), settle: Duration::from_secs(5), step_attempts: 8 }
    }
}

impl SagaConfig {
    /// Reads the saga's settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let config = Self {
            deadline: env.duration_or("SHOP_ORDERS_SAGA_DEADLINE", d.deadline)?,
            settle: env.duration_or("SHOP_ORDERS_SETTLE", d.settle)?,
            step_attempts: env.or("SHOP_ORDERS_STEP_ATTEMPTS", d.step_attempts, "a number of attempts, 1 or more")?,
        };
        if config.step_attempts == 0 {
            return Err(ConfigError::Malformed {
                var: "SHOP_ORDERS_STEP_ATTEMPTS".into(),
                value: "0".into(),
                expected: "a number of attempts, 1 or more".into(),
            });
        }
        Ok(config)
    }
}

/// What the saga does next for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reserve the items at the catalog.
    Reserve,
    /// Charge the reserved total.
    Charge { amount_minor: i64, currency: String },
    /// Commit the reservation (after the charge is captured).
    Commit { reservation_id: String },
    /// The deadline passed before the current forward step succeeded: compensate.
    GiveUp { in_doubt: bool },
    /// A reservation request may have landed unseen: ask again with the same key.
    ResolveReservation,
    /// Release the order's reservation.
    Release { reservation_id: String },
    /// A forward request may still be travelling; wait before looking for what it did.
    AwaitStragglers { until: Timestamp },
    /// Refund every captured charge of the order.
    RefundAll,
    /// Compensation is complete.
    Cancel { reason: String },
    /// The order is terminal.
    Done,
}

/// The kind of step an action is, for failure handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Reserve,
    Charge,
    Commit,
    Compensation,
}

impl Action {
    /// The kind of step this action performs.
    pub fn kind(&self) -> StepKind {
        match self {
            Self::Reserve => StepKind::Reserve,
            Self::Charge { .. } => StepKind::Charge,
            Self::Commit { .. } => StepKind::Commit,
            _ => StepKind::Compensation,
        }
    }
}

/// The next action for `order` at `now`.
pub fn next_action(order: &OrderState, now: Timestamp, config: &SagaConfig) -> Action {
    let past_deadline = now >= order.created_at.plus(config.deadline);
    match order.stage {
        Stage::Paid | Stage::Cancelled => Action::Done,
        Stage::Placed | Stage::StockReserved if past_deadline => Action::GiveUp { in_doubt: true },
        Stage::Placed => Action::Reserve,
        Stage::StockReserved => match (&order.total_minor, &order.currency) {
            (Some(amount), Some(currency)) => Action::Charge { amount_minor: *amount, currency: currency.clone() },
            // A reservation always carries its price; without one there is nothing to charge.
            _ => Action::GiveUp { in_doubt: false },
        },
        Stage::PaymentCaptured => match &order.reservation_id {
            Some(r) => Action::Commit { reservation_id: r.clone() },
            None => Action::GiveUp { in_doubt: false },
        },
        Stage::Compensating => {
            let Some(c) = &order.compensation else {
                return Action::Cancel { reason: order.reason.clone().unwrap_or_default() };
            };
            let until = c.started_at.plus(config.settle);
            let stragglers_may_land = c.in_doubt && now < until;
            if c.from == Stage::Placed && c.in_doubt && !c.reservation_resolved {
                if stragglers_may_land {
                    return Action::AwaitStragglers { until };
                }
                return Action::ResolveReservation;
            }
            if let (Some(r), false) = (&order.reservation_id, c.released) {
                return Action::Release { reservation_id: r.clone() };
            }
            if c.charge_attempted() && !c.refunded {
                if stragglers_may_land && c.from == Stage::StockReserved {
                    return Action::AwaitStragglers { until };
                }
                return Action::RefundAll;
            }
            Action::Cancel { reason: order.reason.clone().unwrap_or_else(|| "cancelled".into()) }
        }
    }
}

/// What a failed step means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The upstream said no; asking again gives the same answer.
    Definite(String),
    /// No answer, or a passing failure; the step may or may not have happened.
    Transient(String),
}

/// Reads a failed call to an upstream.
pub fn classify(step: StepKind, err: &ClientError) -> Failure {
    let Some(status) = err.status() else {
        return Failure::Transient(err.to_string());
    };
    let definite = status.is_client_error() && !matches!(status.as_u16(), 408 | 429);
    if !definite {
        return Failure::Transient(err.to_string());
    }
    let ext = |key: &str| -> String {
        match err {
            ClientError::Status { problem: Some(p), .. } => match p.extensions.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "?".into(),
            },
            _ => "?".into(),
        }
    };
    let reason = match (step, status.as_u16(), err.problem_slug()) {
        (StepKind::Reserve, 409, Some("out-of-stock")) => format!(
            "out of stock: product {} (requested {}, available {})",
            ext("product_id"),
            ext("requested"),
            ext("available")
        ),
        (StepKind::Reserve, 404, _) => format!("unknown product {}", ext("product_id")),
        (StepKind::Charge, 402, _) => format!("payment declined: {}", ext("reason")),
        (StepKind::Commit, _, _) => format!("the reservation could not be committed: {err}"),
        _ => format!("refused: {err}"),
    };
    Failure::Definite(reason)
}

/// What to do after a step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Back off and try the same step again.
    Retry,
    /// Stop going forward and compensate.
    Compensate { reason: String, in_doubt: bool },
    /// Leave the order for the next recovery sweep.
    Suspend,
}

/// The decision table for a step that failed, the `attempts`-th time in a row in this
/// drive. `doubt`: an earlier attempt of this step went unanswered, so it may still land.
pub fn on_failure(
    step: StepKind,
    failure: Failure,
    past_deadline: bool,
    attempts: u32,
    max_attempts: u32,
    doubt: bool,
) -> Verdict {
    match (step, failure) {
        (StepKind::Reserve | StepKind::Charge | StepKind::Commit, Failure::Definite(reason)) => {
            Verdict::Compensate { reason, in_doubt: doubt }
        }
        (StepKind::Reserve | StepKind::Charge, Failure::Transient(why)) => {
            if past_deadline {
                Verdict::Compensate { reason: format!("timeout: {why}"), in_doubt: true }
            } else {
                Verdict::Retry
            }
        }
        (StepKind::Commit | StepKind::Compensation, _) if attempts < max_attempts => Verdict::Retry,
        (StepKind::Commit | StepKind::Compensation, _) => Verdict::Suspend,
    }
}

/// The pause before retry number `attempt` (1-based): exponential from 50 ms, capped at
/// 2 s, with "equal jitter" (at least half the step) so a fast-failing upstream never
/// turns the loop into a busy one.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let step = Duration::from_millis(50).saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let step = step.min(Duration::from_secs(2));
    let half = step / 2;
    half + Duration::from_millis(rng.random_range(0..=half.as_millis() as u64))
}

/// Why driving an order stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("order {0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the saga produced an event its order cannot take: {0}")]
    Fold(#[from] FoldError),
}

/// An upper bound on loop turns of one drive (steps, retries, conflicts): a safety net
/// under the real bounds (the deadline and `step_attempts`).
const MAX_TURNS: u32 = 2_000;
/// The shortest per-attempt timeout of a forward call near the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);
/// The longest per-attempt timeout of any call.
const MAX_ATTEMPT: Duration = Duration::from_secs(2);
/// The longest a call without a deadline (commit, compensation) may take, retries included.
const CALL_BUDGET: Duration = Duration::from_secs(10);

/// The saga executor. At most one drive per order runs in this process; the optimistic
/// version check of the store catches any other executor (another process).
#[derive(Clone)]
pub struct Saga {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    upstreams: Upstreams,
    config: SagaConfig,
    /// Deliberate defects, debug builds only (see [`Saga::new`]).
    breakage: Breakage,
    driving: Mutex<HashSet<String>>,
}

/// How a drive begins, which says what may be in flight already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The order was just placed: no request for it was ever sent.
    Fresh,
    /// The order was driven before (maybe by a process that died): a request it sent
    /// may still be travelling.
    Resumed,
}

/// A handle that does not keep the executor alive (for the recovery worker, which
/// should stop when the service it belongs to is gone).
#[derive(Clone)]
pub struct WeakSaga(std::sync::Weak<Inner>);

impl WeakSaga {
    /// The executor, if the service still holds it.
    pub fn upgrade(&self) -> Option<Saga> {
        self.0.upgrade().map(|inner| Saga { inner })
    }
}

/// The right to drive one order, held while driving; dropping it releases the order.
pub struct Claim {
    saga: Saga,
    order_id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.saga.driving().remove(&self.order_id);
    }
}

impl Saga {
    /// An executor over `store`, calling `upstreams`, with the break switches `breakage`
    /// (honoured by debug builds only, see `shop_kit::breakage`), each of which makes one
    /// step lie while the saga otherwise runs as it should:
    ///
    /// - [`Switch::ReleasePaid`]: the commit after a captured charge releases the
    ///   reservation instead, and the order still ends `PAID`.
    /// - [`Switch::CommitCancelled`]: compensation commits the reservation instead of
    ///   releasing it, and the order still ends `CANCELLED`.
    /// - [`Switch::SkipRefund`]: compensation records the refunds without making them;
    ///   it shows when a charge was captured (a charge that timed out past the deadline
    ///   yet landed, or a commit the catalog refused).
    /// - [`Switch::SkipCompensation`]: both the release and the refunds are recorded
    ///   without being done.
    pub fn new(store: Store, upstreams: Upstreams, config: SagaConfig, breakage: Breakage) -> Self {
        let driving = Mutex::new(HashSet::new());
        Self { inner: Arc::new(Inner { store, upstreams, config, breakage, driving }) }
    }

    fn broken(&self, switch: Switch) -> bool {
        self.inner.breakage.is_broken(switch)
    }

    /// A handle that does not keep this executor alive.
    pub fn downgrade(&self) -> WeakSaga {
        WeakSaga(Arc::downgrade(&self.inner))
    }

    /// The store the saga records into.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn driving(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.driving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `order_id` unless it is being driven already.
    pub fn claim(&self, order_id: &str) -> Option<Claim> {
        self.driving()
            .insert(order_id.to_string())
            .then(|| Claim { saga: self.clone(), order_id: order_id.to_string() })
    }

    /// Drives `order_id` as far as it goes now; `None` if another drive has it.
    pub async fn drive(&self, order_id: &str, start: Start) -> Result<Option<OrderState>, SagaError> {
        match self.claim(order_id) {
            Some(claim) => self.drive_claimed(claim, start).await.map(Some),
            None => Ok(None),
        }
    }

    /// Drives a claimed order until it is terminal, or a step without a deadline has
    /// failed `step_attempts` times (the recovery sweep resumes it later).
    pub async fn drive_claimed(&self, claim: Claim, start: Start) -> Result<OrderState, SagaError> {
        let id = claim.order_id.clone();
        let store = &self.inner.store;
        let config = self.inner.config;
        let mut state = store.load(&id).await?.ok_or_else(|| SagaError::NotFound(id.clone()))?;
        let mut attempts = 0u32;
        // An attempt at the current step went unanswered: it may still land.
        let mut doubt = start == Start::Resumed;
        let mut last_error: Option<String> = None;
        for _ in 0..MAX_TURNS {
            let now = Timestamp::now();
            let deadline = state.created_at.plus(config.deadline);
            let action = next_action(&state, now, &config);
            let outcome = match &action {
                Action::Done => break,
                Action::AwaitStragglers { until } => {
                    tokio::time::sleep(now.until(*until)).await;
                    continue;
                }
                Action::GiveUp { in_doubt } => {
                    let why = last_error.take().unwrap_or_else(|| "the saga deadline passed".into());
                    Ok(OrderEvent::CompensationStarted { reason: format!("timeout: {why}"), in_doubt: *in_doubt })
                }
                _ => self.perform(&state, &action, now, deadline).await,
            };
            match outcome {
                Ok(event) => {
                    state = self.record(state, event).await?;
                    (attempts, doubt) = (0, false);
                }
                Err(failure) => {
                    attempts += 1;
                    let (Failure::Transient(why) | Failure::Definite(why)) = &failure;
                    tracing::warn!(order_id = %id, step = ?action.kind(), attempts, error = %why, "saga step failed");
                    last_error = Some(why.clone());
                    let past = Timestamp::now() >= deadline;
                    let doubt_before = doubt;
                    doubt |= matches!(failure, Failure::Transient(_));
                    match on_failure(action.kind(), failure, past, attempts, config.step_attempts, doubt_before) {
                        Verdict::Retry => {
                            let mut pause = backoff(attempts, &mut shop_kit::platform::rng());
                            if matches!(action.kind(), StepKind::Reserve | StepKind::Charge) {
                                pause = pause.min(Timestamp::now().until(deadline));
                            }
                            tokio::time::sleep(pause).await;
                        }
                        Verdict::Compensate { reason, in_doubt } => {
                            state = self.record(state, OrderEvent::CompensationStarted { reason, in_doubt }).await?;
                            (attempts, doubt) = (0, false);
                        }
                        Verdict::Suspend => break,
                    }
                }
            }
        }
        if state.stage.is_terminal() {
            tracing::info!(order_id = %id, status = state.stage.as_str(), reason = ?state.reason, "saga finished");
        }
        drop(claim);
        Ok(state)
    }

    /// Appends `event` to `state`; if another executor appended first, returns what it
    /// recorded instead (the caller re-decides from there).
    async fn record(&self, state: OrderState, event: OrderEvent) -> Result<OrderState, SagaError> {
        let next = state.apply(&event, Timestamp::now())?;
        match self.inner.store.append(&next, &event).await {
            Ok(()) => Ok(next),
            Err(StoreError::Conflict { .. }) => {
                tracing::warn!(order_id = %state.id, version = next.version, "another executor advanced the order");
                self.inner.store.load(&state.id).await?.ok_or_else(|| SagaError::NotFound(state.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Performs one step and returns the event that records its outcome.
    async fn perform(
        &self,
        order: &OrderState,
        action: &Action,
        now: Timestamp,
        deadline: Timestamp,
    ) -> Result<OrderEvent, Failure> {
        let up = &self.inner.upstreams;
        let id = order.id.as_str();
        let kind = action.kind();
        let fail = |e: ClientError| classify(kind, &e);
        match action {
            Action::Reserve => {
                let budget = now.until(deadline).max(MIN_ATTEMPT);
                let r = within(budget, "catalog", up.reserve(id, &order.items, budget.min(MAX_ATTEMPT))).await;
                let r = r.map_err(fail)?;
                Ok(OrderEvent::StockReserved { reservation_id: r.id, total_minor: r.total_minor, currency: r.currency })
            }
            Action::Charge { amount_minor, currency } => {
                let budget = now.until(deadline).max(MIN_ATTEMPT);
                let c =
                    within(budget, "payments", up.charge(id, *amount_minor, currency, budget.min(MAX_ATTEMPT))).await;
                Ok(OrderEvent::PaymentCaptured { charge_id: c.map_err(fail)?.id })
            }
            Action::Commit { reservation_id } if self.broken(Switch::ReleasePaid) => {
                within(CALL_BUDGET, "catalog", up.release(id, reservation_id)).await.map_err(fail)?;
                Ok(OrderEvent::Paid)
            }
            Action::Commit { reservation_id } => {
                within(CALL_BUDGET, "catalog", up.commit(id, reservation_id)).await.map_err(fail)?;
                Ok(OrderEvent::Paid)
            }
            Action::ResolveReservation => {
                match within(CALL_BUDGET, "catalog", up.reserve(id, &order.items, MAX_ATTEMPT)).await {
                    Ok(r) => Ok(OrderEvent::ReservationResolved { reservation_id: Some(r.id) }),
                    Err(e) => match classify(StepKind::Reserve, &e) {
                        // The catalog will not reserve for this order: nothing is held.
                        Failure::Definite(_) => Ok(OrderEvent::ReservationResolved { reservation_id: None }),
                        transient => Err(transient),
                    },
                }
            }
            Action::Release { .. } if self.broken(Switch::SkipCompensation) => Ok(OrderEvent::StockReleased),
            Action::RefundAll if self.broken(Switch::SkipCompensation) || self.broken(Switch::SkipRefund) => {
                Ok(OrderEvent::PaymentsRefunded { charge_ids: Vec::new() })
            }
            Action::Release { reservation_id } => {
                let undo = async {
                    if self.broken(Switch::CommitCancelled) {
                        up.commit(id, reservation_id).await
                    } else {
                        up.release(id, reservation_id).await
                    }
                };
                match within(CALL_BUDGET, "catalog", undo).await {
                    Ok(_) => Ok(OrderEvent::StockReleased),
                    Err(e) => match fail(e) {
                        Failure::Definite(why) => {
                            // 404: nothing to release. 409 (committed) cannot happen, as
                            // only a captured payment leads to a commit and then the saga
                            // never compensates except when the commit was refused.
                            tracing::error!(order_id = %id, reservation_id, error = %why, "release refused; treating the reservation as not held");
                            Ok(OrderEvent::StockReleased)
                        }
                        transient => Err(transient),
                    },
                }
            }
            Action::RefundAll => {
                let charges = within(CALL_BUDGET, "payments", up.charges_of(id)).await.map_err(fail)?;
                let mut refunded = Vec::new();
                for c in charges.iter().filter(|c| c.status == "captured") {
                    match within(CALL_BUDGET, "payments", up.refund(id, &c.id)).await {
                        Ok(_) => refunded.push(c.id.clone()),
                        Err(e) => match fail(e) {
                            Failure::Definite(why) => {
                                tracing::error!(order_id = %id, charge_id = %c.id, error = %why, "refund refused");
                            }
                            transient => return Err(transient),
                        },
                    }
                }
                if !refunded.is_empty() {
                    tracing::info!(order_id = %id, charges = ?refunded, "refunded");
                }
                Ok(OrderEvent::PaymentsRefunded { charge_ids: refunded })
            }
            Action::Cancel { reason } => Ok(OrderEvent::Cancelled { reason: reason.clone() }),
            Action::GiveUp { .. } | Action::AwaitStragglers { .. } | Action::Done => {
                unreachable!("handled by the executor loop")
            }
        }
    }
}

/// Runs an upstream call, giving up (as a timeout) after `budget` whatever its retries.
async fn within<T>(
    budget: Duration,
    upstream: &str,
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(budget, call).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { upstream: upstream.to_string(), after: budget }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::LineItem;
    use axum::http::StatusCode;
    use rand::SeedableRng;
    use shop_kit::error::Problem;

    const T0: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(T0 + ms)
    }

    fn config() -> SagaConfig {
        SagaConfig { deadline: Duration::from_secs(30), settle: Duration::from_secs(5), step_attempts: 3 }
    }

    fn order(events: &[OrderEvent]) -> OrderState {
        let placed = OrderEvent::Placed { user_id: "u".into(), items: vec![LineItem { product_id: 1, quantity: 1 }] };
        let all: Vec<&OrderEvent> = std::iter::once(&placed).chain(events).collect();
        OrderState::fold("o", all.into_iter().map(|e| (e, at(0)))).unwrap()
    }

    fn reserved() -> OrderEvent {
        OrderEvent::StockReserved { reservation_id: "r".into(), total_minor: 500, currency: "EUR".into() }
    }

    fn captured() -> OrderEvent {
        OrderEvent::PaymentCaptured { charge_id: "c".into() }
    }

    fn compensating(in_doubt: bool) -> OrderEvent {
        OrderEvent::CompensationStarted { reason: "why".into(), in_doubt }
    }

    #[test]
    fn forward_path() {
        let c = config();
        assert_eq!(next_action(&order(&[]), at(1), &c), Action::Reserve);
        assert_eq!(
            next_action(&order(&[reserved()]), at(1), &c),
            Action::Charge { amount_minor: 500, currency: "EUR".into() }
        );
        assert_eq!(
            next_action(&order(&[reserved(), captured()]), at(1), &c),
            Action::Commit { reservation_id: "r".into() }
        );
        assert_eq!(next_action(&order(&[reserved(), captured(), OrderEvent::Paid]), at(1), &c), Action::Done);
    }

    #[test]
    fn the_deadline_stops_forward_steps_but_not_the_commit() {
        let c = config();
        let late = at(30_000);
        assert_eq!(next_action(&order(&[]), late, &c), Action::GiveUp { in_doubt: true });
        assert_eq!(next_action(&order(&[reserved()]), late, &c), Action::GiveUp { in_doubt: true });
        assert_eq!(
            next_action(&order(&[reserved(), captured()]), late, &c),
            Action::Commit { reservation_id: "r".into() },
            "past the pivot the saga only goes forward"
        );
        assert_eq!(next_action(&order(&[]), at(29_999), &c), Action::Reserve);
    }

    #[test]
    fn compensation_after_a_definite_refusal_to_reserve_just_cancels() {
        let o = order(&[compensating(false)]);
        assert_eq!(next_action(&o, at(1), &config()), Action::Cancel { reason: "why".into() });
    }

    #[test]
    fn compensation_after_an_in_doubt_reservation_waits_asks_the_catalog_then_releases() {
        let c = config();
        // Compensation started at T0 (every event of `order` is recorded at T0).
        let o = order(&[compensating(true)]);
        assert_eq!(next_action(&o, at(1), &c), Action::AwaitStragglers { until: at(5_000) });
        assert_eq!(next_action(&o, at(5_000), &c), Action::ResolveReservation);
        let found = order(&[compensating(true), OrderEvent::ReservationResolved { reservation_id: Some("r9".into()) }]);
        assert_eq!(next_action(&found, at(1), &c), Action::Release { reservation_id: "r9".into() });
        let none = order(&[compensating(true), OrderEvent::ReservationResolved { reservation_id: None }]);
        assert_eq!(next_action(&none, at(1), &c), Action::Cancel { reason: "why".into() });
    }

    #[test]
    fn compensation_after_a_decline_releases_then_refunds_without_waiting() {
        let c = config();
        let o = order(&[reserved(), compensating(false)]);
        assert_eq!(next_action(&o, at(1), &c), Action::Release { reservation_id: "r".into() });
        let o = order(&[reserved(), compensating(false), OrderEvent::StockReleased]);
        assert_eq!(next_action(&o, at(1), &c), Action::RefundAll);
        let o = order(&[
            reserved(),
            compensating(false),
            OrderEvent::StockReleased,
            OrderEvent::PaymentsRefunded { charge_ids: vec![] },
        ]);
        assert_eq!(next_action(&o, at(1), &c), Action::Cancel { reason: "why".into() });
    }

    #[test]
    fn compensation_after_a_timed_out_charge_waits_for_stragglers() {
        let c = config();
        // Compensation started at T0 (every event of `order` is recorded at T0).
        let o = order(&[reserved(), compensating(true), OrderEvent::StockReleased]);
        assert_eq!(next_action(&o, at(1_000), &c), Action::AwaitStragglers { until: at(5_000) });
        assert_eq!(next_action(&o, at(5_000), &c), Action::RefundAll);
    }

    #[test]
    fn a_refused_commit_refunds_the_captured_charge() {
        let c = config();
        let o = order(&[reserved(), captured(), compensating(false)]);
        assert_eq!(next_action(&o, at(1), &c), Action::Release { reservation_id: "r".into() });
        let o = order(&[reserved(), captured(), compensating(false), OrderEvent::StockReleased]);
        assert_eq!(next_action(&o, at(1), &c), Action::RefundAll);
    }

    fn status_error(status: u16, slug: &str, ext: serde_json::Value) -> ClientError {
        ClientError::Status {
            upstream: "x".into(),
            status: StatusCode::from_u16(status).unwrap(),
            problem: Some(Problem {
                type_uri: format!("https://gauntlet.dev/problems/{slug}"),
                title: "t".into(),
                status,
                detail: Some("d".into()),
                instance: None,
                extensions: ext.as_object().cloned().unwrap_or_default(),
            }),
        }
    }

    #[test]
    fn upstream_answers_are_classified() {
        let oos =
            status_error(409, "out-of-stock", serde_json::json!({"product_id": 3, "requested": 5, "available": 2}));
        assert_eq!(
            classify(StepKind::Reserve, &oos),
            Failure::Definite("out of stock: product 3 (requested 5, available 2)".into())
        );
        let missing = status_error(404, "not-found", serde_json::json!({"product_id": 77}));
        assert_eq!(classify(StepKind::Reserve, &missing), Failure::Definite("unknown product 77".into()));
        let declined = status_error(402, "payment-declined", serde_json::json!({"reason": "amount over limit"}));
        assert_eq!(
            classify(StepKind::Charge, &declined),
            Failure::Definite("payment declined: amount over limit".into())
        );
        for transient in [
            status_error(503, "upstream-unavailable", serde_json::json!({})),
            status_error(500, "internal", serde_json::json!({})),
            status_error(429, "rate-limited", serde_json::json!({})),
            ClientError::Timeout { upstream: "x".into(), after: Duration::from_secs(1) },
            ClientError::Unavailable { upstream: "x".into(), reason: "refused".into() },
            ClientError::Decode { upstream: "x".into(), reason: "bad".into() },
        ] {
            assert!(matches!(classify(StepKind::Charge, &transient), Failure::Transient(_)), "{transient}");
        }
    }

    #[test]
    fn failure_decision_table() {
        let t = || Failure::Transient("slow".into());
        let d = || Failure::Definite("no".into());
        let no = |reason: &str, in_doubt| Verdict::Compensate { reason: reason.into(), in_doubt };
        for step in [StepKind::Reserve, StepKind::Charge] {
            assert_eq!(
                on_failure(step, t(), false, 99, 3, true),
                Verdict::Retry,
                "forward steps retry until the deadline"
            );
            assert_eq!(on_failure(step, t(), true, 1, 3, false), no("timeout: slow", true));
            assert_eq!(on_failure(step, d(), false, 1, 3, false), no("no", false));
            assert_eq!(
                on_failure(step, d(), false, 2, 3, true),
                no("no", true),
                "a refusal after an unanswered attempt leaves that attempt in doubt"
            );
        }
        assert_eq!(on_failure(StepKind::Commit, d(), true, 1, 3, false), no("no", false));
        for step in [StepKind::Commit, StepKind::Compensation] {
            assert_eq!(on_failure(step, t(), true, 2, 3, true), Verdict::Retry, "no deadline past the pivot");
            assert_eq!(on_failure(step, t(), false, 3, 3, true), Verdict::Suspend);
        }
        assert_eq!(on_failure(StepKind::Compensation, d(), false, 1, 3, false), Verdict::Retry);
    }

    #[test]
    fn backoff_grows_is_capped_and_never_zero() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for attempt in 1..40 {
            let d = backoff(attempt, &mut rng);
            let step = Duration::from_millis(50).saturating_mul(1 << (attempt - 1).min(10)).min(Duration::from_secs(2));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    /// A model of what catalog and payments hold for one order, to run the decision
    /// table against every mix of outcomes (including requests that land late, within
    /// the settle time) and check the saga's promise.
    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Stock {
            Held,
            Committed,
            Released,
        }

        /// What happened to one call: it worked and we heard; it was refused; we heard
        /// nothing and it did its work; we heard nothing and it lands `n` ms later.
        #[derive(Clone, Copy, Debug)]
        enum Outcome {
            Ok,
            Refused,
            LostAfterWork,
            LandsLater(u64),
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            prop_oneof![
                6 => Just(Outcome::Ok),
                1 => Just(Outcome::Refused),
                2 => Just(Outcome::LostAfterWork),
                2 => (0u64..5_000).prop_map(Outcome::LandsLater),
            ]
        }

        /// The two services as far as one order goes; calls go through the same keys.
        #[derive(Debug, Default)]
        struct World {
            reservation: Option<Stock>,
            /// `Some(true)` captured, `Some(false)` refunded.
            charge: Option<bool>,
            declined: bool,
            /// Requests still travelling: when they land, and whether they reserve or charge.
            travelling: Vec<(Timestamp, bool)>,
        }

        impl World {
            fn reserve(&mut self) {
                // A refused reservation does not use up its key; a held one answers again.
                self.reservation.get_or_insert(Stock::Held);
            }

            fn charge(&mut self) {
                if !self.declined {
                    self.charge.get_or_insert(true);
                }
            }

            fn land(&mut self, now: Timestamp) {
                let (due, later): (Vec<_>, Vec<_>) = self.travelling.iter().partition(|(at, _)| *at <= now);
                self.travelling = later;
                for (_, is_reserve) in due {
                    if is_reserve {
                        self.reserve();
                    } else {
                        self.charge();
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3_000))]

            #[test]
            fn every_run_ends_paid_with_everything_or_cancelled_with_nothing(
                outcomes in proptest::collection::vec((outcome(), 0u64..4_000), 1..120),
            ) {
                // A short deadline, so that many runs reach it.
                let config = SagaConfig { deadline: Duration::from_secs(6), ..config() };
                let mut now = at(0);
                let mut order = order(&[]);
                let mut world = World::default();
                let mut script = outcomes.into_iter().chain(std::iter::repeat((Outcome::Ok, 1_000)));
                let mut attempts = 0;
                let mut doubt = false;
                for _ in 0..1_000 {
                    let (outcome, elapsed) = script.next().unwrap();
                    now = now.plus(Duration::from_millis(elapsed));
                    world.land(now);
                    let action = next_action(&order, now, &config);
                    let is_reserve = matches!(action, Action::Reserve | Action::ResolveReservation);
                    // Once the key holds a result, the service answers it again.
                    let outcome = match (outcome, &action) {
                        (Outcome::Refused, Action::Reserve | Action::ResolveReservation) if world.reservation.is_some() => Outcome::Ok,
                        (Outcome::Refused, Action::Charge { .. }) if world.charge.is_some() => Outcome::Ok,
                        (Outcome::Ok | Outcome::LostAfterWork, Action::Charge { .. }) if world.declined => Outcome::Refused,
                        // Past the pivot, and in compensation, nobody refuses.
                        (Outcome::Refused, a) if !matches!(a, Action::Reserve | Action::ResolveReservation | Action::Charge { .. }) => Outcome::Ok,
                        (o, _) => o,
                    };
                    if let Outcome::LandsLater(ms) = outcome {
                        if is_reserve || matches!(action, Action::Charge { .. }) {
                            world.travelling.push((now.plus(Duration::from_millis(ms)), is_reserve));
                        }
                    }
                    let worked = matches!(outcome, Outcome::Ok | Outcome::LostAfterWork);
                    let lost = || Err(Failure::Transient("lost".into()));
                    let event = match &action {
                        Action::Done => break,
                        Action::AwaitStragglers { until } => { now = *until; continue; }
                        Action::GiveUp { in_doubt } => Ok(OrderEvent::CompensationStarted { reason: "timeout".into(), in_doubt: *in_doubt }),
                        Action::Reserve | Action::ResolveReservation => {
                            if worked { world.reserve(); }
                            match outcome {
                                Outcome::Ok if matches!(action, Action::Reserve) => Ok(reserved()),
                                Outcome::Ok => Ok(OrderEvent::ReservationResolved { reservation_id: Some("r".into()) }),
                                Outcome::Refused if matches!(action, Action::Reserve) => Err(Failure::Definite("out of stock".into())),
                                Outcome::Refused => Ok(OrderEvent::ReservationResolved { reservation_id: None }),
                                _ => lost(),
                            }
                        }
                        Action::Charge { .. } => {
                            if worked { world.charge(); }
                            match outcome {
                                Outcome::Ok => Ok(captured()),
                                Outcome::Refused => { world.declined = world.charge.is_none(); Err(Failure::Definite("declined".into())) }
                                _ => lost(),
                            }
                        }
                        Action::Commit { .. } => {
                            if worked { world.reservation = Some(Stock::Committed); }
                            if matches!(outcome, Outcome::Ok) { Ok(OrderEvent::Paid) } else { lost() }
                        }
                        Action::Release { .. } => {
                            if worked && world.reservation == Some(Stock::Held) { world.reservation = Some(Stock::Released); }
                            if matches!(outcome, Outcome::Ok) { Ok(OrderEvent::StockReleased) } else { lost() }
                        }
                        Action::RefundAll => {
                            if worked && world.charge == Some(true) { world.charge = Some(false); }
                            if matches!(outcome, Outcome::Ok) { Ok(OrderEvent::PaymentsRefunded { charge_ids: vec![] }) } else { lost() }
                        }
                        Action::Cancel { reason } => Ok(OrderEvent::Cancelled { reason: reason.clone() }),
                    };
                    let event = match event {
                        Ok(e) => { (attempts, doubt) = (0, false); e }
                        Err(f) => {
                            attempts += 1;
                            let past = now >= order.created_at.plus(config.deadline);
                            let doubt_before = doubt;
                            doubt |= matches!(f, Failure::Transient(_));
                            match on_failure(action.kind(), f, past, attempts, config.step_attempts, doubt_before) {
                                Verdict::Retry => continue,
                                // A later sweep resumes it.
                                Verdict::Suspend => { attempts = 0; continue; }
                                Verdict::Compensate { reason, in_doubt } => {
                                    (attempts, doubt) = (0, false);
                                    OrderEvent::CompensationStarted { reason, in_doubt }
                                }
                            }
                        }
                    };
                    order = order.apply(&event, now).expect("the saga only produces events its order takes");
                }
                prop_assert!(order.stage.is_terminal(), "stuck at {:?}", order.stage);
                // Whatever was still travelling lands now.
                world.land(now.plus(Duration::from_secs(3600)));
                match order.stage {
                    Stage::Paid => {
                        prop_assert_eq!(world.reservation, Some(Stock::Committed));
                        prop_assert_eq!(world.charge, Some(true));
                    }
                    _ => {
                        prop_assert!(matches!(world.reservation, None | Some(Stock::Released)), "stock held: {:?}", world);
                        prop_assert!(world.charge != Some(true), "money taken: {:?}", world);
                    }
                }
            }
        }
    }
}
