//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Each [`ProblemKind`] has a stable `type` URI and an HTTP status; a client mistake is
//! always a 4xx. Handlers return `Result<_, ApiError>`; the body tells the caller what
//! was wrong and, where it can, what to do.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The prefix of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://gauntlet.dev/problems/";

/// What kind of error a problem is. Its slug is part of the API: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The request is malformed: bad JSON, wrong types, missing fields, bad values.
    BadRequest,
    /// No or invalid credentials.
    Unauthorized,
    /// Credentials are valid but do not allow this.
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The request conflicts with current state (duplicate, wrong state, key reuse).
    Conflict,
    /// Not enough stock to reserve.
    OutOfStock,
    /// The payment was declined.
    PaymentDeclined,
    /// The body is larger than the service accepts.
    PayloadTooLarge,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The client sent too many requests.
    RateLimited,
    /// A service this one depends on is unavailable (breaker open, connection refused).
    UpstreamUnavailable,
    /// A service this one depends on did not answer in time.
    UpstreamTimeout,
    /// A bug or an unexpected failure in this service.
    Internal,
}

impl ProblemKind {
    /// The stable slug that ends the problem's `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::OutOfStock => "out-of-stock",
            Self::PaymentDeclined => "payment-declined",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::RateLimited => "rate-limited",
            Self::UpstreamUnavailable => "upstream-unavailable",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status of this kind of problem.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::OutOfStock => StatusCode::CONFLICT,
            Self::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short human title, the same for every problem of this kind.
    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "The request is not valid",
            Self::Unauthorized => "Authentication is required",
            Self::Forbidden => "Not allowed",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict with the current state",
            Self::OutOfStock => "Not enough stock",
            Self::PaymentDeclined => "Payment declined",
            Self::PayloadTooLarge => "Request body too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RateLimited => "Too many requests",
            Self::UpstreamUnavailable => "A dependency is unavailable",
            Self::UpstreamTimeout => "A dependency timed out",
            Self::Internal => "Internal error",
        }
    }

    /// The kind whose slug ends `type_uri`, if any.
    pub fn from_type_uri(type_uri: &str) -> Option<Self> {
        let slug = type_uri.strip_prefix(PROBLEM_BASE)?;
        ALL_KINDS.iter().copied().find(|k| k.slug() == slug)
    }
}

const ALL_KINDS: &[ProblemKind] = &[
    ProblemKind::BadRequest,
    ProblemKind::Unauthorized,
    ProblemKind::Forbidden,
    ProblemKind::NotFound,
    ProblemKind::MethodNotAllowed,
    ProblemKind::Conflict,
    ProblemKind::OutOfStock,
    ProblemKind::PaymentDeclined,
    ProblemKind::PayloadTooLarge,
    ProblemKind::UnsupportedMediaType,
    ProblemKind::RateLimited,
    ProblemKind::UpstreamUnavailable,
    ProblemKind::UpstreamTimeout,
    ProblemKind::Internal,
];

/// An RFC 9457 problem details body, as sent and as read back from an upstream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (e.g. `field`, `retry_after`, `reason`).
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

/// An error a handler returns; rendered as problem+json with the kind's status.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Seconds to put in `Retry-After`, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A problem of `kind` with a human `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), extensions: Default::default(), retry_after: None }
    }

    /// Adds an extension member to the body.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extensions.insert(key.into(), serde_json::to_value(value).unwrap_or(serde_json::Value::Null));
        self
    }

    /// Sets `Retry-After` (seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }
    /// A bad value in field `field`.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail).with("field", field)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Conflict, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Unauthorized, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Forbidden, detail)
    }
    /// An unexpected failure; the cause is logged, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ProblemKind::Internal, "an unexpected error occurred; it has been logged")
    }

    /// The problem details body of this error.
    pub fn problem(&self) -> Problem {
        Problem {
            type_uri: format!("{PROBLEM_BASE}{}", self.kind.slug()),
            title: self.kind.title().into(),
            status: self.kind.status().as_u16(),
            detail: Some(self.detail.clone()),
            instance: crate::trace::current().map(|c| format!("urn:request:{}", c.request_id)),
            extensions: self.extensions.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.slug(), self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("a problem always serialises");
        let mut res = (self.kind.status(), body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::client::ClientError> for ApiError {
    fn from(e: crate::client::ClientError) -> Self {
        use crate::client::ClientError as C;
        match &e {
            C::Timeout { .. } => Self::new(ProblemKind::UpstreamTimeout, e.to_string()),
            C::Decode { .. } => Self::internal(e),
            _ => Self::new(ProblemKind::UpstreamUnavailable, e.to_string()).retry_after(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_mistake_is_4xx() {
        for k in ALL_KINDS {
            let server_side =
                matches!(k, ProblemKind::UpstreamUnavailable | ProblemKind::UpstreamTimeout | ProblemKind::Internal);
            assert_eq!(k.status().is_server_error(), server_side, "{k:?}");
        }
    }

    #[test]
    fn slugs_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for k in ALL_KINDS {
            assert!(seen.insert(k.slug()), "duplicate slug {}", k.slug());
            assert_eq!(ProblemKind::from_type_uri(&format!("{PROBLEM_BASE}{}", k.slug())), Some(*k));
        }
    }

    #[tokio::test]
    async fn renders_problem_json() {
        let res = ApiError::invalid_field("email", "not an email").retry_after(3).into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(res.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let p: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(p.type_uri, "https://gauntlet.dev/problems/bad-request");
        assert_eq!(p.extensions["field"], "email");
    }
}
