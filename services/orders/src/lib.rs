//! The orders service: event-sourced orders and the place-order saga.
//!
//! - [`events`]: the event model and its fold into an order (pure).
//! - [`store`]: the event log with optimistic appends, the `orders` projection, and
//!   idempotency keys, in SQLite.
//! - [`saga`]: the decision table (pure) and the executor that drives one order at a time.
//! - [`recovery`]: resumes open orders at start-up and sweeps for stuck ones.
//! - [`upstreams`]: typed calls to catalog and payments.
//! - [`outbox`]: the published events (placed, paid, cancelled), queued with the event.
//! - [`relay`]: publishes the outbox to the broker (NATS JetStream), in order, after acks.
//! - [`api`]: the HTTP routes.
//! - [`contract`]: contract-test mode only: provider states and produced messages.
//!
//! Configuration, besides the kit's: `SHOP_UPSTREAM_CATALOG`, `SHOP_UPSTREAM_PAYMENTS`
//! (required), `SHOP_ORDERS_INLINE_DEADLINE` (3s), `SHOP_ORDERS_SAGA_DEADLINE` (30s),
//! `SHOP_ORDERS_SETTLE` (5s), `SHOP_ORDERS_STEP_ATTEMPTS` (8),
//! `SHOP_ORDERS_SWEEP_INTERVAL` (5s), `SHOP_DB_SYNC` (`normal` or `full`),
//! `SHOP_UPSTREAM_BROKER` (optional, `nats://host:port`: the relay runs only with it),
//! `SHOP_OUTBOX_ACK_TIMEOUT` (2s: how long the relay waits for the broker's ack), and
//! in debug builds the break switches of `SHOP_TEST_BREAK` (`shop_kit::breakage`).

pub mod api;
pub mod contract;
pub mod events;
pub mod outbox;
pub mod recovery;
pub mod relay;
pub mod saga;
pub mod store;
pub mod upstreams;

use std::time::Duration;

use anyhow::Context;
use shop_kit::breakage::Breakage;
use shop_kit::client::{ClientConfig, UpstreamClient};
use shop_kit::config::{ConfigError, Env, ServiceConfig};
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_kit::ServiceApp;

use crate::recovery::RecoveryConfig;
use crate::relay::RelayConfig;
use crate::saga::{Saga, SagaConfig};
use crate::store::Store;
use crate::upstreams::Upstreams;

/// The orders service's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrdersConfig {
    /// How long `POST /v1/orders` waits for the saga (`SHOP_ORDERS_INLINE_DEADLINE`).
    pub inline_deadline: Duration,
    pub saga: SagaConfig,
    pub recovery: RecoveryConfig,
    /// `SHOP_DB_SYNC`: `normal` (durable against a process crash) or `full` (power loss too).
    pub sync: Sync,
    /// The outbox relay's pacing (`SHOP_OUTBOX_ACK_TIMEOUT`), used with a broker.
    pub relay: RelayConfig,
    /// `SHOP_TEST_BREAK`: deliberate defects of the store, the saga and the relay (debug builds only).
    pub breakage: Breakage,
}

impl OrdersConfig {
    /// Reads the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let breakage = Breakage::from_env(env)?;
        Ok(Self {
            inline_deadline: env.duration_or("SHOP_ORDERS_INLINE_DEADLINE", Duration::from_secs(3))?,
            saga: SagaConfig::from_env(env)?,
            recovery: RecoveryConfig {
                interval: env.duration_or("SHOP_ORDERS_SWEEP_INTERVAL", RecoveryConfig::default().interval)?,
                ..RecoveryConfig::default()
            },
            sync: Sync::from_env(env)?,
            relay: relay_config(env, breakage)?,
            breakage,
        })
    }
}

fn relay_config(env: &Env, breakage: Breakage) -> Result<RelayConfig, ConfigError> {
    let defaults = RelayConfig::default();
    let var = "SHOP_OUTBOX_ACK_TIMEOUT";
    let ack_timeout = env.duration_or(var, defaults.ack_timeout)?;
    if !(Duration::from_millis(50)..=Duration::from_secs(60)).contains(&ack_timeout) {
        return Err(ConfigError::Malformed {
            var: var.into(),
            value: format!("{ack_timeout:?}"),
            expected: "a duration from 50ms to 60s".into(),
        });
    }
    Ok(RelayConfig { ack_timeout, breakage, ..defaults })
}

/// Builds the orders service: opens its database, makes the clients of catalog and
/// payments, starts the recovery worker (which resumes every order left in flight) and
/// returns the app to serve. Readiness checks only the database.
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let settings = OrdersConfig::from_env(&env)?;
    let catalog =
        UpstreamClient::new("catalog", &config.upstream("catalog")?, ClientConfig::default(), Some(metrics.clone()));
    let payments =
        UpstreamClient::new("payments", &config.upstream("payments")?, ClientConfig::default(), Some(metrics.clone()));
    let path = config.db_path.clone().ok_or_else(|| ConfigError::Missing {
        var: "SHOP_DB".into(),
        hint: "set it to the SQLite file of the orders service, e.g. SHOP_DB=./data/orders.db".into(),
    })?;
    let store = Store::open(&path, settings.sync)
        .with_context(|| format!("opening {}", path.display()))?
        .with_breakage(settings.breakage);
    let db = store.db().clone();
    let broker = config.broker("broker")?;
    if let Some(urls) = &broker {
        let metrics = relay::RelayMetrics::register(&metrics);
        relay::spawn(outbox::Outbox::new(db.clone()), urls.clone(), settings.relay.clone(), metrics);
    }
    let saga = Saga::new(store, Upstreams { catalog, payments }, settings.saga, settings.breakage);
    recovery::spawn(&saga, settings.recovery);
    let router = api::router(api::AppState {
        saga,
        inline_deadline: settings.inline_deadline,
        admin_token: config.admin_token.clone(),
        relay: broker.is_some(),
    });
    Ok(ServiceApp::new(config, metrics, router).with_db(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_name_bad_values() {
        let c = OrdersConfig::from_env(&Env::default()).unwrap();
        assert_eq!(c.inline_deadline, Duration::from_secs(3));
        assert_eq!(c.saga.deadline, Duration::from_secs(30));
        assert_eq!(c.sync, Sync::Normal);
        assert_eq!(c.breakage, Breakage::NONE);
        let env = Env::default().with("SHOP_ORDERS_SAGA_DEADLINE", "1m").with("SHOP_DB_SYNC", "FULL");
        let c = OrdersConfig::from_env(&env).unwrap();
        assert_eq!((c.saga.deadline, c.sync), (Duration::from_secs(60), Sync::Full));
        let err = OrdersConfig::from_env(&Env::default().with("SHOP_ORDERS_INLINE_DEADLINE", "soon")).unwrap_err();
        assert!(err.to_string().contains("SHOP_ORDERS_INLINE_DEADLINE"), "{err}");
        let c = OrdersConfig::from_env(&Env::default().with("SHOP_OUTBOX_ACK_TIMEOUT", "200ms")).unwrap();
        assert_eq!(c.relay.ack_timeout, Duration::from_millis(200));
        let err = OrdersConfig::from_env(&Env::default().with("SHOP_OUTBOX_ACK_TIMEOUT", "1ms")).unwrap_err();
        assert!(err.to_string().contains("SHOP_OUTBOX_ACK_TIMEOUT") && err.to_string().contains("50ms"), "{err}");
        let err = OrdersConfig::from_env(&Env::default().with("SHOP_DB_SYNC", "sometimes")).unwrap_err();
        assert!(err.to_string().contains("normal or full"), "{err}");
    }
}
