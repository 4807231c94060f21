//! The contract gate for a provider this project did not write, with a pact written by
//! another Pact implementation: `examples/pact-python`'s consumer test (pact-python, from
//! PyPI) writes the pact of todo-web -> todo-api with a provider state and its params;
//! `gauntlet contracts verify --providers` runs todo-api (a Python program) as its
//! providers file says, sets the state up and tears it down with the standard body,
//! records the matrix, and `can-i-deploy` answers for it. A provider that renames a
//! field the consumer reads fails both.
//!
//! Needs python3 with pact-python (`pip install pact-python`); skipped, saying so,
//! without it, and required under GAUNTLET_REQUIRE_PYTHON=1 (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/pact-python")
}

/// Whether python3 with pact-python is here; with GAUNTLET_REQUIRE_PYTHON=1 it must be.
fn pact_python() -> bool {
    let found = Command::new("python3").args(["-c", "import pact"]).output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_PYTHON=1 but python3 cannot import pact (pip install pact-python)");
        eprintln!("skipped: python3 with pact-python is not installed (pip install pact-python)");
    }
    found
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out: Output = cmd.output().expect("running it");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn gauntlet(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.args(args).current_dir(dir).env_remove("TODO_BREAK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn a_pact_python_pact_verifies_against_a_python_provider_with_its_states() {
    if !pact_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for f in ["consumer.py", "provider.py", "providers.toml"] {
        std::fs::copy(example().join(f), dir.path().join(f)).unwrap();
    }
    // The consumer's own test writes the pact, as its CI would.
    let (code, out) = run(Command::new("python3").args(["consumer.py", "pacts"]).current_dir(dir.path()));
    assert_eq!(code, Some(0), "{out}");
    let pact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pacts/todo-web-todo-api.json")).unwrap()).unwrap();
    let state = &pact["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["providerStates"][0]["name"] == "a todo exists")
        .unwrap()["providerStates"][0];
    assert_eq!(state["params"]["id"], 7, "pact-python wrote the state's params: {state}");

    let verify = ["contracts", "verify", "--providers", "providers.toml", "--junit", "junit.xml"];
    let deploy = ["contracts", "can-i-deploy", "--service", "todo-api", "--providers", "providers.toml"];
    let (code, out) = gauntlet(dir.path(), &verify, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("todo-web->todo-api") && out.contains("2 interactions, 0 failed"), "{out}");
    let matrix = std::fs::read_to_string(dir.path().join("verifications.json")).unwrap();
    assert!(matrix.contains("todo-api") && matrix.contains("todo-web"), "{matrix}");
    let (code, out) = gauntlet(dir.path(), &deploy, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("can todo-api be deployed? yes"), "{out}");

    // A provider that renames a field the consumer reads: verification names it, and
    // the matrix now says no.
    let (code, out) = gauntlet(dir.path(), &verify, &[("TODO_BREAK", "rename-title")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED") && out.contains("title"), "{out}");
    let (code, out) = gauntlet(dir.path(), &deploy, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("can todo-api be deployed? no"), "{out}");
}

#[test]
fn a_providers_file_mistake_is_named_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("providers.toml"), "[providers.todo-api]\ncommand = [\"x\"]\nurl = \"http://h\"\n")
        .unwrap();
    let (code, out) = gauntlet(dir.path(), &["contracts", "verify", "--providers", "providers.toml"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("providers.toml:1:") && out.contains("exactly one of"), "{out}");
    // No providers file at all: the error says what to pass.
    let (code, out) =
        gauntlet(dir.path(), &["contracts", "can-i-deploy", "--service", "x", "--providers", "nope.toml"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("nope.toml"), "{out}");
}
