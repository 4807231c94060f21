//! When flows start: the arrival schedule of the open model, or a closed loop.
//!
//! An open schedule is a piecewise-linear arrival rate `r(t)`; the `k`-th start (from 0)
//! happens at the instant `t` where the expected count `N(t) = ∫₀ᵗ r` reaches `k`. Arrival
//! times are computed in closed form for any start index, so the generator never drifts
//! and never lowers the rate when it falls behind: it only learns that starts are late.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::duration::HumanDuration;

/// The longest plan accepted: a day. Keeps every loop over a schedule bounded.
pub const MAX_PLAN: Duration = Duration::from_secs(24 * 3600);
/// The highest arrival rate accepted, in flow starts per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The most connections a closed loop may use.
pub const MAX_CONNECTIONS: usize = 100_000;

/// A schedule that cannot be run, and why.
#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    /// A rate is negative, not a number, or above [`MAX_RATE`].
    #[error("rate {0} is not a number between 0 and {MAX_RATE} per second")]
    BadRate(f64),
    /// The plan is empty, zero-length or longer than [`MAX_PLAN`].
    #[error("the schedule must last between 1ms and 24h, not {0:?}")]
    BadDuration(Duration),
    /// A closed loop needs between 1 and [`MAX_CONNECTIONS`] connections.
    #[error("a closed loop needs between 1 and {MAX_CONNECTIONS} connections, not {0}")]
    BadConnections(usize),
}

/// One ramp of a ramping schedule: move linearly to `target` starts per second over
/// `duration`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// How long the ramp lasts.
    pub duration: HumanDuration,
    /// The rate reached at the end of the ramp, in starts per second.
    pub target: f64,
}

/// How flows are started, as written in a workload file's `[schedule]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// A constant arrival rate for a duration.
    Constant {
        /// Flow starts per second.
        rate: f64,
        /// How long to keep starting flows.
        duration: HumanDuration,
    },
    /// Linear ramps from `start_rate` through each stage's target.
    Ramping {
        /// The rate at time zero (0 unless given).
        #[serde(default)]
        start_rate: f64,
        /// The ramps, in order.
        stages: Vec<Stage>,
    },
    /// `connections` virtual users each running flows back to back, as fast as the
    /// system answers (capacity probing; not an open model, so no omission correction).
    Closed {
        /// Concurrent virtual users, one connection each.
        connections: usize,
        /// How long to run.
        duration: HumanDuration,
    },
}

impl ScheduleSpec {
    /// Checks the spec and turns it into a runnable [`ArrivalSchedule`].
    pub fn build(&self) -> Result<ArrivalSchedule, ScheduleError> {
        match self {
            Self::Constant { rate, duration } => ArrivalSchedule::constant(*rate, duration.0),
            Self::Ramping { start_rate, stages } => {
                ArrivalSchedule::ramping(*start_rate, stages.iter().map(|s| (s.duration.0, s.target)))
            }
            Self::Closed { connections, duration } => ArrivalSchedule::closed(*connections, duration.0),
        }
    }
}

/// One linear piece of an open schedule, with what precedes it precomputed.
#[derive(Clone, Debug, PartialEq)]
struct Segment {
    /// Seconds from the start of the run to the start of the segment.
    start: f64,
    /// Length in seconds.
    length: f64,
    /// Rate at the start of the segment.
    from_rate: f64,
    /// Rate at the end of the segment.
    to_rate: f64,
    /// Expected starts before the segment.
    before: f64,
}

impl Segment {
    fn expected(&self) -> f64 {
        (self.from_rate + self.to_rate) / 2.0 * self.length
    }

    /// Seconds into the segment at which `n` expected starts have happened, solving
    /// `r0·t + a·t²/2 = n` in the form that stays exact when the slope `a` is zero.
    fn time_of(&self, n: f64) -> f64 {
        let slope = (self.to_rate - self.from_rate) / self.length;
        let disc = (self.from_rate * self.from_rate + 2.0 * slope * n).max(0.0);
        let denom = self.from_rate + disc.sqrt();
        if denom <= 0.0 {
            return 0.0;
        }
        (2.0 * n / denom).min(self.length)
    }
}

/// When flows start during a run.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalSchedule {
    /// Open model: flows start at computed instants whatever the system does.
    Open(OpenSchedule),
    /// Closed loop: a fixed number of virtual users, each starting its next flow when
    /// the previous one ends.
    Closed {
        /// Concurrent virtual users.
        connections: usize,
        /// How long to run.
        duration: Duration,
    },
}

/// A piecewise-linear arrival rate; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenSchedule {
    segments: Vec<Segment>,
    total: f64,
    length: f64,
}

impl ArrivalSchedule {
    /// A constant `rate` of flow starts per second for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Result<Self, ScheduleError> {
        Self::ramping(rate, [(duration, rate)])
    }

    /// Linear ramps starting at `start_rate`, through each `(duration, target)` stage.
    pub fn ramping(start_rate: f64, stages: impl IntoIterator<Item = (Duration, f64)>) -> Result<Self, ScheduleError> {
        check_rate(start_rate)?;
        let mut segments = Vec::new();
        let (mut at, mut before, mut rate, mut total_len) = (0.0, 0.0, start_rate, Duration::ZERO);
        for (duration, target) in stages {
            check_rate(target)?;
            total_len = total_len.saturating_add(duration);
            if total_len > MAX_PLAN {
                return Err(ScheduleError::BadDuration(total_len));
            }
            if duration.is_zero() {
                rate = target;
                continue;
            }
            let seg = Segment { start: at, length: duration.as_secs_f64(), from_rate: rate, to_rate: target, before };
            before += seg.expected();
            at += seg.length;
            rate = target;
            segments.push(seg);
        }
        if total_len < Duration::from_millis(1) {
            return Err(ScheduleError::BadDuration(total_len));
        }
        Ok(Self::Open(OpenSchedule { segments, total: before, length: at }))
    }

    /// A closed loop of `connections` virtual users for `duration`.
    pub fn closed(connections: usize, duration: Duration) -> Result<Self, ScheduleError> {
        if connections == 0 || connections > MAX_CONNECTIONS {
            return Err(ScheduleError::BadConnections(connections));
        }
        if duration < Duration::from_millis(1) || duration > MAX_PLAN {
            return Err(ScheduleError::BadDuration(duration));
        }
        Ok(Self::Closed { connections, duration })
    }

    /// How long flows keep starting.
    pub fn duration(&self) -> Duration {
        match self {
            Self::Open(open) => Duration::from_secs_f64(open.length),
            Self::Closed { duration, .. } => *duration,
        }
    }
}

impl OpenSchedule {
    /// How many flows the plan starts in all.
    pub fn total_starts(&self) -> u64 {
        // Starts are at N(t) = 0, 1, 2, ... strictly before the end of the plan; the
        // epsilon keeps a rounding error from adding a start at the very end.
        (self.total - 1e-9).ceil().max(0.0) as u64
    }

    /// Offset from the start of the run at which the `k`-th flow (from 0) starts, or
    /// `None` if the plan has fewer starts.
    pub fn arrival(&self, k: u64) -> Option<Duration> {
        if k >= self.total_starts() {
            return None;
        }
        let n = k as f64;
        let idx = self.segments.partition_point(|s| s.before + s.expected() <= n);
        let seg = self.segments.get(idx).or_else(|| self.segments.last())?;
        let t = seg.start + seg.time_of(n - seg.before);
        Some(Duration::from_secs_f64(t.clamp(0.0, self.length)))
    }

    /// The expected number of starts before offset `at`: the integral of the rate.
    pub fn expected_before(&self, at: Duration) -> f64 {
        let t = at.as_secs_f64();
        let Some(seg) = self.segments.iter().rev().find(|s| s.start <= t) else {
            return 0.0;
        };
        let dt = (t - seg.start).min(seg.length);
        let slope = (seg.to_rate - seg.from_rate) / seg.length;
        seg.before + seg.from_rate * dt + slope * dt * dt / 2.0
    }

    /// The rate, in starts per second, at offset `at`.
    pub fn rate_at(&self, at: Duration) -> f64 {
        let t = at.as_secs_f64();
        match self.segments.iter().rev().find(|s| s.start <= t) {
            Some(seg) if t <= seg.start + seg.length => {
                let f = (t - seg.start) / seg.length;
                seg.from_rate + (seg.to_rate - seg.from_rate) * f
            }
            _ => 0.0,
        }
    }
}

fn check_rate(rate: f64) -> Result<(), ScheduleError> {
    if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(ScheduleError::BadRate(rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(s: ArrivalSchedule) -> OpenSchedule {
        match s {
            ArrivalSchedule::Open(o) => o,
            ArrivalSchedule::Closed { .. } => unreachable!("open schedule expected"),
        }
    }

    #[test]
    fn constant_rate_spaces_starts_evenly() {
        let s = open(ArrivalSchedule::constant(4.0, Duration::from_secs(1)).unwrap());
        assert_eq!(s.total_starts(), 4);
        let at: Vec<_> = (0..5).map(|k| s.arrival(k)).collect();
        assert_eq!(
            at,
            vec![
                Some(Duration::ZERO),
                Some(Duration::from_millis(250)),
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(750)),
                None
            ]
        );
    }

    #[test]
    fn ramp_from_zero_follows_the_square_root() {
        // r(t) = 10 t over 2 s: N(t) = 5 t², so start k is at sqrt(k / 5).
        let s = open(ArrivalSchedule::ramping(0.0, [(Duration::from_secs(2), 20.0)]).unwrap());
        assert_eq!(s.total_starts(), 20);
        let t = s.arrival(5).unwrap().as_secs_f64();
        assert!((t - 1.0).abs() < 1e-9, "{t}");
    }

    #[test]
    fn bad_plans_are_refused() {
        assert!(ArrivalSchedule::constant(-1.0, Duration::from_secs(1)).is_err());
        assert!(ArrivalSchedule::constant(f64::NAN, Duration::from_secs(1)).is_err());
        assert!(ArrivalSchedule::constant(1.0, Duration::ZERO).is_err());
        assert!(ArrivalSchedule::closed(0, Duration::from_secs(1)).is_err());
    }
}
