//! `gauntlet report compare` and `gauntlet report render` through the real binary:
//! exit codes 0 (no regression), 1 (regression), 2 (bad or missing file, named).

mod report_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gauntlet::report::json;

fn gauntlet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(args).output().expect("gauntlet runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn write(dir: &Path, name: &str, slowdown: f64) -> PathBuf {
    let path = dir.join(name);
    json::write(&path, &report_common::report_with_slowdown(slowdown)).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compare_exits_0_without_a_regression_and_1_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.json", 1.0);
    let same = write(dir.path(), "same.json", 1.0);
    let slow = write(dir.path(), "slow.json", 3.0);

    let out = gauntlet(&["report", "compare", s(&base), s(&same)]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("0 regressions beyond 10%"), "{stdout}");

    let out = gauntlet(&["report", "compare", s(&base), s(&slow), "--tolerance", "25%", "--metric", "p50,throughput"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("REGRESSION") && stdout.contains("beyond 25%"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("overall") && l.contains("p50") && l.contains("REGRESSION")),
        "{stdout}"
    );
    assert!(stderr.contains("regression"), "{stderr}");

    // The other way round the slow run is the baseline: an improvement, exit 0.
    let out = gauntlet(&["report", "compare", s(&slow), s(&base), "--metric", "p50"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("improved"));
}

#[test]
fn compare_exits_2_naming_a_missing_or_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.json", 1.0);
    let missing = dir.path().join("missing.json");
    let out = gauntlet(&["report", "compare", s(&base), s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains(s(&missing)), "{:?}", text(&out));

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let out = gauntlet(&["report", "compare", s(&garbage), s(&base)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("garbage.json: not a gauntlet report"), "{:?}", text(&out));

    let future = dir.path().join("future.json");
    let body = std::fs::read_to_string(&base).unwrap().replacen(
        &format!("\"schema_version\": \"{}\"", gauntlet::report::model::SCHEMA_VERSION),
        "\"schema_version\": \"9.0\"",
        1,
    );
    std::fs::write(&future, body).unwrap();
    let out = gauntlet(&["report", "compare", s(&base), s(&future)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("future.json: report schema version 9.0 is not supported"), "{:?}", text(&out));

    let out = gauntlet(&["report", "compare", s(&base), s(&base), "--tolerance", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    let out = gauntlet(&["report", "compare", s(&base), s(&base), "--metric", "p42"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn render_writes_the_renderings_from_a_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = write(dir.path(), "report.json", 1.0);
    let out_dir = dir.path().join("rendered");
    let out = gauntlet(&["report", "render", s(&report), "--out", s(&out_dir)]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    for (name, needle) in
        [("report.md", "`orders->payments`"), ("report.html", "chart-latency"), ("junit.xml", "<testcase")]
    {
        let body = std::fs::read_to_string(out_dir.join(name)).unwrap();
        assert!(body.contains(needle), "{name} lacks {needle}");
    }
    let out = gauntlet(&["report", "render", s(&report)]);
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.path().join("report.html").exists());
    let out = gauntlet(&["report", "render", s(&dir.path().join("nope.json"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("nope.json"));
}
