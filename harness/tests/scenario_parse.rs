//! Scenario files: every library scenario parses; mistakes exit with code 2 and name
//! file:line:column; the shipped JSON Schema is current.

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet::load::workload::Workload;
use gauntlet::scenario::{json_schema, Scenario};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn library() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The shop's gateway marks answers from its stale fallback with `x-gauntlet-stale`
/// (services/gateway/src/fallback.rs); a workload that did not say so would count them
/// as available.
#[test]
fn the_shop_workloads_count_stale_answers_as_degraded() {
    let dir = workspace().join("scenarios/workloads");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let w = Workload::load(&path).unwrap_or_else(|e| panic!("{e}"));
        for step in w.flows.iter().flat_map(|f| &f.steps) {
            let marked = step.rules.degraded().iter().any(|r| r.header == "x-gauntlet-stale" && r.value.is_none());
            assert!(marked, "{}: step `{}` does not count stale answers as degraded", path.display(), step.name);
        }
    }
    assert!(seen >= 1, "no workloads in {}", dir.display());
}

/// The workload page's example of answer rules and drawn values is a workload that parses.
#[test]
fn the_docs_workload_example_parses() {
    let section = std::fs::read_to_string(workspace().join("docs/workload.md")).unwrap();
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let w = Workload::parse(example, "docs/workload.md").unwrap_or_else(|e| panic!("{e}"));
    let steps = &w.flows[0].steps;
    assert_eq!(steps[0].rules.degraded().len(), 2);
    assert!(steps[1].rules.expect().is_some());
}

#[test]
fn every_library_scenario_parses_with_a_hypothesis_and_faults() {
    let files = library();
    assert!(files.len() >= 9, "the library has {} scenarios", files.len());
    for file in files {
        let s = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.description.contains("Hypothesis"), "{}: state the hypothesis", file.display());
        // A capacity scenario measures the healthy system; every other one is a chaos
        // experiment: a fault on its timeline, or one set for the whole run through the
        // services' environment (slow-consumer's slow sender).
        let configured = s.cluster.env.values().any(|vars| vars.keys().any(|k| k.ends_with("_DELAY")));
        assert!(
            s.capacity.is_some() || !s.faults.is_empty() || configured,
            "{}: a chaos scenario injects a fault",
            file.display()
        );
        assert!(!s.slos().is_empty(), "{}: a scenario judges SLOs", file.display());
        assert!(s.faults_end() + s.recovery.duration <= s.load.duration(), "{}", file.display());
        if s.name == "smoke" {
            let worst = s.load.duration() + s.recovery.settle;
            assert!(worst.as_secs() < 60, "the smoke scenario must stay under 60 s, may take {worst:?}");
        }
    }
}

const HEAD: &str = "name = \"t\"\ndescription = \"Hypothesis: x.\"\n";
const LOAD: &str =
    "[load]\nworkload = \"workloads/shop.toml\"\nschedule = { mode = \"constant\", rate = 1, duration = \"30s\" }\n";

/// (text, expected `file:line:column: message` fragment)
fn cases() -> Vec<(String, &'static str)> {
    vec![
        (format!("{HEAD}{LOAD}[[fault]]\nedge = \"orders->users\"\ntoxic = \"latency\"\nat = \"1s\"\nfor = \"1s\"\n"), "t.toml:7:8: no edge `orders->users`"),
        (format!("{HEAD}{LOAD}[[fault]]\nedge = \"orders->payments\"\ntoxic = \"latency\"\nattributes = {{ latency = \"-5ms\" }}\nat = \"1s\"\nfor = \"1s\"\n"), "t.toml:7:8: attributes.latency"),
        (format!("{HEAD}{LOAD}[[fault]]\nnode = \"catalog-1\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n"), "t.toml:7:8: catalog has replicas 0..0"),
        (format!("{HEAD}{LOAD}[[fault]]\nnode = \"orders-0\"\nop = \"kill\"\nat = \"1s\"\n"), "t.toml:8:6: `kill` needs `for`"),
        (format!("{HEAD}{LOAD}[[fault]]\nnode = \"orders-0\"\nop = \"pause\"\nat = \"25s\"\nfor = \"10s\"\n"), "t.toml:3:1: the load lasts 30s"),
        (format!("{HEAD}{LOAD}[[slo]]\nthreshold = \"p95 <\"\n"), "t.toml:7:13: `p95 <` is not a threshold"),
        (format!("{HEAD}{LOAD}[[slo]]\nthreshold = \"p95 < 1s\"\nflow = \"nope\"\n"), "t.toml:6:1: no flow `nope`"),
        (format!("{HEAD}seeed = 1\n{LOAD}"), "t.toml:3:1: unknown field `seeed`"),
        (format!("name = \"t\"\n{LOAD}"), "t.toml:1:1: missing field `description`"),
        (format!("{HEAD}[cluster]\nreplicas = {{ catalogue = 2 }}\n{LOAD}"), "t.toml:4:26: replicas: no service `catalogue`"),
        (format!("{HEAD}invariants = [\"fast\"]\n{LOAD}"), "t.toml:3:15: unknown invariant `fast`"),
        (format!("{HEAD}[load]\nworkload = \"missing.toml\"\n"), "missing.toml:1:1: cannot read the workload file"),
        (format!("{HEAD}{LOAD}[capacity]\nresolution = \"five\"\n"), "t.toml:7:14: `five` is not a share"),
        (format!("{HEAD}{LOAD}[capacity]\nstart_rate = 100\nmax_rate = 10\n"), "t.toml:6:1: capacity: need 0 < start_rate <= max_rate"),
        (format!("{HEAD}{LOAD}[capacity]\nrate = 1\n"), "t.toml:7:1: unknown field `rate`"),
    ]
}

#[test]
fn mistakes_name_their_place_and_exit_with_code_2() {
    let dir = workspace().join("scenarios");
    for (text, expected) in cases() {
        // The library parser, then the CLI.
        let err = Scenario::parse(&text, &dir.join("t.toml")).unwrap_err().to_string();
        let shown = err.replace(&format!("{}/", dir.display()), "");
        assert!(shown.contains(expected), "expected {expected:?} in {shown:?}\n{text}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    std::fs::write(
        &file,
        format!("{HEAD}{LOAD}[[fault]]\nnode = \"orders-0\"\nop = \"explode\"\nat = \"1s\"\nfor = \"1s\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--runs"])
        .arg(tmp.path().join("runs"))
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The workload and the cluster file are relative to the scenario: here they are missing.
    assert!(stderr.contains("bad.toml:") || stderr.contains("cluster file"), "{stderr}");
}

#[test]
fn the_shipped_json_schema_is_current() {
    let path = workspace().join("scenarios/scenario.schema.json");
    let fresh = format!("{:#}\n", json_schema());
    if std::env::var_os("GAUNTLET_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == fresh,
        "scenarios/scenario.schema.json is stale: regenerate it with \
         `GAUNTLET_UPDATE_SCHEMA=1 cargo test -p gauntlet --test scenario_parse`"
    );
    let schema: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    for key in
        ["name", "description", "seed", "cluster", "steady_state", "load", "fault", "slo", "invariants", "recovery"]
    {
        assert!(schema["properties"].get(key).is_some(), "the schema documents `{key}`");
    }
}

#[test]
fn gauntlet_check_validates_every_kind_of_file_without_running_anything_and_points_at_mistakes() {
    let ws = workspace();
    let good: Vec<PathBuf> = [
        "examples/redis-webdis/cluster.toml",
        "examples/redis-webdis/volatile-killed.toml",
        "examples/redis-webdis/workload.toml",
    ]
    .iter()
    .map(|f| ws.join(f))
    .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet")).arg("check").args(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["(cluster file)", "(scenario)", "(workload)"] {
        assert!(stdout.contains(kind), "{stdout}");
    }
    // A scenario with an unknown checker, beside the example's own files.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&good[1])
        .unwrap()
        .replace("checker = \"counter\"", "checker = \"countr\"")
        .replace("file = \"cluster.toml\"", &format!("file = \"{}\"", good[0].display()))
        .replace("workload = \"workload.toml\"", &format!("workload = \"{}\"", good[2].display()));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, &text).unwrap();
    let line = text[..text.find("\"countr\"").unwrap()].matches('\n').count() + 1;
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet")).arg("check").arg(&good[0]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:{line}:11: unknown checker `countr`", bad.display())), "{stderr}");
    assert!(stderr.contains("1 of 2 file(s) have mistakes"), "{stderr}");
}
