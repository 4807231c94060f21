//! Properties of the SLO threshold parser and evaluator.

use std::time::Duration;

use gauntlet::load::slo::{Comparison, Metric, SloSpec, SloStatus, SloVerdict, Threshold};
use gauntlet::load::stats::{Check, ErrorKind, Judgement, Outcome, Stats};
use proptest::prelude::*;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        (1u32..=10_000).prop_map(|q| Metric::Percentile(f64::from(q) / 100.0)),
        Just(Metric::Max),
        Just(Metric::Mean),
        Just(Metric::Availability),
        Just(Metric::AvailabilityIncludingDegraded),
        Just(Metric::ErrorRate),
        Just(Metric::Degraded),
        Just(Metric::Checks),
    ]
}

fn comparison() -> impl Strategy<Value = Comparison> {
    prop_oneof![
        Just(Comparison::Less),
        Just(Comparison::LessOrEqual),
        Just(Comparison::Greater),
        Just(Comparison::GreaterOrEqual),
    ]
}

fn threshold() -> impl Strategy<Value = Threshold> {
    (metric(), comparison(), 0u32..=100_000).prop_map(|(metric, comparison, n)| {
        let bound = if metric.is_latency() { f64::from(n) / 10.0 } else { f64::from(n) / 100_000.0 };
        Threshold { metric, comparison, bound, gauge: None, op: None, op_where: None, confirm: None }
    })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (100u16..600).prop_map(Outcome::Status),
        prop::sample::select(ErrorKind::ALL.to_vec()).prop_map(Outcome::Error),
    ]
}

fn judgement() -> impl Strategy<Value = Judgement> {
    let check = prop_oneof![Just(Check::Unchecked), Just(Check::Passed), Just(Check::Failed)];
    (any::<bool>(), check).prop_map(|(degraded, check)| Judgement { degraded, check })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn display_then_parse_gives_the_threshold_back(t in threshold()) {
        let text = t.to_string();
        let back: Threshold = text.parse().unwrap_or_else(|e| panic!("`{text}`: {e}"));
        prop_assert_eq!(back.metric, t.metric);
        prop_assert_eq!(back.comparison, t.comparison);
        prop_assert!(close(back.bound, t.bound), "`{}`: {} vs {}", text, back.bound, t.bound);
    }

    #[test]
    fn any_string_parses_or_is_refused_without_panic(s in "\\PC{0,40}") {
        let _ = s.parse::<Threshold>();
    }

    #[test]
    fn whitespace_does_not_matter(t in threshold(), pad in " {0,3}") {
        let text = t.to_string().replace(' ', &pad);
        let back: Threshold = text.parse().unwrap();
        prop_assert_eq!(back.comparison, t.comparison);
    }

    #[test]
    fn verdicts_follow_the_recorded_samples(
        samples in prop::collection::vec((1u64..5_000_000, outcome(), judgement()), 0..300),
        dropped in 0u64..5,
        t in threshold(),
    ) {
        let mut stats = Stats::new();
        for (us, o, j) in &samples {
            stats.record_judged(*us, *us, *o, *j);
        }
        for _ in 0..dropped {
            stats.record_dropped();
        }
        let spec = SloSpec::overall(t.clone());
        let verdict = SloVerdict::judge(&spec, Some(&stats));
        let count = |f: &dyn Fn(&Outcome, &Judgement) -> bool| samples.iter().filter(|(_, o, j)| f(o, j)).count() as f64;
        let in_time_not_5xx = |o: &Outcome| matches!(o, Outcome::Status(s) if *s < 500);
        let checks = count(&|_, j| j.check != Check::Unchecked);
        let (n, offered) = (samples.len() as f64, samples.len() as f64 + dropped as f64);
        let whole = match t.metric {
            Metric::Availability | Metric::AvailabilityIncludingDegraded => offered,
            Metric::Checks => checks,
            // The load alone has no order outcomes: no data, always.
            Metric::OkShare => 0.0,
            _ => n,
        };
        prop_assert_eq!(verdict.samples, whole as u64);
        if whole == 0.0 {
            prop_assert_eq!(verdict.status, SloStatus::NoData);
            prop_assert!(!verdict.passed());
            return Ok(());
        }
        let expected = match t.metric {
            Metric::Availability => {
                count(&|o, j| in_time_not_5xx(o) && !j.degraded && j.check != Check::Failed) / offered
            }
            Metric::AvailabilityIncludingDegraded => count(&|o, j| in_time_not_5xx(o) && j.check != Check::Failed) / offered,
            Metric::ErrorRate => {
                count(&|o, j| !matches!(o, Outcome::Status(s) if (200..400).contains(s)) || j.check == Check::Failed) / n
            }
            Metric::Degraded => count(&|_, j| j.degraded) / n,
            Metric::Checks => count(&|_, j| j.check == Check::Passed) / checks,
            Metric::Max => stats.latency().max() as f64 / 1000.0,
            Metric::Mean => stats.latency().mean() / 1000.0,
            Metric::Percentile(q) => stats.latency().value_at_quantile(q / 100.0) as f64 / 1000.0,
            Metric::OkShare => unreachable!("no data was returned above"),
            Metric::GaugeMax => unreachable!("the strategy draws no service gauge: the load does not see services"),
        };
        let observed = verdict.observed.unwrap();
        prop_assert!(close(observed, expected), "{} vs {}", observed, expected);
        prop_assert_eq!(verdict.passed(), t.comparison.holds(expected, t.bound));
        // The opposite comparison gives the opposite verdict.
        let opposite = match t.comparison {
            Comparison::Less => Comparison::GreaterOrEqual,
            Comparison::LessOrEqual => Comparison::Greater,
            Comparison::Greater => Comparison::LessOrEqual,
            Comparison::GreaterOrEqual => Comparison::Less,
        };
        let flipped = SloSpec::overall(Threshold { comparison: opposite, ..t });
        prop_assert_ne!(SloVerdict::judge(&flipped, Some(&stats)).passed(), verdict.passed());
    }

    #[test]
    fn percentile_thresholds_are_within_histogram_precision(ms in prop::collection::vec(1u64..10_000, 1..200)) {
        let mut stats = Stats::new();
        for m in &ms {
            stats.record(m * 1000, 0, Outcome::Status(200));
        }
        let mut sorted = ms.clone();
        sorted.sort_unstable();
        let p100 = *sorted.last().unwrap() as f64;
        let t: Threshold = "p100 <= 1h".parse().unwrap();
        let observed = SloVerdict::judge(&SloSpec::overall(t), Some(&stats)).observed.unwrap();
        prop_assert!((observed - p100).abs() <= p100 * 0.001 + 0.001, "{} vs {}", observed, p100);
        let _ = Duration::ZERO;
    }
}
