//! `gauntlet capacity` driven as a user would: a search that finds its limit, one that
//! fails at its first rate, and bad flags.

mod scenario_common;

use std::process::Command;

use scenario_common::{binaries, scenario_file, workspace};

fn capacity(dir: &std::path::Path, file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    binaries();
    Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["capacity", "--profile", "debug", "--runs"])
        .arg(dir.join("runs"))
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra)
        .arg(file)
        .current_dir(workspace())
        .output()
        .unwrap()
}

const BODY: &str = r#"
[cluster]
file = "CLUSTER"
[steady_state]
[[steady_state.probe]]
name = "products"
path = "/api/v1/products/1"
[load]
workload = "WORKLOAD"
schedule = { mode = "constant", rate = 2, duration = "3s" }
[recovery]
duration = "0s"
settle = "20s"
"#;

/// The shop easily serves 2..8 flows/s within a generous SLO: the search climbs to its
/// max rate running each rate twice after a warm-up, says it is a lower bound, and
/// writes the finding with each rate's spread and the last run's report.
#[test]
fn a_search_that_never_fails_reports_a_lower_bound_with_each_rates_spread() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{BODY}[[slo]]\nthreshold = \"availability >= 99%\"\n[[slo]]\nthreshold = \"p95 < 2s\"\nflow = \"browse\"\n\
         [capacity]\nstart_rate = 2\nmax_rate = 8\nmax_steps = 6\nruns_per_rate = 2\nwarmup = \"1s\"\n"
    );
    let file = scenario_file(dir.path(), "cap-easy", &body);
    let out = capacity(dir.path(), &file, &[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("capacity at least 8 flows/s"), "{stdout}");
    assert!(stdout.contains("passed 2 of 2 runs"), "{stdout}");
    // Progress of every run on stderr, the table on stdout.
    for rate in ["2", "4", "8"] {
        for run in 1..=2 {
            assert!(stderr.contains(&format!(": {rate} flows/s (Explore), run {run} of 2")), "{stderr}");
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/capacity.json")).unwrap()).unwrap();
    let steps = json["steps"].as_array().unwrap();
    let rates: Vec<f64> = steps.iter().map(|s| s["rate"].as_f64().unwrap()).collect();
    assert_eq!(rates, vec![2.0, 4.0, 8.0], "explore 2, 4, 8: two passing runs need no confirmation");
    assert_eq!(json["finding"]["kind"], "at_least");
    assert_eq!((json["plan"]["runs"].as_u64(), json["plan"]["warmup_ms"].as_u64()), (Some(2), Some(1000)));
    for s in steps {
        assert_eq!((s["passed"].as_bool(), s["passes"].as_u64()), (Some(true), Some(2)), "{s}");
        let runs = s["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r["passed"] == true && r["requests"].as_u64() > Some(0)), "{s}");
        let (lo, hi) = (s["p95_range_ms"][0].as_f64().unwrap(), s["p95_range_ms"][1].as_f64().unwrap());
        assert!(0.0 < lo && lo <= hi, "{s}");
        // The per-flow SLO was judged in every run.
        assert!(runs.iter().all(|r| r["slos"].to_string().contains("flow browse")), "{s}");
    }
    let md = std::fs::read_to_string(dir.path().join("out/capacity.md")).unwrap();
    assert!(md.contains("**capacity at least 8 flows/s"), "{md}");
    assert!(md.contains("| 2/2 runs |") && md.contains("1s warm-up"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("out/confirmed-run/report.html")).unwrap();
    assert!(html.contains("<svg"), "the confirmed run's report has its charts");
    assert!(dir.path().join("out/confirmed-run/report.json").exists());
}

/// An SLO no system meets: the first step fails, the search says so and exits 1.
#[test]
fn a_search_whose_first_rate_fails_exits_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{BODY}[[slo]]\nthreshold = \"p95 < 1us\"\n[capacity]\nstart_rate = 2\nmax_rate = 8\nwarmup = \"1s\"\n"
    );
    let file = scenario_file(dir.path(), "cap-impossible", &body);
    let out = capacity(dir.path(), &file, &[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("no rate passed: 2 flows/s already failed"), "{stdout}");
    assert!(
        stdout.contains("FAIL SLO `p95 < 1us` (overall, whole run) failed: observed"),
        "the step says which SLO failed: {stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/capacity.json")).unwrap()).unwrap();
    assert_eq!(json["steps"].as_array().unwrap().len(), 1);
    assert_eq!(json["steps"][0]["runs"].as_array().unwrap().len(), 1, "the first failed run ends the step");
    assert_eq!(json["finding"]["kind"], "none_passed");
}

#[test]
fn bad_search_flags_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = workspace().join("scenarios/shop-capacity.toml");
    for (flags, expect) in [
        (&["--resolution", "lots"][..], "--resolution `lots` is not a share"),
        (&["--start-rate", "50", "--max-rate", "10"][..], "0 < start rate (50) <= max rate (10)"),
        (&["--growth", "1"][..], "--growth 1 must be above 1"),
        (&["--runs-per-rate", "0"][..], "--runs-per-rate 0 must be from 1 to 10"),
        (&["--warmup", "soon"][..], "--warmup"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
            .arg("capacity")
            .args(flags)
            .arg("--runs")
            .arg(dir.path().join("runs"))
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expect), "{flags:?}: {stderr}");
    }
}
