//! The cluster: what services run, how, and which calls which.
//!
//! [`spec`] parses a cluster file into a [`ClusterSpec`] once, with every mistake
//! reported at its file:line:column; the runtimes start what a spec describes.

pub mod spec;

pub use spec::{ClusterSpec, Edge, RunSpec, ServiceSpec, SpecError};
