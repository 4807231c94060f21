//! Invariant checkers over the operation history and the services' end state,
//! Jepsen-style: nothing acknowledged is lost, every order ends, money and stock are
//! conserved.
//!
//! Every checker is a pure function of typed inputs ([`history::Operation`]s and
//! [`state::ShopState`]) returning a [`CheckResult`]: valid or not, how many things were
//! checked, and the first and the worst counterexample, as Jepsen's bank checker does.
//! [`state`] also fetches the state from the services' admin endpoints.

pub mod history;
pub mod money;
pub mod orders;
pub mod state;
pub mod stock;

use std::fmt;

use serde::Serialize;

/// The invariants Gauntlet knows how to check.
pub const INVARIANTS: [&str; 4] = ["no_lost_orders", "orders_terminate", "money_conserved", "stock_conserved"];

/// One thing that breaks an invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Counterexample {
    /// What it is about, e.g. `order 17` or `product 3`.
    pub subject: String,
    /// What is wrong, with the numbers.
    pub detail: String,
    /// How bad it is (the size of the discrepancy); the worst is the largest.
    pub magnitude: i64,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)
    }
}

/// The judgement of one invariant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The invariant, one of [`INVARIANTS`].
    pub invariant: String,
    /// Whether it held.
    pub valid: bool,
    /// How many things were looked at (orders, products, keys...).
    pub checked: usize,
    /// How many broke it.
    pub violations: usize,
    /// The first counterexample found, in a stable order.
    pub first: Option<Counterexample>,
    /// The counterexample of the largest magnitude.
    pub worst: Option<Counterexample>,
    /// One line for people.
    pub summary: String,
}

impl CheckResult {
    /// A result from every counterexample found while checking `checked` things.
    pub fn from_violations(invariant: &str, checked: usize, what: &str, violations: Vec<Counterexample>) -> Self {
        let first = violations.first().cloned();
        // The earliest of the largest, so the report is stable.
        let worst = violations
            .iter()
            .fold(None::<&Counterexample>, |w, c| match w {
                Some(w) if w.magnitude.unsigned_abs() >= c.magnitude.unsigned_abs() => Some(w),
                _ => Some(c),
            })
            .cloned();
        let summary = match &first {
            None => format!("{checked} {what} checked, none broke it"),
            Some(f) => format!("{} of {checked} {what} broke it; first: {f}", violations.len()),
        };
        Self {
            invariant: invariant.to_string(),
            valid: violations.is_empty(),
            checked,
            violations: violations.len(),
            first,
            worst,
            summary,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.valid { "VALID" } else { "INVALID" };
        write!(f, "{mark:7} {}: {}", self.invariant, self.summary)?;
        if let (Some(w), false) = (&self.worst, self.valid) {
            if Some(w) != self.first.as_ref() {
                write!(f, "; worst: {w}")?;
            }
        }
        Ok(())
    }
}
