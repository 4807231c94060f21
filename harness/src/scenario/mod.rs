//! Scenarios: the chaos experiment file and the timeline executor.
//!
//! [`model`] parses a scenario file once into a typed [`Scenario`] (`model::raw` the file
//! as written, `model::check` its rules, every mistake at
//! its file:line:column); [`executor`] runs it on a started cluster: the steady-state
//! check, the load and the fault timeline on one clock, rollbacks whatever happens, the
//! recovery phase and the invariant checks; [`gauges`] samples the services' own
//! gauges for SLOs on them.

pub mod capacity;
pub mod clock;
pub mod data;
pub mod effect;
pub mod executor;
pub mod gauges;
pub mod model;
pub mod schedule;

pub use executor::{execute, Cluster, Event, FaultRecord, RunOutcome};
pub use model::{json_schema, ActualTimes, Fault, FaultAction, FaultTarget, Scenario, ScenarioError, WindowAnchor};
