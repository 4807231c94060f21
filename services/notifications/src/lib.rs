//! The notifications service of the sample shop: a durable JetStream consumer of order
//! events that records one notification per terminal order (paid or cancelled) for its
//! user, effectively once, and lists a user's notifications.
//!
//! - [`event`]: the order events as this consumer reads them (unknown fields ignored).
//! - [`store`]: notifications, processed event ids and dead letters, in SQLite.
//! - [`consumer`]: the durable pull consumer; acks after commit; dead letters.
//! - [`api`]: `GET /v1/notifications?user_id=` and the admin state.
//!
//! Configuration, besides the kit's: `SHOP_UPSTREAM_BROKER` (required, `nats://host:port`),
//! `SHOP_NOTIFICATIONS_MAX_ATTEMPTS` (5), `SHOP_NOTIFICATIONS_ACK_WAIT` (10s),
//! `SHOP_NOTIFICATIONS_SEND_DELAY` (0: a slow sender when set),
//! `SHOP_NOTIFICATIONS_SEND_FAILURES` (0: the share of sends that fail, retried), `SHOP_DB_SYNC`, and in debug
//! builds the break switch `skip-dedup` of `SHOP_TEST_BREAK`.

pub mod api;
pub mod consumer;
pub mod event;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use shop_kit::breakage::Breakage;
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_kit::{ConfigError, Db, Env, ServiceApp, ServiceConfig};

use crate::consumer::{ConsumerConfig, ConsumerMetrics};

/// The notifications service's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub consumer: ConsumerConfig,
    pub sync: Sync,
    pub breakage: Breakage,
}

impl Settings {
    /// Reads the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = ConsumerConfig::default();
        let var = "SHOP_NOTIFICATIONS_MAX_ATTEMPTS";
        let max_attempts: i64 = env.or(var, defaults.max_attempts, "a number of attempts from 1 to 100")?;
        if !(1..=100).contains(&max_attempts) {
            return Err(ConfigError::Malformed {
                var: var.into(),
                value: max_attempts.to_string(),
                expected: "a number of attempts from 1 to 100".into(),
            });
        }
        let ack_wait = env.duration_or("SHOP_NOTIFICATIONS_ACK_WAIT", defaults.ack_wait)?;
        if ack_wait < Duration::from_millis(100) {
            return Err(ConfigError::Malformed {
                var: "SHOP_NOTIFICATIONS_ACK_WAIT".into(),
                value: format!("{ack_wait:?}"),
                expected: "a duration of at least 100ms".into(),
            });
        }
        let var = "SHOP_NOTIFICATIONS_SEND_FAILURES";
        let share: f64 = env.or(var, 0.0, "a share of sends that fail, from 0 to 1 (e.g. 0.2)")?;
        if !(0.0..=1.0).contains(&share) {
            return Err(ConfigError::Malformed {
                var: var.into(),
                value: share.to_string(),
                expected: "a share of sends that fail, from 0 to 1 (e.g. 0.2)".into(),
            });
        }
        Ok(Self {
            consumer: ConsumerConfig {
                max_attempts,
                ack_wait,
                send_delay: env.duration_or("SHOP_NOTIFICATIONS_SEND_DELAY", Duration::ZERO)?,
                send_failures: share,
                ..defaults
            },
            sync: Sync::from_env(env)?,
            breakage: Breakage::from_env(env)?,
        })
    }
}

/// Builds the notifications service: opens its database, starts the consumer (which
/// waits for the broker as long as it must) and returns the app to serve. Readiness
/// checks only the database.
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let settings = Settings::from_env(&env)?;
    let broker = config.broker("broker")?.ok_or_else(|| ConfigError::Missing {
        var: "SHOP_UPSTREAM_BROKER".into(),
        hint: "set it to the NATS JetStream broker the order events come from, e.g. nats://127.0.0.1:4222".into(),
    })?;
    let path = config.db_path.clone().ok_or_else(|| ConfigError::Missing {
        var: "SHOP_DB".into(),
        hint: "set it to the SQLite file of the notifications service, e.g. SHOP_DB=./data/notifications.db".into(),
    })?;
    let db = Db::open(&path, store::MIGRATIONS, settings.sync)
        .with_context(|| format!("opening the notifications database {}", path.display()))?;
    let store = store::Store::new(db.clone()).with_breakage(settings.breakage);
    consumer::spawn(store.clone(), broker, settings.consumer, ConsumerMetrics::register(&metrics));
    let router = api::router(api::AppState { store, admin_token: config.admin_token.clone() });
    Ok(ServiceApp::new(config, metrics, router).with_db(db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_defaults_and_name_bad_values() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.consumer, ConsumerConfig::default());
        let env =
            Env::default().with("SHOP_NOTIFICATIONS_MAX_ATTEMPTS", "3").with("SHOP_NOTIFICATIONS_SEND_DELAY", "50ms");
        let s = Settings::from_env(&env).unwrap();
        assert_eq!((s.consumer.max_attempts, s.consumer.send_delay), (3, Duration::from_millis(50)));
        for (var, bad, says) in [
            ("SHOP_NOTIFICATIONS_MAX_ATTEMPTS", "0", "from 1 to 100"),
            ("SHOP_NOTIFICATIONS_MAX_ATTEMPTS", "many", "from 1 to 100"),
            ("SHOP_NOTIFICATIONS_ACK_WAIT", "1ms", "at least 100ms"),
            ("SHOP_NOTIFICATIONS_SEND_FAILURES", "1.5", "from 0 to 1"),
            ("SHOP_NOTIFICATIONS_SEND_FAILURES", "some", "from 0 to 1"),
            ("SHOP_DB_SYNC", "sometimes", "normal or full"),
        ] {
            let err = Settings::from_env(&Env::default().with(var, bad)).unwrap_err().to_string();
            assert!(err.contains(var) && err.contains(says), "{err}");
        }
    }
}
