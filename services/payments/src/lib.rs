//! The payments service of the sample shop: a ledger of charges and refunds in which
//! an idempotency key never charges twice, and a summary the integrity checkers read.
//!
//! [`domain`] parses what clients send and holds the decline rule, [`store`] keeps the
//! ledger in SQLite (one transaction per charge, a unique index per key), and [`api`]
//! maps HTTP to both. [`build`] wires them.

pub mod api;
pub mod domain;
pub mod store;

use anyhow::Context;
use shop_kit::breakage::Breakage;
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_kit::money::MAX_AMOUNT;
use shop_kit::{ConfigError, Db, Env, ServiceApp, ServiceConfig};

use crate::domain::DeclineRule;

/// The payments service's own settings, beyond the shared [`ServiceConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Which charges are declined (`SHOP_PAYMENTS_DECLINE_OVER`).
    pub decline: DeclineRule,
    /// `SHOP_TEST_BREAK`: deliberate defects of the ledger (debug builds only).
    pub breakage: Breakage,
}

impl Settings {
    /// Reads `SHOP_PAYMENTS_DECLINE_OVER` (minor units, 0 to the maximum amount) and the
    /// break switches.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let var = "SHOP_PAYMENTS_DECLINE_OVER";
        let expected = format!("an amount in minor units from 0 to {MAX_AMOUNT}");
        let over: Option<i64> = env.optional(var, &expected)?;
        if let Some(v) = over.filter(|v| !(0..=MAX_AMOUNT).contains(v)) {
            return Err(ConfigError::Malformed { var: var.into(), value: v.to_string(), expected });
        }
        Ok(Self { decline: DeclineRule { over }, breakage: Breakage::from_env(env)? })
    }
}

/// Builds the payments service: reads its settings, opens (and migrates) its database
/// and returns the app ready to serve.
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let settings = Settings::from_env(&env)?;
    let db = open_db(&config, &env)?;
    if let Some(over) = settings.decline.over {
        tracing::info!(over, "declining charges above the configured amount");
    }
    let ledger = store::LedgerStore::new(db.clone()).with_breakage(settings.breakage);
    let state = api::AppState::new(&config, ledger, settings.decline);
    Ok(ServiceApp::new(config, metrics, api::router(state)).with_db(db))
}

fn open_db(config: &ServiceConfig, env: &Env) -> anyhow::Result<Db> {
    let path = config.db_path.as_deref().ok_or_else(|| ConfigError::Missing {
        var: "SHOP_DB".into(),
        hint: "set it to the SQLite file of the payments service, e.g. SHOP_DB=./data/payments.db".into(),
    })?;
    Db::open(path, store::MIGRATIONS, Sync::from_env(env)?)
        .with_context(|| format!("opening the payments database {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decline_rule_is_read_and_checked() {
        assert_eq!(Settings::from_env(&Env::default()).unwrap().decline, DeclineRule { over: None });
        let env = Env::from_pairs([("SHOP_PAYMENTS_DECLINE_OVER", "5000")]);
        assert_eq!(Settings::from_env(&env).unwrap().decline, DeclineRule { over: Some(5000) });
        for bad in ["-1", "lots", "1000000000001"] {
            let err = Settings::from_env(&Env::from_pairs([("SHOP_PAYMENTS_DECLINE_OVER", bad)])).unwrap_err();
            assert!(err.to_string().contains("SHOP_PAYMENTS_DECLINE_OVER"), "{err}");
        }
    }

    #[test]
    fn db_sync_is_parsed() {
        assert_eq!(Sync::from_env(&Env::default()).unwrap(), Sync::Normal);
        assert!(Sync::from_env(&Env::from_pairs([("SHOP_DB_SYNC", "x")])).is_err());
    }
}
