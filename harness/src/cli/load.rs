//! `gauntlet load`: ad hoc load, like wrk2 or oha, or a workload file.
//!
//! `gauntlet load URL --rate 1000 --duration 10s` runs an open-model constant rate;
//! without `--rate` (and no schedule in the file) it runs a closed loop of
//! `--connections` virtual users as fast as the target answers, like wrk.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use http::header::HeaderName;
use http::Method;

use crate::exit::{CliError, Outcome};
use crate::load::client::ClientConfig;
use crate::load::duration::HumanDuration;
use crate::load::recorder::{FlowId, Recorder};
use crate::load::runner::{run as run_load, Control, Progress, RunConfig, RunError, RunResult};
use crate::load::schedule::ArrivalSchedule;
use crate::load::slo::{SloSpec, Threshold};
use crate::load::stats::{share, ErrorKind, Stats};
use crate::load::workload::{BaseUrl, Workload};

/// Arguments of `gauntlet load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The URL to request (ad hoc), or the base URL for a workload file.
    pub url: Option<String>,
    /// A workload file (TOML): flows, steps, setup, schedule, SLOs.
    #[arg(long, short = 'w', value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Open model: flow starts per second, kept whatever the target does.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// How long to start flows.
    #[arg(long, short = 'd', default_value = "10s")]
    pub duration: HumanDuration,
    /// With --rate: first run at the rate this long, measuring nothing, so caches, pools
    /// and connections are warm; --duration is measured after it.
    #[arg(long, default_value = "0s", requires = "rate")]
    pub warmup: HumanDuration,
    /// Open model: arrivals closer together than this start in one wake-up of the
    /// generator. Finer sends closer to their intended time; coarser spends less CPU per
    /// request at high rates (each start is at most this late by the generator's
    /// choice; the summary's send lateness shows what it was).
    #[arg(long, default_value = "200us", value_name = "DURATION")]
    pub start_batch: HumanDuration,
    /// Connections (the closed loop's virtual users; the open model's pool size).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "2s")]
    pub timeout: HumanDuration,
    /// Most flows in flight (open model); starts beyond it are dropped and counted.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Stop after this many flow starts, whatever the schedule.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_flows: u64,
    /// HTTP method of the ad hoc request.
    #[arg(long, short = 'm', default_value = "GET")]
    pub method: String,
    /// Extra header of the ad hoc request, `name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// JSON body of the ad hoc request.
    #[arg(long)]
    pub body: Option<String>,
    /// Threshold to gate on, e.g. `p95 < 200ms` (repeatable); exit 1 when one fails.
    #[arg(long = "slo", value_name = "THRESHOLD")]
    pub slos: Vec<String>,
    /// Seed of the flow choice (overrides the file's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads of the generator (1 is the most efficient per request).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seconds between progress updates.
    #[arg(long, default_value = "1s")]
    pub progress: HumanDuration,
}

/// Runs `gauntlet load`.
pub fn run(args: LoadArgs) -> Result<Outcome, CliError> {
    let (workload, schedule, config) = plan(&args)?;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.min(64)).enable_all().build()
    }
    .map_err(|e| CliError::Harness(e.into()))?;
    let slos = workload.slos.clone();
    let target = match &schedule {
        ArrivalSchedule::Open(_) => {
            format!("open model, {} for {}", describe_rate(&args, &workload), HumanDuration(schedule.duration()))
        }
        ArrivalSchedule::Closed { connections, duration } => {
            format!("closed loop, {connections} connections for {}", HumanDuration(*duration))
        }
    };
    println!("gauntlet load: {target}");
    let mut display = ProgressDisplay::new();
    let workload = Arc::new(workload);
    let result = runtime
        .block_on(async {
            let task = tokio::spawn(run_load(workload.clone(), config, move |p| display.show(p)));
            task.await
        })
        .map_err(|e| CliError::Harness(e.into()))?
        .map_err(|e| match e {
            RunError::NoBaseUrl | RunError::Scope(_) => CliError::BadInput(e.to_string()),
            other => CliError::Harness(other.into()),
        })?;
    ProgressDisplay::end();
    print_summary(&result, &workload, &schedule);
    let verdicts = result.recorder.verdicts(&slos);
    if !verdicts.is_empty() {
        println!("SLOs:");
        for v in &verdicts {
            println!("  {v}");
        }
    }
    let failed = verdicts.iter().filter(|v| !v.passed()).count();
    if let Some(reason) = &result.stopped {
        println!("aborted: {reason}");
    }
    if failed > 0 {
        return Err(CliError::GateFailed(format!("{failed} of {} SLOs failed", verdicts.len())));
    }
    if result.stopped.is_some() {
        return Err(CliError::GateFailed("the run was aborted".into()));
    }
    Ok(Outcome::Passed)
}

fn describe_rate(args: &LoadArgs, workload: &Workload) -> String {
    match (args.rate, &workload.schedule) {
        (Some(rate), _) => format!("{rate}/s"),
        (None, Some(_)) => "the workload's schedule".into(),
        (None, None) => "-".into(),
    }
}

fn bad(msg: impl Into<String>) -> CliError {
    CliError::BadInput(msg.into())
}

/// Turns the flags (and the workload file) into what the runner needs.
fn plan(args: &LoadArgs) -> Result<(Workload, ArrivalSchedule, RunConfig), CliError> {
    let mut workload = match (&args.workload, &args.url) {
        (Some(path), url) => {
            let mut w = Workload::load(path).map_err(|e| bad(e.to_string()))?;
            if let Some(url) = url {
                w.base_url = Some(BaseUrl::parse(url).map_err(bad)?);
            }
            w
        }
        (None, Some(url)) => adhoc(args, url)?,
        (None, None) => return Err(bad("give a URL or --workload FILE; see `gauntlet load --help`")),
    };
    if let Some(seed) = args.seed {
        workload.seed = seed;
    }
    for text in &args.slos {
        let threshold: Threshold = text.parse().map_err(|e| bad(format!("--slo: {e}")))?;
        if threshold.metric.scenario_only() {
            return Err(bad(format!(
                "--slo `{threshold}`: judged over a scenario's history, end state or services; use it in a scenario's [[slo]]"
            )));
        }
        workload.slos.push(SloSpec::overall(threshold));
    }
    let schedule = match (args.rate, &workload.schedule) {
        (Some(rate), _) => ArrivalSchedule::constant(rate, args.warmup.0 + args.duration.0),
        (None, Some(spec)) => spec.build(),
        (None, None) => ArrivalSchedule::closed(args.connections, args.duration.0),
    }
    .map_err(|e| bad(format!("schedule: {e}")))?;
    if args.connections == 0 || args.max_in_flight == 0 {
        return Err(bad("--connections and --max-in-flight must be at least 1"));
    }
    if args.timeout.0.is_zero() || args.progress.0 < Duration::from_millis(10) {
        return Err(bad("--timeout must be positive and --progress at least 10ms"));
    }
    if args.start_batch.0 > Duration::from_millis(100) {
        return Err(bad("--start-batch must be at most 100ms (it is how late a start may be)"));
    }
    let connections = match &schedule {
        ArrivalSchedule::Closed { connections, .. } => *connections,
        ArrivalSchedule::Open(_) => args.connections,
    };
    let config = RunConfig {
        schedule: schedule.clone(),
        max_in_flight: args.max_in_flight,
        client: ClientConfig { connections, timeout: args.timeout.0 },
        max_flows: args.max_flows,
        tick: args.progress.0,
        history: None,
        warmup: args.warmup.0,
        batch: args.start_batch.0,
    };
    Ok((workload, schedule, config))
}

fn adhoc(args: &LoadArgs, url: &str) -> Result<Workload, CliError> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| bad(format!("--method: `{}` is not an HTTP method", args.method)))?;
    let mut headers = Vec::with_capacity(args.headers.len());
    for h in &args.headers {
        let (name, value) =
            h.split_once(':').ok_or_else(|| bad(format!("--header `{h}`: write it as `name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(format!("--header `{h}`: `{name}` is not a header name")))?;
        headers.push((name, value.trim().to_owned()));
    }
    let body = args
        .body
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| bad(format!("--body is not JSON: {e}")))?;
    Workload::single(url, method, headers, body).map_err(bad)
}

/// The live progress line: redrawn on a terminal, plain lines otherwise.
struct ProgressDisplay {
    terminal: bool,
}

impl ProgressDisplay {
    fn new() -> Self {
        Self { terminal: std::io::stdout().is_terminal() }
    }

    fn show(&mut self, p: &Progress) -> Control {
        let line = format!(
            "elapsed {:.1}s  rate {:.1}/s  p95 {:.2}ms  requests {}  errors {}  dropped {}  in-flight {}",
            p.elapsed.as_secs_f64(),
            p.rate(),
            p.p95_ms,
            p.requests,
            p.errors,
            p.dropped,
            p.in_flight
        );
        let mut out = std::io::stdout().lock();
        let _ = if self.terminal { write!(out, "\r\x1b[2K{line}") } else { writeln!(out, "progress: {line}") };
        let _ = out.flush();
        Control::Continue
    }

    fn end() {
        if std::io::stdout().is_terminal() {
            println!();
        }
    }
}

const SPECTRUM: [(f64, &str); 8] = [
    (50.0, "p50"),
    (75.0, "p75"),
    (90.0, "p90"),
    (95.0, "p95"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
    (100.0, "max"),
];

fn spectrum(h: &hdrhistogram::Histogram<u64>) -> String {
    SPECTRUM
        .iter()
        .map(|(q, name)| format!("{name} {:.2}ms", h.value_at_quantile(q / 100.0) as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join("  ")
}

fn print_stats(label: &str, s: &Stats, open_model: bool) {
    println!("{label}: {} requests", s.total());
    if open_model {
        println!("  latency (corrected, from intended send): {}", spectrum(s.latency()));
    } else {
        // A closed loop sends when the last answer came: there is no schedule to lag.
        println!(
            "  latency (closed loop, from send; not corrected for coordinated omission): {}",
            spectrum(s.latency())
        );
    }
    println!("  service time (from actual send):         {}", spectrum(s.service()));
    if let Some(line) = answers(s) {
        println!("  answers: {line}");
    }
}

/// What the answer rules found in a scope, when they found anything.
fn answers(s: &Stats) -> Option<String> {
    let c = s.counts();
    if c.degraded == 0 && c.checks() == 0 && c.dropped == 0 {
        return None;
    }
    Some(format!(
        "degraded {} ({:.3}%), checks passed {} failed {}, dropped starts {}; availability {:.3}%, \
         including degraded {:.3}%",
        c.degraded,
        share(c.degraded, c.total) * 100.0,
        c.checks_passed,
        c.checks_failed,
        c.dropped,
        s.availability() * 100.0,
        share(c.available_including_degraded, c.offered()) * 100.0,
    ))
}

fn print_summary(result: &RunResult, workload: &Workload, schedule: &ArrivalSchedule) {
    let rec: &Recorder = &result.recorder;
    let overall = rec.overall();
    println!(
        "summary: {} requests in {:.2}s{}, achieved {:.1} req/s",
        overall.total(),
        result.measured_secs(),
        if rec.warmup().is_zero() {
            String::new()
        } else {
            format!(" after a {} warm-up", HumanDuration(rec.warmup()))
        },
        result.achieved_rate()
    );
    if let ArrivalSchedule::Open(open) = schedule {
        let target = open.expected_before(schedule.duration()) / schedule.duration().as_secs_f64();
        println!("  target: {target:.1} flow starts/s on average");
    }
    println!("flow starts: scheduled {}, started {}, dropped {}", result.scheduled, result.started, rec.dropped());
    print_stats("overall", overall, result.open_model);
    if result.open_model {
        println!(
            "  send lateness (actual - intended send, the generator's own share): {}",
            spectrum(rec.send_lateness())
        );
    }
    let classes: Vec<String> = (1..=5).map(|c| format!("{c}xx {}", overall.status_class(c))).collect();
    println!("status: {}", classes.join("  "));
    let errors: Vec<String> = ErrorKind::ALL.iter().map(|k| format!("{} {}", k.name(), overall.errors(*k))).collect();
    println!("errors: {}", errors.join("  "));
    let total = overall.total().max(1) as f64;
    println!(
        "availability {:.3}% (dropped starts count as unavailable)  error rate {:.3}%",
        overall.availability() * 100.0,
        overall.failed() as f64 / total * 100.0
    );
    let single = workload.flows.len() == 1 && workload.flows[0].steps.len() == 1;
    if !single {
        for (fi, flow) in workload.flows.iter().enumerate() {
            if let Some((stats, _)) = rec.flow(FlowId(fi)) {
                print_stats(&format!("flow {}", flow.name), stats, result.open_model);
            }
            for (si, step) in flow.steps.iter().enumerate() {
                if let Some((stats, _)) = rec.step(rec.step_id(FlowId(fi), si)) {
                    print_stats(&format!("step {}/{}", flow.name, step.name), stats, result.open_model);
                }
            }
        }
    }
    if rec.dropped() > 0 {
        println!(
            "warning: {} flow starts were dropped at the in-flight limit; the target rate was not offered in full",
            rec.dropped()
        );
    }
}
