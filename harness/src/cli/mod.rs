//! The command line: clap commands, one file per command; nothing else lives in `main.rs`.
//!
//! Each command returns `Result<Outcome, CliError>`; [`main`] prints the error with its
//! whole chain of causes and turns it into the documented exit code.

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
        Command::Version => {
            println!("gauntlet {}", env!("CARGO_PKG_VERSION"));
            Ok(Outcome::Passed)
        }
    }
}
