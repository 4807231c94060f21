//! The catalog service of the sample shop: products, stock, and reservations that hold
//! stock for an order until it is committed (sold) or released.
//!
//! [`domain`] parses what clients send into valid values, [`store`] keeps stock in
//! SQLite where every reservation is one transaction and the schema refuses negative
//! or unconserved stock, and [`api`] maps HTTP to both. [`build`] wires them and seeds
//! the product set on first start.

pub mod api;
pub mod domain;
pub mod store;

use anyhow::Context;
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_kit::{ConfigError, Db, Env, ServiceApp, ServiceConfig};

use crate::store::{CatalogStore, Seed};

/// The most products a seed may create.
pub const MAX_SEED_PRODUCTS: i64 = 100_000;

/// The catalog's own settings, beyond the shared [`ServiceConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The product set made on first start (`SHOP_CATALOG_SEED_PRODUCTS`,
    /// `SHOP_CATALOG_SEED_STOCK`).
    pub seed: Seed,
}

impl Settings {
    /// Reads the seed size; each value must be in bounds.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let products = bounded(env, "SHOP_CATALOG_SEED_PRODUCTS", 100, 0, MAX_SEED_PRODUCTS)?;
        let stock_each = bounded(env, "SHOP_CATALOG_SEED_STOCK", 1000, 0, domain::MAX_STOCK)?;
        Ok(Self { seed: Seed { products, stock_each } })
    }
}

fn bounded(env: &Env, var: &str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    let expected = format!("an integer from {min} to {max}");
    let v = env.or(var, default, &expected)?;
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Malformed { var: var.into(), value: v.to_string(), expected })
    }
}

/// Builds the catalog: reads its settings, opens (and migrates) its database, seeds it
/// on first start and returns the app ready to serve.
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let settings = Settings::from_env(&env)?;
    let db = open_db(&config, &env)?;
    let store = CatalogStore::new(db.clone());
    if store.seed_once(settings.seed).await.context("seeding the catalog")? {
        tracing::info!(products = settings.seed.products, stock = settings.seed.stock_each, "seeded the catalog");
    }
    let state = api::AppState::new(&config, store);
    Ok(ServiceApp::new(config, metrics, api::router(state)).with_db(db))
}

fn open_db(config: &ServiceConfig, env: &Env) -> anyhow::Result<Db> {
    let path = config.db_path.as_deref().ok_or_else(|| ConfigError::Missing {
        var: "SHOP_DB".into(),
        hint: "set it to the SQLite file of the catalog service, e.g. SHOP_DB=./data/catalog.db".into(),
    })?;
    Db::open(path, store::MIGRATIONS, db_sync(env)?)
        .with_context(|| format!("opening the catalog database {}", path.display()))
}

/// `SHOP_DB_SYNC`: `normal` (durable against a process crash, the default) or `full`.
fn db_sync(env: &Env) -> Result<Sync, ConfigError> {
    match env.raw("SHOP_DB_SYNC").map(str::to_ascii_lowercase).as_deref() {
        None | Some("normal") => Ok(Sync::Normal),
        Some("full") => Ok(Sync::Full),
        Some(other) => Err(ConfigError::Malformed {
            var: "SHOP_DB_SYNC".into(),
            value: other.into(),
            expected: "normal or full".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_settings_have_defaults_and_bounds() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.seed, Seed { products: 100, stock_each: 1000 });
        let env = Env::from_pairs([("SHOP_CATALOG_SEED_PRODUCTS", "3"), ("SHOP_CATALOG_SEED_STOCK", "0")]);
        assert_eq!(Settings::from_env(&env).unwrap().seed, Seed { products: 3, stock_each: 0 });
        for (var, bad) in [("SHOP_CATALOG_SEED_PRODUCTS", "-1"), ("SHOP_CATALOG_SEED_STOCK", "many")] {
            let err = Settings::from_env(&Env::from_pairs([(var, bad)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn db_sync_is_parsed() {
        assert_eq!(db_sync(&Env::default()).unwrap(), Sync::Normal);
        assert!(db_sync(&Env::from_pairs([("SHOP_DB_SYNC", "sometimes")])).is_err());
    }
}
