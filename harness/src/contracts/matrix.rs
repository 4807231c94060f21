//! The verification matrix: which consumer version was verified against which provider
//! version, with what result and when (`contracts/verifications.json`).

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::ContractError;

/// The most rows the matrix keeps; the oldest go first.
pub const MAX_ROWS: usize = 1000;

/// The outcome of verifying one pact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationResult {
    Passed,
    Failed,
}

/// One verification of one pact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixRow {
    pub consumer: String,
    /// The content hash of the pact.
    pub consumer_version: String,
    pub provider: String,
    /// A hash of the provider's source (see [`super::providers::source_version`]), or the version its file gives
    /// outside git.
    pub provider_version: String,
    pub result: VerificationResult,
    /// RFC 3339, UTC.
    pub time: String,
}

impl MatrixRow {
    /// A row for now.
    pub fn now(consumer: &str, consumer_version: &str, provider: &str, provider_version: &str, passed: bool) -> Self {
        Self {
            consumer: consumer.into(),
            consumer_version: consumer_version.into(),
            provider: provider.into(),
            provider_version: provider_version.into(),
            result: if passed { VerificationResult::Passed } else { VerificationResult::Failed },
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// The matrix file, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: Vec<MatrixRow>,
}

impl Matrix {
    /// Reads the matrix; a missing file is an empty matrix.
    pub fn load(path: &Path) -> Result<Self, ContractError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ContractError::Io { what: format!("reading {}", path.display()), source: e }),
        };
        serde_json::from_str(&text).map_err(|e| ContractError::BadFile {
            path: path.to_path_buf(),
            reason: format!("not a verification matrix: {e}"),
            hint: "it is written by `gauntlet contracts verify`; restore it from git or delete it and verify again"
                .into(),
        })
    }

    /// Writes the matrix (pretty JSON, one row per verification).
    pub fn save(&self, path: &Path) -> Result<(), ContractError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ContractError::Io { what: format!("creating {}", dir.display()), source: e })?;
        }
        let text = serde_json::to_string_pretty(self).expect("the matrix is plain data") + "\n";
        std::fs::write(path, text)
            .map_err(|e| ContractError::Io { what: format!("writing {}", path.display()), source: e })
    }

    /// Records a verification: it replaces an earlier row for the same versions, and the
    /// oldest rows go when there are more than [`MAX_ROWS`].
    pub fn record(&mut self, row: MatrixRow) {
        self.rows.retain(|r| {
            !(r.consumer == row.consumer
                && r.consumer_version == row.consumer_version
                && r.provider == row.provider
                && r.provider_version == row.provider_version)
        });
        self.rows.push(row);
        if self.rows.len() > MAX_ROWS {
            let excess = self.rows.len() - MAX_ROWS;
            self.rows.drain(..excess);
        }
    }

    /// The latest row for exactly these versions.
    pub fn find(
        &self,
        consumer: &str,
        consumer_version: &str,
        provider: &str,
        provider_version: &str,
    ) -> Option<&MatrixRow> {
        self.rows.iter().rev().find(|r| {
            r.consumer == consumer
                && r.consumer_version == consumer_version
                && r.provider == provider
                && r.provider_version == provider_version
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cv: &str, pv: &str, passed: bool) -> MatrixRow {
        MatrixRow::now("api", cv, "db", pv, passed)
    }

    #[test]
    fn a_new_verification_replaces_the_old_one_for_the_same_versions() {
        let mut m = Matrix::default();
        m.record(row("a", "1", true));
        m.record(row("a", "2", true));
        m.record(row("a", "1", false));
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.find("api", "a", "db", "1").unwrap().result, VerificationResult::Failed);
        assert!(m.find("api", "b", "db", "1").is_none());
    }

    #[test]
    fn the_matrix_is_bounded() {
        let mut m = Matrix::default();
        for i in 0..MAX_ROWS + 5 {
            m.record(row(&i.to_string(), "1", true));
        }
        assert_eq!(m.rows.len(), MAX_ROWS);
        assert_eq!(m.rows[0].consumer_version, "5");
    }

    #[test]
    fn a_bad_matrix_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verifications.json");
        assert_eq!(Matrix::load(&path).unwrap(), Matrix::default());
        std::fs::write(&path, "[oops").unwrap();
        let err = Matrix::load(&path).unwrap_err().to_string();
        assert!(err.contains("verifications.json") && err.contains("gauntlet contracts verify"), "{err}");
    }
}
