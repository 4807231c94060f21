//! The world a run drives: a started cluster, wherever it runs.
//!
//! A [`World`] is a [`Runtime`] that also says where its ingress and its fault API
//! are. Local processes, containers, an external deployment and the deterministic
//! simulation (the `gauntlet-sim` crate's `SimWorld`) are worlds. The executor, the
//! checkers and the reports see only this interface and never which world they drive;
//! [`reach`] is how the executor reaches one (HTTP, fault API, load generator, clock).
//!
//! [`open()`] assembles a world (runtime, edge proxies, ledger, reaper) from a plan;
//! [`launch`] runs one scenario on a fresh world from start to teardown ([`run_on`]
//! takes any world); [`signal`] turns Ctrl-C and SIGTERM into the interrupt both of
//! them honour.

pub mod launch;
pub mod open;
pub mod reach;
pub mod signal;

pub use launch::{resolve_runtime, run_on, start, Launch, LaunchEvent, Started};
pub use open::{open, AnyWorld, OpenWorld, Proxies, WorldKind};
pub use signal::{interrupt_on_signal, Shutdown};

use crate::cluster::docker::DockerRuntime;
use crate::cluster::external::ExternalRuntime;
use crate::cluster::process::ProcessRuntime;
use crate::cluster::Runtime;

/// What a world must provide beyond a [`Runtime`] (start, node faults, status, plan,
/// teardown that always succeeds twice): where the load reaches it and where its edge
/// faults are injected, both valid once [`Runtime::start`] has returned `Ok`.
///
/// A world must also report every node with its reachable address in
/// [`Runtime::status`] (the invariant checkers and the gauges read the services' admin
/// and `/metrics` endpoints there), and keep the node environment of its plan (the
/// admin token is read from it).
pub trait World: Runtime {
    /// The URLs at which clients reach the ingress, first one used by the load.
    fn ingress_urls(&self) -> Vec<String>;
    /// The Toxiproxy-compatible API of the edge proxies, if the edges have any.
    fn fault_api(&self) -> Option<String>;
    /// How the executor reaches this world: over the host's network by default (reqwest,
    /// the Toxiproxy API at [`World::fault_api`], the open-model load generator); `None`
    /// when there is no fault API. A simulated world supplies its own.
    fn reach(&self) -> Option<reach::Reach> {
        self.fault_api().map(|api| reach::Reach::host(&api))
    }
}

impl World for ProcessRuntime {
    fn ingress_urls(&self) -> Vec<String> {
        ProcessRuntime::ingress_urls(self).to_vec()
    }
    fn fault_api(&self) -> Option<String> {
        self.wiring_url()
    }
}

impl World for DockerRuntime {
    fn ingress_urls(&self) -> Vec<String> {
        DockerRuntime::ingress_urls(self).to_vec()
    }
    fn fault_api(&self) -> Option<String> {
        self.toxiproxy_url()
    }
}

impl World for ExternalRuntime {
    fn ingress_urls(&self) -> Vec<String> {
        ExternalRuntime::ingress_urls(self).to_vec()
    }
    fn fault_api(&self) -> Option<String> {
        self.toxiproxy_url()
    }
}

/// A fresh, sortable run id.
pub fn run_id(cluster: &str) -> String {
    let t = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let t: String = t.chars().filter(char::is_ascii_alphanumeric).collect();
    // Runs of one process (the steps of `gauntlet capacity`) may start within a second.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    match SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{t}-{cluster}-{}", std::process::id()),
        n => format!("{t}-{cluster}-{}-{}", std::process::id(), n + 1),
    }
}

/// Starts the reaper of run `id` (see [`crate::cluster::ledger::watch`]). Failing to
/// start it is a warning for the caller to show, not a failure: the ledger still lets
/// the next `up` or `down` clean up.
pub fn start_reaper(runs: &std::path::Path, id: &str) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    crate::cluster::ledger::spawn_reaper(&exe, runs, id).map(|_| ())
}

/// The warning shown when [`start_reaper`] fails.
pub fn reaper_warning(e: &std::io::Error) -> String {
    format!("warning: could not start the reaper ({e}); if this run is killed, `gauntlet down` cleans up")
}
