//! What can go wrong reading or writing reports; every message names the file.

use std::path::PathBuf;

use thiserror::Error;

/// A report could not be read or written.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or not a report of this schema.
    #[error("{}: not a gauntlet report: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why, line and column included.
        source: serde_json::Error,
    },
    /// The file has no `schema_version`, so it is not a report.
    #[error("{}: not a gauntlet report: no `schema_version` field", path.display())]
    NoSchemaVersion {
        /// The file.
        path: PathBuf,
    },
    /// The report was written by a gauntlet whose schema this one does not know.
    #[error(
        "{}: report schema version {found} is not supported (this gauntlet reads {supported}.x); \
         use a gauntlet that writes schema {found}",
        path.display()
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: String,
        /// The major version this build reads.
        supported: u32,
    },
}
