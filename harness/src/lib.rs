//! Gauntlet: a chaos-and-contract testing harness for microservices.
//!
//! Data flows one way: a scenario file is parsed into a plan; the plan starts a
//! cluster; the fault controller and the load generator act on the cluster on a shared
//! clock; recorders collect what happened; checkers and SLO gates judge it; reporters
//! render the verdict. Each concern is one module; [`world`] is where a cluster is
//! launched, behind one interface whichever world (processes, containers, an external
//! deployment) it runs in.

pub mod checks;
pub mod cli;
pub mod cluster;
pub mod contracts;
pub mod exit;
pub mod faults;
pub mod load;
pub mod report;
pub mod scenario;
pub mod world;
