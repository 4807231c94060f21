//! `report.json`: the report for machines and baselines.
//!
//! Reading checks the schema version before anything else, so a report from a future
//! major version is refused with a clear message instead of a confusing field error.

use std::path::Path;

use super::error::ReportError;
use super::model::{Report, SchemaVersion, SCHEMA_VERSION};

/// The report as pretty-printed JSON.
pub fn to_string(report: &Report) -> String {
    // A report holds only strings, numbers, maps and free JSON values: it always serialises.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// Parses a report; `path` names the source in errors.
pub fn from_str(text: &str, path: &Path) -> Result<Report, ReportError> {
    let json = |source| ReportError::Json { path: path.to_owned(), source };
    let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
    let version = value
        .get("schema_version")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ReportError::NoSchemaVersion { path: path.to_owned() })?;
    let unsupported = || ReportError::UnsupportedSchema {
        path: path.to_owned(),
        found: version.to_owned(),
        supported: SCHEMA_VERSION.major,
    };
    let parsed: SchemaVersion = version.parse().map_err(|_| unsupported())?;
    if parsed.major != SCHEMA_VERSION.major {
        return Err(unsupported());
    }
    serde_json::from_value(value).map_err(json)
}

/// Reads a report from `path`.
pub fn read(path: &Path) -> Result<Report, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.to_owned(), source })?;
    from_str(&text, path)
}

/// Writes `report` to `path`.
pub fn write(path: &Path, report: &Report) -> Result<(), ReportError> {
    let mut text = to_string(report);
    text.push('\n');
    std::fs::write(path, text).map_err(|source| ReportError::Io { path: path.to_owned(), source })
}
