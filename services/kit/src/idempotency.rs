//! The `Idempotency-Key` a service requires on a request that must happen once (a
//! reservation, a charge): 1 to [`MAX_KEY_LEN`] printable ASCII characters, blanks
//! around it trimmed. Taken as an axum extractor; a missing or bad key is a 400
//! problem naming the header.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// A checked `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadKey(String);

impl IdempotencyKey {
    /// The header that carries the key.
    pub const HEADER: &'static str = "Idempotency-Key";

    /// Checks a raw header value.
    pub fn parse(raw: &str) -> Result<Self, BadKey> {
        let key = raw.trim();
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(BadKey(format!("must be 1 to {MAX_KEY_LEN} printable ASCII characters")));
        }
        Ok(Self(key.to_string()))
    }

    /// The key as sent (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<BadKey> for ApiError {
    fn from(e: BadKey) -> Self {
        ApiError::invalid_field(IdempotencyKey::HEADER, e.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let header = IdempotencyKey::HEADER;
        let value = parts
            .headers
            .get(header)
            .ok_or_else(|| ApiError::invalid_field(header, format!("{header} is required")))?;
        let raw = value.to_str().map_err(|_| ApiError::invalid_field(header, "must be ASCII"))?;
        Ok(IdempotencyKey::parse(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_trimmed_bounded_and_printable() {
        assert_eq!(IdempotencyKey::parse(" 42:reserve ").unwrap().as_str(), "42:reserve");
        assert_eq!(IdempotencyKey::parse("a b").unwrap().as_str(), "a b");
        for bad in ["", "   ", "caf\u{e9}", "a\tb"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        let err = ApiError::from(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN + 1)).unwrap_err());
        assert_eq!(err.extensions["field"], "Idempotency-Key");
    }

    #[tokio::test]
    async fn the_extractor_names_the_header_when_the_key_is_missing_or_bad() {
        for (value, says) in [(None, "Idempotency-Key is required"), (Some(""), "printable ASCII")] {
            let mut req = axum::http::Request::builder();
            if let Some(v) = value {
                req = req.header("idempotency-key", v);
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            let err = IdempotencyKey::from_request_parts(&mut parts, &()).await.unwrap_err();
            assert_eq!(err.extensions["field"], "Idempotency-Key");
            assert!(err.detail.contains(says), "{}", err.detail);
        }
    }
}
