//! The contract gate end to end, through the `gauntlet` binary and the real service
//! binaries: verification passes as committed; a provider that drops a field a consumer
//! reads fails verification, makes can-i-deploy say no (exit 1), and `contracts diff`
//! names the field. The same for the message pact of notifications->orders: orders
//! publishing `ORDER_PAID` without `user_id` fails it. Bad input exits 2 naming the file.
//!
//! Needs the service binaries (`cargo build -p shop-users -p shop-catalog -p shop-orders
//! -p shop-payments`); `gauntlet contracts verify` builds missing ones itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn gauntlet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gauntlet"));
    cmd.args(args).current_dir(workspace()).env_remove("SHOP_CONTRACT_BREAK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running gauntlet")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn dropping_a_field_a_consumer_reads_fails_the_gate() {
    let scratch = tempfile::tempdir().unwrap();
    let matrix = scratch.path().join("verifications.json");
    let junit = scratch.path().join("junit.xml");
    let (m, j) = (matrix.to_str().unwrap(), junit.to_str().unwrap());
    let verify = ["contracts", "verify", "--provider", "catalog", "--matrix", m, "--junit", j];

    let ok = gauntlet(&verify, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let yes = gauntlet(&["contracts", "can-i-deploy", "--service", "catalog", "--matrix", m], &[]);
    assert_eq!(yes.status.code(), Some(0), "{}", text(&yes));
    assert!(text(&yes).contains("can catalog be deployed? yes"), "{}", text(&yes));

    let broken = gauntlet(&verify, &[("SHOP_CONTRACT_BREAK", "drop-field:name")]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    let out = text(&broken);
    assert!(out.contains("get a product") && out.contains("FAILED"), "{out}");
    assert!(out.contains("missing the following keys: name"), "the failure names the field: {out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure"), "{xml}");

    let no = gauntlet(&["contracts", "can-i-deploy", "--service", "catalog", "--matrix", m], &[]);
    assert_eq!(no.status.code(), Some(1), "{}", text(&no));
    assert!(text(&no).contains("can catalog be deployed? no") && text(&no).contains("FAILED"), "{}", text(&no));

    // The same change as a pact: what the provider now offers, without `name`.
    let old = workspace().join("contracts/pacts/gateway-catalog.json");
    let mut pact: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    for i in pact["interactions"].as_array_mut().unwrap() {
        let content = &mut i["response"]["body"]["content"];
        if let Some(o) = content.as_object_mut() {
            o.remove("name");
        }
        if let Some(items) = content.get_mut("items").and_then(|v| v.as_array_mut()) {
            for item in items {
                item.as_object_mut().unwrap().remove("name");
            }
        }
    }
    let new = scratch.path().join("gateway-catalog.json");
    std::fs::write(&new, pact.to_string()).unwrap();
    let diff = gauntlet(&["contracts", "diff", old.to_str().unwrap(), new.to_str().unwrap()], &[]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let out = text(&diff);
    assert!(out.contains("\"get a product\": response field $.name was removed"), "{out}");
    assert!(out.contains("\"list products\": response field $.items[*].name was removed"), "{out}");
    let same = gauntlet(&["contracts", "diff", old.to_str().unwrap(), old.to_str().unwrap()], &[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
}

#[test]
fn an_order_paid_message_without_the_user_fails_the_message_pact() {
    let scratch = tempfile::tempdir().unwrap();
    let matrix = scratch.path().join("verifications.json");
    let junit = scratch.path().join("junit.xml");
    let (m, j) = (matrix.to_str().unwrap(), junit.to_str().unwrap());
    let verify = ["contracts", "verify", "--provider", "orders", "--matrix", m, "--junit", j];
    let can_i_deploy = ["contracts", "can-i-deploy", "--service", "notifications", "--matrix", m];

    let ok = gauntlet(&verify, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let out = text(&ok);
    for message in ["an order was placed", "an order was paid", "an order was cancelled"] {
        let line = out.lines().find(|l| l.contains("notifications->orders") && l.contains(message));
        assert!(line.is_some_and(|l| l.ends_with("ok")), "{message} is verified: {out}");
    }
    let yes = gauntlet(&can_i_deploy, &[]);
    assert_eq!(yes.status.code(), Some(0), "{}", text(&yes));
    assert!(text(&yes).contains("can notifications be deployed? yes"), "{}", text(&yes));

    // orders' relay would now publish ORDER_PAID without user_id (a debug break switch).
    let broken = gauntlet(&verify, &[("SHOP_TEST_BREAK", "paid-without-user")]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken));
    let out = text(&broken);
    let paid = out.lines().find(|l| l.contains("notifications->orders") && l.contains("an order was paid")).unwrap();
    assert!(paid.contains("FAILED") && paid.contains("missing the following keys: user_id"), "{out}");
    assert!(out.contains("7 interactions, 1 failed"), "only that message breaks: {out}");
    let no = gauntlet(&can_i_deploy, &[]);
    assert_eq!(no.status.code(), Some(1), "{}", text(&no));
    assert!(text(&no).contains("can notifications be deployed? no") && text(&no).contains("FAILED"), "{}", text(&no));

    // The same change as a pact: OrderPaid without user_id breaks notifications.
    let old = workspace().join("contracts/pacts/notifications-orders.json");
    let mut pact: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&old).unwrap()).unwrap();
    for i in pact["interactions"].as_array_mut().unwrap() {
        if i["description"] == "an order was paid" {
            i["contents"]["content"].as_object_mut().unwrap().remove("user_id");
        }
    }
    let new = scratch.path().join("notifications-orders.json");
    std::fs::write(&new, pact.to_string()).unwrap();
    let diff = gauntlet(&["contracts", "diff", old.to_str().unwrap(), new.to_str().unwrap()], &[]);
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let out = text(&diff);
    assert!(out.contains("breaking changes for notifications->orders"), "{out}");
    assert!(out.contains("\"an order was paid\": message field $.user_id was removed"), "{out}");
}

#[test]
fn bad_input_exits_2_and_names_the_file_or_the_provider() {
    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let out = gauntlet(&["contracts", "diff", bad.to_str().unwrap(), bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.json") && text(&out).contains("regenerate"), "{}", text(&out));

    let out = gauntlet(&["contracts", "verify", "--provider", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("\"nope\"") && text(&out).contains("known: catalog, orders, payments, users"));

    let out = gauntlet(&["contracts", "can-i-deploy", "--service", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let pacts = scratch.path().join("pacts");
    std::fs::create_dir(&pacts).unwrap();
    std::fs::copy(&bad, pacts.join("bad.json")).unwrap();
    let out = gauntlet(&["contracts", "verify", "--pacts", pacts.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad.json"), "{}", text(&out));
}

/// The provider-state endpoint (and orders' message endpoint) exists only in
/// contract-test mode.
#[tokio::test]
async fn the_state_endpoint_is_absent_in_a_normal_run() {
    let binaries = gauntlet::cluster::binaries::Binaries::for_dir(&workspace(), "debug").unwrap();
    let names: Vec<String> = ["users", "catalog", "orders", "payments"].map(|n| format!("shop-{n}")).to_vec();
    binaries.ensure(&names, &|msg| eprintln!("{msg}")).unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    for name in ["users", "catalog", "orders", "payments"] {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(binaries.path(&format!("shop-{name}")))
            .env_remove("SHOP_CONTRACT_TEST")
            .env("SHOP_DEV_DEFAULTS", "1")
            .env("SHOP_LOG", "warn")
            .env("SHOP_PORT", port.to_string())
            .env("SHOP_DB", dir.path().join("db.sqlite"))
            .env("SHOP_UPSTREAM_CATALOG", "http://127.0.0.1:9")
            .env("SHOP_UPSTREAM_PAYMENTS", "http://127.0.0.1:9")
            .spawn()
            .unwrap_or_else(|e| panic!("shop-{name} (build it first): {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "shop-{name} did not get ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let res = http
            .post(format!("{base}/_pact/state"))
            .json(&serde_json::json!({"state": "product 42 has 0 stock", "action": "setup"}))
            .send()
            .await
            .unwrap();
        let message = http
            .post(format!("{base}/_pact/message"))
            .json(&serde_json::json!({"description": "an order was paid"}))
            .send()
            .await
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(res.status().as_u16(), 404, "shop-{name} serves the state endpoint outside contract-test mode");
        assert_eq!(message.status().as_u16(), 404, "shop-{name} produces messages outside contract-test mode");
    }
}
