//! Service configuration from environment variables, parsed once at start-up.
//!
//! Every variable is prefixed `SHOP_`. A missing required variable or a malformed value
//! is an error that names the variable, shows what was found and says what is expected.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A configuration mistake, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {var} is not set: {hint}")]
    Missing { var: String, hint: String },
    #[error("environment variable {var}={value:?} is not valid: expected {expected}")]
    Malformed { var: String, value: String, expected: String },
}

/// A source of configuration values: the process environment or, in tests, a map.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// A snapshot of the process environment.
    pub fn from_process() -> Self {
        Self { vars: std::env::vars().collect() }
    }

    /// An environment made of the given pairs (for tests and in-process clusters).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Sets one variable, returning the changed environment.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_string(), value.into());
        self
    }

    /// The raw value of `var`, if set and not empty.
    pub fn raw(&self, var: &str) -> Option<&str> {
        self.vars.get(var).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// Parses `var` if it is set.
    pub fn optional<T: FromStr>(&self, var: &str, expected: &str) -> Result<Option<T>, ConfigError> {
        match self.raw(var) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| ConfigError::Malformed {
                var: var.into(),
                value: v.into(),
                expected: expected.into(),
            }),
        }
    }

    /// Parses `var`, or returns `default` when it is not set.
    pub fn or<T: FromStr>(&self, var: &str, default: T, expected: &str) -> Result<T, ConfigError> {
        Ok(self.optional(var, expected)?.unwrap_or(default))
    }

    /// Parses `var`, which must be set.
    pub fn required<T: FromStr>(&self, var: &str, expected: &str, hint: &str) -> Result<T, ConfigError> {
        self.optional(var, expected)?.ok_or_else(|| ConfigError::Missing { var: var.into(), hint: hint.into() })
    }

    /// Parses a human duration such as `250ms` or `1m30s`.
    pub fn duration_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.trim()).map_err(|e| ConfigError::Malformed {
                var: var.into(),
                value: v.into(),
                expected: format!("a duration such as 250ms or 1m30s ({e})"),
            }),
        }
    }

    /// Variables starting with `prefix`, with the prefix removed.
    fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars.iter().filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }
}

/// The log level names `SHOP_LOG` accepts.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// The part of a service's configuration every service shares.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The service's name, as it appears in logs and metrics.
    pub service: String,
    /// Where to listen (`SHOP_BIND`, default 127.0.0.1, and `SHOP_PORT`).
    pub listen: SocketAddr,
    /// The SQLite database file (`SHOP_DB`); `None` for stateless services.
    pub db_path: Option<PathBuf>,
    /// Upstream services by name (`SHOP_UPSTREAM_<NAME>=url[,url...]`), one URL a replica.
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// The HS256 key for JWTs (`SHOP_JWT_SECRET`).
    pub jwt_secret: String,
    /// The bearer token of the admin endpoints (`SHOP_ADMIN_TOKEN`).
    pub admin_token: String,
    /// The log level (`SHOP_LOG`: trace, debug, info, warn, error).
    pub log_level: String,
    /// The largest request body accepted, in bytes (`SHOP_BODY_LIMIT`, default 64 KiB).
    pub body_limit: usize,
    /// How long in-flight requests may take to finish on shutdown (`SHOP_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
}

/// The development default of `SHOP_JWT_SECRET` and `SHOP_ADMIN_TOKEN`, refused unless
/// `SHOP_DEV_DEFAULTS=1`; keeps a misconfigured deployment from running on a public key.
pub const DEV_SECRET: &str = "gauntlet-dev-secret-change-me";

impl ServiceConfig {
    /// Reads the shared configuration of `service`, whose default port is `default_port`
    /// and which needs a database when `needs_db`.
    pub fn from_env(env: &Env, service: &str, default_port: u16, needs_db: bool) -> Result<Self, ConfigError> {
        let bind: IpAddr = env.or("SHOP_BIND", IpAddr::from([127, 0, 0, 1]), "an IP address such as 127.0.0.1")?;
        let port: u16 = env.or("SHOP_PORT", default_port, "a TCP port number 0-65535")?;
        let db_path = if needs_db {
            Some(env.required::<PathBuf>(
                "SHOP_DB",
                "a file path",
                &format!("set it to the SQLite file of the {service} service, e.g. SHOP_DB=./data/{service}.db"),
            )?)
        } else {
            None
        };
        let mut upstreams = BTreeMap::new();
        for (name, value) in env.with_prefix("SHOP_UPSTREAM_") {
            let urls = parse_upstream_urls(&format!("SHOP_UPSTREAM_{name}"), value)?;
            upstreams.insert(name.to_ascii_lowercase(), urls);
        }
        let dev_defaults = env.raw("SHOP_DEV_DEFAULTS") == Some("1");
        let secret = |var: &str| -> Result<String, ConfigError> {
            match env.raw(var) {
                Some(v) if v.len() >= 16 => Ok(v.to_string()),
                Some(v) => Err(ConfigError::Malformed {
                    var: var.into(),
                    value: "*".repeat(v.len()),
                    expected: "at least 16 characters".into(),
                }),
                None if dev_defaults => Ok(DEV_SECRET.to_string()),
                None => Err(ConfigError::Missing {
                    var: var.into(),
                    hint: "set a secret of 16+ characters, or SHOP_DEV_DEFAULTS=1 for a local run".into(),
                }),
            }
        };
        let jwt_secret = secret("SHOP_JWT_SECRET")?;
        let admin_token = secret("SHOP_ADMIN_TOKEN")?;
        let log_level = env.raw("SHOP_LOG").unwrap_or("info").to_ascii_lowercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(ConfigError::Malformed {
                var: "SHOP_LOG".into(),
                value: log_level,
                expected: format!("one of {}", LOG_LEVELS.join(", ")),
            });
        }
        Ok(Self {
            service: service.to_string(),
            listen: SocketAddr::new(bind, port),
            db_path,
            upstreams,
            jwt_secret,
            admin_token,
            log_level,
            body_limit: env.or("SHOP_BODY_LIMIT", 64 * 1024, "a size in bytes")?,
            shutdown_grace: env.duration_or("SHOP_SHUTDOWN_GRACE", Duration::from_secs(10))?,
        })
    }

    /// The replica URLs of HTTP upstream `name`, or an error naming the variable to set.
    pub fn upstream(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        self.upstream_of_scheme(name, "http", "http://127.0.0.1:7002")
    }

    /// The URLs of message broker `name` (`SHOP_UPSTREAM_<NAME>=nats://host:port[,...]`),
    /// or `None` when the variable is not set: a service without a broker runs without
    /// its event-driven half.
    pub fn broker(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        if !self.upstreams.contains_key(name) {
            return Ok(None);
        }
        self.upstream_of_scheme(name, "nats", "nats://127.0.0.1:4222").map(Some)
    }

    fn upstream_of_scheme(&self, name: &str, scheme: &str, example: &str) -> Result<Vec<String>, ConfigError> {
        let var = format!("SHOP_UPSTREAM_{}", name.to_ascii_uppercase());
        let urls = self.upstreams.get(name).cloned().ok_or_else(|| ConfigError::Missing {
            var: var.clone(),
            hint: format!("set it to the base URL(s) of the {name} service, comma-separated, e.g. {example}"),
        })?;
        if let Some(u) = urls.iter().find(|u| !u.starts_with(&format!("{scheme}://"))) {
            return Err(ConfigError::Malformed {
                var,
                value: urls.join(","),
                expected: format!("{scheme}:// URLs ({u} is not one), e.g. {example}"),
            });
        }
        Ok(urls)
    }
}

/// The URL schemes an upstream may have: HTTP services, and NATS for a message broker.
const UPSTREAM_SCHEMES: &[&str] = &["http", "nats"];

fn parse_upstream_urls(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let malformed = |why: &dyn Display| ConfigError::Malformed {
        var: var.into(),
        value: value.into(),
        expected: format!("comma-separated http:// (or, for a broker, nats://) base URLs ({why})"),
    };
    let urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    if urls.is_empty() {
        return Err(malformed(&"no URL given"));
    }
    for u in &urls {
        let uri: http::Uri = u.parse().map_err(|e| malformed(&e))?;
        if !uri.scheme_str().is_some_and(|s| UPSTREAM_SCHEMES.contains(&s)) || uri.host().is_none() {
            return Err(malformed(&format!("{u} is not an http://host:port or nats://host:port URL")));
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Env {
        Env::from_pairs([("SHOP_DEV_DEFAULTS", "1"), ("SHOP_DB", "/tmp/x.db")])
    }

    #[test]
    fn defaults_bind_loopback() {
        let c = ServiceConfig::from_env(&base(), "orders", 7003, true).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7003".parse().unwrap());
        assert_eq!(c.body_limit, 64 * 1024);
    }

    #[test]
    fn missing_db_names_the_variable() {
        let err =
            ServiceConfig::from_env(&Env::from_pairs([("SHOP_DEV_DEFAULTS", "1")]), "orders", 1, true).unwrap_err();
        assert!(matches!(&err, ConfigError::Missing { var, .. } if var == "SHOP_DB"), "{err}");
        assert!(err.to_string().contains("SHOP_DB=./data/orders.db"));
    }

    #[test]
    fn malformed_port_says_what_is_expected() {
        let err = ServiceConfig::from_env(&base().with("SHOP_PORT", "70000"), "x", 1, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SHOP_PORT=\"70000\" is not valid: expected a TCP port number 0-65535"
        );
    }

    #[test]
    fn secrets_are_required_without_dev_defaults() {
        let err = ServiceConfig::from_env(&Env::from_pairs([("SHOP_DB", "x")]), "x", 1, true).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { ref var, .. } if var == "SHOP_JWT_SECRET"));
        let short = base().with("SHOP_JWT_SECRET", "short");
        let err = ServiceConfig::from_env(&short, "x", 1, true).unwrap_err();
        assert!(err.to_string().contains("*****"), "secret must not be echoed: {err}");
    }

    #[test]
    fn upstreams_are_lists_of_replicas() {
        let env = base().with("SHOP_UPSTREAM_CATALOG", "http://127.0.0.1:1/, http://127.0.0.1:2");
        let c = ServiceConfig::from_env(&env, "x", 1, true).unwrap();
        assert_eq!(c.upstream("catalog").unwrap(), vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert!(c.upstream("payments").unwrap_err().to_string().contains("SHOP_UPSTREAM_PAYMENTS"));
        let bad = base().with("SHOP_UPSTREAM_CATALOG", "ftp://x");
        assert!(ServiceConfig::from_env(&bad, "x", 1, true).is_err());
    }

    #[test]
    fn a_broker_is_a_nats_upstream_and_optional() {
        let c = ServiceConfig::from_env(&base(), "x", 1, true).unwrap();
        assert_eq!(c.broker("broker").unwrap(), None, "no broker: the service runs without one");
        let env =
            base().with("SHOP_UPSTREAM_BROKER", "nats://127.0.0.1:4222").with("SHOP_UPSTREAM_CATALOG", "nats://x:1");
        let c = ServiceConfig::from_env(&env, "x", 1, true).unwrap();
        assert_eq!(c.broker("broker").unwrap(), Some(vec!["nats://127.0.0.1:4222".to_string()]));
        let err = c.upstream("catalog").unwrap_err().to_string();
        assert!(err.contains("SHOP_UPSTREAM_CATALOG") && err.contains("http://"), "{err}");
        let env = base().with("SHOP_UPSTREAM_BROKER", "http://127.0.0.1:4222");
        let err = ServiceConfig::from_env(&env, "x", 1, true).unwrap().broker("broker").unwrap_err().to_string();
        assert!(err.contains("nats://"), "{err}");
    }

    #[test]
    fn log_level_is_checked() {
        let err = ServiceConfig::from_env(&base().with("SHOP_LOG", "loud"), "x", 1, true).unwrap_err();
        assert!(err.to_string().contains("one of trace, debug"));
    }

    #[test]
    fn durations_are_human() {
        let c = ServiceConfig::from_env(&base().with("SHOP_SHUTDOWN_GRACE", "1m30s"), "x", 1, true).unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(90));
    }
}
