//! The HTTP API of notifications (see `services/README.md`, "notifications").

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use shop_kit::auth::{Admin, AdminToken};
use shop_kit::{ApiError, Json, Query};

use crate::store::{DeadLetter, Notification, RepeatedEvent, Store};

/// The longest user id accepted.
pub const MAX_USER_ID: usize = 128;
/// The most notifications a user's list returns (newest first).
pub const MAX_LISTED: u32 = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub admin_token: String,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new().route("/v1/notifications", get(list)).route("/v1/admin/state", get(admin_state)).with_state(state)
}

#[derive(Deserialize)]
struct ListParams {
    user_id: Option<String>,
}

#[derive(Serialize)]
struct NotificationList {
    items: Vec<Notification>,
}

async fn list(State(app): State<AppState>, Query(p): Query<ListParams>) -> Result<Json<NotificationList>, ApiError> {
    let user_id = p.user_id.ok_or_else(|| ApiError::invalid_field("user_id", "give the user: ?user_id=<id>"))?;
    if user_id.trim().is_empty() || user_id.len() > MAX_USER_ID {
        return Err(ApiError::invalid_field("user_id", format!("must be 1 to {MAX_USER_ID} characters")));
    }
    Ok(Json(NotificationList { items: app.store.for_user(&user_id, MAX_LISTED).await? }))
}

/// What the event checker reads (`services/README.md`, "Admin state contract").
#[derive(Serialize)]
struct AdminState {
    notifications: Vec<Notification>,
    processed_events: i64,
    dead_letters: Vec<DeadLetter>,
    /// Events the broker held more than once (published twice).
    repeated_events: Vec<RepeatedEvent>,
}

impl AdminToken for AppState {
    fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

async fn admin_state(_: Admin, State(app): State<AppState>) -> Result<Json<AdminState>, ApiError> {
    let (notifications, processed_events, dead_letters) = app.store.state().await?;
    let repeated_events = app.store.repeats().await?;
    Ok(Json(AdminState { notifications, processed_events, dead_letters, repeated_events }))
}
