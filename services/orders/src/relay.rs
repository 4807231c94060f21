//! The outbox relay: publishes the outbox to the broker (NATS JetStream), in order,
//! one acknowledged message at a time, and marks each sent only after the ack.
//!
//! While the broker is away it retries the same message with a bounded, jittered
//! backoff and never skips ahead, so the stream holds the events in commit order. A
//! message whose ack was lost (a timeout, a crash after the ack and before the mark) is
//! sent again under the same `Nats-Msg-Id`, the event id, and JetStream drops the repeat
//! within its duplicate window ([`DUPLICATE_WINDOW`]). The stream ([`STREAM`],
//! subjects [`SUBJECTS`], file storage) is created if missing on every (re)connect.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use prometheus::{Gauge, IntCounter, IntGauge};
use shop_kit::breakage::{Breakage, Switch};
use shop_kit::metrics::Metrics;

use crate::events::Timestamp;
use crate::outbox::{Outbox, Pending, STREAM, SUBJECTS};

/// How long JetStream remembers a message id to drop a repeat: longer than any retry
/// of the relay or any restart of orders under test.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How the relay paces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Messages read from the outbox at a time.
    pub batch: u32,
    /// How often an empty outbox is looked at again.
    pub idle_poll: Duration,
    /// How long a publish may wait for the broker's ack before it is retried
    /// (`SHOP_OUTBOX_ACK_TIMEOUT`).
    pub ack_timeout: Duration,
    /// The first and the longest wait between retries while the broker is away.
    pub backoff: (Duration, Duration),
    /// `skip-dedup` (debug builds): publish without `Nats-Msg-Id`, so the broker keeps a
    /// repeated publish as a second message.
    pub breakage: Breakage,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            idle_poll: Duration::from_millis(50),
            ack_timeout: Duration::from_secs(2),
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            breakage: Breakage::NONE,
        }
    }
}

/// The relay's gauges and counters on `/metrics`.
#[derive(Clone)]
pub struct RelayMetrics {
    /// `shop_outbox_unsent_events`.
    pub unsent: IntGauge,
    /// `shop_outbox_oldest_unsent_age_seconds`.
    pub oldest_age: Gauge,
    /// `shop_outbox_published_total`: messages the broker acknowledged.
    pub published: IntCounter,
    /// `shop_outbox_publish_failures_total`: publishes that failed and will be retried.
    pub failures: IntCounter,
    /// `shop_outbox_duplicate_acks_total`: publishes the broker acknowledged as a repeat of
    /// a message id it already stored, and dropped (a retry after a lost or late ack).
    pub duplicates: IntCounter,
}

impl RelayMetrics {
    /// Creates the relay's metrics and registers them with `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let m = Self {
            unsent: IntGauge::new("outbox_unsent_events", "Order events not yet acknowledged by the broker")
                .expect("static metric"),
            oldest_age: Gauge::new(
                "outbox_oldest_unsent_age_seconds",
                "How long the oldest unsent order event has waited (0 when none)",
            )
            .expect("static metric"),
            published: IntCounter::new("outbox_published_total", "Order events the broker acknowledged")
                .expect("static metric"),
            failures: IntCounter::new("outbox_publish_failures_total", "Failed publishes, retried")
                .expect("static metric"),
            duplicates: IntCounter::new(
                "outbox_duplicate_acks_total",
                "Publishes the broker dropped as a repeat of a message id it already stored",
            )
            .expect("static metric"),
        };
        for c in [
            Box::new(m.unsent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.oldest_age.clone()),
            Box::new(m.published.clone()),
            Box::new(m.failures.clone()),
            Box::new(m.duplicates.clone()),
        ] {
            // Registered once per service instance; a second relay would share them.
            let _ = metrics.register(c);
        }
        m
    }
}

/// Why a publish did not get its ack.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot connect to the broker at {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("cannot create stream {STREAM}: {0}")]
    Stream(String),
    #[error("publishing {event_id}: {detail}")]
    Publish { event_id: String, detail: String },
    #[error(transparent)]
    Db(#[from] shop_kit::db::DbError),
}

/// Starts the relay of `outbox` to the broker at `urls` on the current runtime.
pub fn spawn(outbox: Outbox, urls: Vec<String>, config: RelayConfig, metrics: RelayMetrics) {
    shop_kit::platform::spawn(run(outbox, urls, config, metrics));
}

/// Relays for ever: connects, publishes, and on any failure waits and starts over from
/// the oldest unsent message.
pub async fn run(outbox: Outbox, urls: Vec<String>, config: RelayConfig, metrics: RelayMetrics) {
    let mut backoff = Backoff::new(config.backoff);
    loop {
        let context = match connect(&urls, &config).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: broker unavailable, retrying");
                update_lag(&outbox, &metrics).await;
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        tracing::info!(broker = urls.join(","), "outbox relay: connected");
        loop {
            match relay_batch(&outbox, &context, &config, &metrics).await {
                Ok(0) => {
                    backoff.reset();
                    tokio::time::sleep(config.idle_poll).await;
                }
                Ok(_) => backoff.reset(),
                Err(e) => {
                    metrics.failures.inc();
                    tracing::warn!(error = %e, "outbox relay: publish failed, retrying");
                    update_lag(&outbox, &metrics).await;
                    tokio::time::sleep(backoff.next()).await;
                    // The client reconnects by itself; a lost stream is made again (bounded,
                    // so the lag on /metrics stays current while the broker is away).
                    if matches!(e, RelayError::Publish { .. }) {
                        let made = tokio::time::timeout(config.ack_timeout * 2, ensure_stream(&context)).await;
                        if matches!(made, Ok(Err(_))) {
                            break;
                        }
                    }
                }
            }
            update_lag(&outbox, &metrics).await;
        }
    }
}

/// Connects to the broker and makes sure the stream exists.
pub async fn connect(urls: &[String], config: &RelayConfig) -> Result<jetstream::Context, RelayError> {
    let max_delay = config.backoff.1;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(config.ack_timeout)
        .name("shop-orders outbox relay")
        // Back soon after the broker is: the client's own reconnects, bounded.
        .reconnect_delay_callback(move |attempts| (Duration::from_millis(50) * attempts.min(100) as u32).min(max_delay))
        .connect(urls)
        .await
        .map_err(|e| RelayError::Connect { url: urls.join(","), detail: e.to_string() })?;
    let mut context = jetstream::new(client);
    context.set_timeout(config.ack_timeout);
    ensure_stream(&context).await?;
    Ok(context)
}

/// Creates the orders stream unless it exists (idempotent; file storage).
pub async fn ensure_stream(context: &jetstream::Context) -> Result<(), RelayError> {
    context
        .get_or_create_stream(stream::Config {
            name: STREAM.to_string(),
            subjects: vec![SUBJECTS.to_string()],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|e| RelayError::Stream(e.to_string()))
}

/// Publishes the oldest unsent messages, each after the previous one's ack, and marks
/// the acknowledged ones sent; returns how many were sent.
async fn relay_batch(
    outbox: &Outbox,
    context: &jetstream::Context,
    config: &RelayConfig,
    metrics: &RelayMetrics,
) -> Result<usize, RelayError> {
    let batch = outbox.unsent(config.batch).await?;
    let mut acked = Vec::with_capacity(batch.len());
    let mut failure = None;
    for message in &batch {
        // Bounded as a whole: a disconnected client may hold the send itself, not only the ack.
        let with_id = !config.breakage.is_broken(Switch::SkipDedup);
        let sent = tokio::time::timeout(config.ack_timeout * 2, publish(context, message, with_id)).await;
        let sent = sent.unwrap_or_else(|_| {
            Err(RelayError::Publish {
                event_id: message.event_id.clone(),
                detail: format!("no ack within {:?}", config.ack_timeout * 2),
            })
        });
        match sent {
            Ok(duplicate) => {
                acked.push(message.seq);
                metrics.published.inc();
                if duplicate {
                    metrics.duplicates.inc();
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let sent = acked.len();
    outbox.mark_sent(acked).await?;
    match failure {
        Some(e) => Err(e),
        None => Ok(sent),
    }
}

/// Publishes one message with its event id as `Nats-Msg-Id` (unless `with_id` is false,
/// the break switch) and waits for the ack; true when the broker dropped it as a repeat.
async fn publish(context: &jetstream::Context, message: &Pending, with_id: bool) -> Result<bool, RelayError> {
    let failed = |detail: String| RelayError::Publish { event_id: message.event_id.clone(), detail };
    let mut headers = async_nats::HeaderMap::new();
    if with_id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.event_id.as_str());
    }
    let ack = context
        .publish_with_headers(message.subject.clone(), headers, message.payload.clone().into())
        .await
        .map_err(|e| failed(e.to_string()))?;
    ack.await.map(|ack| ack.duplicate).map_err(|e| failed(e.to_string()))
}

async fn update_lag(outbox: &Outbox, metrics: &RelayMetrics) {
    if let Ok(lag) = outbox.lag(Timestamp::now()).await {
        metrics.unsent.set(i64::try_from(lag.unsent).unwrap_or(i64::MAX));
        metrics.oldest_age.set(lag.oldest_unsent_age_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
}

/// Exponential backoff with full jitter, between the bounds given.
struct Backoff {
    bounds: (Duration, Duration),
    next: Duration,
}

impl Backoff {
    fn new(bounds: (Duration, Duration)) -> Self {
        Self { bounds, next: bounds.0 }
    }

    fn next(&mut self) -> Duration {
        let cap = self.next;
        self.next = (self.next * 2).min(self.bounds.1);
        let jittered = rand::Rng::random_range(
            &mut shop_kit::platform::rng(),
            cap.as_millis() as u64 / 2..=cap.as_millis() as u64,
        );
        Duration::from_millis(jittered.max(1))
    }

    fn reset(&mut self) {
        self.next = self.bounds.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new((Duration::from_millis(100), Duration::from_millis(800)));
        let waits: Vec<Duration> = (0..6).map(|_| b.next()).collect();
        assert!(waits[0] <= Duration::from_millis(100) && waits[0] >= Duration::from_millis(50), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(800)), "{waits:?}");
        assert!(waits[5] >= Duration::from_millis(400), "capped at 800 ms, jittered down to half: {waits:?}");
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
