//! Reports: one versioned model of a run ([`model::Report`]) rendered four ways, and
//! the baseline comparison.
//!
//! A report is built from the load generator's result ([`from_load`]) and completed
//! with faults, invariants and contracts (`Report::with_*`), which keep the verdict
//! up to date. [`write_all`] writes `report.json` (for machines and baselines),
//! `report.md` (a PR comment), `report.html` (one self-contained page with SVG charts)
//! and `junit.xml` (CI test panes) into a run directory. [`compare::compare`] judges a
//! new report against a baseline.

pub mod compare;
pub mod error;
pub mod format;
pub mod from_load;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod model;
pub mod svg;
mod verdict;

use std::path::{Path, PathBuf};

pub use error::ReportError;
pub use from_load::{from_load, from_load_judged, RunMeta};
pub use model::Report;

/// File names of the renderings in a run directory.
pub const JSON_FILE: &str = "report.json";
/// The Markdown summary.
pub const MARKDOWN_FILE: &str = "report.md";
/// The HTML page.
pub const HTML_FILE: &str = "report.html";
/// The JUnit XML.
pub const JUNIT_FILE: &str = "junit.xml";

/// Writes `report.json`, `report.md`, `report.html` and `junit.xml` into `dir`
/// (created if missing); returns the files written.
pub fn write_all(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, ReportError> {
    create_dir(dir)?;
    let json = dir.join(JSON_FILE);
    json::write(&json, report)?;
    let mut written = vec![json];
    written.extend(write_renderings(dir, report)?);
    Ok(written)
}

/// Writes the human and CI renderings (`report.md`, `report.html`, `junit.xml`) into
/// `dir` (created if missing); returns the files written.
pub fn write_renderings(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, ReportError> {
    create_dir(dir)?;
    let files = [
        (MARKDOWN_FILE, markdown::render(report)),
        (HTML_FILE, html::render(report)),
        (JUNIT_FILE, junit::render(report)),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Io { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_owned(), source })
}
