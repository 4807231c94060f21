//! Fuzzed requests to every route: whatever a client sends, the answer is never a 5xx,
//! and every 4xx is problem+json.

#[path = "../../fuzz_support.rs"]
mod fuzz_support;

use fuzz_support::{request, send, Fixture};
use proptest::prelude::*;
use serde_json::Value;
use shop_kit::config::DEV_SECRET;

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/products"),
    ("GET", "/v1/products?limit={id}&offset={id}"),
    ("GET", "/v1/products/{id}"),
    ("POST", "/v1/products"),
    ("POST", "/v1/reservations"),
    ("GET", "/v1/reservations/{id}"),
    ("POST", "/v1/reservations/{id}/commit"),
    ("POST", "/v1/reservations/{id}/release"),
    ("GET", "/v1/admin/state"),
];
const FIELDS: &[&str] =
    &["order_id", "items", "product_id", "quantity", "sku", "name", "price_minor", "currency", "stock"];

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        Fixture::start(
            "catalog",
            &[("SHOP_CATALOG_SEED_PRODUCTS", "5"), ("SHOP_CATALOG_SEED_STOCK", "50")],
            shop_catalog::build,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_route_answers_4xx_not_5xx(requests in prop::collection::vec(request(ROUTES, FIELDS), 1..6)) {
        let f = fixture();
        f.rt.block_on(async {
            for r in &requests {
                send(&f.http, &f.base, r).await?;
            }
            let state: Value = f
                .http
                .get(format!("{}/v1/admin/state", f.base))
                .bearer_auth(DEV_SECRET)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for p in state["products"].as_array().unwrap() {
                let n = |k: &str| p[k].as_i64().unwrap();
                prop_assert!(n("available") >= 0, "{}", p);
                prop_assert_eq!(n("initial_stock"), n("available") + n("reserved") + n("sold"), "{}", p);
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
