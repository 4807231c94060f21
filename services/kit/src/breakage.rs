//! Break switches: deliberate, named defects, each making one service produce exactly one
//! kind of anomaly while it otherwise behaves normally, so that the harness's invariant
//! checkers can be shown to catch what they claim to catch.
//!
//! `SHOP_TEST_BREAK=<switch>[,<switch>…]` turns switches on (the list is in
//! `services/README.md`, "Break switches"). **Only debug builds honour it**: in a release
//! build [`Breakage::is_broken`] is `false` whatever the environment says (a constant, so
//! the broken branches compile away) and the service logs a warning at start-up that the
//! variable is ignored. In a debug build an unknown switch name is a configuration error,
//! so a typo cannot make a "the checker catches it" test pass vacuously.
//!
//! A service reads the switches once, at construction ([`Breakage::from_env`]), into the
//! values that act on them (the saga, a store), so tests inject them through an [`Env`]
//! without touching the process environment.

use std::fmt;

use crate::config::{ConfigError, Env};

/// The variable that lists the switches.
pub const ENV_VAR: &str = "SHOP_TEST_BREAK";

/// One deliberate defect, named as in [`ENV_VAR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Switch {
    /// payments: a repeated idempotency key charges again.
    SkipIdempotency,
    /// orders: compensation records the release and the refunds without doing them.
    SkipCompensation,
    /// orders: a repeated place-order key makes a second order instead of answering the first.
    DuplicateOrder,
    /// orders: where the saga would commit a paid order's reservation, it releases it.
    ReleasePaid,
    /// orders: where compensation would release a reservation, it commits it.
    CommitCancelled,
    /// orders: compensation records the refunds without making them.
    SkipRefund,
    /// The de-duplication of order events, at both ends: notifications acts on a
    /// redelivered event again (no processed-event check), and orders' outbox relay
    /// publishes without `Nats-Msg-Id`, so the broker keeps a repeated publish.
    SkipDedup,
    /// orders: the `ORDER_PAID` message it publishes leaves out `user_id`.
    PaidWithoutUser,
}

impl Switch {
    /// Every switch.
    pub const ALL: [Switch; 8] = [
        Self::SkipIdempotency,
        Self::SkipCompensation,
        Self::DuplicateOrder,
        Self::ReleasePaid,
        Self::CommitCancelled,
        Self::SkipRefund,
        Self::SkipDedup,
        Self::PaidWithoutUser,
    ];

    /// The switch's name in [`ENV_VAR`].
    pub fn name(self) -> &'static str {
        match self {
            Self::SkipIdempotency => "skip-idempotency",
            Self::SkipCompensation => "skip-compensation",
            Self::DuplicateOrder => "duplicate-order",
            Self::ReleasePaid => "release-paid",
            Self::CommitCancelled => "commit-cancelled",
            Self::SkipRefund => "skip-refund",
            Self::SkipDedup => "skip-dedup",
            Self::PaidWithoutUser => "paid-without-user",
        }
    }

    /// The switch named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of switches a process was started with; empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Breakage {
    bits: u8,
}

impl Breakage {
    /// No switch on: the service as it should be.
    pub const NONE: Self = Self { bits: 0 };

    /// Reads [`ENV_VAR`]. A release build ignores it and answers [`Breakage::NONE`].
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        if !cfg!(debug_assertions) {
            return Ok(Self::NONE);
        }
        env.raw(ENV_VAR).map_or(Ok(Self::NONE), Self::parse)
    }

    /// Parses a comma-separated list of switch names (blanks around names are ignored).
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut set = Self::NONE;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let switch = Switch::parse(name).ok_or_else(|| ConfigError::Malformed {
                var: ENV_VAR.into(),
                value: list.into(),
                expected: format!(
                    "a comma-separated list of break switches ({}); {name:?} is none of them",
                    Switch::ALL.map(Switch::name).join(", ")
                ),
            })?;
            set = set.with(switch);
        }
        Ok(set)
    }

    /// This set with `switch` on too (for tests that build a service directly).
    pub fn with(self, switch: Switch) -> Self {
        Self { bits: self.bits | switch.bit() }
    }

    /// Whether `switch` is on. Always `false` in a release build.
    pub fn is_broken(self, switch: Switch) -> bool {
        cfg!(debug_assertions) && self.bits & switch.bit() != 0
    }

    /// The switches that are on.
    pub fn active(self) -> Vec<Switch> {
        Switch::ALL.into_iter().filter(|&s| self.is_broken(s)).collect()
    }
}

/// Checks [`ENV_VAR`] at start-up and logs a warning when it is set: in a debug build, the
/// switches that are on (a deliberately broken service); in a release build, that it is
/// ignored. A debug build refuses an unknown switch name.
pub fn check_at_start_up(env: &Env, service: &str) -> Result<(), ConfigError> {
    let breakage = Breakage::from_env(env)?;
    if let Some(notice) = start_up_notice(env.raw(ENV_VAR), breakage, cfg!(debug_assertions)) {
        tracing::warn!(service, var = ENV_VAR, value = env.raw(ENV_VAR), "{notice}");
    }
    Ok(())
}

/// What to say at start-up about `raw`, the value of [`ENV_VAR`], in a `debug` build or not.
fn start_up_notice(raw: Option<&str>, breakage: Breakage, debug: bool) -> Option<String> {
    let raw = raw?;
    if !debug {
        return Some(format!("{ENV_VAR}={raw:?} is ignored: break switches work in debug builds only"));
    }
    let active = breakage.active();
    if active.is_empty() {
        return None;
    }
    let names: Vec<&str> = active.iter().map(|s| s.name()).collect();
    Some(format!("deliberately broken build: break switches on: {}", names.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for s in Switch::ALL {
            assert_eq!(Switch::parse(s.name()), Some(s));
            assert_eq!(s.to_string(), s.name());
        }
        let bits: std::collections::HashSet<u8> = Switch::ALL.iter().map(|s| s.bit()).collect();
        assert_eq!(bits.len(), Switch::ALL.len());
        assert_eq!(Switch::parse("skip-everything"), None);
    }

    #[test]
    fn a_list_is_parsed_and_an_unknown_name_is_refused() {
        let b = Breakage::parse(" duplicate-order, skip-refund ,").unwrap();
        assert_eq!(b, Breakage::NONE.with(Switch::DuplicateOrder).with(Switch::SkipRefund));
        assert_eq!(Breakage::parse("").unwrap(), Breakage::NONE);
        let err = Breakage::parse("skip-refund,skip-refunds").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(ENV_VAR) && msg.contains("\"skip-refunds\""), "{msg}");
        assert!(msg.contains("commit-cancelled"), "the error lists the switches: {msg}");
    }

    #[cfg(debug_assertions)]
    #[test]
    fn a_debug_build_honours_the_switches_it_is_given() {
        let env = Env::from_pairs([(ENV_VAR, "release-paid")]);
        let b = Breakage::from_env(&env).unwrap();
        assert!(b.is_broken(Switch::ReleasePaid));
        assert!(!b.is_broken(Switch::CommitCancelled));
        assert_eq!(b.active(), vec![Switch::ReleasePaid]);
        assert_eq!(Breakage::from_env(&Env::default()).unwrap(), Breakage::NONE);
        assert!(Breakage::from_env(&Env::from_pairs([(ENV_VAR, "nope")])).is_err());
        assert!(check_at_start_up(&Env::from_pairs([(ENV_VAR, "nope")]), "orders").is_err());
    }

    #[cfg(not(debug_assertions))]
    #[test]
    fn a_release_build_ignores_every_switch() {
        let env = Env::from_pairs([(ENV_VAR, "release-paid,nope")]);
        assert_eq!(Breakage::from_env(&env).unwrap(), Breakage::NONE);
        assert!(!Breakage::NONE.with(Switch::ReleasePaid).is_broken(Switch::ReleasePaid));
        assert!(check_at_start_up(&env, "orders").is_ok());
    }

    #[test]
    fn start_up_says_what_the_variable_does() {
        let on = Breakage::NONE.with(Switch::SkipRefund);
        let release = start_up_notice(Some("skip-refund"), Breakage::NONE, false).unwrap();
        assert!(release.contains("is ignored") && release.contains("debug builds only"), "{release}");
        let debug = start_up_notice(Some("skip-refund"), on, true).unwrap();
        assert!(debug.contains("deliberately broken") && debug.contains("skip-refund"), "{debug}");
        assert_eq!(start_up_notice(None, Breakage::NONE, false), None);
        assert_eq!(start_up_notice(Some(" , "), Breakage::NONE, true), None);
    }
}
