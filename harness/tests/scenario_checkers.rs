//! The checkers can fail: deliberately broken builds of the shop (test-only switches,
//! honoured by debug builds only) make the matching checker report the violation with a
//! counterexample, and `gauntlet run` exit with code 1.

mod scenario_common;

use scenario_common::{gauntlet_run, report_json, scenario_file, verdict_line};

fn show(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn skipped_compensation_leaks_stock_and_the_stock_checker_says_where() {
    let dir = tempfile::tempdir().unwrap();
    // Orders over 50.00 EUR are declined: bulk checkouts (3 x product 42) are cancelled.
    let body = |broken: bool| {
        let brk = if broken { ", SHOP_TEST_BREAK = \"skip-compensation\"" } else { "" };
        format!(
            "[cluster]\nfile = \"CLUSTER\"\nenv = {{ payments = {{ SHOP_PAYMENTS_DECLINE_OVER = \"5000\" }}, orders = {{ SHOP_ORDERS_SAGA_DEADLINE = \"30s\"{brk} }} }}\n\
             [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 6, duration = \"8s\" }}\n\
             [[slo]]\nthreshold = \"availability >= 90%\"\n[recovery]\nduration = \"1s\"\nsettle = \"20s\"\n"
        )
    };
    let broken = scenario_file(dir.path(), "broken", &body(true));
    let out = gauntlet_run(dir.path(), &broken, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = verdict_line(&stdout, |l| l.contains("stock_conserved"));
    eprintln!("broken build:{line}");
    assert!(line.contains("INVALID"), "{stdout}");
    assert!(
        line.contains("product 42") && line.contains("[held-at-end]"),
        "a counterexample names the product: {line}"
    );

    let healthy = scenario_file(dir.path(), "healthy", &body(false));
    let out = gauntlet_run(dir.path(), &healthy, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(0), "the same run on a healthy build passes:\n{stdout}\n{stderr}");
    assert!(stdout.contains("VALID   stock_conserved"), "{stdout}");
}

#[test]
fn skipped_idempotency_charges_twice_and_the_money_checker_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Every answer from payments to orders is reset for 4 s: orders retries its charges
    // with the same key, and the broken payments charges each retry again.
    let body = "[cluster]\nfile = \"CLUSTER\"\nenv = { payments = { SHOP_TEST_BREAK = \"skip-idempotency\" } }\n\
                [load]\nworkload = \"WORKLOAD\"\nschedule = { mode = \"constant\", rate = 6, duration = \"12s\" }\n\
                [[fault]]\nedge = \"orders->payments\"\nstream = \"downstream\"\ntoxic = \"reset_peer\"\nat = \"2s\"\nfor = \"4s\"\n\
                [[slo]]\nthreshold = \"availability >= 50%\"\n[recovery]\nduration = \"4s\"\nsettle = \"40s\"\n";
    let file = scenario_file(dir.path(), "double-charge", body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = verdict_line(&stdout, |l| l.contains("money_conserved"));
    eprintln!("broken build:{line}");
    assert!(line.contains("INVALID"), "{stdout}");
    assert!(line.contains("key-charged-twice"), "the clause for a key charged twice is broken: {line}");
    let state: serde_json::Value = report_json(&stdout);
    let money =
        state["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "money_conserved").unwrap().clone();
    let clause =
        money["clauses"].as_array().unwrap().iter().find(|c| c["name"] == "key-charged-twice").unwrap().clone();
    let cx = clause["first"]["subject"].as_str().unwrap_or_default();
    assert!(cx.starts_with("idempotency key") && cx.ends_with(":charge"), "the counterexample names the key: {clause}");
}

/// Runs the shop with `break_env` set on orders (declines over 50.00 EUR, so bulk
/// checkouts are cancelled) and returns the line of `invariant` from a run that must fail.
fn broken_run_line(name: &str, break_env: &str, invariant: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[cluster]\nfile = \"CLUSTER\"\nenv = {{ payments = {{ SHOP_PAYMENTS_DECLINE_OVER = \"5000\" }}, orders = {{ SHOP_ORDERS_SAGA_DEADLINE = \"30s\", SHOP_TEST_BREAK = \"{break_env}\" }} }}\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 6, duration = \"8s\" }}\n\
         [[slo]]\nthreshold = \"availability >= 50%\"\n[recovery]\nduration = \"1s\"\nsettle = \"20s\"\n"
    );
    let file = scenario_file(dir.path(), name, &body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = verdict_line(&stdout, |l| l.contains(invariant)).to_string();
    eprintln!("{break_env}: {line}");
    assert!(line.contains("INVALID"), "{stdout}");
    line
}

#[test]
fn a_paid_order_whose_reservation_was_released_is_named_by_the_stock_checker() {
    let line = broken_run_line("release-paid", "release-paid", "stock_conserved");
    assert!(line.contains("[paid-not-committed]") && line.contains("PAID for"), "{line}");
}

#[test]
fn a_cancelled_order_whose_reservation_was_committed_is_named_by_the_stock_checker() {
    let line = broken_run_line("commit-cancelled", "commit-cancelled", "stock_conserved");
    assert!(line.contains("[cancelled-committed]") && line.contains("product 42"), "{line}");
}

#[test]
fn a_replayed_key_that_places_a_second_order_is_named_by_the_orders_checker() {
    // orders' answers to the gateway are reset for 3 s; the gateway retries each keyed
    // POST with its key, and the broken orders places a new order for every retry.
    let dir = tempfile::tempdir().unwrap();
    let body = "[cluster]\nfile = \"CLUSTER\"\nenv = { orders = { SHOP_TEST_BREAK = \"duplicate-order\" } }\n\
                [load]\nworkload = \"WORKLOAD\"\nschedule = { mode = \"constant\", rate = 8, duration = \"10s\" }\n\
                [[fault]]\nedge = \"gateway->orders\"\nstream = \"downstream\"\ntoxic = \"reset_peer\"\nat = \"2s\"\nfor = \"3s\"\n\
                [[slo]]\nthreshold = \"availability >= 10%\"\n[recovery]\nduration = \"4s\"\nsettle = \"30s\"\n";
    let file = scenario_file(dir.path(), "duplicate-order", body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = verdict_line(&stdout, |l| l.contains("no_lost_orders"));
    eprintln!("duplicate-order: {line}");
    assert!(line.contains("INVALID") && line.contains("[duplicate-order]"), "{stdout}");
    assert!(line.contains("idempotency key"), "the counterexample names the key: {line}");
}

#[test]
fn a_cancelled_order_left_charged_is_named_by_the_money_checker() {
    // payments' answers to orders are held back 3 s for 4 s, past the 1.5 s saga
    // deadline: the charges are captured, the sagas give up and must refund them. The
    // broken orders records the refunds without making them.
    let dir = tempfile::tempdir().unwrap();
    let body = "[cluster]\nfile = \"CLUSTER\"\nenv = { orders = { SHOP_ORDERS_SAGA_DEADLINE = \"1500ms\", SHOP_ORDERS_SETTLE = \"300ms\", SHOP_TEST_BREAK = \"skip-refund\" } }\n\
                [load]\nworkload = \"WORKLOAD\"\nschedule = { mode = \"constant\", rate = 6, duration = \"10s\" }\n\
                [[fault]]\nedge = \"orders->payments\"\nstream = \"downstream\"\ntoxic = \"latency\"\nattributes = { latency = \"3s\" }\nat = \"2s\"\nfor = \"4s\"\n\
                [[slo]]\nthreshold = \"availability >= 10%\"\n[recovery]\nduration = \"4s\"\nsettle = \"30s\"\n";
    let file = scenario_file(dir.path(), "skip-refund", body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let (stdout, stderr) = show(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = verdict_line(&stdout, |l| l.contains("money_conserved"));
    eprintln!("skip-refund: {line}");
    assert!(line.contains("INVALID") && line.contains("[cancelled-kept-money]"), "{stdout}");
}
