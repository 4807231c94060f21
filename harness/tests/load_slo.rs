//! Properties of the SLO threshold parser and evaluator.

use std::time::Duration;

use gauntlet::load::slo::{Comparison, Metric, SloSpec, SloStatus, SloVerdict, Threshold};
use gauntlet::load::stats::{ErrorKind, Outcome, Stats};
use proptest::prelude::*;

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![
        (1u32..=10_000).prop_map(|q| Metric::Percentile(f64::from(q) / 100.0)),
        Just(Metric::Max),
        Just(Metric::Mean),
        Just(Metric::Availability),
        Just(Metric::ErrorRate),
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
        Threshold { metric, comparison, bound }
    })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (100u16..600).prop_map(Outcome::Status),
        prop::sample::select(ErrorKind::ALL.to_vec()).prop_map(Outcome::Error),
    ]
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
        samples in prop::collection::vec((1u64..5_000_000, outcome()), 0..300),
        t in threshold(),
    ) {
        let mut stats = Stats::new();
        for (us, o) in &samples {
            stats.record(*us, *us, *o);
        }
        let spec = SloSpec::overall(t.clone());
        let verdict = SloVerdict::judge(&spec, Some(&stats));
        if samples.is_empty() {
            prop_assert_eq!(verdict.status, SloStatus::NoData);
            prop_assert!(!verdict.passed());
            return Ok(());
        }
        let n = samples.len() as f64;
        let expected = match t.metric {
            Metric::Availability => samples.iter().filter(|(_, o)| matches!(o, Outcome::Status(s) if *s < 500)).count() as f64 / n,
            Metric::ErrorRate => samples.iter().filter(|(_, o)| !matches!(o, Outcome::Status(s) if (200..400).contains(s))).count() as f64 / n,
            Metric::Max => stats.latency().max() as f64 / 1000.0,
            Metric::Mean => stats.latency().mean() / 1000.0,
            Metric::Percentile(q) => stats.latency().value_at_quantile(q / 100.0) as f64 / 1000.0,
        };
        let observed = verdict.observed.unwrap();
        prop_assert!(close(observed, expected), "{} vs {}", observed, expected);
        prop_assert_eq!(verdict.samples, samples.len() as u64);
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
