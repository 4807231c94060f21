//! Properties of the arrival schedule, for any rate and any stage plan.

use std::time::Duration;

use gauntlet::load::schedule::{ArrivalSchedule, OpenSchedule};
use proptest::prelude::*;

fn open(s: ArrivalSchedule) -> OpenSchedule {
    match s {
        ArrivalSchedule::Open(o) => o,
        ArrivalSchedule::Closed { .. } => panic!("expected an open schedule"),
    }
}

/// Start indexes to check: all of them when few, else a spread plus both ends.
fn sample_indexes(total: u64) -> Vec<u64> {
    if total <= 2_000 {
        return (0..total).collect();
    }
    let step = total / 1_000;
    let mut ks: Vec<u64> = (0..total).step_by(step as usize).collect();
    ks.extend([total - 2, total - 1]);
    ks.sort_unstable();
    ks.dedup();
    ks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn constant_rate_starts_are_exactly_k_over_rate(rate in 0.1f64..20_000.0, ms in 1u64..60_000) {
        let duration = Duration::from_millis(ms);
        let s = open(ArrivalSchedule::constant(rate, duration).unwrap());
        let expected_total = (rate * duration.as_secs_f64() - 1e-9).ceil() as u64;
        prop_assert_eq!(s.total_starts(), expected_total);
        for k in sample_indexes(expected_total) {
            let at = s.arrival(k).unwrap().as_secs_f64();
            let exact = k as f64 / rate;
            prop_assert!((at - exact).abs() <= 1e-9 * exact.max(1.0), "k {}: {} vs {}", k, at, exact);
            prop_assert!(at < duration.as_secs_f64() + 1e-9);
        }
        prop_assert_eq!(s.arrival(expected_total), None);
    }

    #[test]
    fn ramping_starts_follow_the_integral_of_the_rate(
        start_rate in 0.0f64..2_000.0,
        stages in prop::collection::vec((0u64..5_000, 0.0f64..2_000.0), 1..6),
    ) {
        let plan: Vec<(Duration, f64)> = stages.iter().map(|&(ms, r)| (Duration::from_millis(ms), r)).collect();
        let length: Duration = plan.iter().map(|p| p.0).sum();
        let built = ArrivalSchedule::ramping(start_rate, plan.clone());
        if length < Duration::from_millis(1) {
            prop_assert!(built.is_err());
            return Ok(());
        }
        let s = open(built.unwrap());
        // The expected number of starts is the area under the piecewise-linear rate.
        let (mut area, mut rate) = (0.0, start_rate);
        for (d, target) in &plan {
            area += (rate + target) / 2.0 * d.as_secs_f64();
            rate = *target;
        }
        let total = s.total_starts();
        prop_assert!((total as f64 - area).abs() <= 1.0 + 1e-6 * area, "{} starts for an area of {}", total, area);
        let mut previous = Duration::ZERO;
        for k in sample_indexes(total) {
            let at = s.arrival(k).unwrap();
            prop_assert!(at >= previous, "start {} at {:?} before {:?}", k, at, previous);
            prop_assert!(at <= length);
            // Inverse: the expected count at the k-th start is k.
            let n = s.expected_before(at);
            prop_assert!((n - k as f64).abs() <= 1e-6 * (k as f64).max(1.0), "N(t_{}) = {}", k, n);
            previous = at;
        }
        prop_assert_eq!(s.arrival(total), None);
    }

    #[test]
    fn invalid_rates_are_refused_not_run(rate in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -1e9f64..-1e-9, 1.0000001e6f64..1e12]) {
        prop_assert!(ArrivalSchedule::constant(rate, Duration::from_secs(1)).is_err());
    }
}
