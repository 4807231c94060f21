//! An async client of the Toxiproxy HTTP API, for the real Toxiproxy server and the
//! embedded one alike. Toxics are typed ([`Toxic`]) and every error status the API
//! answers is surfaced as a typed [`ClientError`], with Toxiproxy's message.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::error::ApiErrorBody;
use super::model::{Proxy, ProxyConfig, Toxic};

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// 400: the server refused the body; the message names what was wrong.
    #[error("bad request: {message}")]
    BadRequest {
        /// The server's message, e.g. `missing required field: name`.
        message: String,
    },
    /// 404: no such proxy or toxic.
    #[error("not found: {message}")]
    NotFound {
        /// `proxy not found` or `toxic not found`.
        message: String,
    },
    /// 409: a proxy or toxic of that name exists already.
    #[error("conflict: {message}")]
    Conflict {
        /// `proxy already exists` or `toxic already exists`.
        message: String,
    },
    /// Any other error status (500 for a listen address in use, ...).
    #[error("toxiproxy answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's message, or the raw body when it was not Toxiproxy's JSON.
        message: String,
    },
    /// The server could not be reached or the exchange broke off.
    #[error("toxiproxy at {url} could not be reached: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// A success answer that is not the JSON this client expects.
    #[error("toxiproxy at {url} answered something unexpected: {detail}")]
    Decode {
        /// The URL called.
        url: String,
        /// What did not fit.
        detail: String,
    },
}

impl ClientError {
    /// The HTTP status of an API error, `None` for transport and decode errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadRequest { .. } => Some(400),
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::Status { status, .. } => Some(*status),
            Self::Transport { .. } | Self::Decode { .. } => None,
        }
    }

    fn from_status(status: StatusCode, body: &str) -> Self {
        let message =
            serde_json::from_str::<ApiErrorBody>(body).map(|b| b.error).unwrap_or_else(|_| body.trim().to_string());
        match status.as_u16() {
            400 => Self::BadRequest { message },
            404 => Self::NotFound { message },
            409 => Self::Conflict { message },
            status => Self::Status { status, message },
        }
    }
}

/// A client of one Toxiproxy API endpoint.
#[derive(Clone, Debug)]
pub struct ToxiproxyClient {
    base: String,
    http: reqwest::Client,
}

impl ToxiproxyClient {
    /// A client of the API at `base`, e.g. `http://127.0.0.1:8474`.
    pub fn new(base: impl Into<String>) -> Self {
        let http =
            reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new());
        Self { base: base.into().trim_end_matches('/').to_string(), http }
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The server's version string (`GET /version`).
    pub async fn version(&self) -> Result<String, ClientError> {
        let (_, text) = self.send(Method::GET, "/version", None).await?;
        // Toxiproxy 2.x answers JSON; older ones answered the bare version.
        let version = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string));
        Ok(version.unwrap_or_else(|| text.trim().to_string()))
    }

    /// All proxies by name (`GET /proxies`).
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ClientError> {
        self.json(Method::GET, "/proxies", None).await
    }

    /// Creates a proxy (`POST /proxies`); the answer has the address really bound.
    pub async fn create_proxy(&self, config: &ProxyConfig) -> Result<Proxy, ClientError> {
        self.json(Method::POST, "/proxies", Some(json!(config))).await
    }

    /// Creates or replaces proxies in bulk (`POST /populate`).
    pub async fn populate(&self, configs: &[ProxyConfig]) -> Result<Vec<Proxy>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Populated {
            proxies: Vec<Proxy>,
        }
        let out: Populated = self.json(Method::POST, "/populate", Some(json!(configs))).await?;
        Ok(out.proxies)
    }

    /// One proxy (`GET /proxies/{name}`).
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ClientError> {
        self.json(Method::GET, &proxy_path(name), None).await
    }

    /// Partially updates a proxy (`PATCH /proxies/{name}`), e.g. `{"enabled": false}`.
    pub async fn update_proxy(&self, name: &str, patch: Value) -> Result<Proxy, ClientError> {
        self.json(Method::PATCH, &proxy_path(name), Some(patch)).await
    }

    /// Enables or disables a proxy; a disabled proxy refuses connections (`down`).
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Proxy, ClientError> {
        self.update_proxy(name, json!({ "enabled": enabled })).await
    }

    /// Deletes a proxy (`DELETE /proxies/{name}`).
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &proxy_path(name), None).await.map(drop)
    }

    /// The toxics of a proxy (`GET /proxies/{name}/toxics`).
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ClientError> {
        self.json(Method::GET, &format!("{}/toxics", proxy_path(proxy)), None).await
    }

    /// Adds a toxic (`POST /proxies/{name}/toxics`).
    pub async fn add_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<Toxic, ClientError> {
        let path = format!("{}/toxics", proxy_path(proxy));
        self.json(Method::POST, &path, Some(toxic.to_json())).await
    }

    /// One toxic (`GET /proxies/{name}/toxics/{toxic}`).
    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, ClientError> {
        self.json(Method::GET, &toxic_path(proxy, name), None).await
    }

    /// Partially updates a toxic (`PATCH`), e.g. `{"attributes": {"latency": 50}}`.
    pub async fn update_toxic(&self, proxy: &str, name: &str, patch: Value) -> Result<Toxic, ClientError> {
        self.json(Method::PATCH, &toxic_path(proxy, name), Some(patch)).await
    }

    /// Removes a toxic (`DELETE /proxies/{name}/toxics/{toxic}`).
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &toxic_path(proxy, name), None).await.map(drop)
    }

    /// Enables every proxy and removes every toxic (`POST /reset`).
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.send(Method::POST, "/reset", None).await.map(drop)
    }

    /// The Prometheus metrics text (`GET /metrics`).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.send(Method::GET, "/metrics", None).await.map(|(_, text)| text)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ClientError> {
        let (url, text) = self.send(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }

    /// Sends one request; any status other than 2xx becomes a typed error.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<(String, String), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let transport = |source| ClientError::Transport { url: url.clone(), source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ClientError::from_status(status, &text));
        }
        Ok((url, text))
    }
}

fn proxy_path(name: &str) -> String {
    format!("/proxies/{}", segment(name))
}

fn toxic_path(proxy: &str, toxic: &str) -> String {
    format!("{}/toxics/{}", proxy_path(proxy), segment(toxic))
}

/// Percent-encodes what a path segment cannot hold as is.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
