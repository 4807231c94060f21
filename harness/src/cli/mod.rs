//! The command line: clap commands, one file per command; nothing else lives in `main.rs`.
//!
//! Each command returns `Result<Outcome, CliError>`; [`main`] prints the error with its
//! whole chain of causes and turns it into the documented exit code.

pub mod capacity;
pub mod check;
pub mod contracts;
pub mod init;
pub mod load;
pub mod proxy;
pub mod report;
pub mod run;
pub mod sim;
pub mod up;

use clap::{Parser, Subcommand};

use crate::exit::{CliError, Outcome};

/// Gauntlet: chaos-and-contract testing for microservices.
///
/// Brings up a cluster of services, verifies the contracts between them, injects faults
/// on every network edge, drives load, and checks that no data was lost.
///
/// Exit codes: 0 passed, 1 a gate failed (SLO, invariant, contract), 2 bad usage or
/// input file, 3 the harness itself failed.
#[derive(Debug, Parser)]
#[command(name = "gauntlet", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `gauntlet`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the version of gauntlet and of the report and API formats it speaks.
    Version,
    /// Start a cluster (the sample shop by default) and keep it up until Ctrl-C.
    Up(up::UpArgs),
    /// Show the running cluster's nodes and their states.
    Status(up::ClusterArgs),
    /// Stop the running cluster, and remove what crashed runs left behind.
    Down(up::ClusterArgs),
    /// Print the JSON Schema of a file format: `cluster` and `scenario` files (for
    /// editors), a run's `history` (history.jsonl and final-reads.jsonl, one line per
    /// Jepsen op map), and the `verdict` an external checker writes.
    Schema {
        /// Which format.
        #[arg(value_parser = ["cluster", "scenario", "history", "verdict"])]
        format: String,
    },
    /// Validate cluster, scenario and workload files without running anything: each
    /// mistake as file:line:column and what to do (exit 2 when there is one).
    Check(check::CheckArgs),
    /// Write a starter cluster file, workload and scenario (commented) for a system's
    /// programs, which `gauntlet run` accepts as written.
    Init(init::InitArgs),
    /// Run the embedded Toxiproxy-compatible fault proxy (its HTTP API on --listen).
    Proxy(proxy::ProxyArgs),
    /// Drive load at a URL or a workload file (open model, corrected latency).
    Load(load::LoadArgs),
    /// Run a chaos scenario: cluster, load and fault timeline, SLOs and invariants.
    Run(run::RunArgs),
    /// Run a scenario on the simulated cluster (one process, simulated network and time):
    /// replayable from its seed, and a seed search (`--seeds 1..200`). See `gauntlet sim --help`.
    Sim(sim::SimArgs),
    /// Find the highest arrival rate at which a scenario's SLOs hold, by running it.
    Capacity(capacity::CapacityArgs),
    /// Verify the Pact contracts between services, answer can-i-deploy, diff two pacts.
    Contracts(contracts::ContractsArgs),
    /// Compare a report against a baseline, or render a report.json again.
    Report(report::ReportArgs),
    /// (Internal) the reaper every run starts: removes what the run started once its
    /// owner is gone, even after `kill -9` of the harness.
    #[command(hide = true)]
    Reap(up::ReapArgs),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Outcome::BadInput.into() } else { Outcome::Passed.into() };
        }
    };
    match run(cli) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            match &e {
                CliError::Harness(inner) => eprintln!("error: {inner:#}"),
                other => eprintln!("error: {other}"),
            }
            e.outcome().into()
        }
    }
}

fn run(cli: Cli) -> Result<Outcome, CliError> {
    match cli.command {
        Command::Up(args) => up::up(args),
        Command::Status(args) => up::status(args),
        Command::Down(args) => up::down(args),
        Command::Schema { format } => {
            let schema = match format.as_str() {
                "scenario" => crate::scenario::json_schema(),
                "history" => crate::checks::op::history_schema(),
                "verdict" => crate::checks::external::verdict_schema(),
                _ => crate::cluster::spec::json_schema(),
            };
            println!("{schema:#}");
            Ok(Outcome::Passed)
        }
        Command::Check(args) => check::run(args),
        Command::Init(args) => init::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Load(args) => load::run(args),
        Command::Run(args) => run::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Capacity(args) => capacity::run(args),
        Command::Contracts(args) => contracts::run(args),
        Command::Report(args) => report::run(args),
        Command::Reap(args) => up::reap(args),
        Command::Version => {
            println!("gauntlet {}", env!("CARGO_PKG_VERSION"));
            Ok(Outcome::Passed)
        }
    }
}
