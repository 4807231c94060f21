//! Contract-test mode of orders (`SHOP_CONTRACT_TEST=1`, see `shop_kit::contract`): the
//! provider states its HTTP pacts name, and the messages it publishes, produced for the
//! verifier of its message pacts. Neither route exists otherwise.
//!
//! A message is produced the way the relay would see it: a fresh order is driven to
//! the described outcome through the real event fold and store, whose transaction
//! queues the message in the outbox ([`crate::outbox`]); the answer is that outbox
//! row, payload and subject, exactly what the relay would publish.

use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde_json::{Map, Value};
use shop_kit::contract::{MessageRequest, StateChange};
use shop_kit::{ApiError, Json};

use crate::api::AppState;
use crate::events::{LineItem, OrderEvent, OrderState, Timestamp};
use crate::outbox::Outbox;
use crate::store::StoreError;

/// The user every produced message's order belongs to.
const USER: &str = "7";

/// The contract-test routes, present only in contract-test mode.
pub fn routes() -> Router<AppState> {
    let routes = shop_kit::contract::with_state_route(Router::new(), post(provider_state));
    shop_kit::contract::with_message_route(routes, post(produce_message))
}

/// Sets up the provider state a pact interaction names, and answers the values the
/// interaction may inject.
async fn provider_state(State(app): State<AppState>, Json(change): Json<StateChange>) -> Result<Json<Value>, ApiError> {
    if change.needs_no_setup() {
        return Ok(Json(serde_json::json!({})));
    }
    match change.state.as_str() {
        "an order exists for user 7" => {
            let id = shop_kit::platform::uuid_v7().to_string();
            let items = vec![LineItem { product_id: 1, quantity: 1 }];
            app.saga.store().place(OrderState::placed(&id, USER, items, Timestamp::now()), None).await?;
            Ok(Json(serde_json::json!({ "order_id": id, "user_id": USER })))
        }
        "no order nope-404 exists" | "the saga's upstreams are slow" => Ok(Json(serde_json::json!({}))),
        other => Err(ApiError::bad_request(format!("orders knows no provider state {other:?}"))),
    }
}

/// The published outcomes a message pact may describe, by the interaction's
/// description, each with the events after `Placed` that lead to it.
fn outcome(description: &str) -> Option<Vec<OrderEvent>> {
    let reserved = OrderEvent::StockReserved { reservation_id: "1".into(), total_minor: 3725, currency: "EUR".into() };
    let reason = "payment declined: amount over the limit".to_string();
    match description {
        "an order was placed" => Some(vec![]),
        "an order was paid" => {
            Some(vec![reserved, OrderEvent::PaymentCaptured { charge_id: "1".into() }, OrderEvent::Paid])
        }
        "an order was cancelled" => Some(vec![
            reserved,
            OrderEvent::CompensationStarted { reason: reason.clone(), in_doubt: false },
            OrderEvent::StockReleased,
            OrderEvent::Cancelled { reason },
        ]),
        _ => None,
    }
}

/// The descriptions [`outcome`] knows, for the error that names them.
const KNOWN: &str = "\"an order was placed\", \"an order was paid\", \"an order was cancelled\"";

/// Produces the message the relay would publish for the described event.
async fn produce_message(
    State(app): State<AppState>,
    Json(request): Json<MessageRequest>,
) -> Result<Response, ApiError> {
    let events = outcome(&request.description).ok_or_else(|| {
        ApiError::bad_request(format!("orders publishes no message {:?}; it knows {KNOWN}", request.description))
    })?;
    let store = app.saga.store();
    let id = shop_kit::platform::uuid_v7().to_string();
    let mut state = OrderState::placed(&id, USER, vec![LineItem { product_id: 1, quantity: 1 }], Timestamp::now());
    store.place(state.clone(), None).await?;
    for event in &events {
        state = state.apply(event, Timestamp::now()).map_err(ApiError::internal)?;
        store.append(&state, event).await?;
    }
    let event_id = format!("{id}:{}", state.version);
    let queued = Outbox::new(store.db().clone()).message(&event_id).await.map_err(StoreError::from)?;
    let queued = queued.ok_or_else(|| ApiError::internal(format!("event {event_id} was not queued in the outbox")))?;
    let mut metadata = Map::new();
    metadata.insert("subject".into(), Value::String(queued.subject));
    Ok(shop_kit::contract::message_response(queued.payload, &metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_described_outcome_folds_to_a_published_event() {
        for description in ["an order was placed", "an order was paid", "an order was cancelled"] {
            assert!(KNOWN.contains(description));
            let mut state = OrderState::placed("o", USER, vec![], Timestamp::from_millis(1));
            let mut last = OrderEvent::Placed { user_id: USER.into(), items: vec![] };
            for event in outcome(description).unwrap() {
                state = state.apply(&event, Timestamp::from_millis(2)).unwrap();
                last = event;
            }
            let message = crate::outbox::OrderEventMessage::of(&last, &state).expect("a published event");
            assert_eq!(message.event_id, format!("o:{}", state.version));
        }
        assert!(outcome("an order was lost").is_none());
    }
}
