//! The gates of a report and its verdict: SLOs, the abort condition, invariants and
//! contracts. The builder methods add gate results and judge the report again, so the
//! verdict always matches what the report holds.

use super::format::{fmt_slo_value, fmt_window};
use super::model::{ContractResult, FaultRecord, InvariantResult, Report, SloStatus, Verdict};

impl Report {
    /// Adds a fault of the timeline and judges the report again.
    pub fn with_fault(mut self, fault: FaultRecord) -> Self {
        self.faults.push(fault);
        self.judge();
        self
    }

    /// Adds an invariant result and judges the report again.
    pub fn with_invariant(mut self, invariant: InvariantResult) -> Self {
        self.invariants.push(invariant);
        self.judge();
        self
    }

    /// Adds a contract result and judges the report again.
    pub fn with_contract(mut self, contract: ContractResult) -> Self {
        self.contracts.push(contract);
        self.judge();
        self
    }

    /// Sets the verdict from the gates the report holds.
    pub fn judge(&mut self) {
        let reasons = self.failure_reasons();
        self.verdict = if reasons.is_empty() { Verdict::Passed } else { Verdict::Failed { reasons } };
    }

    /// One line per failed gate, in report order.
    pub fn failure_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(why) = &self.run.aborted {
            reasons.push(format!("the run was aborted: {why}"));
        }
        if let Some(why) = &self.run.steady_state_after {
            reasons.push(format!("the steady state did not hold again after recovery: {why}"));
        }
        for s in &self.slos {
            let at = format!("SLO `{}` ({}, {})", s.name, s.scope, s.window);
            match s.status {
                SloStatus::Passed => {}
                SloStatus::Failed => reasons.push(format!("{at} failed: observed {}", fmt_slo_value(s))),
                SloStatus::NoData => reasons.push(format!("{at} had no data to be judged on")),
            }
        }
        for f in &self.faults {
            if let Some(e) = &f.error {
                reasons.push(format!("fault `{}` ({}) did not happen as planned: {e}", f.name, f.target));
            }
            if f.did_not_happen() {
                let what = f.effect.as_deref().unwrap_or("nothing");
                reasons.push(format!(
                    "the experiment did not happen: fault `{}` ({}) touched nothing ({what})",
                    f.name, f.target
                ));
            }
        }
        for i in self.invariants.iter().filter(|i| !i.valid) {
            if i.is_unknown() {
                let why = i.summary.as_deref().unwrap_or("the checker could not tell");
                reasons.push(format!("invariant `{}` is unknown ({why}); unknown is not a pass", i.name));
            } else {
                reasons.push(format!("invariant `{}` was violated", i.name));
            }
        }
        for c in self.contracts.iter().filter(|c| !c.passed) {
            reasons.push(format!("contract {} -> {}: `{}` failed", c.consumer, c.provider, c.interaction));
        }
        reasons
    }

    /// The windows faults were in force, for charts: `(start_s, end_s, name, label)`;
    /// an open end is the end of the run.
    pub fn fault_windows(&self) -> Vec<(f64, f64, String, String)> {
        let run_end = self.run.runtime_ms as f64 / 1000.0;
        self.faults
            .iter()
            .map(|f| {
                let (start, end) = f.window_ms();
                let end = end.map_or(run_end.max(start as f64 / 1000.0), |e| e as f64 / 1000.0);
                let label = format!("{} ({}) {}", f.name, f.target, fmt_window(f));
                (start as f64 / 1000.0, end, f.name.clone(), label)
            })
            .collect()
    }
}
