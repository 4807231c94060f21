//! Answer rules: what makes an answer *degraded*, and what a step *expects* of its
//! answer. Both come from the workload file; the harness knows nothing of the system.
//!
//! ```toml
//! degraded = { header = "x-gauntlet-stale" }     # workload-wide: every step
//!
//! [[flow.step]]
//! path = "/items/{{id}}"
//! degraded = [{ header = "x-cache", value = "STALE" }]   # this step too
//! expect = { status = [200, "3xx"], json = { "/status" = "PAID" }, exists = ["/id"] }
//! ```
//!
//! A `degraded` rule matches an answer that carries the header (with `value`: that
//! exact value). An `expect` makes every request of the step one *check*: it passes
//! when an answer came in time, its status is one of `status` (any, when not given),
//! each `json` pointer holds the given value and each `exists` pointer is present. A
//! request without an answer in time fails its check: it did not get the right answer.
//! Pointers are RFC 6901 JSON pointers (`/items/0/id`).

use std::collections::BTreeMap;
use std::ops::Range;

use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::stats::{Check, Judgement, Outcome};

/// A parse error: the span of the offending value and what is wrong.
pub(crate) type Located<T> = Result<T, (Range<usize>, String)>;

/// An answer carrying this header (with this value, if given) is degraded.
#[derive(Clone, Debug, PartialEq)]
pub struct DegradedRule {
    /// The header to look for.
    pub header: HeaderName,
    /// The value it must have; any value when `None`.
    pub value: Option<String>,
}

impl DegradedRule {
    fn matches(&self, headers: &[(HeaderName, HeaderValue)]) -> bool {
        headers.iter().any(|(name, value)| {
            *name == self.header && self.value.as_ref().is_none_or(|v| value.as_bytes() == v.as_bytes())
        })
    }
}

/// Statuses an `expect` accepts: one code, or a class such as `2xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusPattern {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred: `2` for `2xx`.
    Class(u16),
}

impl StatusPattern {
    /// Whether `status` is one of its statuses.
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Code(c) => c == status,
            Self::Class(c) => status / 100 == c,
        }
    }
}

/// What a step expects of its answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// Accepted statuses; any status when empty.
    pub status: Vec<StatusPattern>,
    /// Pointers into the JSON body and the values they must hold.
    pub json: Vec<(String, Value)>,
    /// Pointers that must be present in the JSON body.
    pub exists: Vec<String>,
}

impl Expect {
    fn needs_body(&self) -> bool {
        !self.json.is_empty() || !self.exists.is_empty()
    }

    fn holds(&self, outcome: Outcome, body: Option<&[u8]>) -> bool {
        let Outcome::Status(status) = outcome else { return false };
        if !self.status.is_empty() && !self.status.iter().any(|p| p.matches(status)) {
            return false;
        }
        if !self.needs_body() {
            return true;
        }
        let Some(doc) = body.and_then(|b| serde_json::from_slice::<Value>(b).ok()) else { return false };
        self.json.iter().all(|(pointer, want)| doc.pointer(pointer).is_some_and(|got| same_json(got, want)))
            && self.exists.iter().all(|pointer| doc.pointer(pointer).is_some())
    }
}

/// JSON equality where numbers compare by value, so `1` in the file matches `1.0`.
fn same_json(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => got == want,
    }
}

/// The rules one step's answers are judged by.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerRules {
    degraded: Vec<DegradedRule>,
    expect: Option<Expect>,
    /// The headers the degraded rules look at, each once: what the client keeps.
    headers: Vec<HeaderName>,
}

impl AnswerRules {
    /// Rules from the degraded markers (the workload's, then the step's) and the
    /// step's `expect`.
    pub fn new(degraded: Vec<DegradedRule>, expect: Option<Expect>) -> Self {
        let mut headers: Vec<HeaderName> = Vec::new();
        for rule in &degraded {
            if !headers.contains(&rule.header) {
                headers.push(rule.header.clone());
            }
        }
        Self { degraded, expect, headers }
    }

    /// The degraded rules.
    pub fn degraded(&self) -> &[DegradedRule] {
        &self.degraded
    }

    /// The step's expectation, if it states one.
    pub fn expect(&self) -> Option<&Expect> {
        self.expect.as_ref()
    }

    /// The response headers judging needs.
    pub fn headers(&self) -> &[HeaderName] {
        &self.headers
    }

    /// Whether judging needs the response body.
    pub fn needs_body(&self) -> bool {
        self.expect.as_ref().is_some_and(Expect::needs_body)
    }

    /// Judges one answer from its outcome, the headers kept and the body, if kept.
    pub fn judge(&self, outcome: Outcome, headers: &[(HeaderName, HeaderValue)], body: Option<&[u8]>) -> Judgement {
        let answered = matches!(outcome, Outcome::Status(_));
        let degraded = answered && self.degraded.iter().any(|r| r.matches(headers));
        let check = match &self.expect {
            None => Check::Unchecked,
            Some(e) if e.holds(outcome, body) => Check::Passed,
            Some(_) => Check::Failed,
        };
        Judgement { degraded, check }
    }
}

/// Checks an RFC 6901 JSON pointer: empty (the whole document) or `/`-separated
/// tokens in which `~` only starts `~0` (a `~`) or `~1` (a `/`).
pub fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!("`{pointer}` is not a JSON pointer: it starts with `/`, like `/items/0/id`"));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!("`{pointer}` is not a JSON pointer: `~` is only `~0` (for `~`) or `~1` (for `/`)"));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDegraded {
    header: String,
    value: Option<String>,
}

/// Parses a `degraded` value: one `{ header, value? }` table or a list of them.
pub(crate) fn parse_degraded(raw: &Spanned<toml::Value>) -> Located<Vec<DegradedRule>> {
    let span = raw.span();
    let hint = "`degraded` is { header = \"x-stale\" } (optionally value = \"...\") or a list of those";
    let tables: Vec<&toml::Value> = match raw.get_ref() {
        toml::Value::Array(items) => items.iter().collect(),
        one @ toml::Value::Table(_) => vec![one],
        _ => return Err((span, hint.into())),
    };
    tables
        .into_iter()
        .map(|t| {
            let rule = RawDegraded::deserialize(t.clone()).map_err(|e| (span.clone(), format!("{hint}: {e}")))?;
            let header = HeaderName::from_bytes(rule.header.as_bytes())
                .map_err(|_| (span.clone(), format!("`degraded`: `{}` is not a header name", rule.header)))?;
            if let Some(v) = &rule.value {
                HeaderValue::from_str(v)
                    .map_err(|_| (span.clone(), format!("`degraded`: `{v}` is not a header value")))?;
            }
            Ok(DegradedRule { header, value: rule.value })
        })
        .collect()
}

/// An `expect` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    #[serde(default)]
    status: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    json: BTreeMap<Spanned<String>, Value>,
    #[serde(default)]
    exists: Vec<Spanned<String>>,
}

impl RawExpect {
    /// Checks the table; `span` is the whole `expect` value.
    pub(crate) fn check(self, span: Range<usize>) -> Located<Expect> {
        let mut status = Vec::new();
        if let Some(list) = &self.status {
            if list.get_ref().is_empty() {
                return Err((list.span(), "`status` lists at least one status, like [200, 201] or [\"2xx\"]".into()));
            }
            for item in list.get_ref() {
                status.push(status_pattern(item.get_ref()).ok_or_else(|| {
                    let shown = item.get_ref().to_string();
                    let msg =
                        format!("{shown} is not an HTTP status: write a code 100-599 like 200 or a class like \"2xx\"");
                    (item.span(), msg)
                })?);
            }
        }
        let mut json = Vec::with_capacity(self.json.len());
        for (pointer, value) in self.json {
            check_pointer(pointer.get_ref()).map_err(|m| (pointer.span(), format!("expect.json: {m}")))?;
            json.push((pointer.into_inner(), value));
        }
        let mut exists = Vec::with_capacity(self.exists.len());
        for pointer in self.exists {
            check_pointer(pointer.get_ref()).map_err(|m| (pointer.span(), format!("expect.exists: {m}")))?;
            exists.push(pointer.into_inner());
        }
        if status.is_empty() && json.is_empty() && exists.is_empty() {
            return Err((span, "`expect` is empty: give `status`, `json` or `exists`".into()));
        }
        Ok(Expect { status, json, exists })
    }
}

pub(crate) fn status_pattern(v: &toml::Value) -> Option<StatusPattern> {
    let code = |n: i64| u16::try_from(n).ok().filter(|c| (100..600).contains(c));
    match v {
        toml::Value::Integer(n) => code(*n).map(StatusPattern::Code),
        toml::Value::String(s) => {
            let s = s.trim();
            if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
                return class.parse::<u16>().ok().filter(|c| (1..=5).contains(c)).map(StatusPattern::Class);
            }
            s.parse::<i64>().ok().and_then(code).map(StatusPattern::Code)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(degraded: &str, expect: &str) -> AnswerRules {
        let d: Option<Vec<DegradedRule>> = (!degraded.is_empty()).then(|| {
            #[derive(Deserialize)]
            struct W {
                degraded: Spanned<toml::Value>,
            }
            let w: W = toml::from_str(&format!("degraded = {degraded}")).unwrap();
            parse_degraded(&w.degraded).unwrap()
        });
        let e = (!expect.is_empty()).then(|| {
            #[derive(Deserialize)]
            struct W {
                expect: Spanned<RawExpect>,
            }
            let w: W = toml::from_str(&format!("expect = {expect}")).unwrap();
            let span = w.expect.span();
            w.expect.into_inner().check(span).unwrap()
        });
        AnswerRules::new(d.unwrap_or_default(), e)
    }

    fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
        (HeaderName::from_static(name), HeaderValue::from_static(value))
    }

    #[test]
    fn a_marked_answer_is_degraded_and_only_an_answer_can_be() {
        let r = rules("{ header = \"x-stale\" }", "");
        assert_eq!(r.headers(), [HeaderName::from_static("x-stale")]);
        let ok = Outcome::Status(200);
        assert!(r.judge(ok, &[header("x-stale", "1")], None).degraded);
        assert!(!r.judge(ok, &[], None).degraded);
        assert!(!r.judge(Outcome::Error(crate::load::stats::ErrorKind::Timeout), &[], None).degraded);
        let valued = rules("[{ header = \"x-cache\", value = \"STALE\" }, { header = \"x-stale\" }]", "");
        assert!(!valued.judge(ok, &[header("x-cache", "HIT")], None).degraded);
        assert!(valued.judge(ok, &[header("x-cache", "STALE")], None).degraded);
    }

    #[test]
    fn expectations_judge_status_and_body() {
        let r = rules("", r#"{ status = [200, "3xx"], json = { "/status" = "PAID", "/n" = 2 }, exists = ["/id"] }"#);
        assert!(r.needs_body());
        let body = |v: Value| v.to_string().into_bytes();
        let good = body(json!({"status": "PAID", "n": 2.0, "id": 7}));
        let judge = |status, b: Option<&[u8]>| r.judge(Outcome::Status(status), &[], b).check;
        assert_eq!(judge(200, Some(&good)), Check::Passed);
        assert_eq!(judge(302, Some(&good)), Check::Passed);
        assert_eq!(judge(201, Some(&good)), Check::Failed);
        assert_eq!(judge(200, Some(&body(json!({"status": "CANCELLED", "n": 2, "id": 7})))), Check::Failed);
        assert_eq!(judge(200, Some(&body(json!({"status": "PAID", "n": 2})))), Check::Failed);
        assert_eq!(judge(200, Some(b"not json")), Check::Failed);
        assert_eq!(judge(200, None), Check::Failed);
        let timeout = Outcome::Error(crate::load::stats::ErrorKind::Timeout);
        assert_eq!(r.judge(timeout, &[], None).check, Check::Failed);
        assert_eq!(rules("", "").judge(Outcome::Status(500), &[], None), Judgement::NONE);
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        assert!(check_pointer("").is_ok());
        assert!(check_pointer("/a~0b/c~1d/0").is_ok());
        assert!(check_pointer("status").unwrap_err().contains("starts with `/`"));
        assert!(check_pointer("/a~2").unwrap_err().contains("`~0`"));
        assert!(check_pointer("/a~").is_err());
    }

    #[test]
    fn statuses_are_codes_or_classes() {
        let t = |s: &str| status_pattern(&toml::from_str::<toml::Table>(&format!("v = {s}")).unwrap()["v"]);
        assert_eq!(t("200"), Some(StatusPattern::Code(200)));
        assert_eq!(t("\"2xx\""), Some(StatusPattern::Class(2)));
        assert_eq!(t("\"404\""), Some(StatusPattern::Code(404)));
        assert_eq!(t("99"), None);
        assert_eq!(t("\"6xx\""), None);
        assert_eq!(t("\"ok\""), None);
        assert_eq!(t("2.5"), None);
    }
}
