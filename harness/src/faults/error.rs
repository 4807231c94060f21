//! The errors of the Toxiproxy API, with Toxiproxy's messages and status codes.
//!
//! On the wire an error is `{"error": "<message>", "status": <code>}`.

use serde::{Deserialize, Serialize};

/// An error the Toxiproxy API answers with; its message and status match Toxiproxy's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not what the endpoint takes: malformed JSON, a wrong type, a bad value.
    #[error("bad request body: {0}")]
    BadRequestBody(String),
    /// A required field is missing; the payload names it.
    #[error("missing required field: {0}")]
    MissingField(String),
    /// No proxy of that name.
    #[error("proxy not found")]
    ProxyNotFound,
    /// A proxy of that name exists already.
    #[error("proxy already exists")]
    ProxyAlreadyExists,
    /// `stream` is neither `upstream` nor `downstream`.
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    /// `type` names no toxic this server knows.
    #[error("invalid toxic type")]
    InvalidToxicType,
    /// A toxic of that name exists already on the proxy.
    #[error("toxic already exists")]
    ToxicAlreadyExists,
    /// No toxic of that name on the proxy.
    #[error("toxic not found")]
    ToxicNotFound,
    /// The proxy could not listen: Go's `listen tcp <addr>: <cause>` wording, status 500.
    #[error("listen tcp {addr}: {cause}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why, e.g. `bind: address already in use`.
        cause: String,
    },
}

impl ApiError {
    /// The HTTP status code Toxiproxy answers this error with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequestBody(_) | Self::MissingField(_) | Self::InvalidStream | Self::InvalidToxicType => 400,
            Self::ProxyNotFound | Self::ToxicNotFound => 404,
            Self::ProxyAlreadyExists | Self::ToxicAlreadyExists => 409,
            Self::Listen { .. } => 500,
        }
    }

    /// The JSON body Toxiproxy answers this error with.
    pub fn body(&self) -> ApiErrorBody {
        ApiErrorBody { error: self.to_string(), status: self.status() }
    }

    /// The error for a failed bind of `addr`, worded as Go's `net.Listen` words it.
    pub fn listen(addr: &str, err: &std::io::Error) -> Self {
        let cause = match err.kind() {
            std::io::ErrorKind::AddrInUse => "bind: address already in use".to_string(),
            std::io::ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".to_string(),
            std::io::ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
            _ => err.to_string(),
        };
        Self::Listen { addr: addr.to_string(), cause }
    }
}

/// The JSON body of an API error: `{"error": "...", "status": 404}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// The message, e.g. `proxy not found`.
    pub error: String,
    /// The HTTP status code, repeated in the body.
    pub status: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_toxiproxy() {
        assert_eq!(ApiError::ProxyNotFound.to_string(), "proxy not found");
        assert_eq!(ApiError::ProxyNotFound.status(), 404);
        assert_eq!(ApiError::ToxicAlreadyExists.status(), 409);
        assert_eq!(ApiError::MissingField("name".into()).to_string(), "missing required field: name");
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let err = ApiError::listen("127.0.0.1:1", &e);
        assert_eq!(err.to_string(), "listen tcp 127.0.0.1:1: bind: address already in use");
        assert_eq!(err.status(), 500);
    }
}
