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

/// Checks every declared invariant. `files` are the history files written for
/// external checkers (`None`, with why, when they could not be written).
pub async fn check_declared(
    declared: &[Invariant],
    history: &OpHistory,
    files: Result<&(PathBuf, PathBuf), &str>,
    run_dir: &Path,
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(declared.len());
    for invariant in declared {
        let mut result = match &invariant.check {
            InvariantCheck::Library(spec) => checks::generic::check(spec, history),
            InvariantCheck::External { command, timeout, dir } => match files {
                Ok((h, f)) => {
                    let verdict = run_dir.join(format!("verdict-{}.json", file_safe(&invariant.name)));
                    run_external(&invariant.name, command, *timeout, dir, (h, f, &verdict)).await
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

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Runs an external checker and reads its verdict; whatever goes wrong is `unknown`.
async fn run_external(
    name: &str,
    command: &[String],
    timeout: Duration,
    dir: &Path,
    (history, final_reads, verdict): (&Path, &Path, &Path),
) -> CheckResult {
    let _ = std::fs::remove_file(verdict);
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .current_dir(dir)
        .env("GAUNTLET_HISTORY", history)
        .env("GAUNTLET_FINAL_READS", final_reads)
        .env("GAUNTLET_VERDICT", verdict)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let shown = command.join(" ");
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CheckResult::unknown(name, format!("`{shown}` could not start in {}: {e}", dir.display())),
    };
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return CheckResult::unknown(
                name,
                format!("`{shown}` ran past its timeout of {} and was killed", humantime::format_duration(timeout)),
            )
        }
        Ok(Err(e)) => return CheckResult::unknown(name, format!("`{shown}` could not be waited for: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return CheckResult::unknown(name, format!("`{shown}` failed ({}): {}", out.status, clip(&stderr)));
    }
    match std::fs::read(verdict) {
        Ok(bytes) => checks::external::from_bytes(name, &bytes),
        Err(e) => CheckResult::unknown(
            name,
            format!("`{shown}` wrote no verdict to $GAUNTLET_VERDICT ({}): {e}", verdict.display()),
        ),
    }
}
