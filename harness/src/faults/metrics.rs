//! Prometheus text rendering of the per-proxy counters, with Toxiproxy's metric names
//! (`toxiproxy_proxy_received_bytes_total`, `toxiproxy_proxy_sent_bytes_total`) and a
//! Gauntlet one (`gauntlet_proxy_connections_total`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::engine::ProxyMetrics;
use super::model::{ProxyConfig, Stream};

/// One proxy's settings and counters, for rendering.
pub(crate) struct ProxyRow<'a> {
    pub config: &'a ProxyConfig,
    pub metrics: &'a ProxyMetrics,
}

/// The counters of `rows` in the Prometheus text exposition format.
pub(crate) fn render(rows: &[ProxyRow<'_>]) -> String {
    let mut out = String::new();
    let byte_metrics = [
        ("toxiproxy_proxy_received_bytes_total", "The total bytes received from the source, per direction.", true),
        ("toxiproxy_proxy_sent_bytes_total", "The total bytes sent to the destination, per direction.", false),
    ];
    for (name, help, received) in byte_metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for row in rows {
            for stream in Stream::BOTH {
                let counters = if received { &row.metrics.received } else { &row.metrics.sent };
                let value = counters[stream.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{direction=\"{stream}\",listener=\"{}\",proxy=\"{}\",upstream=\"{}\"}} {value}",
                    escape(&row.config.listen),
                    escape(&row.config.name),
                    escape(&row.config.upstream),
                );
            }
        }
    }
    let name = "gauntlet_proxy_connections_total";
    let _ = writeln!(out, "# HELP {name} The connections accepted and connected upstream.\n# TYPE {name} counter");
    for row in rows {
        let value = row.metrics.connections.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{proxy=\"{}\"}} {value}", escape(&row.config.name));
    }
    out
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_per_direction() {
        let config = ProxyConfig::new("a\"b", "127.0.0.1:1", "127.0.0.1:2");
        let metrics = ProxyMetrics::default();
        metrics.received[1].store(42, Ordering::Relaxed);
        let text = render(&[ProxyRow { config: &config, metrics: &metrics }]);
        assert!(text.contains(
            "toxiproxy_proxy_received_bytes_total{direction=\"downstream\",listener=\"127.0.0.1:1\",proxy=\"a\\\"b\",upstream=\"127.0.0.1:2\"} 42"
        ), "{text}");
    }
}
