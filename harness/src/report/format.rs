//! How numbers read in the human renderings: milliseconds, percentages, offsets.

use super::model::{FaultRecord, SloResult, Unit};

/// Milliseconds with a sensible precision: `0.412ms`, `12.3ms`, `1.25s`.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "-".into();
    }
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else if ms >= 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.2}ms")
    }
}

/// A fraction as a percentage with three decimals: `99.912%`.
pub fn fmt_pct(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:.3}%", ratio * 100.0)
    } else {
        "-".into()
    }
}

/// An SLO's observed value in its unit, `-` when nothing was observed.
pub fn fmt_slo_value(s: &SloResult) -> String {
    match (s.observed, s.unit) {
        (None, _) => "-".into(),
        (Some(v), Unit::Ms) => fmt_ms(v),
        (Some(v), Unit::Ratio) => fmt_pct(v),
        (Some(v), Unit::Value) => format!("{}", (v * 1000.0).round() / 1000.0),
    }
}

/// An offset from the start of the run, `1m30.5s` style.
pub fn fmt_offset(ms: u64) -> String {
    let (m, rest) = (ms / 60_000, ms % 60_000);
    let s = rest as f64 / 1000.0;
    if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// A fault's planned window: `at 30s for 1m` or `at 30s until the end`.
pub fn fmt_window(f: &FaultRecord) -> String {
    match f.planned_for_ms {
        Some(d) => format!("at {} for {}", fmt_offset(f.planned_at_ms), fmt_offset(d)),
        None => format!("at {} until the end", fmt_offset(f.planned_at_ms)),
    }
}

/// An optional offset, `-` when it did not happen.
pub fn fmt_opt_offset(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), fmt_offset)
}

/// A count with thin grouping: `12 345`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(fmt_ms(0.4123), "0.41ms");
        assert_eq!(fmt_ms(123.4), "123ms");
        assert_eq!(fmt_ms(1250.0), "1.25s");
        assert_eq!(fmt_pct(0.99912), "99.912%");
        assert_eq!(fmt_offset(90_500), "1m30.5s");
        assert_eq!(fmt_count(1_234_567), "1 234 567");
    }
}
