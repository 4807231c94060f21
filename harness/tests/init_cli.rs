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

/// A stand-in for a deployment already running: answers every request 200, one request
/// per connection, until the test ends.
fn deployment() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            });
        }
    });
    format!("http://{addr}")
}

#[test]
fn init_for_a_running_deployment_runs_on_the_external_runtime() {
    let url = deployment();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flag = format!("api={url}");
    let out = gauntlet(d, &["init", "--url", &flag, "--dir", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sys = d.join("staging");
    let cluster = std::fs::read_to_string(sys.join("cluster.toml")).unwrap();
    assert!(cluster.contains(&format!("urls = [\"{url}\"]")) && !cluster.contains("command = "), "{cluster}");
    let scenario = std::fs::read_to_string(sys.join("scenario.toml")).unwrap();
    assert!(scenario.contains("runtime = \"external\"") && scenario.contains("edge = \"client->api\""), "{scenario}");
    let out = gauntlet(&sys, &["check", "cluster.toml", "scenario.toml", "workload.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Nothing is started; the load and the fault go through the proxy in front of it.
    let out = gauntlet(&sys, &["run", "scenario.toml", "--runs", "runs"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("through Gauntlet's proxies"), "{shown}");
    let effect = shown.lines().find(|l| l.trim_start().starts_with("effect:")).unwrap_or_default();
    assert!(effect.contains("bytes over") && !effect.contains(" 0 bytes"), "the fault landed: {shown}");
    let p95 = shown.lines().find(|l| l.contains("p95 < 1s")).unwrap_or_default();
    let ms: f64 =
        p95.split("observed ").nth(1).and_then(|v| v.split("ms").next()).and_then(|v| v.parse().ok()).unwrap();
    assert!(ms >= 100.0, "the 100 ms latency reached the clients' calls: {p95}");

    // What a deployment cannot take is refused before anything runs, saying why.
    for (fault, why) in [
        ("[[fault]]\nnode = \"api-0\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n", "does not own the deployment's nodes"),
        (
            "[[fault]]\nedge = \"api->db\"\ntoxic = \"latency\"\nattributes = { latency = \"1ms\" }\nat = \"1s\"\nfor = \"1s\"\n",
            "--toxiproxy URL",
        ),
    ] {
        let with_db = cluster.replace("edges = []", "edges = [\"api->db\"]") + &format!("\n[services.db]\nurls = [\"{url}\"]\n");
        std::fs::write(sys.join("cluster.toml"), with_db).unwrap();
        std::fs::write(sys.join("refused.toml"), format!("{scenario}\n{fault}")).unwrap();
        let out = gauntlet(&sys, &["run", "refused.toml", "--runs", "runs"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(why), "{}", text(&out));
    }
}

#[test]
fn url_mistakes_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    for (args, what) in [
        (vec!["init", "--url", "api=http://h:1/v1"], "base URL http://host:port"),
        (vec!["init", "--url", "api=localhost:80"], "base URL http://host:port"),
        (vec!["init", "--url", "api=http://h:1", "--service", WEB], "not both"),
    ] {
        let out = gauntlet(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(what), "{args:?}: {}", text(&out));
    }
}
