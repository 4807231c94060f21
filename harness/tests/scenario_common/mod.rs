//! Shared by the scenario tests: the workspace, debug binaries, and `gauntlet run`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gauntlet::cluster::binaries::Binaries;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Builds the shop's debug binaries if missing.
pub fn binaries() {
    let b = Binaries::for_dir(&workspace(), "debug").unwrap();
    let names: Vec<String> =
        ["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway", "shop-notifications"]
            .map(String::from)
            .to_vec();
    b.ensure(&names, &|m| eprintln!("{m}")).unwrap();
}

/// The shop's invariants a shop scenario names (the harness checks none unasked).
pub const SHOP_INVARIANTS: &str =
    "invariants = [\"no_lost_orders\", \"orders_terminate\", \"money_conserved\", \"stock_conserved\"]\n";

/// A scenario file in `dir` whose cluster and workload are the shop's (`CLUSTER`, or
/// `EVENTS_CLUSTER` for the shop with its broker and notifications), checking the
/// shop's four invariants unless `body` names its own.
pub fn scenario_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let ws = workspace();
    let invariants = if body.contains("invariants =") { "" } else { SHOP_INVARIANTS };
    let text = format!(
        "name = \"{name}\"\ndescription = \"Hypothesis: see the test.\"\nseed = 5\n{invariants}{body}",
        body = body
            .replace("EVENTS_CLUSTER", &ws.join("services/cluster-events.toml").display().to_string())
            .replace("CLUSTER", &ws.join("services/cluster.toml").display().to_string())
            .replace("WORKLOAD", &ws.join("scenarios/workloads/shop.toml").display().to_string())
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs `gauntlet run` on `file` with debug binaries, runs under `dir/runs`.
pub fn gauntlet_run(dir: &Path, file: &Path, extra: &[&str]) -> Output {
    binaries();
    Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--profile", "debug", "--runs"])
        .arg(dir.join("runs"))
        .args(extra)
        .arg(file)
        .current_dir(workspace())
        .output()
        .unwrap()
}

pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) != Some("Z")
}

/// The first line of `gauntlet run`'s verdict tables (an SLO's or an invariant's) that
/// `pick` picks; the failure reasons printed above them are left out.
pub fn verdict_line(stdout: &str, pick: impl Fn(&str) -> bool) -> &str {
    const MARKS: [&str; 6] = ["PASS", "FAIL", "NO DATA", "VALID", "INVALID", "UNKNOWN"];
    stdout.lines().find(|l| MARKS.iter().any(|m| l.trim_start().starts_with(m)) && pick(l)).unwrap_or_default()
}

/// The report.json `gauntlet run` printed the path of, parsed.
pub fn report_json(stdout: &str) -> serde_json::Value {
    let path = stdout
        .split_whitespace()
        .find(|w| w.ends_with("report.json"))
        .unwrap_or_else(|| panic!("no report.json in the output:\n{stdout}"));
    serde_json::from_slice(&std::fs::read(path).expect("report.json is readable")).expect("report.json is JSON")
}

/// The `programs` not on PATH.
pub fn missing_programs(programs: &[&str]) -> Vec<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    programs
        .iter()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .map(|p| p.to_string())
        .collect()
}

/// Whether a test that needs what `missing` lacks may run: yes when nothing is missing;
/// a failure when the switch `require` is 1 (`.ci/run` installed it); else a skip, saying why.
pub fn runs_or_skips(missing: &[String], require: &str, install: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var(require).as_deref() != Ok("1"), "{require}=1 but {missing:?} are missing ({install})");
    eprintln!("skipped: {missing:?} missing ({install})");
    false
}
