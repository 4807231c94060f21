//! The scenario file as written: the serde forms, spans kept for error positions, and
//! the source of `scenarios/scenario.schema.json`. Checked into the typed form by
//! [`super::check`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::load::schedule::ScheduleSpec;

/// The scenario file as written. Its JSON Schema is [`json_schema`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Gauntlet scenario file")]
pub(super) struct RawScenario {
    /// The scenario's name.
    #[schemars(with = "String")]
    pub(super) name: Spanned<String>,
    /// What the experiment tests: its hypothesis, in a sentence or two.
    #[schemars(with = "String")]
    pub(super) description: Spanned<String>,
    /// Seed of every random choice (the load's flow picks, the proxy's toxicity).
    #[serde(default)]
    pub(super) seed: u64,
    /// The cluster to run on.
    #[serde(default)]
    pub(super) cluster: RawCluster,
    /// Checked before faults start; the run aborts if it does not hold.
    #[serde(default)]
    pub(super) steady_state: RawSteadyState,
    /// The load driven during the whole timeline.
    #[schemars(with = "RawLoad")]
    pub(super) load: Spanned<RawLoad>,
    /// The fault timeline.
    #[serde(default)]
    #[schemars(with = "Vec<RawFault>")]
    pub(super) fault: Vec<Spanned<RawFault>>,
    /// Service-level objectives, each over a window.
    #[serde(default)]
    #[schemars(with = "Vec<RawSlo>")]
    pub(super) slo: Vec<Spanned<RawSlo>>,
    /// Invariants the cluster file's `checks` file declares, by name (e.g. "no_lost_acks"); none are checked unless named here or declared below.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) invariants: Option<Vec<Spanned<String>>>,
    /// Invariants over the operation history and the final reads: a checker of the
    /// library (`checker = "set"`) or an external program (`command = [...]`).
    #[serde(default)]
    #[schemars(with = "Vec<RawInvariant>")]
    pub(super) invariant: Vec<Spanned<RawInvariant>>,
    /// Requests sent once every fault is healed and the load is over, retried until
    /// answered (within `recovery.settle`); each answer is a final read of the history.
    #[serde(default)]
    #[schemars(with = "Vec<RawFinalRead>")]
    pub(super) final_read: Vec<Spanned<RawFinalRead>>,
    /// The recovery phase.
    #[serde(default)]
    pub(super) recovery: RawRecovery,
    /// For `gauntlet capacity`: the search for the highest rate that meets the SLOs.
    #[schemars(with = "Option<RawCapacity>")]
    pub(super) capacity: Option<Spanned<RawCapacity>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapacity {
    /// The first rate tried, flow starts per second (default 10).
    pub(super) start_rate: Option<f64>,
    /// The highest rate tried (default 10000).
    pub(super) max_rate: Option<f64>,
    /// Each passing rate is multiplied by this until one fails (default 2).
    pub(super) growth: Option<f64>,
    /// Stop when the lowest failing rate is within this share above the highest
    /// passing one: "5%" (the default).
    #[schemars(with = "Option<String>")]
    pub(super) resolution: Option<Spanned<String>>,
    /// The most rates tried, each run `runs` times, the confirmation included (default 16).
    pub(super) max_steps: Option<usize>,
    /// How often each rate is run; it passes only when every run passes (default 3, at
    /// most 10). With 1, the best rate is run once more before it is published.
    pub(super) runs_per_rate: Option<usize>,
    /// Each run first runs at its rate this long, unmeasured: "5s" (the default).
    #[schemars(with = "Option<String>")]
    pub(super) warmup: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// The cluster file, relative to the scenario (default ../services/cluster.toml).
    #[schemars(with = "Option<String>")]
    pub(super) file: Option<Spanned<String>>,
    /// Or a docker-compose file, relative to the scenario: its services run as
    /// containers (runtime docker), its `x-gauntlet` edges through the fault proxy.
    #[schemars(with = "Option<String>")]
    pub(super) compose: Option<Spanned<String>>,
    /// With `compose`: edges beside those of the file's `x-gauntlet`, written as it
    /// writes them: [{ from = "web", to = "api", env = "API_URL" }].
    #[schemars(with = "Option<Vec<crate::cluster::compose::EdgeSpec>>")]
    pub(super) edges: Option<Spanned<Vec<crate::cluster::compose::EdgeSpec>>>,
    /// "process" (default), "docker", or "external" (a deployment already running at
    /// its services' `urls`; nothing is started).
    #[schemars(with = "Option<String>")]
    pub(super) runtime: Option<Spanned<String>>,
    /// Replica counts overriding the cluster file's, e.g. { api = 2 }.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, u32>")]
    pub(super) replicas: BTreeMap<String, Spanned<u32>>,
    /// Extra environment per service, e.g. { db = { LOG_LEVEL = "debug" } }.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BTreeMap<String, String>>")]
    pub(super) env: BTreeMap<String, Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSteadyState {
    /// How long the probes may take to pass (default 15s).
    #[schemars(with = "Option<String>")]
    pub(super) timeout: Option<Spanned<String>>,
    /// Requests through the ingress that must answer as expected.
    #[serde(default)]
    pub(super) probe: Vec<RawProbe>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    /// What it shows.
    pub(super) name: String,
    /// Path on the ingress, e.g. /api/v1/products/1.
    #[schemars(with = "String")]
    pub(super) path: Spanned<String>,
    /// The status it must answer (default 200).
    #[serde(default = "ok_status")]
    #[schemars(with = "u16")]
    pub(super) expect: Spanned<u16>,
}

pub(super) fn ok_status() -> Spanned<u16> {
    Spanned::new(0..0, 200)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    /// A workload file (relative to the scenario), or an inline workload table: flows of
    /// steps, `degraded` rules, per-step `expect`, templates with `{{var}}` and
    /// `{{uniform 1 100}}` (see harness/src/load/workload.rs).
    #[schemars(with = "serde_json::Value")]
    pub(super) workload: Spanned<toml::Value>,
    /// The arrival schedule; default the workload's.
    #[schemars(with = "Option<serde_json::Value>")]
    pub(super) schedule: Option<Spanned<ScheduleSpec>>,
    /// Per-request timeout (default 5s).
    #[schemars(with = "Option<String>")]
    pub(super) timeout: Option<Spanned<String>>,
    /// Connections of the load client (default 64).
    #[serde(default)]
    pub(super) connections: Option<usize>,
    /// The most flows running at once (default 1024).
    #[serde(default)]
    pub(super) max_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    /// A label for reports.
    pub(super) name: Option<String>,
    /// An edge "consumer->provider" ("client->web" for the ingress).
    #[schemars(with = "Option<String>")]
    pub(super) edge: Option<Spanned<String>>,
    /// Only the slot of this provider replica (default: every replica).
    pub(super) replica: Option<u32>,
    /// "upstream" (requests), "downstream" (responses, the default) or "both".
    pub(super) stream: Option<String>,
    /// A toxic: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data,
    /// http_abort, http_delay, loss, corrupt; or "down" (the edge refuses connections).
    pub(super) toxic: Option<String>,
    /// The toxic's attributes; times as durations ("100ms"), flags as booleans
    /// (`spare_head = true`). For a node's resource fault: `share = 0.2` (op "cpu", a
    /// share of one core), `limit = "64MiB"` (op "memory"), `leave = "1MiB"` and
    /// optionally `size = "64MiB"` (op "disk_full": bytes left free on a data
    /// filesystem of that size). For a clock fault: `offset = "+90s"` (ahead) or
    /// `"-30s"` (behind), optionally `drift = "+50ms/s"` (gained per second from then).
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub(super) attributes: Option<toml::Table>,
    /// Share of connections the toxic acts on, 0..1 (default 1).
    pub(super) toxicity: Option<f64>,
    /// A node, e.g. "api-1".
    #[schemars(with = "Option<String>")]
    pub(super) node: Option<Spanned<String>>,
    /// kill, stop, pause, restart or partition; or a resource fault held for `for`:
    /// cpu, memory or disk_full (its size in `attributes`); or clock, the node's wall
    /// clock moved for `for` (its offset in `attributes`; a jump mid-run is a second
    /// clock fault starting when the first ends).
    #[schemars(with = "Option<String>")]
    pub(super) op: Option<Spanned<String>>,
    /// When it starts, from the start of the load ("10s").
    #[schemars(with = "String")]
    pub(super) at: Spanned<String>,
    /// How long it lasts ("15s"); a restart takes none.
    #[serde(rename = "for")]
    #[schemars(rename = "for", with = "Option<String>")]
    pub(super) duration: Option<Spanned<String>>,
    /// Whether a fault that touched nothing (no traffic through its proxies while it was
    /// in place; none through a node's edges before it struck) fails the run with
    /// "the experiment did not happen" (default true).
    pub(super) expect_effect: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    /// "p95 < 500ms", "availability >= 99%" (degraded answers, failed checks and dropped
    /// starts count against it), "availability_including_degraded >= 99%",
    /// "error_rate < 1%", "degraded <= 5%" (share of answers matching the workload's
    /// `degraded` rules), "checks >= 99%" (share of `expect` checks passed)...
    #[schemars(with = "String")]
    pub(super) threshold: Spanned<String>,
    /// Only this flow of the workload.
    pub(super) flow: Option<String>,
    /// Only this step of `flow`.
    pub(super) step: Option<String>,
    /// "faults" (first fault start to last fault end), "recovery" (after the last
    /// fault), one fault "f2" (numbered in file order), or a range "10s..25s".
    #[schemars(with = "Option<String>")]
    pub(super) during: Option<Spanned<String>>,
    /// From this offset to the end ("30s").
    #[schemars(with = "Option<String>")]
    pub(super) after: Option<Spanned<String>>,
    /// Abort the run when breached in every second for this long.
    #[schemars(with = "Option<String>")]
    pub(super) abort_after: Option<Spanned<String>>,
    /// For `ok_share(f where /pointer == value)`: an `ok` operation whose answer did not
    /// match counts if a final read shows it matching since, e.g.
    /// { read = "store-state", items = "/items", by = "/id" }.
    #[schemars(with = "Option<RawConfirm>")]
    pub(super) confirm: Option<Spanned<RawConfirm>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfirm {
    /// The `f` of the final read that shows the state.
    pub(super) read: String,
    /// A JSON pointer to the array of items in what it read ("" for the whole answer).
    #[serde(default)]
    pub(super) items: String,
    /// A JSON pointer, into an item and into the operation's value, to what identifies it.
    pub(super) by: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecovery {
    /// The load goes on at least this long after the last fault (default 5s).
    #[schemars(with = "Option<String>")]
    pub(super) duration: Option<Spanned<String>>,
    /// After the load, how long the final reads may take to answer, and the system to
    /// settle where a checker says when it has (default 45s).
    #[schemars(with = "Option<String>")]
    pub(super) settle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInvariant {
    /// Its name in reports (default: the checker's name, or the command's program).
    pub(super) name: Option<String>,
    /// A checker of the library: set, set-full, counter, bank, unique-ids, queue,
    /// total-queue, linearizable.
    #[schemars(with = "Option<String>")]
    pub(super) checker: Option<Spanned<String>>,
    /// An external checker: a program and its arguments, run in the scenario's folder
    /// with GAUNTLET_HISTORY, GAUNTLET_FINAL_READS and GAUNTLET_VERDICT set.
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) command: Option<Spanned<Vec<String>>>,
    /// An external checker that is a binary of the cargo workspace holding the file
    /// (built when missing), e.g. "my-checker"; its arguments are `args`.
    #[schemars(with = "Option<String>")]
    pub(super) binary: Option<Spanned<String>>,
    /// The arguments of `binary`.
    pub(super) args: Option<Vec<String>>,
    /// The arguments with which the same program says whether the system has settled
    /// (exit 0; 1 for not yet), over the final reads: they are taken again every 500 ms
    /// until it has, within `recovery.settle`.
    pub(super) settled: Option<Vec<String>>,
    /// How long an external checker may run (default 60s).
    #[schemars(with = "Option<String>")]
    pub(super) timeout: Option<Spanned<String>>,
    /// The `f` of adds (set, set-full, counter; default "add").
    #[schemars(with = "Option<String>")]
    pub(super) add: Option<Spanned<String>>,
    /// The `f` of reads (set, set-full, counter, bank, linearizable; default "read").
    #[schemars(with = "Option<String>")]
    pub(super) read: Option<Spanned<String>>,
    /// The `f` of id generations (unique-ids; default "generate").
    #[schemars(with = "Option<String>")]
    pub(super) generate: Option<Spanned<String>>,
    /// The `f` of enqueues (queue, total-queue; default "enqueue").
    #[schemars(with = "Option<String>")]
    pub(super) enqueue: Option<Spanned<String>>,
    /// The `f` of dequeues (queue, total-queue; default "dequeue").
    #[schemars(with = "Option<String>")]
    pub(super) dequeue: Option<Spanned<String>>,
    /// The `f` of the final drain's reads (queue, total-queue; default "drain").
    #[schemars(with = "Option<String>")]
    pub(super) drain: Option<Spanned<String>>,
    /// The `f` of writes (linearizable; default "write").
    #[schemars(with = "Option<String>")]
    pub(super) write: Option<Spanned<String>>,
    /// The `f` of compare-and-sets (linearizable cas-register; default "cas").
    #[schemars(with = "Option<String>")]
    pub(super) cas: Option<Spanned<String>>,
    /// The model (linearizable): "register" or "cas-register" (the default).
    #[schemars(with = "Option<String>")]
    pub(super) model: Option<Spanned<String>>,
    /// The most search states per key before the verdict is unknown (linearizable).
    #[schemars(with = "Option<u64>")]
    pub(super) max_states: Option<Spanned<u64>>,
    /// The total every read of all balances must sum to (bank; default: the first read's).
    #[schemars(with = "Option<i64>")]
    pub(super) total: Option<Spanned<i64>>,
    /// The accounts every read must show, and no other (bank).
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) accounts: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFinalRead {
    /// The operation's function (default "read"; a queue's drain is "drain").
    #[schemars(with = "Option<String>")]
    pub(super) f: Option<Spanned<String>>,
    /// The path to GET, e.g. /SMEMBERS/items.
    #[schemars(with = "String")]
    pub(super) path: Spanned<String>,
    /// Send it to the first node of this service instead of the ingress.
    #[schemars(with = "Option<String>")]
    pub(super) service: Option<Spanned<String>>,
    /// The key it reads (for per-key checkers).
    pub(super) key: Option<String>,
    /// Sent as `Authorization: Bearer <bearer>` (an admin or test token).
    pub(super) bearer: Option<String>,
    /// A JSON pointer to the value read in the answer (default "": the whole body).
    #[schemars(with = "Option<String>")]
    pub(super) result: Option<Spanned<String>>,
}
