//! `gauntlet-sim`: the simulated cluster.
//!
//! The same scenario file as `gauntlet run`, but every node of the shop (its real
//! routers, domains and SQLite stores), the fault layer and the load generator run in
//! one process on tokio-rs/turmoil's simulated network and time. A run is a function of
//! its seed: the same seed and build give the same `history.jsonl`, `final-reads.jsonl` and
//! report, byte for byte, in a fraction of the real run's time.
//!
//! - [`net`]: a node's platform (seeded randomness, simulated clock) and HTTP over the
//!   simulated network, both ways.
//! - [`fabric`]: the proxies between nodes and their toxics.
//! - [`load`]: the harness's flow driver, paced on simulated time.
//! - [`world`]: the simulated cluster as a `World`, which the harness's executor drives
//!   as it drives a real one.
//! - [`run`]: one seed: planned, its hosts started, and the executor run on it.
//! - [`buggify`]: what the seed search perturbs from each seed.
//! - [`compare`]: the determinism check.

pub mod buggify;
pub mod compare;
pub mod fabric;
pub mod load;
pub mod net;
pub mod run;
pub mod world;

pub use run::{check_supported, run_seed, seed_dir, Refused};
