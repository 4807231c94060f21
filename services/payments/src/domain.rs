//! Charges, refunds and the decline rule, and the parsing of what clients send.
//!
//! Constructors check their input once ("parse, don't validate"); the store only ever
//! sees valid values. A [`FieldError`] names the request field that was wrong.

use serde::Serialize;
use serde_json::Value;
use shop_kit::money::{Currency, Minor};

/// The longest order id string accepted, in characters.
pub const MAX_ORDER_ID_CHARS: usize = 128;
/// The `Idempotency-Key` of a request (the kit's rule: 1 to [`MAX_KEY_LEN`] visible ASCII characters).
pub use shop_kit::idempotency::{IdempotencyKey, MAX_KEY_LEN};

/// A client mistake in one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// An error in `field` saying `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The error for a field the request left out.
    pub fn missing(field: &str) -> Self {
        Self::new(field, format!("{field} is required"))
    }
}

/// The order a charge is for: a positive integer or a short string, answered back in
/// the form it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum OrderRef {
    Number(i64),
    Text(String),
}

impl OrderRef {
    /// Parses `order_id` from a JSON value.
    pub fn parse(v: &Value) -> Result<Self, FieldError> {
        match v {
            Value::Number(n) => n.as_i64().filter(|&n| n > 0).map(Self::Number).ok_or_else(Self::bad),
            Value::String(s) => Self::parse_text(s).map(Self::Text),
            _ => Err(Self::bad()),
        }
    }

    /// Checks an order id given as text (a query parameter, or a JSON string).
    pub fn parse_text(s: &str) -> Result<String, FieldError> {
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_ORDER_ID_CHARS || s.trim() != s || s.chars().any(char::is_control) {
            return Err(Self::bad());
        }
        Ok(s.to_string())
    }

    fn bad() -> FieldError {
        FieldError::new(
            "order_id",
            format!("must be a positive integer or a string of 1 to {MAX_ORDER_ID_CHARS} characters"),
        )
    }

    /// The id as text, for storage and queries.
    pub fn as_text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(s) => s.clone(),
        }
    }

    /// Rebuilds the reference from storage.
    pub fn from_stored(text: String, is_number: bool) -> Self {
        match text.parse() {
            Ok(n) if is_number => Self::Number(n),
            _ => Self::Text(text),
        }
    }

    /// True when the client sent the id as a JSON number.
    pub fn is_number(&self) -> bool {
        matches!(self, Self::Number(_))
    }
}

/// A request to charge an order, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: OrderRef,
    pub amount: Minor,
    pub currency: Currency,
}

impl ChargeRequest {
    /// Checks the amount (positive, bounded) and the currency (ISO 4217).
    pub fn parse(order_id: OrderRef, amount_minor: i64, currency: &str) -> Result<Self, FieldError> {
        let amount = Minor::positive(amount_minor).map_err(|e| FieldError::new("amount_minor", e.to_string()))?;
        let currency = Currency::parse(currency).map_err(|e| FieldError::new("currency", e.to_string()))?;
        Ok(Self { order_id, amount, currency })
    }

    /// A canonical text of the request: two requests are "the same" for an idempotency
    /// key exactly when their fingerprints are equal.
    pub fn fingerprint(&self) -> String {
        serde_json::json!({
            "order_id": self.order_id,
            "amount_minor": self.amount.get(),
            "currency": self.currency.as_str(),
        })
        .to_string()
    }
}

/// Where a charge is: `captured` → `refunded`; `declined` is final from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeStatus {
    Captured,
    Refunded,
    Declined,
}

impl ChargeStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ChargeStatus; 3] = [Self::Captured, Self::Refunded, Self::Declined];

    /// The status as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Captured => "captured",
            Self::Refunded => "refunded",
            Self::Declined => "declined",
        }
    }

    /// The status spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A charge as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub id: i64,
    pub order_id: OrderRef,
    pub amount_minor: i64,
    pub currency: String,
    pub status: ChargeStatus,
    pub refunded_minor: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// Why it was declined; reported in the 402 problem, not in the charge itself.
    #[serde(skip)]
    pub decline_reason: Option<String>,
}

/// Which charges the (simulated) card network declines, so tests can make payments
/// fail deterministically (`SHOP_PAYMENTS_DECLINE_OVER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeclineRule {
    /// Amounts strictly above this are declined; `None` accepts every amount.
    pub over: Option<i64>,
}

impl DeclineRule {
    /// The reason `request` is declined, or `None` when it is accepted.
    pub fn judge(&self, request: &ChargeRequest) -> Option<String> {
        let limit = self.over?;
        (request.amount.get() > limit).then(|| format!("amount {} exceeds the limit of {limit}", request.amount))
    }
}

/// Totals of the ledger, for checkers: money in, money back, and counts by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    /// Every amount ever captured, including those later refunded.
    pub captured_minor: i64,
    /// Every amount refunded.
    pub refunded_minor: i64,
    /// `captured_minor - refunded_minor`: what the shop holds.
    pub net_minor: i64,
    pub by_status: ByStatus,
}

/// How many charges are in each status now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByStatus {
    pub captured: i64,
    pub refunded: i64,
    pub declined: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charge_requests_check_amount_and_currency() {
        let order = || OrderRef::Number(1);
        let r = ChargeRequest::parse(order(), 1250, "eur").unwrap();
        assert_eq!((r.amount.get(), r.currency.as_str()), (1250, "EUR"));
        assert_eq!(ChargeRequest::parse(order(), 0, "EUR").unwrap_err().field, "amount_minor");
        assert_eq!(ChargeRequest::parse(order(), -5, "EUR").unwrap_err().field, "amount_minor");
        assert_eq!(ChargeRequest::parse(order(), 1_000_000_000_001, "EUR").unwrap_err().field, "amount_minor");
        assert_eq!(ChargeRequest::parse(order(), 5, "EU").unwrap_err().field, "currency");
    }

    #[test]
    fn fingerprints_tell_bodies_apart() {
        let a = ChargeRequest::parse(OrderRef::Number(1), 100, "EUR").unwrap();
        let same = ChargeRequest::parse(OrderRef::Number(1), 100, "eur").unwrap();
        assert_eq!(a.fingerprint(), same.fingerprint());
        for other in [
            ChargeRequest::parse(OrderRef::Number(2), 100, "EUR").unwrap(),
            ChargeRequest::parse(OrderRef::Text("1".into()), 100, "EUR").unwrap(),
            ChargeRequest::parse(OrderRef::Number(1), 101, "EUR").unwrap(),
            ChargeRequest::parse(OrderRef::Number(1), 100, "USD").unwrap(),
        ] {
            assert_ne!(a.fingerprint(), other.fingerprint(), "{other:?}");
        }
    }

    #[test]
    fn the_decline_rule_is_strictly_over() {
        let rule = DeclineRule { over: Some(1000) };
        let at = |n| ChargeRequest::parse(OrderRef::Number(1), n, "EUR").unwrap();
        assert_eq!(rule.judge(&at(1000)), None);
        assert!(rule.judge(&at(1001)).unwrap().contains("1000"));
        assert_eq!(DeclineRule::default().judge(&at(i64::from(u32::MAX))), None);
    }

    #[test]
    fn order_refs_keep_their_form() {
        assert_eq!(OrderRef::parse(&json!(7)).unwrap(), OrderRef::Number(7));
        assert_eq!(OrderRef::parse(&json!("o-7")).unwrap(), OrderRef::Text("o-7".into()));
        for bad in [json!(0), json!(1.5), json!(""), json!("x "), json!(true), json!("x".repeat(129))] {
            assert_eq!(OrderRef::parse(&bad).unwrap_err().field, "order_id", "{bad}");
        }
        let n = OrderRef::Number(42);
        assert_eq!(OrderRef::from_stored(n.as_text(), n.is_number()), n);
        assert_eq!(OrderRef::from_stored("42".into(), false), OrderRef::Text("42".into()));
    }

    #[test]
    fn statuses_round_trip() {
        for s in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
