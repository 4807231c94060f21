//! The order events notifications consumes, as this consumer reads them: only the
//! fields it needs, unknown ones ignored, so orders may add fields freely.

use serde::Deserialize;

/// The longest id or user id accepted from a message.
const MAX_ID: usize = 200;

/// What happened to an order, as far as notifications cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `ORDER_PLACED`: nothing to tell yet.
    Placed,
    /// `ORDER_PAID`: the order is paid; the user is told.
    Paid,
    /// `ORDER_CANCELLED`: the order was cancelled; the user is told why.
    Cancelled,
}

impl EventKind {
    /// The name in the message's `type` and in the notification's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "ORDER_PLACED",
            Self::Paid => "ORDER_PAID",
            Self::Cancelled => "ORDER_CANCELLED",
        }
    }

    /// Whether the order ended with it (paid or cancelled): a notification is due.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Paid | Self::Cancelled)
    }
}

/// One order event, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEvent {
    /// Unique per event, the same on every redelivery: the de-duplication key.
    pub event_id: String,
    pub kind: EventKind,
    pub order_id: String,
    pub user_id: String,
    pub total_minor: Option<i64>,
    pub currency: Option<String>,
    pub reason: Option<String>,
}

/// Why a message is not an order event notifications can act on (a poison message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an order event: {0}")]
pub struct BadEvent(pub String);

#[derive(Deserialize)]
struct Wire {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    order_id: String,
    user_id: String,
    total_minor: Option<i64>,
    currency: Option<String>,
    reason: Option<String>,
}

impl OrderEvent {
    /// Parses a message body.
    pub fn parse(payload: &[u8]) -> Result<Self, BadEvent> {
        let w: Wire = serde_json::from_slice(payload).map_err(|e| BadEvent(e.to_string()))?;
        let kind = match w.kind.as_str() {
            "ORDER_PLACED" => EventKind::Placed,
            "ORDER_PAID" => EventKind::Paid,
            "ORDER_CANCELLED" => EventKind::Cancelled,
            other => return Err(BadEvent(format!("unknown type {other:?}"))),
        };
        for (field, value) in [("event_id", &w.event_id), ("order_id", &w.order_id), ("user_id", &w.user_id)] {
            if value.trim().is_empty() || value.len() > MAX_ID {
                return Err(BadEvent(format!("{field} must be 1 to {MAX_ID} characters, got {value:?}")));
            }
        }
        Ok(Self {
            event_id: w.event_id,
            kind,
            order_id: w.order_id,
            user_id: w.user_id,
            total_minor: w.total_minor,
            currency: w.currency,
            reason: w.reason,
        })
    }

    /// What the user is told, for a terminal event.
    pub fn text(&self) -> String {
        match self.kind {
            EventKind::Paid => match (self.total_minor, &self.currency) {
                (Some(t), Some(c)) => {
                    format!("Your order {} is paid: {}.{:02} {c}.", self.order_id, t / 100, (t % 100).abs())
                }
                _ => format!("Your order {} is paid.", self.order_id),
            },
            EventKind::Cancelled => match &self.reason {
                Some(r) => format!("Your order {} was cancelled: {r}.", self.order_id),
                None => format!("Your order {} was cancelled.", self.order_id),
            },
            EventKind::Placed => format!("Your order {} was placed.", self.order_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_event_parses_and_ignores_fields_it_does_not_know() {
        let body = br#"{"event_id":"o1:4","type":"ORDER_PAID","order_id":"o1","user_id":"7","version":4,
            "status":"PAID","total_minor":3725,"currency":"EUR","reason":null,"at":"2026-12-02T07:33:55.025Z","new":1}"#;
        let e = OrderEvent::parse(body).unwrap();
        assert_eq!((e.event_id.as_str(), e.kind, e.user_id.as_str()), ("o1:4", EventKind::Paid, "7"));
        assert_eq!(e.text(), "Your order o1 is paid: 37.25 EUR.");
        assert!(e.kind.is_terminal());
    }

    #[test]
    fn poison_messages_say_why() {
        for (body, why) in [
            (&b"not json"[..], "expected"),
            (br#"{"event_id":"e","type":"ORDER_LOST","order_id":"o","user_id":"u"}"#, "unknown type"),
            (br#"{"event_id":"","type":"ORDER_PAID","order_id":"o","user_id":"u"}"#, "event_id must be"),
            (br#"{"event_id":"e","type":"ORDER_PAID","order_id":"o"}"#, "user_id"),
        ] {
            let err = OrderEvent::parse(body).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
