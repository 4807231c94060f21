//! `[[invariant]]` and `[[final_read]]`: what a scenario checks of any system's data.
//!
//! ```toml
//! [[final_read]]
//! path = "/SMEMBERS/items"      # GET through the ingress (or `service = "store"`)
//! result = "/SMEMBERS"          # the value read, by JSON pointer
//! bearer = "t0ken"              # optional: sent as Authorization: Bearer t0ken
//!
//! [[invariant]]
//! checker = "set"               # adds (`f = "add"`) against the final read (`f = "read"`)
//!
//! [[invariant]]
//! name = "ledger"
//! command = ["python3", "checks/ledger.py"]   # writes $GAUNTLET_VERDICT
//! timeout = "30s"
//! ```
//!
//! Every `f` a checker reads must be recorded by a workload step's `op` or a final read,
//! else the file is refused where the invariant is written.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::checks::generic::{CheckerSpec, Model, CHECKERS};
use crate::cluster::ClusterSpec;
use crate::load::operation::valid_f;
use crate::load::rules::check_pointer;
use crate::load::workload::Workload;

use super::check::{here, Checked, Located};
use super::raw::{RawFinalRead, RawInvariant};

/// The longest an external checker may run.
pub const MAX_CHECKER_TIME: Duration = Duration::from_secs(3600);
/// How long an external checker may run when the file does not say.
pub const DEFAULT_CHECKER_TIME: Duration = Duration::from_secs(60);
/// The most `[[invariant]]`s and `[[final_read]]`s a scenario may declare, each.
pub const MAX_DECLARED: usize = 64;

/// One declared invariant.
#[derive(Debug, Clone, PartialEq)]
pub struct Invariant {
    /// Its name in reports, unique in the scenario.
    pub name: String,
    /// How it is checked.
    pub check: InvariantCheck,
}

/// How an invariant is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum InvariantCheck {
    /// A checker of the library.
    Library(CheckerSpec),
    /// An external program, run in `dir`, bounded by `timeout`.
    External {
        /// The program and its arguments.
        command: Vec<String>,
        /// Whether the program is a binary of the cargo workspace holding `dir` (built
        /// when missing, found by [`crate::scenario::data::resolve_binaries`]).
        binary: bool,
        /// The arguments with which the program says whether the system has settled.
        settled: Option<Vec<String>>,
        /// How long it may run.
        timeout: Duration,
        /// Where it runs: the scenario's folder.
        dir: PathBuf,
    },
}

/// One request of the final-read phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalRead {
    /// The operation's function.
    pub f: String,
    /// Path and query to GET.
    pub path: String,
    /// The service whose first node answers it; the ingress when `None`.
    pub service: Option<String>,
    /// The key it reads.
    pub key: Option<String>,
    /// JSON pointer to the value read.
    pub result: String,
    /// The bearer token it sends, if any.
    pub bearer: Option<String>,
}

fn f_name(raw: &Option<Spanned<String>>, default: &str) -> Checked<String> {
    match raw {
        None => Ok(default.to_string()),
        Some(f) if valid_f(f.get_ref()) => Ok(f.get_ref().clone()),
        Some(f) => here(f.span(), format!("`{}` is not an operation's `f` (letters, digits, `_`, `-`)", f.get_ref())),
    }
}

/// The parameters each checker takes, for refusing one given to another.
fn takes(checker: &str, param: &str) -> bool {
    let params: &[&str] = match checker {
        "set" | "set-full" | "counter" => &["add", "read"],
        "bank" => &["read", "total", "accounts"],
        "unique-ids" => &["generate"],
        "queue" | "total-queue" => &["enqueue", "dequeue", "drain"],
        _ => &["read", "write", "cas", "model", "max_states"],
    };
    params.contains(&param)
}

impl RawInvariant {
    fn given(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut given = Vec::new();
        let mut f = |name, v: &Option<Spanned<String>>| {
            if let Some(v) = v {
                given.push((name, v.span()));
            }
        };
        f("add", &self.add);
        f("read", &self.read);
        f("generate", &self.generate);
        f("enqueue", &self.enqueue);
        f("dequeue", &self.dequeue);
        f("drain", &self.drain);
        f("write", &self.write);
        f("cas", &self.cas);
        f("model", &self.model);
        if let Some(v) = &self.max_states {
            given.push(("max_states", v.span()));
        }
        if let Some(v) = &self.total {
            given.push(("total", v.span()));
        }
        if let Some(v) = &self.accounts {
            given.push(("accounts", v.span()));
        }
        given
    }

    fn check(self, span: Range<usize>, dir: &Path) -> Checked<(Invariant, Range<usize>)> {
        let command = match (&self.command, &self.binary) {
            (Some(_), Some(b)) => return here(b.span(), "give `command` or `binary`, not both"),
            (Some(c), None) => Some((c.span(), c.get_ref().clone(), false)),
            (None, Some(b)) => {
                let name = b.get_ref();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return here(b.span(), "`binary` names a binary of this cargo workspace, like \"my-checker\"");
                }
                let mut argv = vec![name.clone()];
                argv.extend(self.args.clone().unwrap_or_default());
                Some((b.span(), argv, true))
            }
            (None, None) => None,
        };
        match (&self.checker, &command) {
            (Some(_), Some((at, _, _))) => {
                return here(at.clone(), "give `checker` or an external `command`, not both")
            }
            (None, None) => {
                return here(
                    span,
                    format!(
                        "an [[invariant]] names a `checker` ({}) or an external `command` (or `binary`)",
                        CHECKERS.join(", ")
                    ),
                )
            }
            _ => {}
        }
        if let Some((at, argv, binary)) = command {
            if let Some((param, at)) = self.given().into_iter().next() {
                return here(at, format!("`{param}` is a parameter of the library's checkers, not of a `command`"));
            }
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return here(at, "`command` is a program and its arguments, like [\"python3\", \"check.py\"]");
            }
            if self.args.is_some() && !binary {
                return here(at, "`args` go with `binary`; a `command` lists its arguments itself");
            }
            let timeout = match &self.timeout {
                None => DEFAULT_CHECKER_TIME,
                Some(t) => {
                    let d = humantime::parse_duration(t.get_ref().trim()).map_err(|e| {
                        Located::Here(t.span(), format!("`{}` is not a duration like 30s ({e})", t.get_ref()))
                    })?;
                    if d.is_zero() || d > MAX_CHECKER_TIME {
                        return here(t.span(), "an external checker's `timeout` is above 0 and at most 1h");
                    }
                    d
                }
            };
            let program = Path::new(&argv[0]).file_name().map_or(argv[0].clone(), |n| n.to_string_lossy().into_owned());
            let name = self.name.clone().unwrap_or(program);
            let check = InvariantCheck::External {
                command: argv,
                binary,
                settled: self.settled.clone(),
                timeout,
                dir: dir.to_path_buf(),
            };
            return Ok((Invariant { name, check }, span));
        }
        if self.settled.is_some() || self.args.is_some() {
            return here(span, "`settled` and `args` go with an external `command` or `binary`");
        }
        let checker = self.checker.as_ref().expect("one of the two");
        let Some(mut spec) = CheckerSpec::with_defaults(checker.get_ref()) else {
            return here(
                checker.span(),
                format!("unknown checker `{}`; the library has {}", checker.get_ref(), CHECKERS.join(", ")),
            );
        };
        let name_of = checker.get_ref().clone();
        if let Some(t) = &self.timeout {
            return here(
                t.span(),
                "`timeout` bounds an external `command`; the library's checkers are bounded by design",
            );
        }
        if let Some((param, at)) = self.given().into_iter().find(|(p, _)| !takes(&name_of, p)) {
            return here(at, format!("`{param}` is not a parameter of the `{name_of}` checker"));
        }
        match &mut spec {
            CheckerSpec::Set { add, read, .. } | CheckerSpec::Counter { add, read } => {
                *add = f_name(&self.add, add)?;
                *read = f_name(&self.read, read)?;
            }
            CheckerSpec::Bank { read, total, accounts } => {
                *read = f_name(&self.read, read)?;
                *total = self.total.as_ref().map(|t| *t.get_ref());
                if let Some(a) = &self.accounts {
                    if a.get_ref().is_empty() {
                        return here(a.span(), "`accounts` lists the accounts every read shows; leave it out for any");
                    }
                    *accounts = Some(a.get_ref().clone());
                }
            }
            CheckerSpec::UniqueIds { generate } => *generate = f_name(&self.generate, generate)?,
            CheckerSpec::Queue { enqueue, dequeue, drain, .. } => {
                *enqueue = f_name(&self.enqueue, enqueue)?;
                *dequeue = f_name(&self.dequeue, dequeue)?;
                *drain = f_name(&self.drain, drain)?;
            }
            CheckerSpec::Linearizable { model, read, write, cas, max_states } => {
                *read = f_name(&self.read, read)?;
                *write = f_name(&self.write, write)?;
                *cas = f_name(&self.cas, cas)?;
                if let Some(m) = &self.model {
                    *model = match m.get_ref().as_str() {
                        "register" => Model::Register,
                        "cas-register" => Model::CasRegister,
                        other => {
                            return here(m.span(), format!("unknown model `{other}`; use register or cas-register"))
                        }
                    };
                }
                if let Some(n) = &self.max_states {
                    if *n.get_ref() == 0 {
                        return here(n.span(), "`max_states` bounds the search: at least 1");
                    }
                    *max_states = *n.get_ref();
                }
            }
        }
        let name = self.name.clone().unwrap_or(name_of);
        Ok((Invariant { name, check: InvariantCheck::Library(spec) }, span))
    }
}

/// The `f`s a checker cannot do without, each with the other `f`s that may stand in
/// for it: `(needed, alternatives)`.
fn needs(spec: &CheckerSpec) -> Vec<Vec<&str>> {
    match spec {
        CheckerSpec::Set { add, read, .. } | CheckerSpec::Counter { add, read } => vec![vec![add], vec![read]],
        CheckerSpec::Bank { read, .. } => vec![vec![read]],
        CheckerSpec::UniqueIds { generate } => vec![vec![generate]],
        CheckerSpec::Queue { enqueue, dequeue, drain, total: false } => vec![vec![enqueue], vec![dequeue, drain]],
        CheckerSpec::Queue { enqueue, drain, total: true, .. } => vec![vec![enqueue], vec![drain]],
        CheckerSpec::Linearizable { read, write, cas, .. } => vec![vec![read], vec![write, cas]],
    }
}

/// Checks the declared invariants and final reads against what the workload records.
pub(super) fn check_declared(
    invariants: Vec<Spanned<RawInvariant>>,
    final_reads: Vec<Spanned<RawFinalRead>>,
    workload: &Workload,
    cluster: &ClusterSpec,
    dir: &Path,
) -> Checked<(Vec<Invariant>, Vec<FinalRead>)> {
    for list_len in [invariants.len(), final_reads.len()] {
        if list_len > MAX_DECLARED {
            return here(0..0, format!("at most {MAX_DECLARED} [[invariant]]s and {MAX_DECLARED} [[final_read]]s"));
        }
    }
    let mut reads = Vec::with_capacity(final_reads.len());
    for raw in final_reads {
        let raw = raw.into_inner();
        if !raw.path.get_ref().starts_with('/') {
            return here(raw.path.span(), "a final read's `path` starts with `/`, like /items");
        }
        if let Some(s) = &raw.service {
            if cluster.service(s.get_ref()).is_none() {
                let names: Vec<&str> = cluster.services.iter().map(|s| s.name.as_str()).collect();
                return here(
                    s.span(),
                    format!("the cluster has no service `{}`; it has {}", s.get_ref(), names.join(", ")),
                );
            }
        }
        let result = match &raw.result {
            Some(p) => {
                check_pointer(p.get_ref()).map_err(|m| Located::Here(p.span(), format!("result: {m}")))?;
                p.get_ref().clone()
            }
            None => String::new(),
        };
        reads.push(FinalRead {
            f: f_name(&raw.f, "read")?,
            path: raw.path.into_inner(),
            service: raw.service.map(Spanned::into_inner),
            key: raw.key,
            result,
            bearer: raw.bearer,
        });
    }
    let mut recorded: BTreeSet<&str> =
        workload.flows.iter().flat_map(|f| &f.steps).filter_map(|s| s.op.as_ref().map(|o| o.f.as_str())).collect();
    recorded.extend(reads.iter().map(|r| r.f.as_str()));
    let mut declared: Vec<Invariant> = Vec::with_capacity(invariants.len());
    for raw in invariants {
        let span = raw.span();
        let (invariant, span) = raw.into_inner().check(span, dir)?;
        if declared.iter().any(|d| d.name == invariant.name) {
            return here(span, format!("two invariants are named `{}`: give one a `name`", invariant.name));
        }
        if let InvariantCheck::Library(spec) = &invariant.check {
            for alternatives in needs(spec) {
                if !alternatives.iter().any(|f| recorded.contains(f)) {
                    let shown: Vec<String> = alternatives.iter().map(|f| format!("`f = \"{f}\"`")).collect();
                    let known: Vec<&str> = recorded.iter().copied().collect();
                    return here(
                        span,
                        format!(
                            "invariant `{}` reads operations with {} but no workload step's `op` or [[final_read]] \
                             records one (recorded: {}): add one, or name the `f` your steps record",
                            invariant.name,
                            shown.join(" or "),
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
            }
        }
        declared.push(invariant);
    }
    Ok((declared, reads))
}

/// A checks file as written: the `[[final_read]]`s and `[[invariant]]`s a system offers
/// (the cluster file's `checks`), which scenarios pick by name.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChecks {
    #[serde(default)]
    final_read: Vec<Spanned<RawFinalRead>>,
    #[serde(default)]
    invariant: Vec<Spanned<RawInvariant>>,
}

/// The invariants `names` picks from the cluster file's checks file, with the final
/// reads they need. A final read of a service this cluster does not run is left out
/// (one checks file may serve clusters with and without it). A mistake in the checks
/// file is reported there; a name it does not declare, where the scenario names it.
pub(super) fn named_invariants(
    names: Vec<Spanned<String>>,
    workload: &Workload,
    cluster: &ClusterSpec,
) -> Checked<(Vec<Invariant>, Vec<FinalRead>)> {
    let Some(first) = names.first() else { return Ok((Vec::new(), Vec::new())) };
    let Some(path) = &cluster.checks else {
        return here(
            first.span(),
            format!(
                "the cluster file {} declares no checks: add `checks = \"checks.toml\"` to it, a file of \
                 [[final_read]]s and [[invariant]]s, or declare [[invariant]]s in this scenario",
                cluster.file.display()
            ),
        );
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        Located::Here(first.span(), format!("cannot read the cluster's checks file {}: {e}", path.display()))
    })?;
    let elsewhere = |span: Range<usize>, message: String| {
        let (line, column) = crate::cluster::spec::line_col(&text, span.start);
        Located::Elsewhere(super::ScenarioError { file: path.clone(), line, column, message })
    };
    let raw: RawChecks =
        toml::from_str(&text).map_err(|e| elsewhere(e.span().unwrap_or(0..0), e.message().to_string()))?;
    let reads: Vec<Spanned<RawFinalRead>> = raw
        .final_read
        .into_iter()
        .filter(|r| r.get_ref().service.as_ref().is_none_or(|s| cluster.service(s.get_ref()).is_some()))
        .collect();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let (offered, reads) = check_declared(raw.invariant, reads, workload, cluster, dir).map_err(|e| match e {
        Located::Here(span, message) => elsewhere(span, message),
        other => other,
    })?;
    let mut picked: Vec<Invariant> = Vec::with_capacity(names.len());
    for name in names {
        match offered.iter().find(|i| &i.name == name.get_ref()) {
            _ if picked.iter().any(|p| &p.name == name.get_ref()) => {}
            Some(i) => picked.push(i.clone()),
            None => {
                let known: Vec<&str> = offered.iter().map(|i| i.name.as_str()).collect();
                return here(
                    name.span(),
                    format!(
                        "unknown invariant `{}`: {} declares {}",
                        name.get_ref(),
                        path.display(),
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    ),
                );
            }
        }
    }
    Ok((picked, reads))
}
