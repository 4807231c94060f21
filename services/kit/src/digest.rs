//! `Content-Digest` (RFC 9530) on answers: the server states the SHA-256 of each body it
//! sends, and the client checks it before decoding, so a body damaged on the way (a
//! flipped bit that passed TCP's checksum, a broken middlebox) is refused as
//! undecodable, a transient failure the caller retries, and never taken as data.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};

/// The header's name.
pub const CONTENT_DIGEST: &str = "content-digest";

/// The largest body the server digests; a bigger or unsized one (a stream) goes without.
const MAX_DIGESTED_BODY: u64 = 16 * 1024 * 1024;

/// The header value for `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Checks `body` against its `Content-Digest`, when the answer has a SHA-256 one; an
/// answer without one passes (not every upstream states it).
pub fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let Some(stated) = headers.get(CONTENT_DIGEST).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let Some(sha) = stated.split(',').map(str::trim).find(|d| d.starts_with("sha-256=")) else {
        return Ok(());
    };
    let actual = content_digest(body);
    if sha == actual {
        Ok(())
    } else {
        Err(format!("the body does not match its Content-Digest ({sha}, got {actual}): damaged in transit"))
    }
}

/// Middleware: states the digest of every sized answer that has none yet.
pub async fn stamp(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let sized = HttpBody::size_hint(res.body()).exact().is_some_and(|n| n <= MAX_DIGESTED_BODY);
    if !sized || res.headers().contains_key(CONTENT_DIGEST) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // A sized body that fails while it is read is the server's own failure.
        Err(e) => {
            tracing::error!(error = %e, "an answer's body failed while it was digested");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Ok(value) = HeaderValue::from_str(&content_digest(&bytes)) {
        parts.headers.insert(CONTENT_DIGEST, value);
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_bit_is_refused_and_an_intact_body_passes() {
        let body = br#"{"id":"ch_1","status":"captured","amount_minor":1200}"#;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_DIGEST, HeaderValue::from_str(&content_digest(body)).unwrap());
        assert_eq!(verify(&headers, body), Ok(()));
        let mut damaged = body.to_vec();
        damaged[8] ^= 0x40;
        let e = verify(&headers, &damaged).unwrap_err();
        assert!(e.contains("damaged in transit"), "{e}");
        assert_eq!(verify(&HeaderMap::new(), &damaged), Ok(()), "an answer without a digest is taken as it is");
    }
}
