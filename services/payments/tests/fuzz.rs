//! Fuzzed requests to every route: whatever a client sends, the answer is never a 5xx,
//! and every 4xx is problem+json.

#[path = "../../fuzz_support.rs"]
mod fuzz_support;

use fuzz_support::{request, send, Fixture};
use proptest::prelude::*;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/charges"),
    ("GET", "/v1/charges?order_id={id}"),
    ("GET", "/v1/charges/{id}"),
    ("POST", "/v1/charges/{id}/refund"),
    ("GET", "/v1/ledger/summary"),
    ("GET", "/v1/admin/state"),
];
const FIELDS: &[&str] = &["order_id", "amount_minor", "currency"];

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| Fixture::start("payments", &[("SHOP_PAYMENTS_DECLINE_OVER", "500")], shop_payments::build))
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

            Ok::<(), TestCaseError>(())
        })?;
    }
}
