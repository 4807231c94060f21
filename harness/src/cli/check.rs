//! `gauntlet check FILE...`: validates cluster, scenario and workload files without
//! running anything, for editors and pre-commit hooks. Each file's kind is told from
//! its top-level tables (`[services.*]`: a cluster file; `[load]`: a scenario;
//! `[[flow]]`: a workload; a `.yml`/`.yaml` file: a docker-compose file, read as
//! `[cluster] compose` reads it); each mistake is printed as file:line:column and what to do.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit::{CliError, Outcome};

/// Flags of `gauntlet check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The files: cluster files, scenarios, workloads, Compose files (the kind is told from each).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// The kinds of file `check` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cluster,
    Scenario,
    Workload,
    Compose,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Cluster => "cluster file",
            Self::Scenario => "scenario",
            Self::Workload => "workload",
            Self::Compose => "Compose file",
        }
    }
}

/// The kind of `text`, from its top-level keys; `None` when it is not TOML or none fits.
fn kind_of(text: &str) -> Result<Kind, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    if table.contains_key("services") {
        Ok(Kind::Cluster)
    } else if table.contains_key("load") {
        Ok(Kind::Scenario)
    } else if table.contains_key("flow") {
        Ok(Kind::Workload)
    } else {
        Err("not a cluster file ([services.<name>]), a scenario ([load]) or a workload ([[flow]])".into())
    }
}

/// Checks one file: its kind, or the mistake (file:line:column and what to do).
fn check_file(path: &Path) -> Result<Kind, String> {
    if path.extension().is_some_and(|x| x == "yml" || x == "yaml") {
        crate::cluster::compose::load(path).map_err(|e| e.to_string())?;
        return Ok(Kind::Compose);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
    let kind = match kind_of(&text) {
        Ok(kind) => kind,
        // A file that is not TOML: let the scenario parser say where, with its position.
        Err(_) if text.parse::<toml::Table>().is_err() => Kind::Scenario,
        Err(why) => return Err(format!("{}:1:1: {why}", path.display())),
    };
    match kind {
        Kind::Cluster => crate::cluster::ClusterSpec::load(path).map(|_| ()).map_err(|e| e.to_string()),
        Kind::Scenario => crate::scenario::Scenario::load(path).map(|_| ()).map_err(|e| e.to_string()),
        Kind::Workload => crate::load::workload::Workload::load(path).map(|_| ()).map_err(|e| e.to_string()),
        Kind::Compose => unreachable!("told from the extension above"),
    }?;
    Ok(kind)
}

/// Runs `gauntlet check`: exit 0 when every file is valid, 2 when one is not.
pub fn run(args: CheckArgs) -> Result<Outcome, CliError> {
    let mut bad = 0;
    for path in &args.files {
        match check_file(path) {
            Ok(kind) => println!("ok    {} ({})", path.display(), kind.name()),
            Err(why) => {
                bad += 1;
                eprintln!("error {why}");
            }
        }
    }
    if bad > 0 {
        return Err(CliError::BadInput(format!("{bad} of {} file(s) have mistakes", args.files.len())));
    }
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_of_a_file_is_told_from_its_tables() {
        assert_eq!(kind_of("name = \"x\"\n[services.a]\nport = 1\n"), Ok(Kind::Cluster));
        assert_eq!(kind_of("name = \"x\"\n[load]\nworkload = \"w.toml\"\n"), Ok(Kind::Scenario));
        assert_eq!(kind_of("[[flow]]\nname = \"f\"\n"), Ok(Kind::Workload));
        assert!(kind_of("x = 1\n").unwrap_err().contains("not a cluster file"));
    }
}
