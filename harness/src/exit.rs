//! Exit codes of `gauntlet`, the contract a CI job gates on.

use std::process::ExitCode;

/// Why `gauntlet` ended, as a process exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything ran and every gate passed.
    Passed = 0,
    /// A gate failed: an SLO, an invariant, a contract, a regression.
    GateFailed = 1,
    /// Bad usage or a bad input file.
    BadInput = 2,
    /// The harness itself failed (could not start the cluster, ...).
    HarnessFailed = 3,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o as u8)
    }
}

/// An error that knows which exit code it ends the process with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or bad input: the message says what, where and what to do.
    #[error("{0}")]
    BadInput(String),
    /// A gate failed; the report has already been printed.
    #[error("{0}")]
    GateFailed(String),
    /// The harness could not do its job.
    #[error(transparent)]
    Harness(#[from] anyhow::Error),
}

impl CliError {
    /// The exit code this error ends the process with.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::BadInput(_) => Outcome::BadInput,
            Self::GateFailed(_) => Outcome::GateFailed,
            Self::Harness(_) => Outcome::HarnessFailed,
        }
    }
}
