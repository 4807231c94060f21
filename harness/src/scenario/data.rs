//! Judging any system's data, Jepsen-style: the final reads once faults are healed,
//! the history files, and the declared invariants (the library's checkers, or an
//! external program through [`crate::checks::external`]'s protocol).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::checks::op::{history_lines, write_jsonl, Op, OpHistory, OpType, FINAL_PROCESS};
use crate::checks::{self, CheckResult};
use crate::world::reach::Http;

use super::model::{FinalRead, Invariant, InvariantCheck};

/// How long one final read may take to answer.
pub const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two rounds of final reads that did not all answer.
pub const FINAL_READ_RETRY: Duration = Duration::from_millis(500);
/// The history file of a run, in its run folder.
pub const HISTORY_FILE: &str = "history.jsonl";
/// The final reads of a run, in its run folder.
pub const FINAL_READS_FILE: &str = "final-reads.jsonl";

/// What the final-read phase got: the reads that answered, as operations, and for each
/// read that never did, why.
#[derive(Debug, Default)]
pub struct FinalReads {
    /// The answered reads, in declaration order.
    pub ops: Vec<Op>,
    /// `path: why` for each read that did not answer within the bound.
    pub unanswered: Vec<String>,
    /// How long the phase took.
    pub waited: Duration,
}

/// Sends every final read (`url_of` gives each one's URL), retrying those that do not
/// answer with a 2xx whose `result` pointer matches until `bound` has passed. `now_ns`
/// is the run's clock in nanoseconds, for the reads' times in the history.
pub async fn take_final_reads(
    reads: &[FinalRead],
    url_of: impl Fn(&FinalRead) -> String,
    http: &dyn Http,
    bound: Duration,
    now_ns: impl Fn() -> u64,
) -> FinalReads {
    let started = tokio::time::Instant::now();
    let mut answers: Vec<Option<Op>> = vec![None; reads.len()];
    let mut why: Vec<String> = vec![String::new(); reads.len()];
    let max_rounds = (bound.as_millis() / FINAL_READ_RETRY.as_millis().max(1)) as usize + 1;
    for round in 0..max_rounds {
        for (i, read) in reads.iter().enumerate() {
            if answers[i].is_some() {
                continue;
            }
            let invoke_ns = now_ns();
            match http.get(&url_of(read), read.bearer.as_deref(), FINAL_READ_TIMEOUT).await {
                Ok((status, body)) if (200..300).contains(&status) => {
                    let doc: Option<Value> = serde_json::from_str(&body).ok();
                    match doc.as_ref().and_then(|d| d.pointer(&read.result)) {
                        Some(v) => {
                            answers[i] = Some(Op {
                                index: i as u64,
                                process: FINAL_PROCESS,
                                f: read.f.clone(),
                                key: read.key.clone(),
                                value: Value::Null,
                                result: Some(v.clone()),
                                outcome: OpType::Ok,
                                invoke_ns,
                                complete_ns: now_ns(),
                            })
                        }
                        None if doc.is_none() => why[i] = format!("its answer is not JSON: {}", clip(&body)),
                        None => why[i] = format!("`result = \"{}\"` matches nothing in {}", read.result, clip(&body)),
                    }
                }
                Ok((status, body)) => why[i] = format!("answered {status}: {}", clip(&body)),
                Err(e) => why[i] = e,
            }
        }
        if answers.iter().all(Option::is_some) || round + 1 == max_rounds || started.elapsed() >= bound {
            break;
        }
        tokio::time::sleep(FINAL_READ_RETRY).await;
    }
    let unanswered = reads
        .iter()
        .zip(&answers)
        .zip(why)
        .filter(|((_, a), _)| a.is_none())
        .map(|((r, _), why)| format!("{}: {why}", r.path))
        .collect();
    FinalReads { ops: answers.into_iter().flatten().collect(), unanswered, waited: started.elapsed() }
}

fn clip(s: &str) -> String {
    const SHOWN: usize = 120;
    let s = s.trim();
    match s.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// Writes the history and the final reads as JSON Lines into `dir`.
pub fn write_history(dir: &Path, history: &OpHistory) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let write = |name: &str, ops: &[Op]| -> std::io::Result<PathBuf> {
        let path = dir.join(name);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        write_jsonl(&history_lines(ops), &mut out)?;
        std::io::Write::flush(&mut out)?;
        Ok(path)
    };
    Ok((write(HISTORY_FILE, &history.ops)?, write(FINAL_READS_FILE, &history.final_reads)?))
}

/// What an external checker is told beside the history files.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckContext {
    /// Operations the history could not keep (`GAUNTLET_HISTORY_DROPPED`).
    pub dropped: u64,
    /// How long the settle phase waited (`GAUNTLET_SETTLE_WAITED`, seconds).
    pub waited: Duration,
    /// How long it could have (`GAUNTLET_SETTLE_BOUND`, seconds).
    pub bound: Duration,
    /// Run programs blocking the thread: in a simulation, so that simulated time stands
    /// still while they run and the run replays.
    pub blocking: bool,
}

/// Checks every declared invariant. `files` are the history files written for
/// external checkers (`None`, with why, when they could not be written).
pub async fn check_declared(
    declared: &[Invariant],
    history: &OpHistory,
    files: Result<&(PathBuf, PathBuf), &str>,
    run_dir: &Path,
    ctx: CheckContext,
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(declared.len());
    for invariant in declared {
        let mut result = match &invariant.check {
            InvariantCheck::Library(spec) => checks::generic::check(spec, history),
            InvariantCheck::External { command, timeout, dir, .. } => match files {
                Ok((h, f)) => {
                    let verdict = run_dir.join(format!("verdict-{}.json", file_safe(&invariant.name)));
                    let run = Program { command, dir, timeout: *timeout, files: (h, f, &verdict), ctx, settle: false };
                    match run.run().await {
                        Err(why) => CheckResult::unknown(&invariant.name, why),
                        Ok(_) => match std::fs::read(&verdict) {
                            Ok(bytes) => checks::external::from_bytes(&invariant.name, &bytes),
                            Err(e) => CheckResult::unknown(
                                &invariant.name,
                                format!(
                                    "`{}` wrote no verdict to $GAUNTLET_VERDICT ({}): {e}",
                                    command.join(" "),
                                    verdict.display()
                                ),
                            ),
                        },
                    }
                }
                Err(why) => {
                    CheckResult::unknown(&invariant.name, format!("the history files could not be written: {why}"))
                }
            },
        };
        result.invariant.clone_from(&invariant.name);
        results.push(result);
    }
    results
}

/// Asks every external checker with a `settled` condition whether the system has
/// settled, over the final reads in `files`: `Ok(true)` when all say so (exit 0),
/// `Ok(false)` while one says not yet (exit 1), `Err` (why) when one cannot tell.
pub async fn settled(
    declared: &[Invariant],
    files: &(PathBuf, PathBuf),
    run_dir: &Path,
    ctx: CheckContext,
) -> Result<bool, String> {
    let mut asked: Vec<Vec<String>> = Vec::new();
    for invariant in declared {
        let InvariantCheck::External { command, settled: Some(args), dir, timeout, .. } = &invariant.check else {
            continue;
        };
        let argv: Vec<String> = std::iter::once(command[0].clone()).chain(args.iter().cloned()).collect();
        if asked.contains(&argv) {
            continue;
        }
        let verdict = run_dir.join("settled.json");
        let run = Program {
            command: &argv,
            dir,
            timeout: *timeout,
            files: (&files.0, &files.1, &verdict),
            ctx,
            settle: true,
        };
        match run.run().await? {
            0 => {}
            1 => return Ok(false),
            code => return Err(format!("`{}` exited with {code} (0: settled, 1: not yet)", argv.join(" "))),
        }
        asked.push(argv);
    }
    Ok(true)
}

/// Whether any declared invariant says when the system has settled.
pub fn has_settle_condition(declared: &[Invariant]) -> bool {
    declared.iter().any(|i| matches!(&i.check, InvariantCheck::External { settled: Some(_), .. }))
}

/// Puts the path of each invariant's workspace binary (`binary = "..."`) in its
/// command, building the missing ones with `profile`; `progress` says so.
pub fn resolve_binaries(
    declared: &mut [Invariant],
    profile: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), crate::cluster::RuntimeError> {
    for invariant in declared {
        let InvariantCheck::External { command, binary: binary @ true, dir, .. } = &mut invariant.check else {
            continue;
        };
        let binaries = crate::cluster::binaries::Binaries::for_dir(dir, profile)?;
        binaries.ensure(std::slice::from_ref(&command[0]), progress)?;
        command[0] = binaries.path(&command[0]).to_string_lossy().into_owned();
        *binary = false;
    }
    Ok(())
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// One run of an external checker's program.
struct Program<'a> {
    command: &'a [String],
    dir: &'a Path,
    timeout: Duration,
    /// The history, the final reads and where the verdict goes.
    files: (&'a Path, &'a Path, &'a Path),
    ctx: CheckContext,
    /// Whether it asks a settle condition, for which exit 1 means "not yet".
    settle: bool,
}

impl Program<'_> {
    /// Runs it to its end within its timeout: its exit code (0 or 1; anything else is
    /// a failure, with its standard error), or why it did not run to an end.
    async fn run(&self) -> Result<i32, String> {
        let (history, final_reads, verdict) = self.files;
        let _ = std::fs::remove_file(verdict);
        let mut cmd = std::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .current_dir(self.dir)
            .env("GAUNTLET_HISTORY", history)
            .env("GAUNTLET_FINAL_READS", final_reads)
            .env("GAUNTLET_VERDICT", verdict)
            .env("GAUNTLET_HISTORY_DROPPED", self.ctx.dropped.to_string())
            .env("GAUNTLET_SETTLE_WAITED", format!("{:.3}", self.ctx.waited.as_secs_f64()))
            .env("GAUNTLET_SETTLE_BOUND", format!("{:.3}", self.ctx.bound.as_secs_f64()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let shown = self.command.join(" ");
        let timed_out =
            || format!("`{shown}` ran past its timeout of {} and was killed", humantime::format_duration(self.timeout));
        let out = if self.ctx.blocking {
            let mut child =
                cmd.spawn().map_err(|e| format!("`{shown}` could not start in {}: {e}", self.dir.display()))?;
            let deadline = std::time::Instant::now() + self.timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break child.wait_with_output().map_err(|e| e.to_string())?,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(timed_out());
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(format!("`{shown}` could not be waited for: {e}")),
                }
            }
        } else {
            let mut cmd = tokio::process::Command::from(cmd);
            cmd.kill_on_drop(true);
            let child = cmd.spawn().map_err(|e| format!("`{shown}` could not start in {}: {e}", self.dir.display()))?;
            match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
                Err(_) => return Err(timed_out()),
                Ok(Err(e)) => return Err(format!("`{shown}` could not be waited for: {e}")),
                Ok(Ok(out)) => out,
            }
        };
        match out.status.code() {
            Some(code @ (0 | 1)) if code == 0 || self.settle => Ok(code),
            _ => Err(format!("`{shown}` failed ({}): {}", out.status, clip(&String::from_utf8_lossy(&out.stderr)))),
        }
    }
}
