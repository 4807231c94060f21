//! The innermost layer: one HTTP call to one replica, with a per-attempt timeout and
//! the whole response body read.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tower::Service;

use super::{ClientError, UpstreamRequest, UpstreamResponse};

/// Sends requests to one replica at `base` (e.g. `http://127.0.0.1:7002`).
#[derive(Clone)]
pub struct ReplicaTransport {
    http: Http,
    upstream: Arc<str>,
    base: Arc<str>,
    timeout: Duration,
}

impl ReplicaTransport {
    /// A transport for replica `base` of `upstream`, giving up on an attempt after `timeout`.
    pub fn new(http: reqwest::Client, upstream: &str, base: &str, timeout: Duration) -> Self {
        let http = match crate::platform::transport() {
            Some(simulated) => Http::Platform(simulated),
            None => Http::Reqwest(http),
        };
        Self { http, upstream: upstream.into(), base: base.into(), timeout }
    }

    /// The replica's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Service<UpstreamRequest> for ReplicaTransport {
    type Response = UpstreamResponse;
    type Error = ClientError;
    type Future = BoxFuture<'static, Result<UpstreamResponse, ClientError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: UpstreamRequest) -> Self::Future {
        let url = format!("{}{}", self.base, req.path);
        let timeout = req.timeout.unwrap_or(self.timeout);
        let upstream = self.upstream.to_string();
        match &self.http {
            Http::Reqwest(http) => {
                let builder = http.request(req.method.clone(), url).headers(req.headers.clone()).body(req.body.clone());
                Box::pin(async move {
                    let attempt = async {
                        let res = builder.send().await?;
                        let status = res.status();
                        let headers = res.headers().clone();
                        let body = res.bytes().await?;
                        Ok::<_, reqwest::Error>(UpstreamResponse { status, headers, body })
                    };
                    match tokio::time::timeout(timeout, attempt).await {
                        Err(_) => Err(ClientError::Timeout { upstream, after: timeout }),
                        Ok(Ok(res)) => Ok(res),
                        Ok(Err(e)) if e.is_timeout() => Err(ClientError::Timeout { upstream, after: timeout }),
                        Ok(Err(e)) => Err(ClientError::Unavailable { upstream, reason: error_chain(&e) }),
                    }
                })
            }
            Http::Platform(transport) => {
                let mut request = http::Request::new(req.body.clone());
                *request.method_mut() = req.method.clone();
                *request.headers_mut() = req.headers.clone();
                let sent = url.parse().map(|uri| {
                    *request.uri_mut() = uri;
                    transport.send(request)
                });
                Box::pin(async move {
                    let sent = sent.map_err(|e| ClientError::Unavailable {
                        upstream: upstream.clone(),
                        reason: format!("bad URL: {e}"),
                    })?;
                    match tokio::time::timeout(timeout, sent).await {
                        Err(_) => Err(ClientError::Timeout { upstream, after: timeout }),
                        Ok(Ok(res)) => {
                            let (parts, body) = res.into_parts();
                            Ok(UpstreamResponse { status: parts.status, headers: parts.headers, body })
                        }
                        Ok(Err(reason)) => Err(ClientError::Unavailable { upstream, reason }),
                    }
                })
            }
        }
    }
}

/// How a replica is reached: reqwest over real TCP, or the simulator's network.
#[derive(Clone)]
enum Http {
    Reqwest(reqwest::Client),
    Platform(Arc<dyn crate::platform::Transport>),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
