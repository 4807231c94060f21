//! The users service of the sample shop: accounts, argon2id password hashes, and login,
//! which issues the JWTs the gateway verifies.
//!
//! [`build`] wires the pieces: [`domain`] parses what clients send into valid values,
//! [`password`] hashes and verifies on the blocking pool, [`store`] keeps accounts in
//! SQLite (a unique index on the normalised email decides duplicates), and [`api`] maps
//! HTTP to both.

pub mod api;
pub mod domain;
pub mod password;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use shop_kit::db::Sync;
use shop_kit::metrics::Metrics;
use shop_kit::{ConfigError, Db, Env, ServiceApp, ServiceConfig};

/// How long an issued token is valid unless `SHOP_USERS_TOKEN_TTL` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest token lifetime accepted: a leaked token must expire within days.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The users service's own settings, beyond the shared [`ServiceConfig`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lifetime of issued tokens (`SHOP_USERS_TOKEN_TTL`).
    pub token_ttl: Duration,
}

impl Settings {
    /// Reads `SHOP_USERS_TOKEN_TTL` (a human duration, 1s to 7 days).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let var = "SHOP_USERS_TOKEN_TTL";
        let token_ttl = env.duration_or(var, DEFAULT_TOKEN_TTL)?;
        if token_ttl < Duration::from_secs(1) || token_ttl > MAX_TOKEN_TTL {
            return Err(ConfigError::Malformed {
                var: var.into(),
                value: env.raw(var).unwrap_or_default().into(),
                expected: "a duration from 1s to 7d, such as 1h".into(),
            });
        }
        Ok(Self { token_ttl })
    }
}

/// Builds the users service: reads its settings, opens (and migrates) its database and
/// returns the app ready to serve.
pub async fn build(config: ServiceConfig, env: Env, metrics: Metrics) -> anyhow::Result<ServiceApp> {
    let settings = Settings::from_env(&env)?;
    let db = open_db(&config, &env)?;
    let hasher = password::PasswordHasher::new().await.context("preparing the password hasher")?;
    let state = api::AppState::new(&config, settings, store::UserStore::new(db.clone()), hasher);
    Ok(ServiceApp::new(config, metrics, api::router(state)).with_db(db))
}

fn open_db(config: &ServiceConfig, env: &Env) -> anyhow::Result<Db> {
    let path = config.db_path.as_deref().ok_or_else(|| ConfigError::Missing {
        var: "SHOP_DB".into(),
        hint: "set it to the SQLite file of the users service, e.g. SHOP_DB=./data/users.db".into(),
    })?;
    let sync = db_sync(env)?;
    Db::open(path, store::MIGRATIONS, sync).with_context(|| format!("opening the users database {}", path.display()))
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
    fn token_ttl_is_bounded() {
        let env = Env::from_pairs([("SHOP_USERS_TOKEN_TTL", "15m")]);
        assert_eq!(Settings::from_env(&env).unwrap().token_ttl, Duration::from_secs(900));
        assert_eq!(Settings::from_env(&Env::default()).unwrap().token_ttl, DEFAULT_TOKEN_TTL);
        for bad in ["0s", "30d", "soon"] {
            let err = Settings::from_env(&Env::from_pairs([("SHOP_USERS_TOKEN_TTL", bad)])).unwrap_err();
            assert!(err.to_string().contains("SHOP_USERS_TOKEN_TTL"), "{err}");
        }
    }

    #[test]
    fn db_sync_is_parsed() {
        assert_eq!(db_sync(&Env::default()).unwrap(), Sync::Normal);
        assert_eq!(db_sync(&Env::from_pairs([("SHOP_DB_SYNC", "FULL")])).unwrap(), Sync::Full);
        assert!(db_sync(&Env::from_pairs([("SHOP_DB_SYNC", "always")])).is_err());
    }
}
