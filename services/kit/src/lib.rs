//! `shop-kit`: what every service of the sample shop shares.
//!
//! A service is a library crate that builds an axum [`Router`](axum::Router) for its
//! domain and hands it to [`server::ServiceApp`], which adds the operational surface
//! (`/health`, `/ready`, `/metrics`, request ids, trace context, JSON logs, body limits,
//! problem+json errors) and serves it with graceful shutdown. Calls to other services go
//! through [`client::UpstreamClient`] (timeouts, retries within a budget, circuit breakers).

pub mod auth;
pub mod breakage;
pub mod client;
pub mod config;
pub mod contract;
pub mod db;
pub mod digest;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod platform;
pub mod server;
pub mod trace;

pub use config::{ConfigError, Env, ServiceConfig};
pub use db::Db;
pub use error::{ApiError, ProblemKind};
pub use extract::{Json, Path, Query, RawBody};
pub use server::ServiceApp;
