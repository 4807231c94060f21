//! Money in integer minor units (cents), never floating point.
//!
//! Amounts are checked on the way in (positive, bounded) and arithmetic is checked:
//! an overflow is an error, never a wrapped number, so a ledger can always be summed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest amount one operation may carry: 10^12 minor units (ten billion in
/// a two-decimal currency). Sums of many amounts still fit in an `i64`.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// A non-negative amount of money in minor units of some currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Minor(i64);

/// A mistake in an amount or a currency, worded for the API caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be positive, got {0}")]
    NotPositive(i64),
    #[error("amount {0} is larger than the maximum of {MAX_AMOUNT} minor units")]
    TooLarge(i64),
    #[error("amount arithmetic overflowed")]
    Overflow,
    #[error("currency {0:?} is not a three-letter ISO 4217 code such as EUR")]
    BadCurrency(String),
}

impl Minor {
    /// Zero.
    pub const ZERO: Minor = Minor(0);

    /// An amount a caller asks to move: strictly positive and at most [`MAX_AMOUNT`].
    pub fn positive(v: i64) -> Result<Self, MoneyError> {
        match v {
            v if v <= 0 => Err(MoneyError::NotPositive(v)),
            v if v > MAX_AMOUNT => Err(MoneyError::TooLarge(v)),
            v => Ok(Minor(v)),
        }
    }

    /// An amount read back from our own store (trusted, may be zero).
    pub fn from_stored(v: i64) -> Self {
        Minor(v)
    }

    /// The number of minor units.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Minor) -> Result<Minor, MoneyError> {
        self.0.checked_add(other.0).map(Minor).ok_or(MoneyError::Overflow)
    }

    /// `self - other`, or an error when the result would be negative.
    pub fn checked_sub(self, other: Minor) -> Result<Minor, MoneyError> {
        match self.0.checked_sub(other.0) {
            Some(v) if v >= 0 => Ok(Minor(v)),
            _ => Err(MoneyError::Overflow),
        }
    }

    /// `self * n` (a unit price times a quantity), or an error on overflow.
    pub fn times(self, n: u32) -> Result<Minor, MoneyError> {
        self.0.checked_mul(i64::from(n)).map(Minor).ok_or(MoneyError::Overflow)
    }

    /// The sum of `amounts`, or an error on overflow.
    pub fn sum(amounts: impl IntoIterator<Item = Minor>) -> Result<Minor, MoneyError> {
        amounts.into_iter().try_fold(Minor::ZERO, Minor::checked_add)
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code such as `EUR`; lower case is accepted and normalised.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(MoneyError::BadCurrency(s.to_string()));
        }
        Ok(Currency([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()]))
    }

    /// The code as a string.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("three ASCII letters")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positive_amounts_are_bounded() {
        assert_eq!(Minor::positive(0), Err(MoneyError::NotPositive(0)));
        assert_eq!(Minor::positive(-5), Err(MoneyError::NotPositive(-5)));
        assert_eq!(Minor::positive(MAX_AMOUNT + 1), Err(MoneyError::TooLarge(MAX_AMOUNT + 1)));
        assert_eq!(Minor::positive(1).unwrap().get(), 1);
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        for bad in ["", "EU", "EURO", "E1R", "€UR"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        let c: Currency = serde_json::from_str("\"usd\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"USD\"");
        assert!(serde_json::from_str::<Currency>("\"US\"").is_err());
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in 0..=MAX_AMOUNT, b in 0..=MAX_AMOUNT) {
            let (a, b) = (Minor::from_stored(a), Minor::from_stored(b));
            let s = a.checked_add(b).unwrap();
            prop_assert_eq!(s.checked_sub(b).unwrap(), a);
            prop_assert!(s >= a && s >= b);
        }

        #[test]
        fn sub_never_goes_negative(a in 0..=MAX_AMOUNT, b in 0..=MAX_AMOUNT) {
            let r = Minor::from_stored(a).checked_sub(Minor::from_stored(b));
            prop_assert_eq!(r.is_ok(), a >= b);
        }

        #[test]
        fn sum_matches_wide_arithmetic(v in proptest::collection::vec(0..=MAX_AMOUNT, 0..50)) {
            let wide: i128 = v.iter().map(|&x| i128::from(x)).sum();
            let got = Minor::sum(v.iter().copied().map(Minor::from_stored)).unwrap();
            prop_assert_eq!(i128::from(got.get()), wide);
        }

        #[test]
        fn times_overflow_is_an_error(p in 0..i64::MAX, n in 0..u32::MAX) {
            let wide = i128::from(p) * i128::from(n);
            match Minor::from_stored(p).times(n) {
                Ok(m) => prop_assert_eq!(i128::from(m.get()), wide),
                Err(_) => prop_assert!(wide > i128::from(i64::MAX)),
            }
        }
    }
}
