//! Authentication: HS256 JWTs for shop users, a bearer token for admin endpoints.
//!
//! The algorithm is pinned (a token claiming `none` or RS256 is refused), the expiry is
//! always checked, and the issuer must be ours. Users log in at the users service, which
//! issues tokens; the gateway verifies them.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The `iss` of every token the shop issues.
pub const ISSUER: &str = "gauntlet-shop";

/// What a shop token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's email.
    pub email: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Always [`ISSUER`].
    pub iss: String,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header: send `Authorization: Bearer <token>` (log in at /api/v1/login)")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token has expired: log in again")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

/// The keys that issue and verify shop tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    /// Keys from a shared HS256 secret.
    pub fn hs256(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        // Expiry is checked here against the platform's clock (the simulated one in a
        // simulation), not by jsonwebtoken against the system's.
        validation.validate_exp = false;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Issues a token for user `sub` valid for `ttl`.
    pub fn issue(&self, sub: &str, email: &str, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims { sub: sub.into(), email: email.into(), iat, exp: iat + ttl.as_secs(), iss: ISSUER.into() };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Verifies a token: signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        // As jsonwebtoken judges it, with no leeway: expired once `exp` is in the past.
        if claims.exp < now_secs() {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }

    /// Verifies the bearer token of a request.
    pub fn verify_headers(&self, headers: &HeaderMap) -> Result<Claims, AuthError> {
        self.verify(bearer(headers)?)
    }
}

/// The bearer token of a request's `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token.trim())
}

/// Checks that a request carries the admin token, in constant time.
pub fn require_admin(headers: &HeaderMap, admin_token: &str) -> Result<(), ApiError> {
    let given = bearer(headers)
        .map_err(|_| ApiError::unauthorized("admin endpoints need `Authorization: Bearer <SHOP_ADMIN_TOKEN>`"))?;
    if constant_time_eq(given.as_bytes(), admin_token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::forbidden("the admin token is not valid"))
    }
}

/// A service's state that knows the admin token, so its handlers can take [`Admin`].
pub trait AdminToken {
    /// `SHOP_ADMIN_TOKEN`, as configured.
    fn admin_token(&self) -> &str;
}

/// Proof that a request carries the admin token ([`require_admin`]); extracted before
/// any body, so an unauthenticated caller learns nothing about what the body should be.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl<S: AdminToken + Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        require_admin(&parts.headers, state.admin_token()).map(|()| Admin)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_secs() -> u64 {
    crate::platform::since_epoch().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "0123456789abcdef0123";

    #[test]
    fn issued_tokens_verify() {
        let keys = JwtKeys::hs256(SECRET);
        let token = keys.issue("u1", "a@b.c", Duration::from_secs(60));
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.email.as_str()), ("u1", "a@b.c"));
    }

    #[test]
    fn wrong_key_expiry_and_algorithm_are_refused() {
        let keys = JwtKeys::hs256(SECRET);
        let other = JwtKeys::hs256("another-secret-of-16+");
        assert!(matches!(keys.verify(&other.issue("u", "e", Duration::from_secs(60))), Err(AuthError::Invalid(_))));
        let expired = keys.issue("u", "e", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(keys.verify(&expired), Err(AuthError::Expired));
        // alg=none with the same claims.
        let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
        let body = base64url(
            format!(r#"{{"sub":"u","email":"e","iat":1,"exp":{},"iss":"{ISSUER}"}}"#, now_secs() + 60).as_bytes(),
        );
        assert!(keys.verify(&format!("{header}.{body}.")).is_err());
        assert!(keys.verify("not.a.jwt").is_err());
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), Err(AuthError::Missing));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), Err(AuthError::NotBearer));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), Err(AuthError::NotBearer));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer tok"));
        assert_eq!(bearer(&h), Ok("tok"));
    }

    #[test]
    fn admin_token_is_checked() {
        let mut h = HeaderMap::new();
        assert!(require_admin(&h, "admin-token-123456").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer wrong"));
        assert_eq!(require_admin(&h, "admin-token-123456").unwrap_err().kind, crate::ProblemKind::Forbidden);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer admin-token-123456"));
        assert!(require_admin(&h, "admin-token-123456").is_ok());
    }

    fn base64url(b: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
