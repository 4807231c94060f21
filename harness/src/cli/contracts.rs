//! `gauntlet contracts`: verify providers against the consumers' pacts, answer
//! can-i-deploy from the verification matrix, and diff two pacts for breaking changes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};

use crate::cluster::binaries::Binaries;
use crate::cluster::docker::engine_available;
use crate::contracts::broker::BrokerSource;
use crate::contracts::matrix::{Matrix, MatrixRow};
use crate::contracts::providers::{ProviderRun, ProviderSpec, ProvidersFile, DEFAULT_FILE};
use crate::contracts::verify::{self, ProviderReport, ProviderRuntime, Source};
use crate::contracts::{can_i_deploy, diff, load_dir, pacts_for_provider, providers, ContractError, PactDoc};
use crate::exit::{CliError, Outcome};

use crate::world::Shutdown;

#[derive(Debug, Args)]
pub struct ContractsArgs {
    #[command(subcommand)]
    pub command: ContractsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContractsCommand {
    /// Start each provider in contract-test mode and replay every pact that names it.
    Verify(VerifyArgs),
    /// Say from the verification matrix whether a service's pacts all pass at these versions.
    #[command(disable_version_flag = true)]
    CanIDeploy(CanIDeployArgs),
    /// Name what NEW no longer promises that OLD did (exit 1 if anything would break).
    Diff(DiffArgs),
}

/// Where the contracts live.
#[derive(Debug, Args)]
pub struct ContractFiles {
    /// The providers file: how each provider runs (a `binary` of this workspace, a
    /// `command`, or a `url` already serving), its provider-state and message paths, and
    /// where the pacts and the matrix are (default: contracts/providers.toml, here or in
    /// the cargo workspace).
    #[arg(long)]
    pub providers: Option<PathBuf>,
    /// The folder of pact files (default: the providers file's `pacts`).
    #[arg(long)]
    pub pacts: Option<PathBuf>,
    /// The verification matrix (default: the providers file's `matrix`).
    #[arg(long)]
    pub matrix: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify only this provider (default: every provider a pact names).
    #[arg(long)]
    pub provider: Option<String>,
    /// The cargo profile of the service binaries.
    #[arg(long, default_value = "debug", value_parser = ["debug", "release"])]
    pub profile: String,
    /// Where each provider runs while it is verified.
    #[arg(long, value_enum, default_value_t = VerifyRuntime::Process)]
    pub runtime: VerifyRuntime,
    #[command(flatten)]
    pub files: ContractFiles,
    /// Where to write the JUnit XML report.
    #[arg(long, default_value = "runs/contracts/junit.xml")]
    pub junit: PathBuf,
    /// Fetch pacts from this Pact Broker instead of the pact folder.
    #[arg(long)]
    pub broker_url: Option<String>,
    /// A consumer version selector as JSON (repeatable; default: main branch, and
    /// deployed or released versions).
    #[arg(long = "selector", requires = "broker_url")]
    pub selectors: Vec<String>,
    /// Let pending pacts fail the run too (by default they only warn).
    #[arg(long, requires = "broker_url")]
    pub no_pending: bool,
    /// Include work-in-progress pacts created since this date (e.g. 2026-01-01).
    #[arg(long, requires = "broker_url")]
    pub include_wip_since: Option<String>,
    /// The provider's branch, for pending/WIP calculation and publishing.
    #[arg(long, requires = "broker_url")]
    pub provider_branch: Option<String>,
    /// Publish the results to the broker.
    #[arg(long, requires = "broker_url")]
    pub publish: bool,
    /// Use the service binaries as they are (default: `cargo build` them first, so the
    /// verified code is the source the matrix records).
    #[arg(long)]
    pub no_build: bool,
}

/// Where a provider runs while it is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyRuntime {
    /// A child process on a free 127.0.0.1 port (needs nothing but this repository).
    Process,
    /// A container of the same binary, its port published on 127.0.0.1 only (needs a
    /// Docker engine; the image is built locally FROM scratch, nothing is pulled).
    Docker,
}

impl From<VerifyRuntime> for ProviderRuntime {
    fn from(r: VerifyRuntime) -> Self {
        match r {
            VerifyRuntime::Process => Self::Process,
            VerifyRuntime::Docker => Self::Docker,
        }
    }
}

#[derive(Debug, Args)]
pub struct CanIDeployArgs {
    /// The service to deploy.
    #[arg(long)]
    pub service: String,
    /// Its version as a provider (default: its current version, a hash of its source).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub files: ContractFiles,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The pact as it was.
    pub old: PathBuf,
    /// The pact as it would be.
    pub new: PathBuf,
}

/// Runs a `contracts` subcommand.
pub fn run(args: ContractsArgs) -> Result<Outcome, CliError> {
    match args.command {
        ContractsCommand::Verify(a) => verify_cmd(a),
        ContractsCommand::CanIDeploy(a) => can_i_deploy_cmd(a),
        ContractsCommand::Diff(a) => diff_cmd(a),
    }
}

fn bad(e: ContractError) -> CliError {
    match e {
        ContractError::Io { .. } | ContractError::BadFile { .. } | ContractError::Unknown { .. } => {
            CliError::BadInput(e.to_string())
        }
    }
}

impl ContractFiles {
    /// The providers file: `--providers`, else contracts/providers.toml here, else in
    /// the cargo workspace that holds this folder.
    fn load(&self) -> Result<ProvidersFile, CliError> {
        let path = match &self.providers {
            Some(p) => p.clone(),
            None => {
                let here = std::env::current_dir().map_err(|e| CliError::Harness(e.into()))?;
                let local = here.join(DEFAULT_FILE);
                if local.exists() {
                    local
                } else {
                    match Binaries::for_dir(&here, "debug") {
                        Ok(b) if b.workspace.join(DEFAULT_FILE).exists() => b.workspace.join(DEFAULT_FILE),
                        _ => {
                            return Err(CliError::BadInput(format!(
                                "no providers file: {DEFAULT_FILE} is not here or in a cargo workspace above; \
                                 pass --providers FILE (how each provider runs: `gauntlet contracts verify --help`)"
                            )))
                        }
                    }
                }
            }
        };
        ProvidersFile::load(&path).map_err(bad)
    }

    fn pact_dir(&self, file: &ProvidersFile) -> PathBuf {
        self.pacts.clone().unwrap_or_else(|| file.pacts.clone())
    }

    fn matrix_path(&self, file: &ProvidersFile) -> PathBuf {
        self.matrix.clone().unwrap_or_else(|| file.matrix.clone())
    }
}

fn verify_cmd(args: VerifyArgs) -> Result<Outcome, CliError> {
    let runtime = ProviderRuntime::from(args.runtime);
    if runtime == ProviderRuntime::Docker {
        engine_available().map_err(|why| {
            CliError::BadInput(format!(
                "--runtime docker needs a Docker engine, and none is reachable ({why}); start Docker, or point \
                 DOCKER_HOST at a running engine, until `docker info` works; or verify without containers: \
                 --runtime process"
            ))
        })?;
    }
    let file = args.files.load()?;
    let dir = args.files.pact_dir(&file);
    let broker = match &args.broker_url {
        Some(url) => Some(broker_source(url, &args)?),
        None => None,
    };
    let pacts = match (&broker, &args.provider) {
        // A broker needs no local pacts when the provider is named.
        (Some(_), Some(_)) => load_dir(&dir).unwrap_or_default(),
        _ => load_dir(&dir).map_err(bad)?,
    };
    let names = match &args.provider {
        Some(p) if broker.is_some() => vec![p.clone()],
        Some(p) => {
            pacts_for_provider(&pacts, p, &dir).map_err(bad)?;
            vec![p.clone()]
        }
        None => providers(&pacts),
    };
    if names.is_empty() {
        return Err(CliError::BadInput(format!(
            "no pacts in {}: run the consumer tests with GAUNTLET_UPDATE_PACTS=1 to write them",
            dir.display()
        )));
    }
    let specs: Vec<&ProviderSpec> = names.iter().map(|n| file.provider(n)).collect::<Result<_, _>>().map_err(bad)?;
    // A cargo workspace is needed only where a provider is one of its binaries.
    let bins = if specs.iter().any(|s| matches!(s.run, ProviderRun::Binary(_))) {
        let bins =
            Binaries::for_dir(&file.dir, &args.profile).map_err(|e| CliError::Harness(anyhow::anyhow!("{e}")))?;
        verify::ensure_binaries(&bins, &specs, !args.no_build).map_err(|e| CliError::Harness(e.into()))?;
        Some(bins)
    } else {
        None
    };
    let started = Instant::now();
    let tokio_rt = tokio::runtime::Runtime::new().map_err(|e| CliError::Harness(e.into()))?;
    let reports = tokio_rt.block_on(async {
        let mut shutdown = Shutdown::listen();
        let runs = specs.iter().map(|spec| {
            let version = file.version(&spec.name);
            let source = match &broker {
                Some(b) => Source::Broker(b),
                None => Source::Files(pacts.iter().filter(|p| p.provider == spec.name).collect()),
            };
            let (bins, dir) = (bins.as_ref(), file.dir.as_path());
            async move { verify::verify_provider(bins, runtime, (spec, dir), &version, source).await }
        });
        // On Ctrl-C or SIGTERM the runs are dropped, which ends every provider (and
        // removes its container).
        tokio::select! {
            reports = futures::future::join_all(runs) => Ok(reports),
            _ = shutdown.recv() => Err(CliError::Harness(anyhow::anyhow!("interrupted; every provider was ended"))),
        }
    })?;
    let reports: Vec<ProviderReport> =
        reports.into_iter().collect::<Result<_, _>>().map_err(|e| CliError::Harness(e.into()))?;
    print!("{}", verify::render_table(&reports));
    println!("verified {} provider(s) ({} runtime) in {:.1}s", reports.len(), runtime, started.elapsed().as_secs_f64());
    write_junit(&args.junit, &reports)?;
    if broker.is_none() {
        record(&args.files.matrix_path(&file), &pacts, &reports)?;
    }
    if reports.iter().all(ProviderReport::passed) {
        Ok(Outcome::Passed)
    } else {
        Err(CliError::GateFailed("contract verification failed: see the table above".into()))
    }
}

fn broker_source(url: &str, args: &VerifyArgs) -> Result<BrokerSource, CliError> {
    let selectors = if args.selectors.is_empty() {
        BrokerSource::default_selectors()
    } else {
        args.selectors
            .iter()
            .map(|s| BrokerSource::parse_selector(s))
            .collect::<Result<_, _>>()
            .map_err(CliError::BadInput)?
    };
    Ok(BrokerSource {
        url: url.to_string(),
        selectors,
        enable_pending: !args.no_pending,
        include_wip_since: args.include_wip_since.clone(),
        provider_branch: args.provider_branch.clone(),
        publish: args.publish,
    })
}

fn write_junit(path: &Path, reports: &[ProviderReport]) -> Result<(), CliError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Harness(anyhow::anyhow!("creating {}: {e}", dir.display())))?;
    }
    std::fs::write(path, verify::junit_xml(reports))
        .map_err(|e| CliError::Harness(anyhow::anyhow!("writing {}: {e}", path.display())))?;
    println!("JUnit XML: {}", path.display());
    Ok(())
}

/// Records one matrix row per verified pact.
fn record(path: &Path, pacts: &[PactDoc], reports: &[ProviderReport]) -> Result<(), CliError> {
    let mut m = Matrix::load(path).map_err(bad)?;
    for report in reports {
        for pact in pacts.iter().filter(|p| p.provider == report.provider) {
            let passed = report.consumer_passed(&pact.consumer);
            m.record(MatrixRow::now(&pact.consumer, &pact.version, &pact.provider, &report.provider_version, passed));
        }
    }
    m.save(path).map_err(bad)?;
    println!("matrix: {}", path.display());
    Ok(())
}

fn can_i_deploy_cmd(args: CanIDeployArgs) -> Result<Outcome, CliError> {
    let file = args.files.load()?;
    let dir = args.files.pact_dir(&file);
    let pacts = load_dir(&dir).map_err(bad)?;
    let matrix = Matrix::load(&args.files.matrix_path(&file)).map_err(bad)?;
    let version_of = |name: &str| file.version(name);
    let decision = can_i_deploy::decide(&version_of, &pacts, &matrix, &args.service, args.version.as_deref(), &dir)
        .map_err(bad)?;
    print!("{}", decision.render());
    if decision.deployable() {
        Ok(Outcome::Passed)
    } else {
        let failed = decision.requirements.iter().any(|r| !r.met() && r.row.is_some());
        let what = if failed {
            "fails a pact it takes part in (FAILED above): fix the provider, or agree a new pact with the consumer"
        } else {
            "is not verified at these versions (MISSING above): run `gauntlet contracts verify`"
        };
        Err(CliError::GateFailed(format!("{} {what}", args.service)))
    }
}

fn diff_cmd(args: DiffArgs) -> Result<Outcome, CliError> {
    let old = PactDoc::load(&args.old).map_err(bad)?;
    let new = PactDoc::load(&args.new).map_err(bad)?;
    let changes = diff::breaking_changes(&old, &new);
    if changes.is_empty() {
        println!("no breaking changes from {} to {}", args.old.display(), args.new.display());
        return Ok(Outcome::Passed);
    }
    println!("breaking changes for {} ({} → {}):", old.edge(), args.old.display(), args.new.display());
    for c in &changes {
        println!("  - {c}");
    }
    Err(CliError::GateFailed(format!("{} breaking change(s)", changes.len())))
}
