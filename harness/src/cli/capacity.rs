//! `gauntlet capacity SCENARIO.toml`: find the highest constant arrival rate at which
//! the scenario's SLOs and invariants hold, by running it (see
//! [`crate::scenario::capacity`]), and write the finding as a report.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use super::run::{Display, RunRuntime};
use crate::exit::{CliError, Outcome};
use crate::scenario::capacity::{self, show, Finding, Run, Search};
use crate::scenario::model::{parse_share, CapacityPlan, CapacityProblem, RuntimeChoice};
use crate::scenario::Scenario;
use crate::world::{interrupt_on_signal, run_id, Launch};

/// Options of `gauntlet capacity`.
///
/// Each run is the whole scenario (fresh cluster, steady state, load, faults, SLOs,
/// invariants) at one constant rate: a warm-up that is not measured, then the scenario's
/// load duration. Each rate is run `--runs-per-rate` times and passes only when every run passes;
/// the rate grows by `growth` until one fails and is bisected down to `resolution`. The
/// report gives each rate's pass share and p95 range. A run also fails when the
/// generator could not offer its rate (dropped starts).
///
/// Example: `gauntlet capacity scenarios/shop-capacity.toml --out reports/shop-capacity`
#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// The scenario; its `[capacity]` table sets the search (the flags below override it).
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: PathBuf,
    /// The first rate tried, flow starts per second.
    #[arg(long, value_name = "FLOWS_PER_S")]
    pub start_rate: Option<f64>,
    /// The highest rate tried.
    #[arg(long, value_name = "FLOWS_PER_S")]
    pub max_rate: Option<f64>,
    /// Each passing rate is multiplied by this until one fails.
    #[arg(long)]
    pub growth: Option<f64>,
    /// Stop bisecting when the failing rate is within this share of the passing one ("5%").
    #[arg(long)]
    pub resolution: Option<String>,
    /// The most rates tried, the confirmation included.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Runs of each rate (default 3); a rate passes only when all pass. With 1, the best
    /// rate is run once more before it is published.
    #[arg(long, value_name = "N")]
    pub runs_per_rate: Option<usize>,
    /// Each run's unmeasured warm-up at its rate, e.g. `5s` (the default).
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<crate::load::duration::HumanDuration>,
    /// Where the finding goes: capacity.md, capacity.json and the confirmed run's report
    /// (default: a new folder under --runs). Use reports/NAME to publish it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Where the nodes run; default the scenario's `[cluster] runtime`.
    #[arg(long, value_enum)]
    pub runtime: Option<RunRuntime>,
    /// Cargo profile of the service binaries (built when missing).
    #[arg(long, default_value = "release", value_parser = ["release", "debug"])]
    pub profile: String,
    /// Where each step keeps its logs, data, history and report.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Seed of every random choice, overriding the scenario's.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs `gauntlet capacity`.
pub fn run(args: CapacityArgs) -> Result<Outcome, CliError> {
    let mut scenario = Scenario::load(&args.scenario).map_err(|e| CliError::BadInput(e.to_string()))?;
    if let Some(seed) = args.seed {
        scenario.reseed(seed);
    }
    let plan = plan(&scenario, &args)?;
    let display = Display::new();
    let on_event = |e| display.show(e);
    let launch =
        Launch::new(&scenario, args.runtime.map(RuntimeChoice::from), &args.profile, &args.runs, None, &on_event)?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => args.runs.join(format!("capacity-{}", run_id(&scenario.name))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let duration = scenario.load.measured();
    eprintln!(
        "capacity of {} (seed {}): from {} flows/s, x{} until an SLO fails, to {}%, at most {} rates, \
         each run {} times: {} warm-up + {} measured",
        scenario.name,
        scenario.seed,
        show(plan.start_rate),
        plan.growth,
        show(plan.resolution * 100.0),
        plan.max_steps,
        plan.runs,
        humantime::format_duration(plan.warmup),
        humantime::format_duration(duration)
    );
    let rt = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    let started = std::time::SystemTime::now();
    let result = rt.block_on(async {
        let interrupt = interrupt_on_signal();
        let mut n = 0;
        let runs = plan.runs;
        capacity::search(plan, |rate, phase, i| {
            if i == 0 {
                n += 1;
            }
            let (scenario, launch, interrupt, on_event) = (&scenario, &launch, interrupt.clone(), &on_event);
            let at = n;
            async move {
                eprintln!("\n== step {at}: {} flows/s ({phase:?}), run {} of {runs}", show(rate), i + 1);
                let stepped = scenario.at_rate(rate, plan.warmup).map_err(CliError::BadInput)?;
                let outcome = launch.run(&stepped, interrupt.clone(), on_event).await?;
                if outcome.interrupted || *interrupt.borrow() {
                    return Err(CliError::Harness(anyhow::anyhow!("interrupted during step {at}")));
                }
                let planned = match &stepped.load.schedule {
                    crate::load::schedule::ArrivalSchedule::Open(open) => open.total_starts(),
                    crate::load::schedule::ArrivalSchedule::Closed { .. } => 0,
                };
                let run = Run::from_outcome(planned, &outcome);
                eprintln!(
                    "== step {at}: {} flows/s, run {} of {runs} {}: {:.1} req/s, p95 {:.1} ms, availability {:.3}%{}",
                    show(rate),
                    i + 1,
                    if run.passed { "PASSED" } else { "FAILED" },
                    run.requests_per_second,
                    run.p95_ms,
                    run.availability * 100.0,
                    if run.passed { String::new() } else { format!(" — {}", run.reasons.join("; ")) }
                );
                Ok::<_, CliError>(run)
            }
        })
        .await
    });
    let search = result?;
    let files = publish(&search, &scenario, &args, &launch_label(&args, launch.runtime()), &out, started)?;
    println!();
    println!("{}", search.markdown(&format!("Capacity of {}", scenario.name), &[]).lines().nth(2).unwrap_or(""));
    for step in &search.steps {
        println!(
            "  {:<8} {:>8} flows/s  {:<10} {:>9.1} req/s  p95 {:>16}  worst availability {:>8.3}%  {}",
            format!("{:?}", step.phase).to_lowercase(),
            show(step.rate),
            format!("{}/{}", step.passes, step.runs.len()),
            step.requests_per_second(),
            step.p95_spread(),
            step.worst_availability() * 100.0,
            if step.passed { "pass".to_string() } else { format!("FAIL {}", step.reasons().join("; ")) }
        );
    }
    for f in files {
        println!("report: {}", f.display());
    }
    Ok(match search.finding {
        Finding::Capacity { .. } | Finding::AtLeast { .. } => Outcome::Passed,
        Finding::NonePassed { .. } | Finding::Unconfirmed { .. } => Outcome::GateFailed,
    })
}

/// The scenario's `[capacity]` table (or the defaults) with the flags applied.
fn plan(scenario: &Scenario, args: &CapacityArgs) -> Result<CapacityPlan, CliError> {
    let mut plan = scenario.capacity.unwrap_or_default();
    if let Some(v) = args.start_rate {
        plan.start_rate = v;
    }
    if let Some(v) = args.max_rate {
        plan.max_rate = v;
    }
    if let Some(v) = args.growth {
        plan.growth = v;
    }
    if let Some(v) = &args.resolution {
        plan.resolution = parse_share(v).filter(|r| *r > 0.0 && *r < 1.0).ok_or_else(|| {
            CliError::BadInput(format!("--resolution `{v}` is not a share between 0 and 100%, like 5%"))
        })?;
    }
    if let Some(v) = args.max_steps {
        plan.max_steps = v;
    }
    if let Some(v) = args.runs_per_rate {
        plan.runs = v;
    }
    if let Some(v) = &args.warmup {
        plan.warmup = v.0;
    }
    let max = crate::load::schedule::MAX_RATE;
    let problem = match plan.problem() {
        None => return Ok(plan),
        Some(CapacityProblem::Rates) => format!(
            "the search needs 0 < start rate ({}) <= max rate ({}) <= {max}",
            show(plan.start_rate),
            show(plan.max_rate)
        ),
        Some(CapacityProblem::Growth) => format!("--growth {} must be above 1 and at most 10", plan.growth),
        Some(CapacityProblem::Steps) => format!("--max-steps {} must be from 2 to 64", plan.max_steps),
        Some(CapacityProblem::Runs) => {
            format!(
                "--runs-per-rate {} must be from 1 to {} and --warmup at most 1h",
                plan.runs,
                crate::scenario::model::MAX_RUNS
            )
        }
    };
    Err(CliError::BadInput(problem))
}

fn launch_label(args: &CapacityArgs, runtime: RuntimeChoice) -> String {
    let runtime = match runtime {
        RuntimeChoice::Docker => "docker",
        RuntimeChoice::Process => "process",
        RuntimeChoice::External => "external",
    };
    format!("{runtime} runtime, {} service binaries", args.profile)
}

/// Writes capacity.json, capacity.md and a copy of the confirmed run's report into `out`.
fn publish(
    search: &Search,
    scenario: &Scenario,
    args: &CapacityArgs,
    cluster: &str,
    out: &Path,
    started: std::time::SystemTime,
) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    let mut context = vec![
        ("scenario".to_string(), format!("`{}` (seed {})", scenario.file.display(), scenario.seed)),
        ("cluster".to_string(), cluster.to_string()),
        (
            "each run".to_string(),
            format!(
                "{} warm-up (not measured), then {} measured, at a constant rate on a fresh cluster",
                humantime::format_duration(search.plan_warmup()),
                humantime::format_duration(scenario.load.measured())
            ),
        ),
        (
            "SLOs".to_string(),
            scenario.slos().iter().map(|s| format!("`{}`", s.threshold)).collect::<Vec<_>>().join(", "),
        ),
        (
            "invariants".to_string(),
            if scenario.declared.is_empty() {
                "none".into()
            } else {
                scenario.declared.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            },
        ),
        ("started".to_string(), humantime::format_rfc3339_seconds(started).to_string()),
        ("gauntlet".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ];
    if let Some(commit) = git_commit() {
        context.push(("commit".to_string(), commit));
    }
    context.push(("machine".to_string(), machine()));
    context.push(("reproduce".to_string(), format!("`{}`", reproduce(args))));
    let copy = out.join("confirmed-run");
    let mut md = search.markdown(&format!("Capacity of {}", scenario.name), &context);
    if let Some((step, run)) = search.confirmed_run() {
        std::fs::create_dir_all(&copy).with_context(|| format!("creating {}", copy.display()))?;
        let mut names = Vec::new();
        for f in &run.report_files {
            if let Some(name) = f.file_name() {
                let to = copy.join(name);
                std::fs::copy(f, &to).with_context(|| format!("copying {} to {}", f.display(), to.display()))?;
                names.push(format!("[{0}](confirmed-run/{0})", name.to_string_lossy()));
                files.push(to);
            }
        }
        md.push_str(&format!(
            "\nThe last run at {} flows/s (run {} of {}), in full: {}.\n\nIts SLOs:\n\n",
            show(step.rate),
            step.runs.len(),
            step.runs.len(),
            names.join(", ")
        ));
        for s in &run.slos {
            md.push_str(&format!("- `{s}`\n"));
        }
    }
    let json = out.join("capacity.json");
    let body = serde_json::to_vec_pretty(&Record { search, context: &context }).context("encoding capacity.json")?;
    std::fs::write(&json, body).with_context(|| format!("writing {}", json.display()))?;
    let mdf = out.join("capacity.md");
    std::fs::write(&mdf, md).with_context(|| format!("writing {}", mdf.display()))?;
    files.insert(0, json);
    files.insert(0, mdf);
    Ok(files)
}

#[derive(serde::Serialize)]
struct Record<'a> {
    #[serde(flatten)]
    search: &'a Search,
    context: &'a [(String, String)],
}

/// The command that reproduces the search: the scenario and the flags that changed it.
fn reproduce(args: &CapacityArgs) -> String {
    let mut cmd = format!("gauntlet capacity {}", args.scenario.display());
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            cmd.push_str(&format!(" --{name} {v}"));
        }
    };
    flag("start-rate", args.start_rate.map(show));
    flag("max-rate", args.max_rate.map(show));
    flag("growth", args.growth.map(|g| g.to_string()));
    flag("resolution", args.resolution.clone());
    flag("max-steps", args.max_steps.map(|v| v.to_string()));
    flag("runs-per-rate", args.runs_per_rate.map(|v| v.to_string()));
    flag("warmup", args.warmup.as_ref().map(|w| w.to_string()));
    flag("seed", args.seed.map(|v| v.to_string()));
    if args.profile != "release" {
        flag("profile", Some(args.profile.clone()));
    }
    if let Some(out) = &args.out {
        flag("out", Some(out.display().to_string()));
    }
    cmd
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Cores and CPU model: what the numbers were measured on.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}; the load generator runs on the same machine")
}
