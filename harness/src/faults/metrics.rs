//! Prometheus text rendering of the per-proxy counters, with Toxiproxy's metric names
//! (`toxiproxy_proxy_received_bytes_total`, `toxiproxy_proxy_sent_bytes_total`) and
//! Gauntlet's (`gauntlet_proxy_connections_total`; the damage of the `loss` and
//! `corrupt` toxics, `gauntlet_proxy_segments_lost_total` by retransmission timeout and
//! `gauntlet_proxy_bytes_corrupted_total`).

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
    render_damage(rows, &mut out);
    out
}

/// The counters of the toxics that damage streams; a proxy shows a lost series once it
/// lost a segment there, and its corrupted bytes always.
fn render_damage(rows: &[ProxyRow<'_>], out: &mut String) {
    let name = "gauntlet_proxy_segments_lost_total";
    let _ = writeln!(
        out,
        "# HELP {name} Segments the loss toxic lost, per direction and the retransmission timeout (ms) each waited.\n# TYPE {name} counter"
    );
    for row in rows {
        for (stream, rto, value) in row.metrics.toxics.lost() {
            let _ = writeln!(
                out,
                "{name}{{direction=\"{stream}\",proxy=\"{}\",rto_ms=\"{rto}\"}} {value}",
                escape(&row.config.name)
            );
        }
    }
    let name = "gauntlet_proxy_bytes_corrupted_total";
    let _ =
        writeln!(out, "# HELP {name} Bytes the corrupt toxic flipped a bit in, per direction.\n# TYPE {name} counter");
    for row in rows {
        for stream in Stream::BOTH {
            let value = row.metrics.toxics.flipped(stream);
            let _ = writeln!(out, "{name}{{direction=\"{stream}\",proxy=\"{}\"}} {value}", escape(&row.config.name));
        }
    }
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

    #[test]
    fn renders_the_damage_of_loss_and_corrupt() {
        let config = ProxyConfig::new("p", "127.0.0.1:1", "127.0.0.1:2");
        let metrics = ProxyMetrics::default();
        metrics.toxics.sink(Stream::Upstream).segment_lost(400);
        metrics.toxics.sink(Stream::Downstream).bytes_flipped(7);
        let text = render(&[ProxyRow { config: &config, metrics: &metrics }]);
        assert!(
            text.contains("gauntlet_proxy_segments_lost_total{direction=\"upstream\",proxy=\"p\",rto_ms=\"400\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gauntlet_proxy_bytes_corrupted_total{direction=\"downstream\",proxy=\"p\"} 7"),
            "{text}"
        );
    }
}
