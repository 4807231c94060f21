//! The order's event model and its projection: what happened to an order, and the state
//! those facts fold into.
//!
//! Pure: no I/O, no clock. The store records events; the saga decides the next event
//! from the folded state; the API shows the folded state as an [`Order`].

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant, in whole milliseconds since the Unix epoch, shown as RFC 3339.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = shop_kit::platform::unix_millis();
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The instant `ms` milliseconds after the epoch.
    pub fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> u64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }

    /// How long from `self` until `later` (zero if `later` is not later).
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    /// Parses the RFC 3339 form this type displays.
    pub fn parse(s: &str) -> Option<Self> {
        let t = humantime::parse_rfc3339(s).ok()?;
        let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
        u64::try_from(ms).ok().map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time")))
    }
}

/// One line of an order: a product and how many of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub product_id: u64,
    pub quantity: u32,
}

/// A fact about an order. Appended once, never changed; the order's state is their fold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderEvent {
    /// The order was accepted; the saga starts.
    Placed { user_id: String, items: Vec<LineItem> },
    /// The catalog holds the stock; the reservation prices the order.
    StockReserved { reservation_id: String, total_minor: i64, currency: String },
    /// Payments captured the order's total.
    PaymentCaptured { charge_id: String },
    /// The reservation was committed: the order is paid and its stock sold.
    Paid,
    /// The saga gave up going forward. `in_doubt`: the last forward step may have
    /// happened without us hearing of it (it timed out), so compensation must look for it.
    CompensationStarted { reason: String, in_doubt: bool },
    /// After an in-doubt reservation, the catalog was asked (same key) what it holds.
    ReservationResolved { reservation_id: Option<String> },
    /// The reservation was released (or there was nothing to release).
    StockReleased,
    /// Every captured charge of the order was refunded.
    PaymentsRefunded { charge_ids: Vec<String> },
    /// Compensation finished: no stock held, no money taken.
    Cancelled { reason: String },
}

impl OrderEvent {
    /// The event's type name, as stored in the `type` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "PLACED",
            Self::StockReserved { .. } => "STOCK_RESERVED",
            Self::PaymentCaptured { .. } => "PAYMENT_CAPTURED",
            Self::Paid => "PAID",
            Self::CompensationStarted { .. } => "COMPENSATION_STARTED",
            Self::ReservationResolved { .. } => "RESERVATION_RESOLVED",
            Self::StockReleased => "STOCK_RELEASED",
            Self::PaymentsRefunded { .. } => "PAYMENTS_REFUNDED",
            Self::Cancelled { .. } => "CANCELLED",
        }
    }
}

/// Where an order is in its saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Placed,
    StockReserved,
    PaymentCaptured,
    Compensating,
    Paid,
    Cancelled,
}

impl Stage {
    /// The stage's name, as stored in the projection's `stage` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::StockReserved => "STOCK_RESERVED",
            Self::PaymentCaptured => "PAYMENT_CAPTURED",
            Self::Compensating => "COMPENSATING",
            Self::Paid => "PAID",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// The status the API shows: only the terminal stages are visible as such.
    pub fn status(self) -> Status {
        match self {
            Self::Paid => Status::Paid,
            Self::Cancelled => Status::Cancelled,
            _ => Status::Pending,
        }
    }

    /// True once the saga has nothing left to do.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Paid | Self::Cancelled)
    }
}

/// An order's status as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Paid,
    Cancelled,
}

impl Status {
    /// The status's name, as stored in the projection's `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Paid => "PAID",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// How far compensation has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compensation {
    /// The stage the saga was in when it gave up going forward.
    pub from: Stage,
    /// The last forward step's outcome is unknown.
    pub in_doubt: bool,
    pub started_at: Timestamp,
    pub reservation_resolved: bool,
    pub released: bool,
    pub refunded: bool,
}

impl Compensation {
    /// A charge may exist: the saga got as far as asking payments.
    pub fn charge_attempted(&self) -> bool {
        matches!(self.from, Stage::StockReserved | Stage::PaymentCaptured)
    }
}

/// The fold of an order's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub id: String,
    pub user_id: String,
    pub items: Vec<LineItem>,
    pub stage: Stage,
    pub total_minor: Option<i64>,
    pub currency: Option<String>,
    pub reservation_id: Option<String>,
    pub charge_id: Option<String>,
    pub reason: Option<String>,
    pub compensation: Option<Compensation>,
    /// The version of the last event folded in (the first event is version 1).
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Events that do not fold: a bug, or a database edited by hand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    #[error("order has no events")]
    Empty,
    #[error("the first event of an order must be PLACED, found {0}")]
    NotPlacedFirst(&'static str),
    #[error("event {event} cannot follow stage {stage:?}")]
    InvalidTransition { stage: Stage, event: &'static str },
}

impl OrderState {
    /// The state right after `Placed`.
    pub fn placed(id: &str, user_id: &str, items: Vec<LineItem>, at: Timestamp) -> Self {
        Self {
            id: id.to_string(),
            user_id: user_id.to_string(),
            items,
            stage: Stage::Placed,
            total_minor: None,
            currency: None,
            reservation_id: None,
            charge_id: None,
            reason: None,
            compensation: None,
            version: 1,
            created_at: at,
            updated_at: at,
        }
    }

    /// Folds an order's events, in version order, with the times they were recorded.
    pub fn fold<'a>(
        id: &str,
        events: impl IntoIterator<Item = (&'a OrderEvent, Timestamp)>,
    ) -> Result<Self, FoldError> {
        let mut events = events.into_iter();
        let mut state = match events.next() {
            None => return Err(FoldError::Empty),
            Some((OrderEvent::Placed { user_id, items }, at)) => Self::placed(id, user_id, items.clone(), at),
            Some((other, _)) => return Err(FoldError::NotPlacedFirst(other.kind())),
        };
        for (event, at) in events {
            state = state.apply(event, at)?;
        }
        Ok(state)
    }

    /// The state after `event`, recorded at `at`, as the next version.
    pub fn apply(&self, event: &OrderEvent, at: Timestamp) -> Result<Self, FoldError> {
        use OrderEvent as E;
        let mut next = self.clone();
        let invalid = || FoldError::InvalidTransition { stage: self.stage, event: event.kind() };
        match (self.stage, event) {
            (Stage::Placed, E::StockReserved { reservation_id, total_minor, currency }) => {
                next.stage = Stage::StockReserved;
                next.reservation_id = Some(reservation_id.clone());
                next.total_minor = Some(*total_minor);
                next.currency = Some(currency.clone());
            }
            (Stage::StockReserved, E::PaymentCaptured { charge_id }) => {
                next.stage = Stage::PaymentCaptured;
                next.charge_id = Some(charge_id.clone());
            }
            (Stage::PaymentCaptured, E::Paid) => next.stage = Stage::Paid,
            (
                from @ (Stage::Placed | Stage::StockReserved | Stage::PaymentCaptured),
                E::CompensationStarted { reason, in_doubt },
            ) => {
                next.stage = Stage::Compensating;
                next.reason = Some(reason.clone());
                next.compensation = Some(Compensation {
                    from,
                    in_doubt: *in_doubt,
                    started_at: at,
                    reservation_resolved: false,
                    released: false,
                    refunded: false,
                });
            }
            (Stage::Compensating, E::ReservationResolved { reservation_id }) => {
                let c = next.compensation.as_mut().ok_or_else(invalid)?;
                c.reservation_resolved = true;
                if reservation_id.is_some() {
                    next.reservation_id = reservation_id.clone();
                }
            }
            (Stage::Compensating, E::StockReleased) => {
                next.compensation.as_mut().ok_or_else(invalid)?.released = true;
            }
            (Stage::Compensating, E::PaymentsRefunded { .. }) => {
                next.compensation.as_mut().ok_or_else(invalid)?.refunded = true;
            }
            (Stage::Compensating, E::Cancelled { reason }) => {
                next.stage = Stage::Cancelled;
                next.reason = Some(reason.clone());
            }
            _ => return Err(invalid()),
        }
        next.version = self.version + 1;
        next.updated_at = at;
        Ok(next)
    }

    /// The order as the API shows it.
    pub fn to_order(&self) -> Order {
        Order {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            status: self.stage.status(),
            items: self.items.clone(),
            total_minor: self.total_minor,
            currency: self.currency.clone(),
            reservation_id: self.reservation_id.clone(),
            charge_id: self.charge_id.clone(),
            reason: self.reason.clone(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// An order as the API shows it (the `orders` projection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub status: Status,
    pub items: Vec<LineItem>,
    pub total_minor: Option<i64>,
    pub currency: Option<String>,
    pub reservation_id: Option<String>,
    pub charge_id: Option<String>,
    pub reason: Option<String>,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    fn placed() -> OrderEvent {
        OrderEvent::Placed { user_id: "u1".into(), items: vec![LineItem { product_id: 3, quantity: 2 }] }
    }

    fn reserved() -> OrderEvent {
        OrderEvent::StockReserved { reservation_id: "r1".into(), total_minor: 1234, currency: "EUR".into() }
    }

    fn fold(events: &[OrderEvent]) -> Result<OrderState, FoldError> {
        OrderState::fold("o1", events.iter().enumerate().map(|(i, e)| (e, t(i as u64 * 10))))
    }

    #[test]
    fn happy_path_folds_to_paid() {
        let s = fold(&[placed(), reserved(), OrderEvent::PaymentCaptured { charge_id: "c1".into() }, OrderEvent::Paid])
            .unwrap();
        assert_eq!(s.stage, Stage::Paid);
        assert_eq!(s.version, 4);
        assert_eq!(s.created_at, t(0));
        assert_eq!(s.updated_at, t(30));
        let o = s.to_order();
        assert_eq!(o.status, Status::Paid);
        assert_eq!((o.total_minor, o.currency.as_deref()), (Some(1234), Some("EUR")));
        assert_eq!((o.reservation_id.as_deref(), o.charge_id.as_deref()), (Some("r1"), Some("c1")));
        assert_eq!(o.reason, None);
    }

    #[test]
    fn non_terminal_stages_show_as_pending() {
        for (events, stage) in [
            (vec![placed()], Stage::Placed),
            (vec![placed(), reserved()], Stage::StockReserved),
            (
                vec![placed(), OrderEvent::CompensationStarted { reason: "x".into(), in_doubt: false }],
                Stage::Compensating,
            ),
        ] {
            let s = fold(&events).unwrap();
            assert_eq!(s.stage, stage);
            assert_eq!(s.to_order().status, Status::Pending);
            assert!(!s.stage.is_terminal());
        }
    }

    #[test]
    fn compensation_records_where_it_started_and_each_step() {
        let mut events = vec![
            placed(),
            reserved(),
            OrderEvent::CompensationStarted { reason: "timeout: payments".into(), in_doubt: true },
        ];
        let s = fold(&events).unwrap();
        let c = s.compensation.clone().unwrap();
        assert_eq!((c.from, c.in_doubt, c.started_at), (Stage::StockReserved, true, t(20)));
        assert!(c.charge_attempted());
        assert_eq!(s.reason.as_deref(), Some("timeout: payments"));
        events.push(OrderEvent::StockReleased);
        events.push(OrderEvent::PaymentsRefunded { charge_ids: vec!["c9".into()] });
        let s = fold(&events).unwrap();
        let c = s.compensation.clone().unwrap();
        assert!(c.released && c.refunded && !c.reservation_resolved);
        events.push(OrderEvent::Cancelled { reason: "timeout: payments".into() });
        let s = fold(&events).unwrap();
        assert_eq!(s.to_order().status, Status::Cancelled);
        assert_eq!(s.version, 6);
    }

    #[test]
    fn a_resolved_reservation_is_remembered_for_release() {
        let s = fold(&[
            placed(),
            OrderEvent::CompensationStarted { reason: "timeout".into(), in_doubt: true },
            OrderEvent::ReservationResolved { reservation_id: Some("r7".into()) },
        ])
        .unwrap();
        assert_eq!(s.reservation_id.as_deref(), Some("r7"));
        assert!(s.compensation.unwrap().reservation_resolved);
        assert_eq!(s.stage, Stage::Compensating);
    }

    #[test]
    fn invalid_histories_do_not_fold() {
        assert_eq!(fold(&[]), Err(FoldError::Empty));
        assert_eq!(fold(&[reserved()]), Err(FoldError::NotPlacedFirst("STOCK_RESERVED")));
        assert_eq!(
            fold(&[placed(), OrderEvent::Paid]),
            Err(FoldError::InvalidTransition { stage: Stage::Placed, event: "PAID" })
        );
        assert!(fold(&[placed(), placed()]).is_err());
        assert!(
            fold(&[placed(), OrderEvent::Cancelled { reason: "x".into() }]).is_err(),
            "cancel only after compensating"
        );
        let paid = [placed(), reserved(), OrderEvent::PaymentCaptured { charge_id: "c".into() }, OrderEvent::Paid];
        let mut after_paid = paid.to_vec();
        after_paid.push(OrderEvent::CompensationStarted { reason: "late".into(), in_doubt: false });
        assert!(fold(&after_paid).is_err(), "a paid order is never compensated");
    }

    #[test]
    fn events_round_trip_through_json_with_their_type() {
        let all = [
            placed(),
            reserved(),
            OrderEvent::PaymentCaptured { charge_id: "c".into() },
            OrderEvent::Paid,
            OrderEvent::CompensationStarted { reason: "r".into(), in_doubt: true },
            OrderEvent::ReservationResolved { reservation_id: None },
            OrderEvent::StockReleased,
            OrderEvent::PaymentsRefunded { charge_ids: vec!["a".into()] },
            OrderEvent::Cancelled { reason: "r".into() },
        ];
        for e in all {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["type"], e.kind());
            assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), e);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_millis_and_round_trip() {
        let ts = Timestamp::from_millis(1_764_229_477_123);
        assert_eq!(ts.to_string(), "2025-11-27T07:44:37.123Z");
        assert_eq!(Timestamp::parse(&ts.to_string()), Some(ts));
        assert_eq!(ts.plus(Duration::from_secs(1)).millis(), 1_764_229_478_123);
        assert_eq!(ts.until(ts.plus(Duration::from_millis(5))), Duration::from_millis(5));
        assert_eq!(ts.plus(Duration::from_millis(5)).until(ts), Duration::ZERO);
    }
}
