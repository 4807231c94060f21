//! The whole shop in one test process, each service on its own real socket.

#![allow(dead_code)]

use serde_json::{json, Value};
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, ServiceConfig};
use tokio::net::TcpListener;

pub const ADMIN: &str = shop_kit::config::DEV_SECRET;

pub struct Shop {
    pub gateway: RunningService,
    pub users: RunningService,
    pub catalog: RunningService,
    pub orders: RunningService,
    pub payments: RunningService,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn env(dir: &std::path::Path, name: &str, extra: &[(&str, String)]) -> Env {
    let mut env = Env::from_pairs([("SHOP_DEV_DEFAULTS", "1".to_string()), ("SHOP_LOG", "warn".to_string())])
        .with("SHOP_DB", dir.join(format!("{name}.db")).display().to_string());
    for (k, v) in extra {
        env = env.with(k, v.clone());
    }
    env
}

fn config(env: &Env, name: &str, needs_db: bool) -> ServiceConfig {
    ServiceConfig::from_env(env, name, 0, needs_db).unwrap()
}

impl Shop {
    /// Starts all five services; `extra` adds environment to every one of them.
    pub async fn start(extra: &[(&str, String)]) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();

        let (lu, lc, lp, lo, lg) =
            (listener().await, listener().await, listener().await, listener().await, listener().await);
        let url = |l: &TcpListener| format!("http://{}", l.local_addr().unwrap());
        let (users_url, catalog_url, payments_url, orders_url) = (url(&lu), url(&lc), url(&lp), url(&lo));

        let e = env(d, "users", extra);
        let users = shop_users::build(config(&e, "users", true), e, Metrics::new("users")).await.unwrap().spawn(lu);
        let e = env(d, "catalog", extra);
        let catalog =
            shop_catalog::build(config(&e, "catalog", true), e, Metrics::new("catalog")).await.unwrap().spawn(lc);
        let e = env(d, "payments", extra);
        let payments =
            shop_payments::build(config(&e, "payments", true), e, Metrics::new("payments")).await.unwrap().spawn(lp);
        let e = env(d, "orders", extra)
            .with("SHOP_UPSTREAM_CATALOG", catalog_url.clone())
            .with("SHOP_UPSTREAM_PAYMENTS", payments_url.clone());
        let orders = shop_orders::build(config(&e, "orders", true), e, Metrics::new("orders")).await.unwrap().spawn(lo);
        let e = env(d, "gateway", extra)
            .with("SHOP_UPSTREAM_USERS", users_url)
            .with("SHOP_UPSTREAM_CATALOG", catalog_url)
            .with("SHOP_UPSTREAM_ORDERS", orders_url);
        let gateway =
            shop_gateway::build(config(&e, "gateway", false), e, Metrics::new("gateway")).await.unwrap().spawn(lg);
        Shop { gateway, users, catalog, orders, payments, http: reqwest::Client::new(), dir }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.gateway.url())
    }

    /// Registers and logs in a user; returns (user id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let res = self
            .http
            .post(self.api("/users"))
            .json(&json!({"email": email, "name": "Test User", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "register: {}", res.text().await.unwrap());
        let login: Value = self
            .http
            .post(self.api("/login"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = match &login["user_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (id, login["token"].as_str().unwrap().to_string())
    }

    /// A service's admin state.
    pub async fn admin_state(&self, svc: &RunningService) -> Value {
        let res = self.http.get(format!("{}/v1/admin/state", svc.url())).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}
