//! The cluster: what services run, how, and which calls which.
//!
//! [`spec`] parses a cluster file into a [`ClusterSpec`] once, with every mistake
//! reported at its file:line:column; [`plan`] turns it into nodes and edge slots;
//! a [`Runtime`] (processes, containers, or an external deployment) starts them,
//! hurts and heals nodes, and always tears down; the [`ledger`] lets the next run clean
//! up after a crashed one.

pub mod binaries;
pub mod clock;
pub mod compose;
pub mod docker;
pub mod external;
pub mod images;
pub mod ledger;
pub mod limits;
pub mod plan;
pub mod process;
pub mod readiness;
pub mod runtime;
pub mod spec;
pub mod wiring;

pub use clock::ClockSkew;
pub use limits::{LimitEffect, NodeLimit};
pub use plan::{ClusterPlan, NodeId, Ports};
pub use runtime::{NodeOp, NodeState, NodeStatus, Readiness, Runtime, RuntimeError};
pub use spec::{ClusterSpec, Edge, RunSpec, ServiceSpec, SpecError};
