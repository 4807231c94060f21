//! `gauntlet sim`: a scenario on the simulated cluster. The simulator is its own binary,
//! `gauntlet-sim` (crate `sim/`), so that gauntlet itself does not link the shop's
//! services; this command runs it from beside gauntlet with the same arguments.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::exit::{CliError, Outcome};

/// Arguments, passed through to `gauntlet-sim` (see `gauntlet sim --help`).
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct SimArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// Where `gauntlet-sim` is: beside this executable.
pub fn simulator() -> Option<PathBuf> {
    let here = std::env::current_exe().ok()?;
    let sim = here.with_file_name(format!("gauntlet-sim{}", std::env::consts::EXE_SUFFIX));
    sim.is_file().then_some(sim)
}

/// Runs `gauntlet-sim` with `args`; its exit code is this command's.
pub fn run(args: SimArgs) -> Result<Outcome, CliError> {
    let Some(sim) = simulator() else {
        return Err(CliError::BadInput(
            "gauntlet sim runs the simulator `gauntlet-sim`, which is not beside this gauntlet: build it with \
             `cargo build --release -p gauntlet-sim` (or --profile of this gauntlet)"
                .into(),
        ));
    };
    let status = std::process::Command::new(&sim)
        .args(&args.args)
        .status()
        .map_err(|e| CliError::Harness(anyhow::anyhow!("cannot start {}: {e}", sim.display())))?;
    Ok(match status.code() {
        Some(0) => Outcome::Passed,
        Some(1) => Outcome::GateFailed,
        Some(2) => Outcome::BadInput,
        _ => Outcome::HarnessFailed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_simulator_beside_it_says_how_to_build_it() {
        // A test binary lives in target/*/deps, where no gauntlet-sim is.
        assert!(simulator().is_none());
        let err = run(SimArgs { args: vec!["scenarios/smoke.toml".into()] }).unwrap_err();
        assert!(matches!(err, CliError::BadInput(_)), "{err}");
        assert!(err.to_string().contains("cargo build --release -p gauntlet-sim"), "{err}");
    }
}
