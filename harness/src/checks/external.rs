//! The protocol of external checkers: a program the scenario names
//! (`[[invariant]] command = ["python3", "check.py"]`) reads the run's history and
//! final reads (JSON Lines, [`super::op::HistoryLine`]) and writes a verdict file
//! ([`VerdictFile`], `gauntlet schema verdict`). This module turns what it wrote into a
//! [`CheckResult`]; running it is the scenario's business. Whatever goes wrong (a crash,
//! a timeout, a file that is not a verdict) makes the verdict `unknown`, never a pass.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CheckResult, ClauseResult, Counterexample, Validity};

/// The most clauses and counterexamples read from one verdict file.
pub const MAX_CLAUSES: usize = 256;

/// What an external checker writes.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Gauntlet checker verdict (written by an external checker)")]
pub struct VerdictFile {
    /// `"valid"`, `"invalid"` or `"unknown"` (Jepsen's `:valid?`: `true`, `false`,
    /// `"unknown"` are accepted too).
    pub valid: Value,
    /// One line for people.
    #[serde(default)]
    pub summary: Option<String>,
    /// Why it could not tell, when `valid` is unknown.
    #[serde(default)]
    pub unknown_because: Option<String>,
    /// Each clause, named after the anomaly it catches.
    #[serde(default)]
    pub clauses: Vec<VerdictClause>,
    /// Anything else worth showing beside the verdict.
    #[serde(default)]
    pub notes: Vec<String>,
    /// How many things it looked at in all (default: the sum of the clauses').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<usize>,
}

/// One clause of an external verdict.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictClause {
    /// The anomaly's name, e.g. `lost`.
    pub name: String,
    /// What must hold, in a sentence.
    #[serde(default)]
    pub rule: String,
    /// How many things it looked at.
    #[serde(default)]
    pub checked: usize,
    /// The things that broke it: all of them, or the first and the worst of more.
    #[serde(default)]
    pub counterexamples: Vec<VerdictCounterexample>,
    /// How many things broke it, when more than `counterexamples` lists (default:
    /// their count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<usize>,
}

/// One counterexample of an external clause.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictCounterexample {
    /// What it is about, e.g. `element 3-17`.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
    /// How bad it is; the worst is the largest (default 1).
    #[serde(default = "one")]
    pub magnitude: i64,
}

fn one() -> i64 {
    1
}

impl VerdictFile {
    /// The verdict file of a checker written in Rust over this crate's [`CheckResult`]:
    /// each clause with its first and worst counterexample and its count.
    pub fn from_result(r: &CheckResult) -> Self {
        let cx = |c: &Counterexample| VerdictCounterexample {
            subject: c.subject.clone(),
            detail: c.detail.clone(),
            magnitude: c.magnitude,
        };
        Self {
            valid: Value::String(r.validity.as_str().to_ascii_lowercase()),
            summary: Some(r.summary.clone()),
            unknown_because: r.unknown_because.clone(),
            clauses: r
                .clauses
                .iter()
                .map(|c| {
                    let mut counterexamples: Vec<VerdictCounterexample> = c.first.iter().map(cx).collect();
                    if let Some(w) = c.worst.as_ref().filter(|w| Some(*w) != c.first.as_ref()) {
                        counterexamples.push(cx(w));
                    }
                    VerdictClause {
                        name: c.name.clone(),
                        rule: c.rule.clone(),
                        checked: c.checked,
                        counterexamples,
                        violations: Some(c.violations),
                    }
                })
                .collect(),
            notes: r.notes.clone(),
            checked: Some(r.checked),
        }
    }
}

/// The JSON Schema of a verdict file (`gauntlet schema verdict`).
pub fn verdict_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(VerdictFile)).unwrap_or_default()
}

/// An external checker's verdict for invariant `name`, from the bytes it wrote.
pub fn from_bytes(name: &str, bytes: &[u8]) -> CheckResult {
    let file: VerdictFile = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => {
            return CheckResult::unknown(
                name,
                format!("its verdict is not a verdict file ({e}); see `gauntlet schema verdict`"),
            )
        }
    };
    let validity = match &file.valid {
        Value::Bool(true) => Validity::Valid,
        Value::Bool(false) => Validity::Invalid,
        Value::String(s) if s.eq_ignore_ascii_case("valid") => Validity::Valid,
        Value::String(s) if s.eq_ignore_ascii_case("invalid") => Validity::Invalid,
        Value::String(s) if s.eq_ignore_ascii_case("unknown") => Validity::Unknown,
        other => {
            return CheckResult::unknown(
                name,
                format!("its `valid` is {other}: write \"valid\", \"invalid\" or \"unknown\""),
            )
        }
    };
    let clauses: Vec<ClauseResult> = file
        .clauses
        .iter()
        .take(MAX_CLAUSES)
        .map(|c| {
            let cxs: Vec<Counterexample> = c
                .counterexamples
                .iter()
                .take(MAX_CLAUSES)
                .map(|x| Counterexample {
                    clause: c.name.clone(),
                    subject: x.subject.clone(),
                    detail: x.detail.clone(),
                    magnitude: x.magnitude,
                })
                .collect();
            ClauseResult {
                name: c.name.clone(),
                rule: c.rule.clone(),
                checked: c.checked,
                violations: c.violations.unwrap_or(0).max(c.counterexamples.len()),
                first: cxs.first().cloned(),
                worst: super::worst_of(cxs.iter()),
            }
        })
        .collect();
    let violations: usize = clauses.iter().map(|c| c.violations).sum();
    let first = clauses.iter().find_map(|c| c.first.clone());
    let worst = super::worst_of(clauses.iter().filter_map(|c| c.worst.as_ref()));
    // A checker that says valid while naming a counterexample contradicts itself.
    let (validity, unknown_because) = match (validity, violations) {
        (Validity::Valid, n) if n > 0 => {
            (Validity::Unknown, Some(format!("it said valid but listed {n} counterexample(s)")))
        }
        (Validity::Unknown, _) => {
            (Validity::Unknown, Some(file.unknown_because.clone().unwrap_or_else(|| "it could not tell".into())))
        }
        (Validity::Invalid, _) => (Validity::Invalid, file.unknown_because.clone()),
        (v, _) => (v, None),
    };
    let summary = file.summary.clone().unwrap_or_else(|| match (&first, &unknown_because) {
        (Some(f), _) => format!("{violations} violation(s); first: {f}"),
        (None, Some(why)) => format!("could not be checked: {why}"),
        (None, None) => "no clause broken".into(),
    });
    CheckResult {
        invariant: name.to_string(),
        validity,
        checked: file.checked.unwrap_or_else(|| clauses.iter().map(|c| c.checked).sum()),
        violations,
        first,
        worst,
        unknown_because,
        clauses,
        notes: file.notes,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_file_becomes_a_check_result() {
        let r = from_bytes(
            "acks",
            br#"{"valid": false, "clauses": [{"name": "lost", "rule": "acknowledged adds are read", "checked": 10,
                "counterexamples": [{"subject": "element 7", "detail": "acknowledged at 1.2 s, not read", "magnitude": 1}]}]}"#,
        );
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.broken_clauses(), ["lost"]);
        assert_eq!(r.first.as_ref().unwrap().subject, "element 7");
        let r = from_bytes("acks", br#"{"valid": "valid", "clauses": [{"name": "lost", "checked": 3}]}"#);
        assert_eq!(r.validity, Validity::Valid);
    }

    #[test]
    fn a_check_result_survives_its_verdict_file() {
        const CLAUSES: &[super::super::Clause] = &[
            super::super::Clause { invariant: "acks", name: "lost", rule: "acknowledged adds are read back" },
            super::super::Clause { invariant: "acks", name: "phantom", rule: "nothing is read that was never added" },
        ];
        let mut c = super::super::Checking::new(CLAUSES, "adds");
        c.subjects(3);
        for (i, m) in [1, 5, 2].into_iter().enumerate() {
            c.judge(&CLAUSES[0], Some((format!("element {i}"), "not read".into(), m)));
        }
        c.judge(&CLAUSES[1], None);
        c.note("1 info add was read");
        let r = c.finish();
        let bytes = serde_json::to_vec(&VerdictFile::from_result(&r)).unwrap();
        assert_eq!(from_bytes("acks", &bytes), r);
    }

    #[test]
    fn a_bad_verdict_is_unknown_and_says_why() {
        for (bytes, why) in [
            (&b"not json"[..], "not a verdict file"),
            (br#"{"valid": 3}"#, "write \"valid\""),
            (
                br#"{"valid": true, "clauses": [{"name": "x", "counterexamples": [{"subject": "a", "detail": "b"}]}]}"#,
                "said valid",
            ),
            (br#"{"valid": "unknown", "unknown_because": "no final read"}"#, "no final read"),
        ] {
            let r = from_bytes("ext", bytes);
            assert_eq!(r.validity, Validity::Unknown, "{r}");
            assert!(r.unknown_because.as_deref().unwrap_or_default().contains(why), "{r}");
        }
        assert!(verdict_schema().to_string().contains("counterexamples"));
    }
}
