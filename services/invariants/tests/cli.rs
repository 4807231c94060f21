//! `shop-invariants` driven as Gauntlet drives it: history files in, a verdict out.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn state(orders: Value) -> Vec<Value> {
    let read = |f: &str, index: u64, value: Value| json!({"type": "ok", "f": f, "value": value, "process": "final", "time": 9_000_000_000u64, "index": index});
    vec![
        read("orders-state", 0, json!({"orders": orders})),
        read(
            "payments-state",
            1,
            json!({"charges": [{"id": 1, "order_id": "o1", "amount_minor": 200, "status": "captured",
                "refunded_minor": 0, "idempotency_key": "o1:charge"}],
                "summary": {"captured_minor": 200, "refunded_minor": 0, "net_minor": 200}}),
        ),
        read(
            "catalog-state",
            2,
            json!({"products": [{"id": 1, "initial_stock": 100, "available": 98, "reserved": 0, "sold": 2}],
                "reservations": [{"id": 1, "order_id": "o1", "status": "committed",
                "items": [{"product_id": 1, "quantity": 2}]}]}),
        ),
    ]
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, Option<Value>) {
    let verdict = dir.join("verdict.json");
    let _ = std::fs::remove_file(&verdict);
    let out = Command::new(env!("CARGO_BIN_EXE_shop-invariants"))
        .args(args)
        .env("GAUNTLET_HISTORY", dir.join("history.jsonl"))
        .env("GAUNTLET_FINAL_READS", dir.join("final-reads.jsonl"))
        .env("GAUNTLET_VERDICT", &verdict)
        .output()
        .unwrap();
    let v = std::fs::read(&verdict).ok().map(|b| serde_json::from_slice(&b).unwrap());
    (out.status.code(), v)
}

#[test]
fn a_lost_acknowledged_order_is_named_and_a_settled_shop_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let op = |kind: &str, value: Value, time: u64, index: u64| json!({"type": kind, "f": "place_order", "value": value, "process": 1, "time": time, "index": index});
    write_lines(
        &dir.path().join("history.jsonl"),
        &[
            op("invoke", json!({"key": "k1"}), 10, 0),
            op("ok", json!({"id": "o1", "status": "PAID"}), 20, 1),
            op("invoke", json!({"key": "k2"}), 30, 2),
            op("ok", json!({"id": "o2", "status": "PAID"}), 40, 3),
        ],
    );
    let paid = json!([{"id": "o1", "status": "PAID", "items": [{"product_id": 1, "quantity": 2}],
        "total_minor": 200, "idempotency_key": "k1", "user_id": "u1"}]);
    write_lines(&dir.path().join("final-reads.jsonl"), &state(paid.clone()));

    let (code, v) = run(dir.path(), &["check", "no_lost_orders"]);
    let v = v.expect("a verdict");
    assert_eq!((code, v["valid"].as_str()), (Some(0), Some("invalid")), "{v}");
    let lost = v["clauses"].as_array().unwrap().iter().find(|c| c["name"] == "lost-acknowledged").unwrap();
    assert_eq!(lost["violations"], 1, "{v}");
    assert!(lost["counterexamples"][0]["subject"].as_str().unwrap().contains("o2"), "{v}");
    let (code, v) = run(dir.path(), &["check", "money_conserved"]);
    assert_eq!((code, v.unwrap()["valid"].as_str().map(str::to_owned)), (Some(0), Some("valid".into())));
    assert_eq!(run(dir.path(), &["settled"]).0, Some(0), "every order ended");

    let pending = json!([{"id": "o1", "status": "PENDING", "idempotency_key": "k1"}]);
    write_lines(&dir.path().join("final-reads.jsonl"), &state(pending));
    assert_eq!(run(dir.path(), &["settled"]).0, Some(1), "an order is still PENDING");

    // No state read: the verdict is unknown, and says why.
    write_lines(&dir.path().join("final-reads.jsonl"), &[]);
    let (code, v) = run(dir.path(), &["check", "stock_conserved"]);
    let v = v.unwrap();
    assert_eq!((code, v["valid"].as_str()), (Some(0), Some("unknown")), "{v}");
    assert!(v["unknown_because"].as_str().unwrap().contains("orders-state"), "{v}");
    // A mistake in how it is run: exit 2, nothing written.
    assert_eq!(run(dir.path(), &["check", "no_such"]), (Some(2), None));
}
