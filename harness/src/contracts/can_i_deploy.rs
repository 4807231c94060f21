//! `can-i-deploy`: is every pact a service takes part in verified, at the versions that
//! would be deployed together?
//!
//! A pact is identified by its content hash (the consumer version). As a provider the
//! service is taken at `--version` (default: its current version); every other service
//! at its current version.

use std::path::Path;

use super::matrix::{Matrix, MatrixRow, VerificationResult};
use super::{ContractError, PactDoc};

/// What was needed for one pact, and what the matrix says.
#[derive(Clone, Debug)]
pub struct Requirement {
    pub consumer: String,
    pub consumer_version: String,
    pub provider: String,
    pub provider_version: String,
    /// The matrix row relied on, if there is one.
    pub row: Option<MatrixRow>,
}

impl Requirement {
    /// Verified and passed.
    pub fn met(&self) -> bool {
        self.row.as_ref().is_some_and(|r| r.result == VerificationResult::Passed)
    }
}

/// The answer for one service.
#[derive(Clone, Debug)]
pub struct Decision {
    pub service: String,
    pub requirements: Vec<Requirement>,
}

impl Decision {
    /// Yes when every pact is verified and passed.
    pub fn deployable(&self) -> bool {
        self.requirements.iter().all(Requirement::met)
    }

    /// The matrix rows relied on, and the missing ones, as a table.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<13} {:<18} {:<10} {:<26} {:<8} {}\n",
            "CONSUMER", "CONSUMER VERSION", "PROVIDER", "PROVIDER VERSION", "RESULT", "VERIFIED AT"
        );
        for r in &self.requirements {
            let (result, time) = match &r.row {
                Some(row) if row.result == VerificationResult::Passed => ("passed", row.time.as_str()),
                Some(row) => ("FAILED", row.time.as_str()),
                None => ("MISSING", "never verified at these versions"),
            };
            out += &format!(
                "{:<13} {:<18} {:<10} {:<26} {:<8} {}\n",
                r.consumer, r.consumer_version, r.provider, r.provider_version, result, time
            );
        }
        let verdict = if self.deployable() { "yes" } else { "no" };
        out += &format!("can {} be deployed? {verdict}\n", self.service);
        out
    }
}

/// Decides for `service` (at provider version `version`, default its current one,
/// which `version_of` gives for any provider) from the pacts and the matrix.
pub fn decide(
    version_of: &dyn Fn(&str) -> String,
    pacts: &[PactDoc],
    matrix: &Matrix,
    service: &str,
    version: Option<&str>,
    pact_dir: &Path,
) -> Result<Decision, ContractError> {
    let involved: Vec<&PactDoc> = pacts.iter().filter(|p| p.consumer == service || p.provider == service).collect();
    if involved.is_empty() {
        let mut known: Vec<String> = pacts.iter().flat_map(|p| [p.consumer.clone(), p.provider.clone()]).collect();
        known.sort();
        known.dedup();
        return Err(ContractError::Unknown {
            role: "service",
            name: service.to_string(),
            dir: pact_dir.to_path_buf(),
            known: known.join(", "),
        });
    }
    let requirements = involved
        .into_iter()
        .map(|p| {
            let provider_version = match version {
                Some(v) if p.provider == service => v.to_string(),
                _ => version_of(&p.provider),
            };
            let row = matrix.find(&p.consumer, &p.version, &p.provider, &provider_version).cloned();
            Requirement {
                consumer: p.consumer.clone(),
                consumer_version: p.version.clone(),
                provider: p.provider.clone(),
                provider_version,
                row,
            }
        })
        .collect();
    Ok(Decision { service: service.to_string(), requirements })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pact(consumer: &str, provider: &str) -> PactDoc {
        let text = format!(
            r#"{{"consumer": {{"name": "{consumer}"}}, "provider": {{"name": "{provider}"}}, "interactions": []}}"#
        );
        PactDoc::parse(Path::new("p.json"), text.as_bytes()).unwrap()
    }

    #[test]
    fn every_pact_of_the_service_must_have_passed_at_these_versions() {
        let dir = tempfile::tempdir().unwrap();
        let pacts = vec![pact("web", "db"), pact("api", "db"), pact("web", "auth")];
        let (gw, ord) = (pacts[0].version.clone(), pacts[1].version.clone());
        let mut matrix = Matrix::default();
        matrix.record(MatrixRow::now("web", &gw, "db", "v1", true));
        let d = decide(&|_: &str| "v0".to_string(), &pacts, &matrix, "db", Some("v1"), dir.path()).unwrap();
        assert_eq!(d.requirements.len(), 2);
        assert!(!d.deployable(), "api->db was never verified");
        matrix.record(MatrixRow::now("api", &ord, "db", "v1", true));
        assert!(decide(&|_: &str| "v0".to_string(), &pacts, &matrix, "db", Some("v1"), dir.path())
            .unwrap()
            .deployable());
        matrix.record(MatrixRow::now("api", &ord, "db", "v1", false));
        let d = decide(&|_: &str| "v0".to_string(), &pacts, &matrix, "db", Some("v1"), dir.path()).unwrap();
        assert!(!d.deployable());
        assert!(d.render().contains("FAILED"), "{}", d.render());
        assert!(!decide(&|_: &str| "v0".to_string(), &pacts, &matrix, "db", Some("v2"), dir.path())
            .unwrap()
            .deployable());
    }

    #[test]
    fn an_unknown_service_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = decide(&|_: &str| "v0".to_string(), &[pact("a", "b")], &Matrix::default(), "zed", None, dir.path())
            .unwrap_err();
        assert!(err.to_string().contains("\"zed\"") && err.to_string().contains("known: a, b"), "{err}");
    }
}
