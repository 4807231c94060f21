//! Shared by the runtime tests that drive the shop through its gateway: signing up,
//! a checkout, and waiting for a user's notifications.

#![allow(dead_code)]

use serde_json::{json, Value};

/// The notifications of the user behind `token`, once there are `want` (or after 20 s).
pub async fn notifications(http: &reqwest::Client, base: &str, token: &str, want: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let res = http.get(format!("{base}/api/v1/notifications")).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= want || std::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Registers `email` through the gateway at `base` and logs in; returns the token.
pub async fn sign_up(http: &reqwest::Client, base: &str, email: &str) -> String {
    let user = json!({"email": email, "name": "Ev", "password": "correct horse"});
    assert_eq!(http.post(format!("{base}/api/v1/users")).json(&user).send().await.unwrap().status(), 201);
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": email, "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["token"].as_str().unwrap().to_string()
}

/// One checkout of `product` for the user behind `token`; it must end PAID.
pub async fn checkout(http: &reqwest::Client, base: &str, token: &str, product: u32) -> Value {
    let order: Value = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "PAID", "{order}");
    order
}
