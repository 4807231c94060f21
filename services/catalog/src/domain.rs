//! Products, stock and reservations, and the parsing of what clients send into them.
//!
//! Constructors check their input once ("parse, don't validate"); the store only ever
//! sees valid values. A [`FieldError`] names the request field that was wrong.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use shop_kit::money::{Currency, Minor};

/// Bounds on what one reservation may ask for.
pub const MAX_ITEMS: usize = 50;
/// Quantity bounds of one reservation line.
pub const QUANTITY: std::ops::RangeInclusive<i64> = 1..=1000;
/// The most stock one product may be created with.
pub const MAX_STOCK: i64 = 1_000_000_000;
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

/// A product as clients see it; `stock` is what is available to reserve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub price_minor: i64,
    pub currency: String,
    pub stock: i64,
}

/// Where a product's units are; `initial_stock = available + reserved + sold` always.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StockLevel {
    pub id: i64,
    pub initial_stock: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

impl StockLevel {
    /// True when no unit was lost or invented and none is negative.
    pub fn is_conserved(&self) -> bool {
        self.available >= 0
            && self.reserved >= 0
            && self.sold >= 0
            && self.available + self.reserved + self.sold == self.initial_stock
    }
}

/// A product to create, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub price: Minor,
    pub currency: Currency,
    pub stock: i64,
}

impl NewProduct {
    /// Checks each field: a SKU of 1–64 letters, digits, `.`, `_` or `-`; a name of
    /// 1–200 characters; a positive price; an ISO currency; stock 0 to [`MAX_STOCK`].
    pub fn parse(sku: &str, name: &str, price_minor: i64, currency: &str, stock: i64) -> Result<Self, FieldError> {
        let sku = sku.trim();
        if sku.is_empty() || sku.len() > 64 || !sku.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(FieldError::new("sku", "must be 1 to 64 letters, digits, '.', '_' or '-'"));
        }
        let name = name.trim();
        let name_chars = name.chars().count();
        if name_chars == 0 || name_chars > 200 || name.chars().any(char::is_control) {
            return Err(FieldError::new("name", "must be 1 to 200 characters, without control characters"));
        }
        let price = Minor::positive(price_minor).map_err(|e| FieldError::new("price_minor", e.to_string()))?;
        let currency = Currency::parse(currency).map_err(|e| FieldError::new("currency", e.to_string()))?;
        if !(0..=MAX_STOCK).contains(&stock) {
            return Err(FieldError::new("stock", format!("must be 0 to {MAX_STOCK}, got {stock}")));
        }
        Ok(Self { sku: sku.into(), name: name.into(), price, currency, stock })
    }
}

/// The order a reservation or a charge is for: a positive integer or a short string,
/// answered back in the form it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum OrderRef {
    Number(i64),
    Text(String),
}

impl OrderRef {
    /// Parses `order_id` from a JSON value.
    pub fn parse(v: &Value) -> Result<Self, FieldError> {
        let bad = || {
            FieldError::new(
                "order_id",
                format!("must be a positive integer or a string of 1 to {MAX_ORDER_ID_CHARS} characters"),
            )
        };
        match v {
            Value::Number(n) => n.as_i64().filter(|&n| n > 0).map(Self::Number).ok_or_else(bad),
            Value::String(s) => {
                let chars = s.chars().count();
                if chars == 0 || chars > MAX_ORDER_ID_CHARS || s.trim() != s || s.chars().any(char::is_control) {
                    return Err(bad());
                }
                Ok(Self::Text(s.clone()))
            }
            _ => Err(bad()),
        }
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

/// One line of a reservation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i64,
}

/// A request to hold stock for an order, checked: 1 to [`MAX_ITEMS`] lines, positive
/// product ids, quantities in [`QUANTITY`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRequest {
    pub order_id: OrderRef,
    pub lines: Vec<Line>,
}

impl ReservationRequest {
    /// Checks the lines; `lines` holds `(product_id, quantity)` as the client sent them.
    pub fn parse(order_id: OrderRef, lines: &[(Option<i64>, Option<i64>)]) -> Result<Self, FieldError> {
        if lines.is_empty() || lines.len() > MAX_ITEMS {
            return Err(FieldError::new("items", format!("must hold 1 to {MAX_ITEMS} items, got {}", lines.len())));
        }
        let lines = lines
            .iter()
            .enumerate()
            .map(|(i, &(product_id, quantity))| {
                let product_id = product_id.ok_or_else(|| FieldError::missing(&format!("items[{i}].product_id")))?;
                let quantity = quantity.ok_or_else(|| FieldError::missing(&format!("items[{i}].quantity")))?;
                if product_id <= 0 {
                    return Err(FieldError::new(format!("items[{i}].product_id"), "must be a positive id"));
                }
                if !QUANTITY.contains(&quantity) {
                    return Err(FieldError::new(
                        format!("items[{i}].quantity"),
                        format!("must be {} to {}, got {quantity}", QUANTITY.start(), QUANTITY.end()),
                    ));
                }
                Ok(Line { product_id, quantity })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { order_id, lines })
    }

    /// The total quantity asked for each product, in order of first mention.
    pub fn demand(&self) -> Vec<(i64, i64)> {
        let mut order = Vec::new();
        let mut totals = BTreeMap::<i64, i64>::new();
        for l in &self.lines {
            let total = totals.entry(l.product_id).or_insert_with(|| {
                order.push(l.product_id);
                0
            });
            *total += l.quantity;
        }
        order.into_iter().map(|id| (id, totals[&id])).collect()
    }

    /// A canonical text of the request: two requests are "the same" for an idempotency
    /// key exactly when their fingerprints are equal.
    pub fn fingerprint(&self) -> String {
        serde_json::json!({ "order_id": self.order_id, "items": self.lines }).to_string()
    }
}

/// Where a reservation is in its life: `held` → `committed` or `released`, both final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Held,
    Committed,
    Released,
}

impl ReservationStatus {
    /// The status as the API and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Committed => "committed",
            Self::Released => "released",
        }
    }

    /// The status spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "held" => Some(Self::Held),
            "committed" => Some(Self::Committed),
            "released" => Some(Self::Released),
            _ => None,
        }
    }
}

/// One reserved line, priced when the reservation was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReservedItem {
    pub product_id: i64,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// Stock held for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: i64,
    pub order_id: OrderRef,
    pub status: ReservationStatus,
    pub items: Vec<ReservedItem>,
    pub total_minor: i64,
    pub currency: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(v: &[(i64, i64)]) -> Vec<(Option<i64>, Option<i64>)> {
        v.iter().map(|&(p, q)| (Some(p), Some(q))).collect()
    }

    #[test]
    fn reservation_requests_are_bounded() {
        let order = OrderRef::Number(1);
        assert_eq!(ReservationRequest::parse(order.clone(), &[]).unwrap_err().field, "items");
        assert_eq!(ReservationRequest::parse(order.clone(), &lines(&[(1, 1); 51])).unwrap_err().field, "items");
        assert!(ReservationRequest::parse(order.clone(), &lines(&[(1, 1); 50])).is_ok());
        let err = ReservationRequest::parse(order.clone(), &lines(&[(1, 1), (2, 1001)])).unwrap_err();
        assert_eq!(err.field, "items[1].quantity");
        assert_eq!(ReservationRequest::parse(order.clone(), &lines(&[(1, 0)])).unwrap_err().field, "items[0].quantity");
        assert_eq!(
            ReservationRequest::parse(order.clone(), &lines(&[(0, 1)])).unwrap_err().field,
            "items[0].product_id"
        );
        let err = ReservationRequest::parse(order, &[(Some(1), None)]).unwrap_err();
        assert_eq!(err.field, "items[0].quantity");
    }

    #[test]
    fn demand_sums_repeated_products_in_first_mention_order() {
        let r = ReservationRequest::parse(OrderRef::Number(1), &lines(&[(3, 1), (1, 2), (3, 4)])).unwrap();
        assert_eq!(r.demand(), vec![(3, 5), (1, 2)]);
    }

    #[test]
    fn fingerprints_tell_bodies_apart() {
        let a = ReservationRequest::parse(OrderRef::Number(1), &lines(&[(1, 1)])).unwrap();
        let b = ReservationRequest::parse(OrderRef::Text("1".into()), &lines(&[(1, 1)])).unwrap();
        let c = ReservationRequest::parse(OrderRef::Number(1), &lines(&[(1, 2)])).unwrap();
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn order_refs_keep_their_form() {
        assert_eq!(OrderRef::parse(&json!(7)).unwrap(), OrderRef::Number(7));
        assert_eq!(OrderRef::parse(&json!("o-7")).unwrap(), OrderRef::Text("o-7".into()));
        for bad in
            [json!(0), json!(-1), json!(1.5), json!(""), json!(" x"), json!(null), json!([1]), json!("x".repeat(129))]
        {
            assert_eq!(OrderRef::parse(&bad).unwrap_err().field, "order_id", "{bad}");
        }
        let n = OrderRef::Number(42);
        assert_eq!(OrderRef::from_stored(n.as_text(), n.is_number()), n);
        let t = OrderRef::Text("42".into());
        assert_eq!(OrderRef::from_stored(t.as_text(), t.is_number()), t);
        assert_eq!(serde_json::to_value(&n).unwrap(), json!(42));
    }

    #[test]
    fn products_are_checked_field_by_field() {
        assert!(NewProduct::parse("SKU-1", "Mug", 500, "eur", 10).is_ok());
        let field = |r: Result<NewProduct, FieldError>| r.unwrap_err().field;
        assert_eq!(field(NewProduct::parse("", "Mug", 500, "EUR", 10)), "sku");
        assert_eq!(field(NewProduct::parse("a b", "Mug", 500, "EUR", 10)), "sku");
        assert_eq!(field(NewProduct::parse("S", " ", 500, "EUR", 10)), "name");
        assert_eq!(field(NewProduct::parse("S", "Mug", 0, "EUR", 10)), "price_minor");
        assert_eq!(field(NewProduct::parse("S", "Mug", 5, "EURO", 10)), "currency");
        assert_eq!(field(NewProduct::parse("S", "Mug", 5, "EUR", -1)), "stock");
    }
}
