//! Accounts as the domain sees them, and the parsing of what clients send into them.
//!
//! Every constructor checks its input once; code past the API boundary only ever holds
//! valid values. A [`FieldError`] names the request field that was wrong.

use std::fmt;

use serde::Serialize;

/// A user as clients see it (never with the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A client mistake in one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    /// An error in `field` saying `message`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }

    /// The error for a field the request left out.
    pub fn missing(field: &'static str) -> Self {
        Self::new(field, format!("{field} is required"))
    }
}

/// The longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Password length bounds, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;
/// The longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// An email address: as the user wrote it (trimmed) and its case-folded comparison key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    /// Parses an address: one `@`, a non-empty local part of at most 64 characters, a
    /// dotted domain, no spaces or control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| FieldError::new("email", format!("not a valid email address: {why}"));
        let s = raw.trim();
        if s.is_empty() || s.len() > MAX_EMAIL_LEN {
            return Err(bad(&format!("must be 1 to {MAX_EMAIL_LEN} bytes long")));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        let (local, domain) = s.split_once('@').ok_or_else(|| bad("an @ is missing"))?;
        if domain.contains('@') {
            return Err(bad("more than one @"));
        }
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before @ must be 1 to 64 bytes long"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(bad("the domain must look like example.com"));
        }
        Ok(Self { display: s.to_string(), key: Self::key_of(s) })
    }

    /// The comparison key of any string a client gives as an email (for login, where a
    /// malformed address simply matches nobody).
    pub fn key_of(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-insensitive comparison key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A display name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Checks a display name as sent.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let s = raw.trim();
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(FieldError::new("name", format!("must be 1 to {MAX_NAME_CHARS} characters long")));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new("name", "must not contain control characters"));
        }
        Ok(Self(s.to_string()))
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password in the clear, as long as it takes to hash it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// A new password: [`PASSWORD_CHARS`] characters, used exactly as given.
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if !PASSWORD_CHARS.contains(&chars) {
            return Err(FieldError::new(
                "password",
                format!("must be {} to {} characters long", PASSWORD_CHARS.start(), PASSWORD_CHARS.end()),
            ));
        }
        Ok(Self(raw))
    }

    /// A password offered at login: not checked beyond length, so an over-long one is
    /// refused before anyone spends time hashing it.
    pub fn offered(raw: String) -> Option<Self> {
        (raw.chars().count() <= *PASSWORD_CHARS.end()).then_some(Self(raw))
    }

    /// The password's bytes, for hashing.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A registration that passed every check.
#[derive(Clone, Debug)]
pub struct Registration {
    pub email: Email,
    pub name: Name,
    pub password: Password,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_checked_and_folded() {
        let e = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(e.key(), "ada.lovelace@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "a@b@c.com", "a b@c.com", "a@com", "a@.com", "a@c..com"] {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn names_and_passwords_have_bounds() {
        assert_eq!(Name::parse(" Ada ").unwrap().as_str(), "Ada");
        assert_eq!(Name::parse("  ").unwrap_err().field, "name");
        assert!(Name::parse(&"n".repeat(101)).is_err());
        assert!(Name::parse("a\u{7}b").is_err());
        assert_eq!(Password::parse("short".into()).unwrap_err().field, "password");
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("é".repeat(128)).is_ok(), "length counts characters, not bytes");
        assert!(Password::parse("x".repeat(129)).is_err());
        assert!(Password::offered("x".repeat(129)).is_none());
        assert_eq!(format!("{:?}", Password::parse("secret-password".into()).unwrap()), "Password(<redacted>)");
    }

    proptest! {
        #[test]
        fn a_parsed_email_keeps_its_key_stable(local in "[A-Za-z0-9._+-]{1,20}", domain in "[A-Za-z0-9-]{1,20}\\.[A-Za-z]{2,6}") {
            let raw = format!("{local}@{domain}");
            let e = Email::parse(&raw).unwrap();
            prop_assert_eq!(e.key(), Email::key_of(&raw.to_uppercase()));
            let reparsed = Email::parse(e.key()).unwrap();
            prop_assert_eq!(reparsed.key(), e.key());
        }

        #[test]
        fn email_parsing_never_panics(raw in "\\PC{0,300}") {
            let _ = Email::parse(&raw);
        }
    }
}
