//! `gauntlet report`: compare a report against a baseline, or render a JSON report again.
//!
//! `gauntlet report compare BASELINE.json NEW.json --tolerance 10% --metric p95,p99,throughput`
//! prints a table of changes and exits 1 on a regression; `gauntlet report render
//! REPORT.json --out DIR` writes `report.md`, `report.html` and `junit.xml` from it.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::exit::{CliError, Outcome};
use crate::report::compare::{compare, CompareMetric, Tolerance};
use crate::report::{json, write_renderings, Report, ReportError};

/// Arguments of `gauntlet report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// What to do with reports.
    #[command(subcommand)]
    pub command: ReportCommand,
}

/// The subcommands of `gauntlet report`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Compare a new report against a baseline; exit 1 on a regression beyond the tolerance.
    Compare(CompareArgs),
    /// Render report.md, report.html and junit.xml again from a report.json.
    Render(RenderArgs),
}

/// Arguments of `gauntlet report compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline report (report.json).
    pub baseline: PathBuf,
    /// The new report (report.json).
    pub new: PathBuf,
    /// The largest change that is still noise, e.g. `10%`.
    #[arg(long, default_value = "10%")]
    pub tolerance: Tolerance,
    /// Metrics to compare, comma-separated: p50, p90, p95, p99, p99.9, max, throughput.
    #[arg(long = "metric", value_delimiter = ',', default_values_t = CompareMetric::DEFAULT)]
    pub metrics: Vec<CompareMetric>,
}

/// Arguments of `gauntlet report render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The report to render (report.json).
    pub report: PathBuf,
    /// Where to write the renderings; the report's own directory by default.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `gauntlet report`.
pub fn run(args: ReportArgs) -> Result<Outcome, CliError> {
    match args.command {
        ReportCommand::Compare(args) => run_compare(args),
        ReportCommand::Render(args) => run_render(args),
    }
}

fn read(path: &Path) -> Result<Report, CliError> {
    json::read(path).map_err(|e| CliError::BadInput(e.to_string()))
}

fn run_compare(args: CompareArgs) -> Result<Outcome, CliError> {
    let baseline = read(&args.baseline)?;
    let new = read(&args.new)?;
    let comparison = compare(&baseline, &new, args.tolerance, &args.metrics);
    println!("baseline: {} ({}, {})", args.baseline.display(), baseline.run.name, baseline.run.started_at);
    println!("new:      {} ({}, {})", args.new.display(), new.run.name, new.run.started_at);
    println!("{comparison}");
    if comparison.regressed() {
        let n = comparison.regressions().count();
        return Err(CliError::GateFailed(format!("{n} regression(s) beyond {} against the baseline", args.tolerance)));
    }
    Ok(Outcome::Passed)
}

fn run_render(args: RenderArgs) -> Result<Outcome, CliError> {
    let report = read(&args.report)?;
    let dir = match args.out {
        Some(dir) => dir,
        None => args.report.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
    };
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let written = write_renderings(&dir, &report).map_err(|e: ReportError| CliError::Harness(e.into()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(Outcome::Passed)
}
