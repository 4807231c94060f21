//! A fault schedule: when each fault of a scenario struck and on what, written by the
//! simulator as `schedule.json` (its seed search draws fault times and targets) and
//! replayed against a real runtime with `gauntlet run --schedule-from <run dir>`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{FaultTarget, Scenario};
use crate::cluster::NodeId;

/// The file a run's schedule is written to, in its run folder.
pub const FILE: &str = "schedule.json";

/// Every fault of one run, in scenario order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    pub faults: Vec<ScheduledFault>,
}

/// One fault as it was scheduled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduledFault {
    pub label: String,
    /// The edge (`api->db`) or node (`api-1`) it acted on.
    pub target: String,
    /// When it started and ended, in milliseconds from the start of the load.
    pub at_ms: u64,
    pub until_ms: u64,
}

impl Schedule {
    /// The schedule `scenario` plans.
    pub fn of(scenario: &Scenario) -> Self {
        let faults = scenario
            .faults
            .iter()
            .map(|f| ScheduledFault {
                label: f.label.clone(),
                target: f.target.to_string(),
                at_ms: f.at.as_millis() as u64,
                until_ms: f.until.as_millis() as u64,
            })
            .collect();
        Self { scenario: scenario.name.clone(), seed: scenario.seed, faults }
    }

    /// Reads `path`: a run folder holding [`FILE`], or the file itself.
    pub fn read(path: &Path) -> Result<Self, String> {
        let file: PathBuf = if path.is_dir() { path.join(FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "cannot read the fault schedule {}: {e} (give a simulated run's folder, which holds {FILE})",
                file.display()
            )
        })?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}:{}:{}: not a fault schedule: {e}", file.display(), e.line(), e.column()))
    }

    /// Makes `scenario` run this schedule: each fault's times and node target, and the seed.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<(), String> {
        if self.scenario != scenario.name || self.faults.len() != scenario.faults.len() {
            return Err(format!(
                "the schedule is of scenario `{}` with {} fault(s), not of `{}` with {}",
                self.scenario,
                self.faults.len(),
                scenario.name,
                scenario.faults.len()
            ));
        }
        for (fault, planned) in scenario.faults.iter_mut().zip(&self.faults) {
            if let FaultTarget::Node(_) = fault.target {
                let id = NodeId::parse(&planned.target)
                    .ok_or_else(|| format!("fault `{}`: `{}` is not a node", planned.label, planned.target))?;
                fault.target = FaultTarget::Node(id);
            }
            if planned.until_ms < planned.at_ms {
                return Err(format!("fault `{}` ends before it starts", planned.label));
            }
            fault.label = planned.label.clone();
            fault.at = std::time::Duration::from_millis(planned.at_ms);
            fault.until = std::time::Duration::from_millis(planned.until_ms);
        }
        scenario.reseed(self.seed);
        Ok(())
    }
}
