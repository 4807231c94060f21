//! The README's "Test your own system", followed as written: from an empty folder, the
//! blocks marked `<!-- tutorial: run -->` are run by `sh` with `gauntlet` on PATH, those
//! marked `<!-- tutorial: write FILE -->` and `<!-- tutorial: append FILE -->` write or
//! extend a file. The system is Redis and webdis from Debian's packages; webdis reads
//! the store's address from a config file Gauntlet renders, so the fault on its internal
//! edge must touch bytes, and the `set` checker must see every acknowledged add.
//!
//! Needs `redis-server` and `webdis`: skips, saying so, where they are missing; required
//! under GAUNTLET_REQUIRE_EXAMPLES=1, which `.ci/run` sets after installing them.

mod scenario_common;

use std::path::Path;

use scenario_common::{missing_programs, report_json, runs_or_skips, workspace};

/// One step of the tutorial.
#[derive(Debug)]
enum Step {
    Run(String),
    Write(String, String),
    Append(String, String),
}

/// The marked steps of `readme`, in order; a marker without a fenced block after it is
/// an error, so a README edit cannot silently drop a step.
fn steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(marker) = lines[i].trim().strip_prefix("<!-- tutorial:").and_then(|m| m.strip_suffix("-->")) else {
            i += 1;
            continue;
        };
        let fence = i + 1;
        assert!(
            lines.get(fence).is_some_and(|l| l.starts_with("```")),
            "README.md:{}: a tutorial marker must be followed by a fenced block",
            i + 1
        );
        let end = (fence + 1..lines.len())
            .find(|&j| lines[j].starts_with("```"))
            .unwrap_or_else(|| panic!("README.md:{}: the block is never closed", fence + 1));
        let body = lines[fence + 1..end].join("\n") + "\n";
        let words: Vec<&str> = marker.split_whitespace().collect();
        out.push(match words.as_slice() {
            ["run"] => Step::Run(body),
            ["write", file] => Step::Write(file.to_string(), body),
            ["append", file] => Step::Append(file.to_string(), body),
            other => panic!("README.md:{}: unknown tutorial marker {other:?}", i + 1),
        });
        i = end + 1;
    }
    out
}

fn installed() -> bool {
    let missing = missing_programs(&["redis-server", "webdis"]);
    runs_or_skips(&missing, "GAUNTLET_REQUIRE_EXAMPLES", "apt-get install redis-server webdis")
}

/// Runs `script` with `sh -eu` in `dir`, `gauntlet` first on PATH.
fn sh(dir: &Path, bin: &Path, script: &str) -> std::process::Output {
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    std::process::Command::new("sh").args(["-euc", script]).current_dir(dir).env("PATH", path).output().unwrap()
}

#[test]
fn the_readme_tutorial_runs_as_written() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let steps = steps(&readme);
    assert!(
        steps.iter().filter(|s| matches!(s, Step::Run(_))).count() >= 2
            && steps.iter().filter(|s| !matches!(s, Step::Run(_))).count() >= 3,
        "the README's tutorial lost its steps: {steps:?}"
    );
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gauntlet"), bin.join("gauntlet")).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();

    let mut last = None;
    for step in &steps {
        match step {
            Step::Run(script) => {
                let out = sh(&home, &bin, script);
                let shown =
                    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "the README's\n{script}\nfailed ({}):\n{shown}", out.status);
                last = Some(shown);
            }
            Step::Write(file, body) => std::fs::write(home.join(file), body).unwrap(),
            Step::Append(file, body) => {
                let path = home.join(file);
                let before = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
                std::fs::write(&path, before + body).unwrap();
            }
        }
    }
    let shown = last.unwrap();
    assert!(shown.contains("PASSED"), "{shown}");
    let report = report_json(&shown);
    let faults = report["faults"].as_array().unwrap();
    let internal = faults.iter().find(|f| f["target"] == "web->store").unwrap_or_else(|| panic!("{faults:?}"));
    assert!(internal["touched"].as_u64().unwrap() > 0, "the fault on web->store touched nothing: {internal}");
    let set = report["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "set").unwrap();
    assert_eq!(set["validity"], "valid", "{set}");
    assert!(set["clauses"][0]["checked"].as_u64().unwrap() > 0, "{set}");
}
