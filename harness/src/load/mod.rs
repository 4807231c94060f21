//! Load generation: the workload model, the open-model arrival schedule, the HTTP
//! client, the recorders and the SLO thresholds.
//!
//! Data flows one way: a [`workload::Workload`] and an [`schedule::ArrivalSchedule`]
//! go into [`runner::run`], which drives [`client::HttpClient`] and fills a
//! [`recorder::Recorder`]; [`slo::SloSpec`]s are judged on it into
//! [`slo::SloVerdict`]s. Latency is measured from the intended send time, so
//! coordinated omission is corrected. Each answer is judged by the workload's
//! [`rules::AnswerRules`] (degraded markers, expectations) before it is recorded.

pub mod client;
pub mod duration;
pub mod flow;
mod h1;
pub mod operation;
pub mod recorder;
pub mod rules;
pub mod runner;
pub mod schedule;
pub mod series;
pub mod slo;
mod starter;
pub mod stats;
pub mod template;
mod timer;
pub mod workload;
