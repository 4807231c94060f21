//! `gauntlet init` as a newcomer uses it: two programs this project did not write
//! (Python's own HTTP server, twice), three files written, `gauntlet check` accepts them
//! and `gauntlet run` runs the scenario as written, its fault landing on an edge.
//! Mistakes in the flags exit 2 saying what to write; nothing is overwritten unasked.

use std::path::Path;
use std::process::{Command, Output};

fn gauntlet(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(args).current_dir(dir).output().expect("running gauntlet")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn python() -> bool {
    let found = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_PYTHON=1 but python3 is not installed");
        eprintln!("skipped: python3 is not installed (the two programs are its HTTP server)");
    }
    found
}

const WEB: &str = "web=python3 -m http.server {port} --bind {host}";
const FILES: &str = "files=python3 -m http.server {port} --bind {host}";

#[test]
fn init_writes_files_that_check_and_run_as_written() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = gauntlet(d, &["init", "--service", WEB, "--service", FILES, "--edge", "web->files", "--dir", "sys"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sys = d.join("sys");
    for f in ["cluster.toml", "workload.toml", "scenario.toml"] {
        assert!(sys.join(f).exists(), "{f} was not written: {}", text(&out));
    }
    let cluster = std::fs::read_to_string(sys.join("cluster.toml")).unwrap();
    assert!(cluster.contains("edges = [\"web->files\"]") && cluster.contains("\"{port}\""), "{cluster}");
    let out = gauntlet(&sys, &["check", "cluster.toml", "scenario.toml", "workload.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = gauntlet(&sys, &["run", "scenario.toml", "--runs", "runs"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let effect = shown.lines().find(|l| l.trim_start().starts_with("effect:")).unwrap_or_default();
    assert!(effect.contains("bytes over") && !effect.contains(" 0 bytes"), "the fault landed: {shown}");

    // Run again: nothing is overwritten unless asked.
    let out = gauntlet(d, &["init", "--service", WEB, "--dir", "sys"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("exists: pass --force"), "{}", text(&out));
    let out = gauntlet(d, &["init", "--service", WEB, "--dir", "sys", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn flag_mistakes_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (args, what) in [
        (vec!["init"], "--service 'NAME=COMMAND'"),
        (vec!["init", "--service", "web"], "is not NAME=..."),
        (vec!["init", "--service", "Web=x"], "lower-case letters"),
        (vec!["init", "--service", WEB, "--edge", "web->db"], "no service \"db\""),
        (vec!["init", "--service", WEB, "--edge", "web"], "CONSUMER->PROVIDER"),
        (vec!["init", "--service", WEB, "--ingress", "api"], "--ingress \"api\""),
        (vec!["init", "--service", WEB, "--service", WEB], "named twice"),
    ] {
        let out = gauntlet(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(what), "{args:?}: {}", text(&out));
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was written");
}
