//! Values parsed at the edge: organization slugs and names, emails, people's names and
//! passwords. Each `parse` says what is wrong in words a user can act on.

use std::fmt;

use serde::Serialize;

/// What was wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// An organization's URL-safe identifier: 3 to 63 lowercase letters, digits and dashes,
/// starting with a letter, not ending with a dash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slug(String);

impl Slug {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let ok_chars = value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let starts = value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if !(3..=63).contains(&value.len()) || !ok_chars || !starts || value.ends_with('-') {
            return Err(FieldError::new(
                field,
                format!(
                    "{value:?} is not a valid slug: use 3 to 63 lowercase letters, digits and dashes, \
                     starting with a letter and not ending with a dash"
                ),
            ));
        }
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, kept in lowercase so that `Ann@x.io` and `ann@x.io` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && !value.contains(char::is_whitespace)
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        if !valid {
            return Err(FieldError::new(
                field,
                format!("{value:?} is not an email address (name@example.com)"),
            ));
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name (an organization's or a person's): 1 to 200 characters, not blank, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must be 1 to 200 characters, not blank, without control characters",
            ));
        }
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 12 to 256 characters, not all the same character. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let chars = value.chars().count();
        if !(12..=256).contains(&chars) {
            return Err(FieldError::new(
                field,
                format!("must be 12 to 256 characters long (it has {chars})"),
            ));
        }
        let first = value.chars().next();
        if value.chars().all(|c| Some(c) == first) {
            return Err(FieldError::new(field, "must not repeat a single character"));
        }
        Ok(Self(value.to_string()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["acme", "acme-corp", "a1b", "team-42"] {
            assert!(Slug::parse("slug", ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac me",
            "acme_corp",
            &"a".repeat(64),
        ] {
            let err = Slug::parse("organization_slug", bad).unwrap_err();
            assert_eq!(err.field, "organization_slug");
            assert!(err.message.contains("slug"), "{bad}: {err}");
        }
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse("email", " Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "ann", "ann@", "@x.io", "ann@x", "a b@x.io", "a@@x.io", "a@x..io",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_rules_and_never_print() {
        assert!(Password::parse("password", "short").is_err());
        assert!(Password::parse("password", &"a".repeat(20)).is_err());
        let p = Password::parse("password", "correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }

    #[test]
    fn display_names() {
        assert!(DisplayName::parse("name", "  ").is_err());
        assert!(DisplayName::parse("name", "bad\u{7}").is_err());
        assert_eq!(
            DisplayName::parse("name", " Acme ").unwrap().as_str(),
            "Acme"
        );
    }
}
