//! The HTTP API of the users service (see `services/README.md`): one small handler per
//! route, each parsing its input into domain values and mapping store outcomes to answers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use shop_kit::auth::{Admin, AdminToken, JwtKeys};
use shop_kit::{ApiError, Json, Path, ServiceConfig};

use crate::domain::{Email, FieldError, Name, Password, Registration, User};
use crate::password::PasswordHasher;
use crate::store::{StoreError, UserStore};
use crate::Settings;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: UserStore,
    hasher: PasswordHasher,
    keys: JwtKeys,
    admin_token: String,
    token_ttl: Duration,
}

impl AppState {
    /// The state of the users API: its store, hasher, token keys and admin token.
    pub fn new(config: &ServiceConfig, settings: Settings, store: UserStore, hasher: PasswordHasher) -> Self {
        let inner = Inner {
            store,
            hasher,
            keys: JwtKeys::hs256(&config.jwt_secret),
            admin_token: config.admin_token.clone(),
            token_ttl: settings.token_ttl,
        };
        Self { inner: Arc::new(inner) }
    }
}

/// The service's routes: the public API and the admin routes.
pub fn router(state: AppState) -> Router {
    public_routes().merge(admin_routes()).with_state(state)
}

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/users", post(register))
        .route("/v1/users/{id}", get(get_user))
        .route("/v1/login", post(login))
}

/// Routes for operators and the harness, behind the [`Admin`] extractor and never
/// routed by the gateway. The hook point for what the harness will need to drive this
/// service: contract-test provider states, chaos switches.
fn admin_routes() -> Router<AppState> {
    let routes = Router::new().route("/v1/admin/state", get(admin_state));
    shop_kit::contract::with_state_route(routes, post(provider_state))
}

/// The password of every account a provider state creates.
pub const STATE_PASSWORD: &str = "correct horse battery";

/// Contract-test mode only (see `shop_kit::contract`): sets up the provider state a
/// pact interaction names, and answers the values the interaction may inject.
async fn provider_state(
    State(s): State<AppState>,
    Json(change): Json<shop_kit::contract::StateChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if change.needs_no_setup() {
        return Ok(Json(serde_json::json!({})));
    }
    match change.state.as_str() {
        "a user ada@example.com exists" => {
            let email = Email::parse("ada@example.com").map_err(field_error)?;
            let user = match s.inner.store.credentials(email.key()).await? {
                Some(c) => c.user,
                None => {
                    let name = Name::parse("Ada Lovelace").map_err(field_error)?;
                    let password = Password::parse(STATE_PASSWORD.to_string()).map_err(field_error)?;
                    let hash = s.inner.hasher.hash(password).await.map_err(ApiError::internal)?;
                    s.inner.store.insert(&email, &name, hash).await.map_err(|e| ApiError::internal(e.to_string()))?
                }
            };
            Ok(Json(serde_json::json!({ "user_id": user.id })))
        }
        "no user has the email new@example.com" | "no user 999999 exists" => Ok(Json(serde_json::json!({}))),
        other => Err(ApiError::bad_request(format!("users knows no provider state {other:?}"))),
    }
}

impl AdminToken for AppState {
    fn admin_token(&self) -> &str {
        &self.inner.admin_token
    }
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
}

impl RegisterBody {
    fn parse(self) -> Result<Registration, FieldError> {
        Ok(Registration {
            email: Email::parse(&self.email.ok_or(FieldError::missing("email"))?)?,
            name: Name::parse(&self.name.ok_or(FieldError::missing("name"))?)?,
            password: Password::parse(self.password.ok_or(FieldError::missing("password"))?)?,
        })
    }
}

async fn register(State(s): State<AppState>, Json(body): Json<RegisterBody>) -> Result<Response, ApiError> {
    let reg = body.parse().map_err(field_error)?;
    // Saves a hash for the common case; the unique index decides under a race.
    if s.inner.store.email_taken(reg.email.key()).await? {
        return Err(duplicate_email());
    }
    let hash = s.inner.hasher.hash(reg.password).await.map_err(ApiError::internal)?;
    let user = s.inner.store.insert(&reg.email, &reg.name, hash).await.map_err(|e| match e {
        StoreError::DuplicateEmail => duplicate_email(),
        StoreError::Db(e) => e.into(),
    })?;
    let location = HeaderValue::from_str(&format!("/v1/users/{}", user.id)).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

/// The answer to a successful login.
#[derive(Debug, Serialize)]
struct LoginAnswer {
    token: String,
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    user_id: i64,
}

async fn login(State(s): State<AppState>, Json(body): Json<LoginBody>) -> Result<Json<LoginAnswer>, ApiError> {
    let email = body.email.ok_or(FieldError::missing("email")).map_err(field_error)?;
    let password = body.password.ok_or(FieldError::missing("password")).map_err(field_error)?;
    let Some(password) = Password::offered(password) else {
        return Err(bad_credentials());
    };
    let creds = s.inner.store.credentials(&Email::key_of(&email)).await?;
    let stored_hash = creds.as_ref().map(|c| c.password_hash.clone());
    let matches = s.inner.hasher.verify(password, stored_hash).await.map_err(ApiError::internal)?;
    let user = match creds {
        Some(c) if matches => c.user,
        _ => return Err(bad_credentials()),
    };
    let token = s.inner.keys.issue(&user.id.to_string(), &user.email, s.inner.token_ttl);
    Ok(Json(LoginAnswer { token, token_type: "Bearer", expires_in: s.inner.token_ttl.as_secs(), user_id: user.id }))
}

async fn get_user(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<User>, ApiError> {
    let id = positive_id(id)?;
    let user = s.inner.store.get(id).await?;
    user.map(Json).ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))
}

async fn admin_state(_: Admin, State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let users = s.inner.store.count().await?;
    Ok(Json(serde_json::json!({ "users": users })))
}

fn positive_id(id: i64) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::invalid_field("id", format!("ids are positive integers, got {id}")))
    }
}

fn field_error(e: FieldError) -> ApiError {
    ApiError::invalid_field(e.field, e.message)
}

fn duplicate_email() -> ApiError {
    ApiError::conflict("an account with this email already exists; log in instead").with("field", "email")
}

/// The same answer whether the email is unknown or the password wrong.
fn bad_credentials() -> ApiError {
    ApiError::unauthorized("the email or the password is not correct")
}
