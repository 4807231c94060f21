//! The workload model: weighted flows of HTTP steps, parsed once from TOML.
//!
//! ```toml
//! base_url = "http://127.0.0.1:8080"
//! seed = 7
//! vars = { password = "s3cret" }
//!
//! [schedule]
//! mode = "constant"
//! rate = 50
//! duration = "30s"
//!
//! [setup]            # run once per virtual user, not measured
//! users = 10
//! [[setup.step]]
//! method = "POST"
//! path = "/v1/users"
//! body = { email = "u{{vu}}@example.com", password = "{{password}}" }
//! capture = { user_id = "/id" }
//!
//! [[flow]]
//! name = "checkout"
//! weight = 1
//! [[flow.step]]
//! name = "login"
//! method = "POST"
//! path = "/v1/login"
//! body = { email = "u{{vu}}@example.com", password = "{{password}}" }
//! capture = { token = "/token" }
//! [[flow.step]]
//! name = "order"
//! method = "POST"
//! path = "/v1/items"
//! headers = { authorization = "Bearer {{token}}" }
//! body = { user = "{{user_id}}", quantity = 1 }
//!
//! [[slo]]
//! threshold = "p95 < 200ms"
//! ```
//!
//! Answer rules (see [`super::rules`]): `degraded = { header = "x-stale" }` at the top
//! level marks answers of every step, in a step those of that step; a step's
//! `expect = { status = [200], json = { "/status" = "PAID" }, exists = ["/id"] }`
//! makes each of its requests a check. Degraded answers and failed checks are not
//! available.
//!
//! Every template variable is checked against what is defined before it is used, and
//! every error names the line and column of the offending value.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use http::header::HeaderName;
use http::{Method, Uri};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;
use toml::Spanned;

use super::duration::HumanDuration;
use super::operation::{OpSpec, RawOp};
use super::rules::{check_pointer, parse_degraded, AnswerRules, DegradedRule, Located, RawExpect};
use super::schedule::ScheduleSpec;
use super::slo::SloSpec;
use super::template::{JsonTemplate, Template};

/// Builtin variables: the virtual user's index and the flow start's index.
pub const BUILTIN_VARS: [&str; 2] = ["vu", "iteration"];
/// The most virtual users a setup phase may create.
pub const MAX_USERS: u32 = 100_000;
/// The most steps a flow may have.
pub const MAX_STEPS: usize = 64;

/// A workload file that cannot be used, with where and why.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// The file could not be read.
    #[error("{path}: cannot read the workload file: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid workload.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Where requests go: scheme `http`, a host and port, and an optional path prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseUrl {
    /// `host:port`, also sent as the `Host` header.
    pub authority: String,
    /// A prefix put before every step's path (empty or starting with `/`).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `http://host:port[/prefix]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("`{url}`: only http:// URLs are supported"));
        }
        let auth = uri.authority().ok_or_else(|| format!("`{url}` has no host"))?;
        let authority = match auth.port_u16() {
            Some(_) => auth.as_str().to_owned(),
            None => format!("{}:80", auth.host()),
        };
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self { authority, prefix })
    }
}

/// Where a step takes a value from its response: a JSON pointer into the body.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    /// The variable it defines for later steps.
    pub name: String,
    /// RFC 6901 pointer, e.g. `/token` or `/items/0/id`.
    pub pointer: String,
}

/// One HTTP request of a flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The step's name, unique in its flow (`step-N` when not given).
    pub name: String,
    /// The HTTP method.
    pub method: Method,
    /// Path and query, after the base URL's prefix.
    pub path: Template,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, Template)>,
    /// A JSON body, sent with `content-type: application/json`.
    pub body: Option<JsonTemplate>,
    /// Values taken from the response for later steps.
    pub captures: Vec<Capture>,
    /// A pause after the step before the next one (not part of any latency).
    pub think: Duration,
    /// Records each request of this step as an operation of the run's history
    /// (`op = { f = "add", value = "..." }`), for the generic checkers.
    pub op: Option<OpSpec>,
    /// What makes its answers degraded, and what it expects of them.
    pub rules: AnswerRules,
}

/// A weighted sequence of steps, started as one unit by the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The flow's name, unique in the workload.
    pub name: String,
    /// Relative frequency among the flows.
    pub weight: u32,
    /// The steps, run in order; a failed step ends the flow.
    pub steps: Vec<Step>,
}

/// The unmeasured set-up phase: steps run once per virtual user; their captures become
/// that user's data.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// How many virtual users to prepare.
    pub users: u32,
    /// The steps run for each user.
    pub steps: Vec<Step>,
}

/// A parsed, checked workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Where requests go (a command-line URL may override it).
    pub base_url: Option<BaseUrl>,
    /// Seed of every random choice (which flow starts next).
    pub seed: u64,
    /// The arrival schedule, unless given on the command line.
    pub schedule: Option<ScheduleSpec>,
    /// Constant variables.
    pub vars: BTreeMap<String, Value>,
    /// The set-up phase, if any.
    pub setup: Option<Setup>,
    /// The flows; at least one.
    pub flows: Vec<Flow>,
    /// Thresholds the run is judged against.
    pub slos: Vec<SloSpec>,
}

impl Workload {
    /// A one-request workload: `method url` with the given headers and body.
    pub fn single(
        url: &str,
        method: Method,
        headers: Vec<(HeaderName, String)>,
        body: Option<Value>,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let base = BaseUrl::parse(&format!("http://{}", uri.authority().map_or("", |a| a.as_str())))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("`{url}`: only http:// URLs are supported"));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let literal = |s: &str| Template::parse(&s.replace("{{", "{ {")).map_err(|e| e.to_string());
        let step = Step {
            name: "request".into(),
            method,
            path: literal(path)?,
            headers: headers.into_iter().map(|(n, v)| Ok((n, literal(&v)?))).collect::<Result<_, String>>()?,
            body: body.as_ref().map(JsonTemplate::parse).transpose().map_err(|e| e.to_string())?,
            captures: Vec::new(),
            think: Duration::ZERO,
            op: None,
            rules: AnswerRules::default(),
        };
        Ok(Self {
            base_url: Some(base),
            seed: 0,
            schedule: None,
            vars: BTreeMap::new(),
            setup: None,
            flows: vec![Flow { name: "default".into(), weight: 1, steps: vec![step] }],
            slos: Vec::new(),
        })
    }

    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> Result<Self, WorkloadError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| WorkloadError::Read { path: shown.clone(), source })?;
        Self::parse(&text, &shown)
    }

    /// Parses workload text; `origin` names it in errors (usually the file path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, WorkloadError> {
        let invalid = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            WorkloadError::Invalid { path: origin.to_owned(), line, column, message }
        };
        let raw: RawWorkload = toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
        raw.check().map_err(|(span, message)| invalid(Some(span), message))
    }

    /// The total of the flows' weights.
    pub fn total_weight(&self) -> u64 {
        self.flows.iter().map(|f| u64::from(f.weight)).sum()
    }

    /// The flow to start for a uniformly drawn `ticket` in `0..total_weight()`.
    pub fn flow_for_ticket(&self, mut ticket: u64) -> usize {
        for (i, flow) in self.flows.iter().enumerate() {
            if ticket < u64::from(flow.weight) {
                return i;
            }
            ticket -= u64::from(flow.weight);
        }
        self.flows.len().saturating_sub(1)
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    base_url: Option<Spanned<String>>,
    #[serde(default)]
    seed: u64,
    schedule: Option<ScheduleSpec>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    setup: Option<RawSetup>,
    #[serde(default)]
    flow: Vec<Spanned<RawFlow>>,
    #[serde(default)]
    slo: Vec<SloSpec>,
    degraded: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetup {
    #[serde(default = "one")]
    users: Spanned<u32>,
    #[serde(default)]
    step: Vec<RawStep>,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Spanned<String>,
    #[serde(default = "one")]
    weight: Spanned<u32>,
    #[serde(default)]
    step: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<Spanned<String>>,
    #[serde(default = "get")]
    method: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    body: Option<Spanned<Value>>,
    #[serde(default)]
    capture: BTreeMap<String, Spanned<String>>,
    think: Option<HumanDuration>,
    record: Option<Spanned<String>>,
    op: Option<RawOp>,
    degraded: Option<Spanned<toml::Value>>,
    expect: Option<Spanned<RawExpect>>,
}

fn get() -> Spanned<String> {
    Spanned::new(0..0, "GET".into())
}

impl RawWorkload {
    fn check(self) -> Located<Workload> {
        let base_url = self.base_url.map(|u| BaseUrl::parse(u.get_ref()).map_err(|m| (u.span(), m))).transpose()?;
        let degraded = self.degraded.as_ref().map(parse_degraded).transpose()?.unwrap_or_default();
        let mut known: BTreeSet<String> = BUILTIN_VARS.iter().map(|s| s.to_string()).collect();
        known.extend(self.vars.keys().cloned());
        let setup = match self.setup {
            Some(raw) => {
                let users = *raw.users.get_ref();
                if users == 0 || users > MAX_USERS {
                    let msg = format!("setup.users must be between 1 and {MAX_USERS}");
                    return Err((raw.users.span(), msg));
                }
                if let Some(op) = raw.step.iter().find_map(|s| s.op.as_ref()) {
                    let msg =
                        "a setup step records no operation (setup is not part of the run): move `op` to a flow step";
                    return Err((op.span(), msg.into()));
                }
                let steps = check_steps(raw.step, &mut known, &degraded)?;
                Some(Setup { users, steps })
            }
            None => None,
        };
        if self.flow.is_empty() {
            return Err((0..0, "the workload has no [[flow]]; add at least one".into()));
        }
        let mut flows: Vec<Flow> = Vec::with_capacity(self.flow.len());
        for spanned in self.flow {
            let span = spanned.span();
            let raw = spanned.into_inner();
            let name = raw.name.get_ref().clone();
            if flows.iter().any(|f| f.name == name) {
                return Err((raw.name.span(), format!("flow `{name}` is defined twice")));
            }
            if *raw.weight.get_ref() == 0 {
                return Err((raw.weight.span(), "a flow's weight must be at least 1".into()));
            }
            if raw.step.is_empty() {
                return Err((span, format!("flow `{name}` has no [[flow.step]]")));
            }
            let steps = check_steps(raw.step, &mut known.clone(), &degraded)?;
            flows.push(Flow { name, weight: *raw.weight.get_ref(), steps });
        }
        Ok(Workload {
            base_url,
            seed: self.seed,
            schedule: self.schedule,
            vars: self.vars,
            setup,
            flows,
            slos: self.slo,
        })
    }
}

fn check_steps(raw: Vec<RawStep>, known: &mut BTreeSet<String>, degraded: &[DegradedRule]) -> Located<Vec<Step>> {
    if raw.len() > MAX_STEPS {
        return Err((0..0, format!("a flow may have at most {MAX_STEPS} steps")));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(raw.len());
    for (i, mut step) in raw.into_iter().enumerate() {
        let name = step.name.take().map_or(format!("step-{}", i + 1), |n| n.into_inner());
        if steps.iter().any(|s| s.name == name) {
            return Err((step.path.span(), format!("step `{name}` is defined twice in its flow")));
        }
        let checked = check_step(step, name, known, degraded)?;
        known.extend(checked.captures.iter().map(|c| c.name.clone()));
        steps.push(checked);
    }
    Ok(steps)
}

fn check_step(raw: RawStep, name: String, known: &BTreeSet<String>, degraded: &[DegradedRule]) -> Located<Step> {
    let method = Method::from_bytes(raw.method.get_ref().to_ascii_uppercase().as_bytes())
        .map_err(|_| (raw.method.span(), format!("`{}` is not an HTTP method", raw.method.get_ref())))?;
    let path = template(&raw.path, known)?;
    if !raw.path.get_ref().starts_with('/') {
        return Err((raw.path.span(), "a step's path must start with `/`".into()));
    }
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (key, value) in &raw.headers {
        let header = HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| (value.span(), format!("`{key}` is not a header name")))?;
        headers.push((header, template(value, known)?));
    }
    let body = match &raw.body {
        Some(b) => {
            let t = JsonTemplate::parse(b.get_ref()).map_err(|e| (b.span(), e.to_string()))?;
            check_vars(t.vars().into_iter(), known, b.span())?;
            Some(t)
        }
        None => None,
    };
    let mut captures = Vec::with_capacity(raw.capture.len());
    for (var, pointer) in raw.capture {
        check_pointer(pointer.get_ref()).map_err(|m| (pointer.span(), format!("capture `{var}`: {m}")))?;
        captures.push(Capture { name: var, pointer: pointer.into_inner() });
    }
    let mut step_degraded = degraded.to_vec();
    if let Some(d) = &raw.degraded {
        step_degraded.extend(parse_degraded(d)?);
    }
    let expect = match raw.expect {
        Some(e) => {
            let span = e.span();
            Some(e.into_inner().check(span)?)
        }
        None => None,
    };
    let rules = AnswerRules::new(step_degraded, expect);
    if let Some(r) = raw.record {
        return Err((
            r.span(),
            format!(
                "`record` is gone: a step records an operation with `op = {{ f = \"{}\", value = ..., result = ... }}` (docs/workload.md, \"Operations for the data checkers\")",
                r.get_ref()
            ),
        ));
    }
    let op = match raw.op {
        Some(op) => Some(op.check(&|t: &Template, span| check_vars(t.vars(), known, span))?),
        None => None,
    };
    let think = raw.think.map_or(Duration::ZERO, |d| d.0);
    Ok(Step { name, method, path, headers, body, captures, think, op, rules })
}

fn template(raw: &Spanned<String>, known: &BTreeSet<String>) -> Located<Template> {
    let t = Template::parse(raw.get_ref()).map_err(|e| (raw.span(), e.to_string()))?;
    check_vars(t.vars(), known, raw.span())?;
    Ok(t)
}

fn check_vars<'a>(
    mut vars: impl Iterator<Item = &'a str>,
    known: &BTreeSet<String>,
    span: Range<usize>,
) -> Located<()> {
    match vars.find(|v| !known.contains(*v)) {
        Some(v) => Err((
            span,
            format!(
                "unknown variable `{{{{{v}}}}}`: define it in [vars], capture it in an earlier \
                 step or in [setup], or use a builtin ({})",
                BUILTIN_VARS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = r#"
base_url = "http://127.0.0.1:9/api"
vars = { password = "pw" }
[setup]
users = 3
[[setup.step]]
method = "post"
path = "/users"
body = { email = "u{{vu}}@x", password = "{{password}}" }
capture = { user_id = "/id" }
[[flow]]
name = "checkout"
weight = 3
[[flow.step]]
name = "login"
method = "POST"
path = "/login"
capture = { token = "/token" }
[[flow.step]]
path = "/items/{{user_id}}"
headers = { authorization = "Bearer {{token}}" }
"#;

    #[test]
    fn parses_a_store_workload() {
        let w = Workload::parse(STORE, "store.toml").unwrap();
        assert_eq!(w.base_url.unwrap().prefix, "/api");
        assert_eq!(w.setup.unwrap().users, 3);
        assert_eq!(w.flows[0].weight, 3);
        assert_eq!(w.flows[0].steps[1].name, "step-2");
        assert_eq!(w.flows[0].steps[0].captures[0].pointer, "/token");
    }

    #[test]
    fn unknown_variable_points_at_its_line() {
        let text = STORE.replace("Bearer {{token}}", "Bearer {{tokn}}");
        let err = Workload::parse(&text, "store.toml").unwrap_err().to_string();
        assert!(err.starts_with("store.toml:21:"), "{err}");
        assert!(err.contains("`{{tokn}}`"), "{err}");
    }

    #[test]
    fn syntax_and_type_errors_have_positions() {
        let err = Workload::parse("[[flow]]\nname = 3\n", "w.toml").unwrap_err().to_string();
        assert!(err.starts_with("w.toml:2:8:"), "{err}");
        let err = Workload::parse("seed = \n", "w.toml").unwrap_err().to_string();
        assert!(err.starts_with("w.toml:1:"), "{err}");
    }

    const RULED: &str = r#"
degraded = { header = "x-stale" }
[[flow]]
name = "buy"
[[flow.step]]
path = "/items/1"
degraded = [{ header = "x-cache", value = "STALE" }]
expect = { status = [200, "2xx"], json = { "/status" = "PAID" }, exists = ["/id"] }
[[flow.step]]
path = "/other"
"#;

    #[test]
    fn answer_rules_apply_workload_wide_and_per_step() {
        let w = Workload::parse(RULED, "w.toml").unwrap();
        let (first, second) = (&w.flows[0].steps[0].rules, &w.flows[0].steps[1].rules);
        let names = |r: &AnswerRules| r.degraded().iter().map(|d| d.header.to_string()).collect::<Vec<_>>();
        assert_eq!(names(first), ["x-stale", "x-cache"]);
        assert_eq!(names(second), ["x-stale"]);
        let expect = first.expect().unwrap();
        assert_eq!((expect.status.len(), expect.json.len(), expect.exists.len()), (2, 1, 1));
        assert!(second.expect().is_none());
    }

    fn error_of(text: &str) -> String {
        Workload::parse(text, "w.toml").unwrap_err().to_string()
    }

    #[test]
    fn bad_answer_rules_point_at_their_value() {
        let bad = |from: &str, to: &str| error_of(&RULED.replace(from, to));
        let err = bad(r#""/status" = "#, r#""status" = "#);
        assert!(err.starts_with("w.toml:8:44:") && err.contains("`status` is not a JSON pointer"), "{err}");
        let err = bad(r#"["/id"]"#, r#"["/id~2"]"#);
        assert!(err.starts_with("w.toml:8:") && err.contains("`~0`"), "{err}");
        let err = bad(r#"[200, "2xx"]"#, "[200, 700]");
        assert!(err.starts_with("w.toml:8:27:") && err.contains("700 is not an HTTP status"), "{err}");
        let err = bad(r#"[200, "2xx"]"#, r#"["okay"]"#);
        assert!(err.contains(r#""okay" is not an HTTP status"#), "{err}");
        let err = bad(r#"[200, "2xx"]"#, "[]");
        assert!(err.contains("at least one status"), "{err}");
        let err = bad("exists = ", "exist = ");
        assert!(err.starts_with("w.toml:8:") && err.contains("exist"), "{err}");
        let err = bad(r#"{ header = "x-stale" }"#, r#"{ header = "bad header" }"#);
        assert!(err.starts_with("w.toml:2:12:") && err.contains("not a header name"), "{err}");
        let err = bad(r#"{ header = "x-stale" }"#, r#""x-stale""#);
        assert!(err.starts_with("w.toml:2:12:") && err.contains("header = "), "{err}");
        let err = Workload::parse(&STORE.replace(r#""/token""#, r#""token""#), "store.toml").unwrap_err().to_string();
        assert!(err.starts_with("store.toml:18:21:") && err.contains("capture `token`"), "{err}");
    }

    #[test]
    fn draws_are_checked_where_they_are_written() {
        let text = STORE.replace("/items/{{user_id}}", "/items/{{uniform 1 100}}");
        assert!(Workload::parse(&text, "store.toml").is_ok());
        let err = Workload::parse(&STORE.replace("/items/{{user_id}}", "/items/{{uniform 100}}"), "store.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("store.toml:20:8:") && err.contains("two integers"), "{err}");
    }

    #[test]
    fn weights_pick_flows_in_proportion() {
        let mut w = Workload::parse(STORE, "store.toml").unwrap();
        let mut other = w.flows[0].clone();
        other.name = "browse".into();
        other.weight = 1;
        w.flows.push(other);
        let picks: Vec<usize> = (0..w.total_weight()).map(|t| w.flow_for_ticket(t)).collect();
        assert_eq!(picks, vec![0, 0, 0, 1]);
    }
}
