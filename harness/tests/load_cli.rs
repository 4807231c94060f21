//! `gauntlet load` as a user runs it: the binary, stdout not a terminal.

mod load_common;

use std::process::{Command, Output};
use std::sync::atomic::Ordering;

fn gauntlet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(args).output().expect("the gauntlet binary runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn target() -> (tokio::runtime::Runtime, std::net::SocketAddr, std::sync::Arc<load_common::Target>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, target) = rt.block_on(load_common::start());
    (rt, addr, target)
}

#[test]
fn prints_plain_progress_lines_and_a_summary() {
    let (_rt, addr, _) = target();
    let url = format!("http://{addr}/fixed");
    let out = gauntlet(&["load", &url, "--rate", "200", "--duration", "2s", "--progress", "500ms"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains('\r') && !stdout.contains('\x1b'), "no terminal codes when piped:\n{stdout}");
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with("progress: elapsed ")).collect();
    assert!(progress.len() >= 3, "progress lines:\n{stdout}");
    assert!(progress.iter().all(|l| l.contains("/s") && l.contains(" p95 ") && l.contains(" errors 0")), "{stdout}");
    assert!(stdout.contains("summary: 400 requests in "), "{stdout}");
    assert!(stdout.contains("flow starts: scheduled 400, started 400, dropped 0"), "{stdout}");
    assert!(stdout.contains("p99.9 ") && stdout.contains("service time"), "{stdout}");
    assert!(stdout.contains("2xx 400"), "{stdout}");
    assert!(stdout.contains("latency (corrected, from intended send)"), "the open model's latency: {stdout}");
    assert!(stdout.contains("send lateness (actual - intended send"), "and the generator's own share: {stdout}");
}

/// A warm-up runs at the rate but is in no figure: the server answers both parts, the
/// summary counts only the measured one.
#[test]
fn a_warmup_is_sent_but_not_measured() {
    let (_rt, addr, target) = target();
    let url = format!("http://{addr}/mix");
    let out = gauntlet(&["load", &url, "--rate", "50", "--warmup", "1s", "--duration", "1s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(target.mix_count.load(Ordering::Relaxed), 100, "warm-up and measured requests were sent");
    assert!(stdout.contains("summary: 50 requests in "), "{stdout}");
    assert!(stdout.contains("after a 1s warm-up"), "{stdout}");
    assert!(stdout.contains("2xx 50"), "{stdout}");
    let closed = gauntlet(&["load", &url, "--warmup", "1s"]);
    assert_eq!(closed.status.code(), Some(2), "--warmup needs --rate: {}", text(&closed).1);
}

#[test]
fn a_closed_loop_does_not_call_its_latency_corrected() {
    let (_rt, addr, _) = target();
    let url = format!("http://{addr}/fixed");
    let out = gauntlet(&["load", &url, "-c", "2", "--duration", "500ms"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("gauntlet load: closed loop, 2 connections"), "{stdout}");
    assert!(stdout.contains("latency (closed loop, from send; not corrected for coordinated omission)"), "{stdout}");
    assert!(!stdout.contains("corrected, from intended send"), "{stdout}");
    assert!(!stdout.contains("send lateness"), "a closed loop has no schedule to be late on: {stdout}");
}

#[test]
fn a_failed_slo_exits_1_with_the_observed_value() {
    let (_rt, addr, _) = target();
    let url = format!("http://{addr}/delay/20");
    let out = gauntlet(&["load", &url, "-r", "50", "-d", "1s", "--slo", "p95 < 5ms", "--slo", "availability >= 99%"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("FAIL    p95 < 5ms"), "{stdout}");
    assert!(stdout.contains("PASS    availability >= 99%"), "{stdout}");
    assert!(stderr.contains("1 of 2 SLOs failed"), "{stderr}");
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    for args in [
        &["load", "http://127.0.0.1:9/", "--rate", "fast"][..],
        &["load", "http://127.0.0.1:9/", "--rate", "-5"],
        &["load", "http://127.0.0.1:9/", "--slo", "p95 < lots"],
        &["load", "ftp://127.0.0.1:9/"],
        &["load"],
    ] {
        let out = gauntlet(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{stdout}\n{stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?}: no message");
    }
}

#[test]
fn a_bad_workload_file_names_its_line_and_column() {
    let dir = std::env::temp_dir().join(format!("gauntlet-load-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[[flow]]\nname = \"f\"\n[[flow.step]]\npath = \"/x/{{nope}}\"\n").unwrap();
    let out = gauntlet(&["load", "http://127.0.0.1:9/", "--workload", file.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:4:8: unknown variable `{{{{nope}}}}`", file.display())), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_workload_file_runs_setup_captures_and_reports_per_step() {
    let (_rt, addr, target) = target();
    let dir = std::env::temp_dir().join(format!("gauntlet-load-wl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shop.toml");
    std::fs::write(
        &file,
        format!(
            r#"
base_url = "http://{addr}"
seed = 3
[schedule]
mode = "constant"
rate = 40
duration = "1s"
[setup]
users = 4
[[setup.step]]
method = "POST"
path = "/users"
body = {{ email = "u{{{{vu}}}}@shop.test" }}
capture = {{ email = "/email" }}
[[flow]]
name = "checkout"
[[flow.step]]
name = "login"
method = "POST"
path = "/login"
body = {{ email = "{{{{email}}}}" }}
capture = {{ token = "/token" }}
[[flow.step]]
name = "order"
method = "POST"
path = "/orders"
headers = {{ authorization = "Bearer {{{{token}}}}" }}
[[slo]]
threshold = "error_rate < 1%"
flow = "checkout"
step = "order"
"#
        ),
    )
    .unwrap();
    let out = gauntlet(&["load", "--workload", file.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(target.users.load(Ordering::Relaxed), 4, "setup ran once per virtual user");
    assert_eq!(target.authorized_orders.load(Ordering::Relaxed), 40, "every order carried the captured token");
    assert!(stdout.contains("summary: 80 requests"), "setup requests are not measured:\n{stdout}");
    assert!(stdout.contains("step checkout/login: 40 requests"), "{stdout}");
    assert!(stdout.contains("flow checkout: 40 requests"), "{stdout}");
    assert!(stdout.contains("PASS    error_rate < 1% (step checkout/order, whole run)"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
