//! Fuzzed requests to every route: whatever a client sends, the answer is never a 5xx,
//! and every 4xx is problem+json.

#[path = "../../fuzz_support.rs"]
mod fuzz_support;

use fuzz_support::{request, send, Fixture};
use proptest::prelude::*;

const ROUTES: &[(&str, &str)] =
    &[("POST", "/v1/users"), ("POST", "/v1/login"), ("GET", "/v1/users/{id}"), ("GET", "/v1/admin/state")];
const FIELDS: &[&str] = &["email", "name", "password"];

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| Fixture::start("users", &[], shop_users::build))
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
