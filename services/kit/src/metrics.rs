//! Prometheus metrics of one service instance: a registry of its own, so several
//! services can run in one test process without sharing counters.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, dense where our SLOs live (1 ms .. 10 s).
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Circuit breaker states as exported in `shop_breaker_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerGauge {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// The metrics every service exports on `GET /metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests served, by route template, method and status code.
    pub http_requests: IntCounterVec,
    /// Request latency in seconds, by route template, method and status code.
    pub http_latency: HistogramVec,
    /// Requests being served right now.
    pub in_flight: IntGauge,
    /// Breaker state per upstream and replica (0 closed, 1 half-open, 2 open).
    pub breaker_state: IntGaugeVec,
    /// Calls made to upstreams, by upstream and outcome (ok, error, timeout, rejected, retry).
    pub upstream_calls: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics of service `service`, each labelled with it.
    pub fn new(service: &str) -> Self {
        let registry =
            Registry::new_custom(Some("shop".into()), Some([("service".to_string(), service.to_string())].into()))
                .expect("static registry options are valid");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &["route", "method", "status"],
        )
        .expect("static metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method", "status"],
        )
        .expect("static metric");
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being served").expect("static metric");
        let breaker_state = IntGaugeVec::new(
            Opts::new("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open"),
            &["upstream", "replica"],
        )
        .expect("static metric");
        let upstream_calls = IntCounterVec::new(
            Opts::new("upstream_calls_total", "Calls to upstream services by outcome"),
            &["upstream", "outcome"],
        )
        .expect("static metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_latency.clone()),
            Box::new(in_flight.clone()),
            Box::new(breaker_state.clone()),
            Box::new(upstream_calls.clone()),
        ] {
            registry.register(c).expect("each metric is registered once");
        }
        Self { registry, http_requests, http_latency, in_flight, breaker_state, upstream_calls }
    }

    /// Adds a service's own metric to what `/metrics` exports; a name taken twice is an
    /// error.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Sets the exported state of one replica's breaker.
    pub fn set_breaker(&self, upstream: &str, replica: &str, state: BreakerGauge) {
        self.breaker_state.with_label_values(&[upstream, replica]).set(state as i64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series() {
        let m = Metrics::new("orders");
        m.http_requests.with_label_values(&["/v1/orders", "POST", "201"]).inc();
        m.set_breaker("payments", "127.0.0.1:1", BreakerGauge::Open);
        let text = m.render();
        assert!(
            text.contains(
                r#"shop_http_requests_total{method="POST",route="/v1/orders",status="201",service="orders"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"shop_breaker_state{replica="127.0.0.1:1",upstream="payments",service="orders"} 2"#),
            "{text}"
        );
    }
}
