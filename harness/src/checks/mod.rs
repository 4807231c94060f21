//! Invariant checkers over the operation history and the final reads, Jepsen-style:
//! nothing acknowledged is lost, nothing unasked for appears, nothing is read that
//! no order of the operations explains.
//!
//! Every checker is a pure function of the history ([`op::OpHistory`]) returning a
//! [`CheckResult`]: the library in [`generic`], or a program of the user's own
//! ([`external`]; the sample shop's are one, in `services/invariants`). An invariant is a list of named
//! clauses ([`Clause`]), each catching one anomaly, in the manner of Elle's named
//! anomalies; each clause reports how many things it looked at and its first and worst
//! counterexample. The verdict is Jepsen's three-valued one ([`Validity`]): `valid`,
//! `invalid`, or `unknown` when the checker could not tell (the state could not be read,
//! the history overflowed, there was nothing to check). `unknown` is never a pass.

pub mod external;
pub mod generic;
pub mod history;
pub mod op;

use std::fmt;

use serde::Serialize;

/// One clause of an invariant: the anomaly it catches, by name.
#[derive(Debug, PartialEq, Eq)]
pub struct Clause {
    /// The invariant (checker) it belongs to.
    pub invariant: &'static str,
    /// The anomaly's name, e.g. `duplicate-order`.
    pub name: &'static str,
    /// What must hold, in one sentence (README and reports).
    pub rule: &'static str,
}

/// Jepsen's three-valued verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// Every clause held over something checked.
    Valid,
    /// A clause found a counterexample.
    Invalid,
    /// The checker could not tell; never a pass.
    Unknown,
}

impl Validity {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::Invalid => "INVALID",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// One thing that breaks an invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counterexample {
    /// The clause it breaks, e.g. `duplicate-order`.
    pub clause: String,
    /// What it is about, e.g. `order 17` or `product 3`.
    pub subject: String,
    /// What is wrong, with the numbers.
    pub detail: String,
    /// How bad it is (the size of the discrepancy); the worst is the largest.
    pub magnitude: i64,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.clause, self.subject, self.detail)
    }
}

/// The judgement of one clause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClauseResult {
    /// The anomaly's name.
    pub name: String,
    /// What must hold.
    pub rule: String,
    /// How many things it looked at.
    pub checked: usize,
    /// How many broke it.
    pub violations: usize,
    /// The first counterexample, in a stable order.
    pub first: Option<Counterexample>,
    /// The counterexample of the largest magnitude.
    pub worst: Option<Counterexample>,
}

/// The judgement of one invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The invariant's name.
    pub invariant: String,
    /// Valid, invalid or unknown.
    pub validity: Validity,
    /// How many things were looked at (elements, accounts, keys...).
    pub checked: usize,
    /// How many broke it, over all clauses.
    pub violations: usize,
    /// The first counterexample found, in clause order.
    pub first: Option<Counterexample>,
    /// The counterexample of the largest magnitude.
    pub worst: Option<Counterexample>,
    /// Why the verdict is unknown, when it is.
    pub unknown_because: Option<String>,
    /// Each clause's judgement.
    pub clauses: Vec<ClauseResult>,
    /// What else the checker found out (e.g. how indeterminate operations resolved).
    pub notes: Vec<String>,
    /// One line for people.
    pub summary: String,
}

impl CheckResult {
    /// Whether it held: only `valid` is.
    pub fn valid(&self) -> bool {
        self.validity == Validity::Valid
    }

    /// An invariant that could not be judged at all, e.g. because a final read did not
    /// answer; a checker of the library lists its clauses, unjudged.
    pub fn unknown(invariant: &str, because: impl Into<String>) -> Self {
        Self::unknown_of(invariant, generic::all_clauses().filter(|c| c.invariant == invariant), because)
    }

    /// An invariant of `clauses` that could not be judged at all.
    pub fn unknown_of<'a>(
        invariant: &str,
        clauses: impl Iterator<Item = &'a Clause>,
        because: impl Into<String>,
    ) -> Self {
        let because = because.into();
        let clauses = clauses
            .map(|c| ClauseResult {
                name: c.name.into(),
                rule: c.rule.into(),
                checked: 0,
                violations: 0,
                first: None,
                worst: None,
            })
            .collect();
        Self {
            invariant: invariant.to_string(),
            validity: Validity::Unknown,
            checked: 0,
            violations: 0,
            first: None,
            worst: None,
            summary: format!("could not be checked: {because}"),
            unknown_because: Some(because),
            clauses,
            notes: Vec::new(),
        }
    }

    /// The clause named `name`, if this invariant has it.
    pub fn clause(&self, name: &str) -> Option<&ClauseResult> {
        self.clauses.iter().find(|c| c.name == name)
    }

    /// The names of the clauses that found a counterexample.
    pub fn broken_clauses(&self) -> Vec<&str> {
        self.clauses.iter().filter(|c| c.violations > 0).map(|c| c.name.as_str()).collect()
    }
}

pub(crate) fn worst_of<'a>(cs: impl Iterator<Item = &'a Counterexample>) -> Option<Counterexample> {
    // The earliest of the largest, so the report is stable.
    cs.fold(None::<&Counterexample>, |w, c| match w {
        Some(w) if w.magnitude.unsigned_abs() >= c.magnitude.unsigned_abs() => Some(w),
        _ => Some(c),
    })
    .cloned()
}

/// A checker at work: counts what each clause looks at and keeps its counterexamples.
pub struct Checking {
    invariant: &'static str,
    what: &'static str,
    clauses: Vec<(&'static Clause, usize, Vec<Counterexample>)>,
    subjects: usize,
    unknown_because: Option<String>,
    notes: Vec<String>,
}

impl Checking {
    /// Starts checking `clauses` (all of one invariant); `what` names what `subjects` counts.
    pub fn new(clauses: &'static [Clause], what: &'static str) -> Self {
        let invariant = clauses.first().map_or("", |c| c.invariant);
        debug_assert!(clauses.iter().all(|c| c.invariant == invariant), "one invariant at a time");
        Self {
            invariant,
            what,
            clauses: clauses.iter().map(|c| (c, 0, Vec::new())).collect(),
            subjects: 0,
            unknown_because: None,
            notes: Vec::new(),
        }
    }

    fn slot(&mut self, clause: &'static Clause) -> &mut (&'static Clause, usize, Vec<Counterexample>) {
        self.clauses.iter_mut().find(|(c, _, _)| c.name == clause.name).expect("a clause of this invariant")
    }

    /// Records that `clause` looked at one more thing.
    pub fn looked(&mut self, clause: &'static Clause) {
        self.slot(clause).1 += 1;
    }

    /// Records that `clause` looked at one thing and, when `broken` is some, that it broke it.
    pub fn judge(&mut self, clause: &'static Clause, broken: Option<(String, String, i64)>) {
        let slot = self.slot(clause);
        slot.1 += 1;
        if let Some((subject, detail, magnitude)) = broken {
            slot.2.push(Counterexample { clause: clause.name.to_string(), subject, detail, magnitude });
        }
    }

    /// Counts the subjects (elements, accounts...) the summary names.
    pub fn subjects(&mut self, n: usize) {
        self.subjects = n;
    }

    /// Adds a line the report shows beside the verdict.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Marks the verdict unknown unless a clause is broken (a counterexample still stands).
    pub fn cannot_tell(&mut self, because: impl Into<String>) {
        self.unknown_because.get_or_insert(because.into());
    }

    /// The verdict.
    pub fn finish(self) -> CheckResult {
        let all: Vec<&Counterexample> = self.clauses.iter().flat_map(|(_, _, v)| v).collect();
        let violations = all.len();
        let first = all.first().map(|c| (*c).clone());
        let worst = worst_of(all.iter().copied());
        let looked_at: usize = self.clauses.iter().map(|(_, n, _)| n).sum();
        let mut unknown_because = self.unknown_because;
        if looked_at == 0 && unknown_because.is_none() {
            unknown_because = Some(format!("there was nothing to check (no {})", self.what));
        }
        let validity = match (violations, &unknown_because) {
            (0, None) => Validity::Valid,
            (0, Some(_)) => Validity::Unknown,
            _ => Validity::Invalid,
        };
        let checked = self.subjects;
        let what = self.what;
        let summary = match (&first, &unknown_because) {
            (Some(f), _) => format!("{violations} violation(s) over {checked} {what}; first: {f}"),
            (None, Some(why)) => format!("could not be checked: {why}"),
            (None, None) => format!("{checked} {what} checked, none broke it"),
        };
        let clauses = self
            .clauses
            .into_iter()
            .map(|(c, n, v)| ClauseResult {
                name: c.name.into(),
                rule: c.rule.into(),
                checked: n,
                violations: v.len(),
                first: v.first().cloned(),
                worst: worst_of(v.iter()),
            })
            .collect();
        CheckResult {
            invariant: self.invariant.to_string(),
            validity,
            checked,
            violations,
            first,
            worst,
            unknown_because,
            clauses,
            notes: self.notes,
            summary,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:7} {}: {}", self.validity.as_str(), self.invariant, self.summary)?;
        if let (Some(w), Validity::Invalid) = (&self.worst, self.validity) {
            if Some(w) != self.first.as_ref() {
                write!(f, "; worst: {w}")?;
            }
            write!(f, "; broken clauses: {}", self.broken_clauses().join(", "))?;
        }
        if !self.notes.is_empty() {
            write!(f, " ({})", self.notes.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUSES: &[Clause] =
        &[Clause { invariant: "all_done", name: "not-done", rule: "every task is done once the faults healed" }];

    #[test]
    fn nothing_checked_is_unknown_and_unknown_is_not_valid() {
        let r = Checking::new(CLAUSES, "tasks").finish();
        assert_eq!(r.validity, Validity::Unknown);
        assert!(!r.valid());
        assert!(r.to_string().starts_with("UNKNOWN"), "{r}");
        let r = CheckResult::unknown_of("all_done", CLAUSES.iter(), "the store answered 503");
        assert!(!r.valid());
        assert_eq!(r.clauses.len(), CLAUSES.len());
        let r = CheckResult::unknown("set", "no final read");
        assert!(r.clause("lost").is_some(), "a library checker lists its clauses: {r:?}");
    }

    #[test]
    fn a_counterexample_outweighs_an_unknown() {
        let mut c = Checking::new(CLAUSES, "tasks");
        c.cannot_tell("the history overflowed");
        c.judge(&CLAUSES[0], Some(("task 1".into(), "still running".into(), 1)));
        assert_eq!(c.finish().validity, Validity::Invalid);
    }
}
