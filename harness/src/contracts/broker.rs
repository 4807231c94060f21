//! A Pact Broker as the source of pacts and the sink of verification results.
//!
//! With `--broker-url`, verification asks the broker for the pacts to verify
//! ("pacts for verification": consumer version selectors, pending pacts, WIP pacts) and
//! publishes each result with the provider version and branch. Without it, pacts come
//! from `contracts/pacts/` and results go to the local matrix.

use pact_verifier::pact_broker::ConsumerVersionSelector;
use pact_verifier::{PactSource, PublishOptions};
use serde_json::Value;

/// How to talk to the broker.
#[derive(Clone, Debug)]
pub struct BrokerSource {
    pub url: String,
    /// Consumer version selectors, as the broker's JSON (`{"mainBranch": true}`, ...).
    pub selectors: Vec<Value>,
    /// Pending pacts (not yet verified by this provider) do not fail the run.
    pub enable_pending: bool,
    /// Include work-in-progress pacts created since this date (`2026-01-01`).
    pub include_wip_since: Option<String>,
    pub provider_branch: Option<String>,
    /// Publish the results to the broker.
    pub publish: bool,
}

impl BrokerSource {
    /// The selectors a CI job usually wants: the consumers' main branch, and whatever
    /// is deployed or released.
    pub fn default_selectors() -> Vec<Value> {
        vec![serde_json::json!({"mainBranch": true}), serde_json::json!({"deployedOrReleased": true})]
    }

    /// Parses a selector given on the command line as JSON.
    pub fn parse_selector(raw: &str) -> Result<Value, String> {
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| format!("--selector {raw:?} is not JSON ({e}); write e.g. '{{\"mainBranch\": true}}'"))?;
        serde_json::from_value::<ConsumerVersionSelector>(v.clone())
            .map_err(|e| format!("--selector {raw:?} is not a consumer version selector: {e}"))?;
        Ok(v)
    }

    /// The verifier's source for `provider`.
    pub fn pact_source(&self, provider: &str) -> PactSource {
        let selectors = self
            .selectors
            .iter()
            .filter_map(|s| serde_json::from_value::<ConsumerVersionSelector>(s.clone()).ok())
            .collect();
        PactSource::BrokerWithDynamicConfiguration {
            provider_name: provider.to_string(),
            broker_url: self.url.trim_end_matches('/').to_string(),
            enable_pending: self.enable_pending,
            include_wip_pacts_since: self.include_wip_since.clone(),
            provider_tags: vec![],
            provider_branch: self.provider_branch.clone(),
            selectors,
            auth: None,
            links: vec![],
        }
    }

    /// What to publish with, when publishing.
    pub fn publish_options(&self, provider_version: &str) -> Option<PublishOptions> {
        self.publish.then(|| PublishOptions {
            provider_version: Some(provider_version.to_string()),
            build_url: std::env::var("GITHUB_SERVER_URL")
                .ok()
                .zip(std::env::var("GITHUB_REPOSITORY").ok())
                .zip(std::env::var("GITHUB_RUN_ID").ok())
                .map(|((s, r), id)| format!("{s}/{r}/actions/runs/{id}")),
            provider_tags: vec![],
            provider_branch: self.provider_branch.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked() {
        assert!(BrokerSource::parse_selector(r#"{"mainBranch": true}"#).is_ok());
        let err = BrokerSource::parse_selector("mainBranch").unwrap_err();
        assert!(err.contains("not JSON") && err.contains("--selector"), "{err}");
    }
}
