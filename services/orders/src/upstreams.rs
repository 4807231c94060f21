//! Typed calls to the two services the saga drives: catalog (reservations) and payments
//! (charges), over the kit's resilient [`UpstreamClient`].
//!
//! Every call that changes state carries an idempotency key derived from the order id,
//! so a retry, a second executor or a resumed saga never reserves or charges twice.

use std::time::Duration;

use axum::http::Method;
use serde::{Deserialize, Deserializer, Serialize};
use shop_kit::client::{ClientError, UpstreamClient, UpstreamRequest};

use crate::events::LineItem;

/// A catalog reservation, as far as orders cares.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Reservation {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub status: String,
    pub total_minor: i64,
    pub currency: String,
}

/// A payments charge, as far as orders cares.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Charge {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub amount_minor: i64,
}

#[derive(Deserialize)]
struct ChargeList {
    items: Vec<Charge>,
}

#[derive(Serialize)]
struct ReserveBody<'a> {
    order_id: &'a str,
    items: &'a [LineItem],
}

#[derive(Serialize)]
struct ChargeBody<'a> {
    order_id: &'a str,
    amount_minor: i64,
    currency: &'a str,
}

/// The clients of the services orders calls.
#[derive(Clone)]
pub struct Upstreams {
    pub catalog: UpstreamClient,
    pub payments: UpstreamClient,
}

impl Upstreams {
    /// Reserves the order's items (key `<order_id>:reserve`); repeating it returns the
    /// same reservation.
    pub async fn reserve(
        &self,
        order_id: &str,
        items: &[LineItem],
        timeout: Duration,
    ) -> Result<Reservation, ClientError> {
        let req = UpstreamRequest::json(Method::POST, "/v1/reservations", &ReserveBody { order_id, items })
            .idempotency_key(&format!("{order_id}:reserve"))
            .timeout(timeout);
        self.catalog.call(req).await
    }

    /// Commits a reservation: the stock is sold. Repeating it is a no-op.
    pub async fn commit(&self, order_id: &str, reservation_id: &str) -> Result<Reservation, ClientError> {
        let req = UpstreamRequest::new(Method::POST, format!("/v1/reservations/{reservation_id}/commit"))
            .idempotency_key(&format!("{order_id}:commit"));
        self.catalog.call(req).await
    }

    /// Releases a reservation: the stock is available again. Repeating it is a no-op.
    pub async fn release(&self, order_id: &str, reservation_id: &str) -> Result<Reservation, ClientError> {
        let req = UpstreamRequest::new(Method::POST, format!("/v1/reservations/{reservation_id}/release"))
            .idempotency_key(&format!("{order_id}:release"));
        self.catalog.call(req).await
    }

    /// Charges the order's total (key `<order_id>:charge`); repeating it never charges twice.
    pub async fn charge(
        &self,
        order_id: &str,
        amount_minor: i64,
        currency: &str,
        timeout: Duration,
    ) -> Result<Charge, ClientError> {
        let body = ChargeBody { order_id, amount_minor, currency };
        let req = UpstreamRequest::json(Method::POST, "/v1/charges", &body)
            .idempotency_key(&format!("{order_id}:charge"))
            .timeout(timeout);
        self.payments.call(req).await
    }

    /// Every charge payments holds for the order, whatever its status.
    pub async fn charges_of(&self, order_id: &str) -> Result<Vec<Charge>, ClientError> {
        let list: ChargeList =
            self.payments.call(UpstreamRequest::get(format!("/v1/charges?order_id={order_id}"))).await?;
        Ok(list.items)
    }

    /// Refunds a charge in full. Repeating it is a no-op.
    pub async fn refund(&self, order_id: &str, charge_id: &str) -> Result<Charge, ClientError> {
        let req = UpstreamRequest::new(Method::POST, format!("/v1/charges/{charge_id}/refund"))
            .idempotency_key(&format!("{order_id}:refund:{charge_id}"));
        self.payments.call(req).await
    }
}

/// Accepts an id sent as a string or a number, and refuses one that could not be put
/// in a URL path as it is (so an upstream's answer can never steer our next request).
fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(serde::de::Error::custom(format!("an id must be a string or a number, got {other}"))),
    };
    let safe = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if safe {
        Ok(id)
    } else {
        Err(serde::de::Error::custom(format!("id {id:?} has characters that cannot go in a URL path")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_strings_or_numbers_but_must_be_path_safe() {
        let r: Reservation =
            serde_json::from_str(r#"{"id": 42, "status": "held", "total_minor": 5, "currency": "EUR"}"#).unwrap();
        assert_eq!(r.id, "42");
        let c: Charge = serde_json::from_str(r#"{"id": "c-1", "status": "captured", "amount_minor": 5}"#).unwrap();
        assert_eq!(c.id, "c-1");
        for bad in [r#""../x""#, r#""a/b""#, r#""""#, "null", "[1]"] {
            let json = format!(r#"{{"id": {bad}, "status": "captured"}}"#);
            assert!(serde_json::from_str::<Charge>(&json).is_err(), "{bad}");
        }
    }
}
