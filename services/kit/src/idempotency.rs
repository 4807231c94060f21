//! The `Idempotency-Key` header, one rule for every service: 1 to [`MAX_KEY_LEN`]
//! visible ASCII characters (`!` to `~`: no spaces, no control characters), blanks
//! around it trimmed. A bad key is a 400 problem whose `field` is `Idempotency-Key`.
//!
//! A key is one opaque token: the keys the shop makes itself (`<order>:reserve`,
//! `<user>:<client key>`, UUIDs) are visible ASCII, and a space inside a client's key is
//! almost always a mistake (an unquoted value, a pasted `Bearer ...`), so it is refused
//! rather than stored and compared.
//!
//! Where a key is required (catalog's reservations, payments' charges) take
//! `IdempotencyKey` as an axum extractor; where it is optional (orders) take
//! `Option<IdempotencyKey>`; where other checks must come first (the gateway
//! authenticates before it looks at the key) call [`IdempotencyKey::from_headers`].

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;

/// The longest key accepted, in characters (= bytes: keys are ASCII).
pub const MAX_KEY_LEN: usize = 200;

/// A key that keeps the rule: 1 to [`MAX_KEY_LEN`] visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a key was refused; becomes a 400 problem naming `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadKey(String);

impl BadKey {
    fn rule() -> Self {
        Self(format!(
            "the {} header must be 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces)",
            IdempotencyKey::HEADER
        ))
    }
}

impl IdempotencyKey {
    /// The header that carries the key.
    pub const HEADER: &'static str = "Idempotency-Key";

    /// Checks a raw header value (blanks around it are trimmed).
    pub fn parse(raw: &str) -> Result<Self, BadKey> {
        let key = raw.trim();
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BadKey::rule());
        }
        Ok(Self(key.to_string()))
    }

    /// The key of a request's headers: `None` when it sent none, an error when the one
    /// it sent breaks the rule.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, BadKey> {
        let Some(value) = headers.get(Self::HEADER) else { return Ok(None) };
        let raw = value.to_str().map_err(|_| BadKey::rule())?;
        Self::parse(raw).map(Some)
    }

    /// This key under `scope` (`<scope>:<key>`), so that equal keys of two scopes (two
    /// users, say) never meet. Refused when the scoped key would break the rule: the
    /// message says how long a key may be under this scope.
    pub fn scoped(&self, scope: &str) -> Result<Self, BadKey> {
        let room = MAX_KEY_LEN.saturating_sub(scope.len() + 1);
        if self.0.len() > room {
            let BadKey(rule) = BadKey::rule();
            return Err(BadKey(format!("{rule}; this one is prefixed with `{scope}:`, so it may be at most {room}")));
        }
        Self::parse(&format!("{scope}:{}", self.0))
    }

    /// The key (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0
    }
}

impl From<BadKey> for ApiError {
    fn from(e: BadKey) -> Self {
        ApiError::invalid_field(IdempotencyKey::HEADER, e.0)
    }
}

/// A required key: a missing one is a 400 naming the header.
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        IdempotencyKey::from_headers(&parts.headers)?.ok_or_else(|| {
            let header = IdempotencyKey::HEADER;
            ApiError::invalid_field(header, format!("the {header} header is required"))
        })
    }
}

/// An optional key (`Option<IdempotencyKey>`): a missing one is `None`, a bad one a 400.
impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, ApiError> {
        Ok(IdempotencyKey::from_headers(&parts.headers)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert("idempotency-key", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_longest_key_is_accepted_and_one_longer_refused() {
        let longest = "k".repeat(MAX_KEY_LEN);
        assert_eq!(IdempotencyKey::parse(&longest).unwrap().as_str(), longest);
        let err = ApiError::from(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN + 1)).unwrap_err());
        assert_eq!(err.extensions["field"], "Idempotency-Key");
        assert!(err.detail.contains("1 to 200 visible ASCII"), "{}", err.detail);
    }

    #[test]
    fn a_space_or_any_invisible_or_non_ascii_character_is_refused() {
        for bad in ["a b", "", "   ", "a\tb", "caf\u{e9}", "a\u{7f}b"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(IdempotencyKey::parse(" 42:reserve ").unwrap().as_str(), "42:reserve", "blanks around are trimmed");
        let every_visible: String = ('!'..='~').collect();
        assert!(IdempotencyKey::parse(&every_visible).is_ok());
    }

    #[test]
    fn a_missing_key_is_none_and_a_bad_one_an_error() {
        assert_eq!(IdempotencyKey::from_headers(&headers(None)).unwrap(), None);
        assert_eq!(IdempotencyKey::from_headers(&headers(Some("k-1"))).unwrap().unwrap().as_str(), "k-1");
        assert!(IdempotencyKey::from_headers(&headers(Some("a b"))).is_err());
        let mut opaque = HeaderMap::new();
        opaque.insert("idempotency-key", axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert!(IdempotencyKey::from_headers(&opaque).is_err(), "bytes that are not ASCII");
    }

    #[test]
    fn a_scoped_key_keeps_the_rule() {
        let key = IdempotencyKey::parse("client-key-1").unwrap();
        assert_eq!(key.scoped("7").unwrap().as_str(), "7:client-key-1");
        let fits = IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN - 2)).unwrap();
        assert_eq!(fits.scoped("7").unwrap().as_str().len(), MAX_KEY_LEN);
        let err = fits.scoped("42").unwrap_err();
        assert!(err.to_string().contains("prefixed with `42:`, so it may be at most 197"), "{err}");
        assert!(key.scoped("a b").is_err(), "the scope keeps the rule too");
    }

    #[tokio::test]
    async fn the_extractors_name_the_header() {
        for (value, says) in [(None, "the Idempotency-Key header is required"), (Some("a b"), "visible ASCII")] {
            let mut req = axum::http::Request::builder();
            if let Some(v) = value {
                req = req.header("idempotency-key", v);
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            let err = <IdempotencyKey as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await.unwrap_err();
            assert_eq!(err.extensions["field"], "Idempotency-Key");
            assert!(err.detail.contains(says), "{}", err.detail);
        }
        let (mut parts, ()) = axum::http::Request::builder().body(()).unwrap().into_parts();
        let none = <IdempotencyKey as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
        assert_eq!(none.unwrap(), None);
        let (mut parts, ()) =
            axum::http::Request::builder().header("idempotency-key", "a b").body(()).unwrap().into_parts();
        let bad = <IdempotencyKey as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &()).await;
        assert_eq!(bad.unwrap_err().extensions["field"], "Idempotency-Key");
    }
}
