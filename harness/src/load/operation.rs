//! A workload step as an operation of the run's history, Jepsen-style.
//!
//! ```toml
//! [[flow.step]]
//! path = "/SADD/items/{{vu}}-{{iteration}}"
//! op = { f = "add", value = "{{vu}}-{{iteration}}" }
//! [[flow.step]]
//! path = "/SMEMBERS/items"
//! op = { f = "read", result = "/SMEMBERS" }      # the value read, by JSON pointer
//! [[flow.step]]
//! method = "POST"
//! path = "/kv/{{key}}"
//! op = { f = "write", key = "{{key}}", value = "{{iteration}}", fail = [409] }
//! ```
//!
//! How a request ends as an operation ([`classify`]):
//!
//! | answer | outcome |
//! |---|---|
//! | a status listed in `fail` (default: any 4xx) | `fail`: it did not happen |
//! | the step's `expect` held (without one: a 2xx) | `ok`, unless `result` points at nothing |
//! | a 5xx, any other status, an `expect` broken, a timeout or reset | `info`: it may have happened |
//! | the connection was refused | `fail`: it reached nobody |
//!
//! `value` and `key` are templates over the same variables as the request (not draws:
//! a draw would not be the one the request made; capture it in an earlier step).

use std::ops::Range;

use serde_json::Value;

use super::rules::{check_pointer, status_pattern, Located, StatusPattern};
use super::stats::{Check, ErrorKind, Judgement, Outcome};
use super::template::{JsonTemplate, Template};
use crate::checks::op::OpType;

/// What a step records in the history: `op = { f, key?, value?, result?, fail? }`.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSpec {
    /// The operation's function, e.g. `add`, `read`, `write`, `cas`, `enqueue`.
    pub f: String,
    /// The key it acts on (for per-key checkers such as `linearizable`).
    pub key: Option<Template>,
    /// The value it is invoked with.
    pub value: Option<JsonTemplate>,
    /// A JSON pointer into the answer for the value the completion carries (what a
    /// read returned, an id the system generated); `""` is the whole body.
    pub result: Option<String>,
    /// Statuses that say it did not happen (default: every 4xx).
    pub fail: Vec<StatusPattern>,
}

impl OpSpec {
    /// Whether the answer's body is needed.
    pub fn needs_body(&self) -> bool {
        self.result.is_some()
    }
}

/// How one request ended as an operation, and the value its completion carried.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// `ok`, `fail` or `info`.
    pub outcome: OpType,
    /// What `result` pointed at, on an `ok`.
    pub result: Option<Value>,
    /// Why an answer that looked acknowledged is `info` instead, when it is.
    pub unreadable: bool,
}

/// Classifies an answer as the table in the module's documentation says.
pub fn classify(spec: &OpSpec, outcome: Outcome, judgement: Judgement, body: Option<&[u8]>) -> Completion {
    let done = |outcome| Completion { outcome, result: None, unreadable: false };
    let status = match outcome {
        Outcome::Error(ErrorKind::ConnectRefused | ErrorKind::Connect) => return done(OpType::Fail),
        Outcome::Error(_) => return done(OpType::Info),
        Outcome::Status(s) => s,
    };
    let failed =
        if spec.fail.is_empty() { (400..500).contains(&status) } else { spec.fail.iter().any(|p| p.matches(status)) };
    if failed {
        return done(OpType::Fail);
    }
    let acknowledged = match judgement.check {
        Check::Passed => true,
        Check::Failed => false,
        Check::Unchecked => (200..300).contains(&status),
    };
    if !acknowledged {
        return done(OpType::Info);
    }
    let Some(pointer) = &spec.result else { return done(OpType::Ok) };
    let found =
        body.and_then(|b| serde_json::from_slice::<Value>(b).ok()).and_then(|doc| doc.pointer(pointer).cloned());
    match found {
        Some(value) => Completion { outcome: OpType::Ok, result: Some(value), unreadable: false },
        // An acknowledgement we cannot read is not one a checker can use.
        None => Completion { outcome: OpType::Info, result: None, unreadable: true },
    }
}

/// The `op` table as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOp {
    f: toml::Spanned<String>,
    key: Option<toml::Spanned<String>>,
    value: Option<toml::Spanned<Value>>,
    result: Option<toml::Spanned<String>>,
    fail: Option<toml::Spanned<Vec<toml::Value>>>,
}

/// Whether `f` is a usable function name: letters, digits, `_` and `-`.
pub fn valid_f(f: &str) -> bool {
    !f.is_empty() && f.len() <= 64 && f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

impl RawOp {
    /// Where the table's `f` is written.
    pub(crate) fn span(&self) -> Range<usize> {
        self.f.span()
    }

    /// Checks the table; `vars` checks a template's variables where it is written.
    pub(crate) fn check(self, vars: &impl Fn(&Template, Range<usize>) -> Located<()>) -> Located<OpSpec> {
        if !valid_f(self.f.get_ref()) {
            return Err((self.f.span(), "`f` names the operation, like \"add\", \"read\" or \"write\"".into()));
        }
        let no_draws = |span: Range<usize>| {
            (
                span,
                "`op` values cannot draw (the draw would not be the request's): capture it in an earlier step".into(),
            )
        };
        let key = match self.key {
            Some(k) => {
                let t = Template::parse(k.get_ref()).map_err(|e| (k.span(), e.to_string()))?;
                if t.has_draws() {
                    return Err(no_draws(k.span()));
                }
                vars(&t, k.span())?;
                Some(t)
            }
            None => None,
        };
        let value = match self.value {
            Some(v) => {
                let t = JsonTemplate::parse(v.get_ref()).map_err(|e| (v.span(), e.to_string()))?;
                if t.has_draws() {
                    return Err(no_draws(v.span()));
                }
                for name in t.vars() {
                    vars(&Template::parse(&format!("{{{{{name}}}}}")).expect("a checked name"), v.span())?;
                }
                Some(t)
            }
            None => None,
        };
        if let Some(p) = &self.result {
            check_pointer(p.get_ref()).map_err(|m| (p.span(), format!("op.result: {m}")))?;
        }
        let mut fail = Vec::new();
        if let Some(list) = &self.fail {
            for item in list.get_ref() {
                fail.push(status_pattern(item).ok_or_else(|| {
                    (list.span(), format!("op.fail: {item} is not an HTTP status like 409 or a class like \"4xx\""))
                })?);
            }
        }
        Ok(OpSpec { f: self.f.into_inner(), key, value, result: self.result.map(|r| r.into_inner()), fail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(result: Option<&str>, fail: Vec<StatusPattern>) -> OpSpec {
        OpSpec { f: "read".into(), key: None, value: None, result: result.map(str::to_owned), fail }
    }

    const NONE: Judgement = Judgement::NONE;

    #[test]
    fn answers_become_ok_fail_or_info_as_jepsen_says() {
        let s = spec(None, Vec::new());
        assert_eq!(classify(&s, Outcome::Status(200), NONE, None).outcome, OpType::Ok);
        assert_eq!(classify(&s, Outcome::Status(409), NONE, None).outcome, OpType::Fail);
        assert_eq!(classify(&s, Outcome::Status(503), NONE, None).outcome, OpType::Info);
        assert_eq!(classify(&s, Outcome::Status(302), NONE, None).outcome, OpType::Info);
        assert_eq!(classify(&s, Outcome::Error(ErrorKind::Timeout), NONE, None).outcome, OpType::Info);
        assert_eq!(classify(&s, Outcome::Error(ErrorKind::Reset), NONE, None).outcome, OpType::Info);
        assert_eq!(classify(&s, Outcome::Error(ErrorKind::ConnectRefused), NONE, None).outcome, OpType::Fail);
    }

    #[test]
    fn a_broken_expect_is_indeterminate_and_a_kept_one_is_ok_whatever_the_status() {
        let s = spec(None, Vec::new());
        let failed = Judgement { degraded: false, check: Check::Failed };
        let passed = Judgement { degraded: false, check: Check::Passed };
        assert_eq!(classify(&s, Outcome::Status(200), failed, None).outcome, OpType::Info);
        assert_eq!(classify(&s, Outcome::Status(302), passed, None).outcome, OpType::Ok);
    }

    #[test]
    fn the_fail_list_replaces_the_4xx_default() {
        let s = spec(None, vec![StatusPattern::Code(409)]);
        assert_eq!(classify(&s, Outcome::Status(409), NONE, None).outcome, OpType::Fail);
        assert_eq!(classify(&s, Outcome::Status(404), NONE, None).outcome, OpType::Info);
    }

    #[test]
    fn the_result_is_taken_by_pointer_and_an_unreadable_one_is_info() {
        let s = spec(Some("/SMEMBERS"), Vec::new());
        let c = classify(&s, Outcome::Status(200), NONE, Some(br#"{"SMEMBERS":["a","b"]}"#));
        assert_eq!((c.outcome, c.result), (OpType::Ok, Some(serde_json::json!(["a", "b"]))));
        let c = classify(&s, Outcome::Status(200), NONE, Some(b"<html>"));
        assert_eq!((c.outcome, c.unreadable), (OpType::Info, true));
        let c = classify(&s, Outcome::Status(200), NONE, Some(br#"{"other":1}"#));
        assert_eq!((c.outcome, c.unreadable), (OpType::Info, true));
    }
}
