//! Invariant checkers over the operation history and the services' end state,
//! Jepsen-style: nothing acknowledged is lost, nothing unasked for appears, every order
//! ends, money and stock are conserved.
//!
//! Every checker is a pure function of typed inputs ([`history::Operation`]s and
//! [`state::ShopState`]) returning a [`CheckResult`]. An invariant is a list of named
//! clauses ([`Clause`]), each catching one anomaly, in the manner of Elle's named
//! anomalies; each clause reports how many things it looked at and its first and worst
//! counterexample. The verdict is Jepsen's three-valued one ([`Validity`]): `valid`,
//! `invalid`, or `unknown` when the checker could not tell (the state could not be read,
//! the history overflowed, there was nothing to check). `unknown` is never a pass.
//!
//! [`state`] also fetches the state from the services' admin endpoints.

pub mod events;
pub mod external;
pub mod generic;
pub mod history;
pub mod money;
pub mod op;
pub mod orders;
pub mod state;
pub mod stock;

use std::fmt;

use serde::Serialize;

/// The invariants Gauntlet knows how to check.
pub const INVARIANTS: [&str; 5] =
    ["no_lost_orders", "orders_terminate", "money_conserved", "stock_conserved", "events_delivered"];

/// Every clause of every invariant, in report order.
pub fn all_clauses() -> impl Iterator<Item = &'static Clause> {
    orders::NO_LOST_ORDERS
        .iter()
        .chain(orders::ORDERS_TERMINATE)
        .chain(stock::STOCK_CONSERVED)
        .chain(money::MONEY_CONSERVED)
        .chain(events::EVENTS_DELIVERED)
}

/// One clause of an invariant: the anomaly it catches, by name.
#[derive(Debug, PartialEq, Eq)]
pub struct Clause {
    /// The invariant it belongs to, one of [`INVARIANTS`].
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
    /// The invariant, one of [`INVARIANTS`].
    pub invariant: String,
    /// Valid, invalid or unknown.
    pub validity: Validity,
    /// How many things were looked at (orders, products, keys...).
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

    /// An invariant that could not be judged at all, e.g. because the state could not be read.
    pub fn unknown(invariant: &str, because: impl Into<String>) -> Self {
        let because = because.into();
        let clauses = all_clauses()
            .filter(|c| c.invariant == invariant)
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

fn worst_of<'a>(cs: impl Iterator<Item = &'a Counterexample>) -> Option<Counterexample> {
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

    /// Counts the subjects (orders, products...) the summary names.
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
pub(crate) mod fixture;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_names_are_unique_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for c in all_clauses() {
            assert!(seen.insert((c.invariant, c.name)), "{} appears twice", c.name);
            assert!(INVARIANTS.contains(&c.invariant), "{}", c.invariant);
            assert!(c.rule.len() > 20, "{} needs a rule a reader understands", c.name);
        }
        for inv in INVARIANTS {
            assert!(all_clauses().any(|c| c.invariant == inv), "{inv} has no clause");
        }
    }

    #[test]
    fn nothing_checked_is_unknown_and_unknown_is_not_valid() {
        let r = Checking::new(orders::ORDERS_TERMINATE, "orders").finish();
        assert_eq!(r.validity, Validity::Unknown);
        assert!(!r.valid());
        assert!(r.to_string().starts_with("UNKNOWN"), "{r}");
        let r = CheckResult::unknown("money_conserved", "payments answered 503");
        assert!(!r.valid());
        assert_eq!(r.clauses.len(), money::MONEY_CONSERVED.len());
    }

    fn check_all(f: &fixture::Fixture) -> Vec<CheckResult> {
        let d = std::time::Duration::ZERO;
        vec![
            orders::no_lost_orders(&f.history, &f.state, true),
            orders::orders_terminate(&f.state, d, d),
            stock::stock_conserved(&f.state, true),
            money::money_conserved(&f.state),
            events::events_delivered(&f.state),
        ]
    }

    #[test]
    fn the_consistent_fixture_passes_every_invariant() {
        for r in check_all(&fixture::consistent()) {
            assert_eq!(r.validity, Validity::Valid, "{r}");
        }
    }

    /// The mutation tests: each clause has a state that breaks it, and that state
    /// breaks nothing else, across all four invariants.
    #[test]
    fn every_clause_fails_on_its_own_mutation_and_nothing_else_does() {
        let mutations = fixture::mutations();
        for clause in all_clauses() {
            assert!(
                mutations.iter().any(|(breaks, _)| breaks[0] == clause.name),
                "clause {} has no mutation test",
                clause.name
            );
        }
        for (breaks, f) in &mutations {
            let results = check_all(f);
            let mut broken: Vec<&str> = results.iter().flat_map(|r| r.broken_clauses()).collect();
            broken.sort_unstable();
            let mut expected = breaks.to_vec();
            expected.sort_unstable();
            let shown: Vec<String> = results.iter().map(ToString::to_string).collect();
            assert_eq!(broken, expected, "mutation for {}:\n{}", breaks[0], shown.join("\n"));
            let r = results.iter().find(|r| r.clause(breaks[0]).is_some()).expect("its invariant");
            assert_eq!(r.validity, Validity::Invalid);
            let cx = r.clause(breaks[0]).and_then(|c| c.first.as_ref()).expect("a counterexample");
            assert_eq!(cx.clause, breaks[0]);
        }
    }

    #[test]
    fn a_counterexample_outweighs_an_unknown() {
        let mut c = Checking::new(orders::ORDERS_TERMINATE, "orders");
        c.cannot_tell("the history overflowed");
        c.judge(&orders::ORDERS_TERMINATE[0], Some(("order 1".into(), "still PENDING".into(), 1)));
        assert_eq!(c.finish().validity, Validity::Invalid);
    }
}
