//! Round-robin over a provider's replicas, skipping those whose breaker is open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::Service;

use super::breaker::Breakered;
use super::transport::ReplicaTransport;
use super::{ClientError, UpstreamRequest, UpstreamResponse};

/// One replica: its name (base URL) and its breaker-guarded transport.
pub type Replica = Breakered<ReplicaTransport>;

/// Spreads calls over replicas in turn; a replica whose breaker refuses calls is
/// skipped; when every breaker is open the call fails fast.
#[derive(Clone)]
pub struct RoundRobin {
    replicas: Arc<[Replica]>,
    next: Arc<AtomicUsize>,
    upstream: Arc<str>,
}

impl RoundRobin {
    /// A balancer over `replicas` of `upstream` (at least one).
    pub fn new(upstream: &str, replicas: Vec<Replica>) -> Self {
        assert!(!replicas.is_empty(), "an upstream has at least one replica");
        Self { replicas: replicas.into(), next: Arc::new(AtomicUsize::new(0)), upstream: upstream.into() }
    }

    /// The replicas, in order.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }
}

impl Service<UpstreamRequest> for RoundRobin {
    type Response = UpstreamResponse;
    type Error = ClientError;
    type Future = BoxFuture<'static, Result<UpstreamResponse, ClientError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: UpstreamRequest) -> Self::Future {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = (0..n).map(|i| (start + i) % n).find(|&i| self.replicas[i].breaker().is_accepting());
        match chosen {
            Some(i) => self.replicas[i].clone().call(req),
            None => {
                let upstream = self.upstream.to_string();
                Box::pin(async move {
                    Err(ClientError::Unavailable {
                        upstream,
                        reason: format!("circuit breaker open on all {n} replica(s)"),
                    })
                })
            }
        }
    }
}
