//! Human durations (`250ms`, `1m30s`) as they appear in files and flags.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the human way: `250ms`, `1.5s`, `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

/// A string that is not a human duration.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("`{0}` is not a duration; write it like `250ms`, `1.5s` or `1m30s`")]
pub struct BadDuration(pub String);

impl FromStr for HumanDuration {
    type Err = BadDuration;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(d) = humantime::parse_duration(t) {
            return Ok(Self(d));
        }
        // humantime has no fractions: accept `1.5s` and `0.25ms` as people write them.
        let split = t.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(|| BadDuration(s.into()))?;
        let (num, unit) = t.split_at(split);
        let value: f64 = num.trim().parse().map_err(|_| BadDuration(s.into()))?;
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(BadDuration(s.into())),
        };
        Duration::try_from_secs_f64(value * scale).map(Self).map_err(|_| BadDuration(s.into()))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_and_fractional_durations() {
        let p = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(p("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(p("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(p("fast").is_err());
        assert!(p("-1s").is_err());
    }
}
