//! The durable JetStream consumer of order events.
//!
//! At-least-once delivery made effectively-once: each message is acted on in one
//! transaction that also records its event id ([`Store::apply`]), and acknowledged only
//! after that commit. A crash or a lost ack redelivers it; the second time it is a
//! duplicate and is only acknowledged. A message that fails `max_attempts` times (a
//! poison message: not an order event, or a store that keeps failing) is published to
//! the dead-letter subject `dlq.orders.<subject tail>` (stream [`DLQ_STREAM`]), kept in
//! the database, and terminated, so it never blocks the ones behind it.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, stream, Message};
use futures::StreamExt;
use prometheus::{Gauge, IntCounter, IntCounterVec};
use shop_kit::metrics::Metrics;

use crate::event::OrderEvent;
use crate::store::{Applied, DeadLetter, Store};

/// The stream of order events (created by whichever of orders and notifications comes first).
pub const STREAM: &str = "ORDERS";
/// Its subjects.
pub const SUBJECTS: &str = "orders.>";
/// The durable consumer's name: the broker remembers what it has acknowledged.
pub const DURABLE: &str = "notifications";
/// The stream that keeps dead letters.
pub const DLQ_STREAM: &str = "ORDERS_DLQ";
/// Dead letters are published under this prefix plus the original subject's tail.
pub const DLQ_PREFIX: &str = "dlq.orders.";

/// How the consumer behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerConfig {
    /// Deliveries of one message before it is dead-lettered (`SHOP_NOTIFICATIONS_MAX_ATTEMPTS`).
    pub max_attempts: i64,
    /// How long the broker waits for an ack before redelivering (`SHOP_NOTIFICATIONS_ACK_WAIT`).
    pub ack_wait: Duration,
    /// A slow sender: how long sending one notification takes (`SHOP_NOTIFICATIONS_SEND_DELAY`).
    pub send_delay: Duration,
    /// A failing sender: the share of sends that fail, from 0 to 1
    /// (`SHOP_NOTIFICATIONS_SEND_FAILURES`); a failed send is retried like any failure.
    pub send_failures: f64,
    /// The first and the longest wait between reconnects while the broker is away.
    pub backoff: (Duration, Duration),
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            ack_wait: Duration::from_secs(10),
            send_delay: Duration::ZERO,
            send_failures: 0.0,
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
        }
    }
}

/// `shop_notifications_events_total{outcome}`: notified, nothing_to_tell, duplicate,
/// failed (to be retried), dead_lettered; `shop_notifications_redeliveries_total`: messages
/// the broker delivered again (a lost or late ack, a crash); and the consumer's lag,
/// `shop_notifications_consumer_lag_seconds`: how long the last event acted on (not a
/// repeat of one acted on already) had waited in the stream since it was published
/// (the broker's own timestamp).
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub events: IntCounterVec,
    pub redeliveries: IntCounter,
    pub lag: Gauge,
}

impl ConsumerMetrics {
    /// Creates the consumer's metrics and registers them with `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let events = IntCounterVec::new(
            prometheus::Opts::new("notifications_events_total", "Order events handled, by outcome"),
            &["outcome"],
        )
        .expect("static metric");
        let _ = metrics.register(Box::new(events.clone()));
        let lag = Gauge::new(
            "notifications_consumer_lag_seconds",
            "How long the last order event handled had waited in the stream since it was published",
        )
        .expect("static metric");
        let _ = metrics.register(Box::new(lag.clone()));
        let redeliveries = IntCounter::new(
            "notifications_redeliveries_total",
            "Order events the broker delivered again (a lost or late ack, a crash)",
        )
        .expect("static metric");
        let _ = metrics.register(Box::new(redeliveries.clone()));
        Self { events, redeliveries, lag }
    }
}

/// Why consuming stopped (it starts over after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("broker at {url}: {detail}")]
    Broker { url: String, detail: String },
}

/// Starts consuming on the current runtime, for ever.
pub fn spawn(store: Store, urls: Vec<String>, config: ConsumerConfig, metrics: ConsumerMetrics) {
    shop_kit::platform::spawn(run(store, urls, config, metrics));
}

/// Consumes for ever: connects, makes sure the streams and the durable consumer exist,
/// handles messages, and on any failure waits and starts over.
pub async fn run(store: Store, urls: Vec<String>, config: ConsumerConfig, metrics: ConsumerMetrics) {
    let mut wait = config.backoff.0;
    loop {
        match consume(&store, &urls, &config, &metrics).await {
            Ok(()) => wait = config.backoff.0,
            Err(e) => {
                tracing::warn!(error = %e, "notifications consumer: broker unavailable, retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(config.backoff.1);
            }
        }
    }
}

async fn consume(
    store: &Store,
    urls: &[String],
    config: &ConsumerConfig,
    metrics: &ConsumerMetrics,
) -> Result<(), ConsumeError> {
    let broker = |detail: String| ConsumeError::Broker { url: urls.join(","), detail };
    let max_delay = config.backoff.1;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .name("shop-notifications consumer")
        .reconnect_delay_callback(move |n| (Duration::from_millis(50) * n.min(100) as u32).min(max_delay))
        .connect(urls)
        .await
        .map_err(|e| broker(e.to_string()))?;
    let js = jetstream::new(client);
    let orders = ensure_stream(&js, STREAM, SUBJECTS).await.map_err(broker)?;
    ensure_stream(&js, DLQ_STREAM, &format!("{DLQ_PREFIX}>")).await.map_err(broker)?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = orders
        .get_or_create_consumer(
            DURABLE,
            pull::Config {
                durable_name: Some(DURABLE.to_string()),
                filter_subject: SUBJECTS.to_string(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // Attempts are counted here: the broker never gives up on a message by itself.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| broker(e.to_string()))?;
    tracing::info!(broker = urls.join(","), "notifications consumer: consuming");
    let mut messages = consumer.messages().await.map_err(|e| broker(e.to_string()))?;
    while let Some(next) = messages.next().await {
        match next {
            Ok(message) => handle(store, &js, &message, config, metrics).await,
            Err(e) => return Err(broker(e.to_string())),
        }
    }
    Err(broker("the message stream ended".into()))
}

async fn ensure_stream(js: &jetstream::Context, name: &str, subjects: &str) -> Result<stream::Stream, String> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(10 * 60),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {name}: {e}"))
}

/// Acts on one message, then acknowledges it (or asks for it again, or gives up on it).
async fn handle(
    store: &Store,
    js: &jetstream::Context,
    message: &Message,
    config: &ConsumerConfig,
    m: &ConsumerMetrics,
) {
    let (attempt, seq, published_ns) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence, Some(info.published.unix_timestamp_nanos())),
        Err(_) => (1, 0, None),
    };
    if attempt > 1 {
        m.redeliveries.inc();
    }
    let outcome = match OrderEvent::parse(&message.payload) {
        Ok(event) => match send(store, &event, config).await {
            Ok(()) => store.apply_at(event, (seq > 0).then_some(seq), now_ms()).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.to_string()),
    };
    let ack = match outcome {
        Ok(applied) => {
            let label = match applied {
                Applied::Notified => "notified",
                Applied::NothingToTell => "nothing_to_tell",
                Applied::Duplicate => "duplicate",
            };
            m.events.with_label_values(&[label]).inc();
            // The lag is how late events are acted on: a repeat of one acted on already
            // (a redelivery waiting behind the backlog) does not count.
            if let (Some(published), false) = (published_ns, applied == Applied::Duplicate) {
                m.lag.set(now_ns().saturating_sub(published).max(0) as f64 / 1e9);
            }
            message.ack().await
        }
        Err(reason) if attempt >= config.max_attempts => {
            tracing::warn!(seq, attempt, reason, "notifications consumer: giving up on a message (dead letter)");
            match dead_letter(store, js, message, seq, attempt, reason).await {
                Ok(()) => {
                    m.events.with_label_values(&["dead_lettered"]).inc();
                    message.ack_with(AckKind::Term).await
                }
                // Not kept anywhere yet: let it come again.
                Err(e) => {
                    tracing::warn!(seq, error = e, "notifications consumer: cannot dead-letter, retrying");
                    message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
                }
            }
        }
        Err(reason) => {
            tracing::warn!(seq, attempt, reason, "notifications consumer: message failed, will retry");
            m.events.with_label_values(&["failed"]).inc();
            let delay = Duration::from_millis(100 * attempt.clamp(1, 50) as u64);
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
    };
    if let Err(e) = ack {
        // Redelivered after ack_wait, and then recognised as a duplicate.
        tracing::warn!(seq, error = %e, "notifications consumer: ack not sent");
    }
}

/// The sender: the notification itself is the row [`Store::apply_at`] writes; a slow or
/// failing sender (settings) makes scenarios interesting. Only what was not sent before
/// is sent: a repeat is recognised first.
async fn send(store: &Store, event: &OrderEvent, config: &ConsumerConfig) -> Result<(), String> {
    let slow = !config.send_delay.is_zero();
    let failing = config.send_failures > 0.0;
    if !event.kind.is_terminal() || !(slow || failing) || store.is_processed(&event.event_id).await.unwrap_or(false) {
        return Ok(());
    }
    if slow {
        tokio::time::sleep(config.send_delay).await;
    }
    if failing && shop_kit::platform::random::<f64>() < config.send_failures {
        return Err("the sender failed (SHOP_NOTIFICATIONS_SEND_FAILURES)".into());
    }
    Ok(())
}

/// Publishes the message to the dead-letter subject (acknowledged by its stream, a
/// repeat dropped by its id) and keeps it in the database.
async fn dead_letter(
    store: &Store,
    js: &jetstream::Context,
    message: &Message,
    seq: u64,
    attempts: i64,
    reason: String,
) -> Result<(), String> {
    let tail = message.subject.as_str().strip_prefix("orders.").unwrap_or(message.subject.as_str());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("dlq:{seq}").as_str());
    headers.insert("Gauntlet-Dead-Letter-Reason", reason.replace(['\r', '\n'], " ").as_str());
    let ack = js
        .publish_with_headers(format!("{DLQ_PREFIX}{tail}"), headers, message.payload.clone())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())?;
    let letter = DeadLetter {
        stream_seq: i64::try_from(seq).unwrap_or(i64::MAX),
        subject: message.subject.to_string(),
        payload: String::from_utf8_lossy(&message.payload).into_owned(),
        reason,
        attempts,
        created_ms: now_ms(),
    };
    store.dead_letter(letter).await.map_err(|e| e.to_string())
}

fn now_ns() -> i128 {
    shop_kit::platform::since_epoch().as_nanos() as i128
}

fn now_ms() -> i64 {
    shop_kit::platform::unix_millis() as i64
}
