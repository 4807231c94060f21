//! Contracts: provider verification of the consumers' Pact files, the verification
//! matrix, `can-i-deploy`, a breaking-change diff of pact files, and an optional Pact
//! Broker as the source of pacts and the sink of results.
//!
//! Consumer tests (of any Pact implementation: pact_consumer, pact-python, pact-js...)
//! write one pact per edge into a folder. The providers file ([`providers`]) says how
//! each provider runs and where its pacts and matrix are; [`verify`] starts each provider
//! and replays every interaction that names it (HTTP requests, and asynchronous messages
//! asked of the provider's message endpoint); [`matrix`] records who was verified
//! against whom, at which versions; [`can_i_deploy`] answers from that record.

pub mod broker;
pub mod can_i_deploy;
pub mod diff;
pub mod matrix;
pub mod providers;
pub mod verify;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What can go wrong reading contracts; every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{path}: {reason}; {hint}")]
    BadFile { path: PathBuf, reason: String, hint: String },
    #[error("no pact names {role} {name:?} in {dir} (known: {known}); check the name, or run the consumer tests with GAUNTLET_UPDATE_PACTS=1 to write the pacts")]
    Unknown { role: &'static str, name: String, dir: PathBuf, known: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContractError {
    /// A bad pact file.
    pub fn bad_pact(path: &Path, reason: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.to_path_buf(),
            reason: reason.into(),
            hint: "a pact is the JSON a pact_consumer test writes (spec V4); regenerate it with the consumer tests"
                .into(),
        }
    }
}

/// One pact file: the contract of one consumer → provider edge.
#[derive(Clone, Debug)]
pub struct PactDoc {
    pub path: PathBuf,
    pub consumer: String,
    pub provider: String,
    /// The consumer version the matrix records: a hash of the file's content.
    pub version: String,
    pub json: Value,
}

impl PactDoc {
    /// Reads and checks a pact file.
    pub fn load(path: &Path) -> Result<Self, ContractError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ContractError::Io { what: format!("reading pact {}", path.display()), source: e })?;
        Self::parse(path, &bytes)
    }

    /// Parses a pact's bytes; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ContractError> {
        let json: Value =
            serde_json::from_slice(bytes).map_err(|e| ContractError::bad_pact(path, format!("not JSON: {e}")))?;
        let name = |role: &str| -> Result<String, ContractError> {
            json.get(role)
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ContractError::bad_pact(path, format!("it has no {role}.name")))
        };
        let (consumer, provider) = (name("consumer")?, name("provider")?);
        if !json.get("interactions").is_some_and(Value::is_array) {
            return Err(ContractError::bad_pact(path, "it has no interactions list"));
        }
        Ok(Self { path: path.to_path_buf(), consumer, provider, version: content_version(bytes), json })
    }

    /// The interactions, as JSON objects.
    pub fn interactions(&self) -> &[Value] {
        self.json.get("interactions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `consumer->provider`.
    pub fn edge(&self) -> String {
        format!("{}->{}", self.consumer, self.provider)
    }
}

/// The content hash of a pact: the first 16 hex digits of its SHA-256.
pub fn content_version(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Every pact in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<PactDoc>, ContractError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ContractError::Io {
        what: format!("reading the pact folder {} (run the consumer tests to write it)", dir.display()),
        source: e,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| PactDoc::load(p)).collect()
}

/// The pacts naming `provider`, or an error listing the providers there are.
pub fn pacts_for_provider<'a>(
    pacts: &'a [PactDoc],
    provider: &str,
    dir: &Path,
) -> Result<Vec<&'a PactDoc>, ContractError> {
    let found: Vec<&PactDoc> = pacts.iter().filter(|p| p.provider == provider).collect();
    if found.is_empty() {
        return Err(ContractError::Unknown {
            role: "provider",
            name: provider.to_string(),
            dir: dir.to_path_buf(),
            known: providers(pacts).join(", "),
        });
    }
    Ok(found)
}

/// The providers the pacts name, sorted, each once.
pub fn providers(pacts: &[PactDoc]) -> Vec<String> {
    let mut names: Vec<String> = pacts.iter().map(|p| p.provider.clone()).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pact_names_its_edge_and_hashes_its_content() {
        let text = br#"{"consumer": {"name": "api"}, "provider": {"name": "db"}, "interactions": []}"#;
        let p = PactDoc::parse(Path::new("x.json"), text).unwrap();
        assert_eq!(p.edge(), "api->db");
        assert_eq!(p.version.len(), 16);
        assert_ne!(p.version, content_version(b"{}"));
    }

    #[test]
    fn a_bad_pact_names_the_file_and_the_fix() {
        let err = PactDoc::parse(Path::new("contracts/pacts/bad.json"), b"{nope").unwrap_err().to_string();
        assert!(err.contains("contracts/pacts/bad.json") && err.contains("regenerate"), "{err}");
        let err = PactDoc::parse(Path::new("p.json"), br#"{"consumer": {"name": "a"}}"#).unwrap_err().to_string();
        assert!(err.contains("provider.name"), "{err}");
    }
}
