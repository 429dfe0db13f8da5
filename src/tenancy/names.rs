//! Values parsed at the edge: organization slugs and names, emails, people's names and
//! passwords. Each `parse` says what is wrong in words a user can act on, and each type's
//! `schema` is the same rule in JSON Schema, for the API description
//! (`#[schema(schema_with = DisplayName::schema)]`); the tests at the end of this file hold
//! the two to one verdict on the same inputs.

use std::fmt;

use serde::Serialize;
use serde_json::json;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// Control characters (Unicode category Cc, what `char::is_control` means), as a regular
/// expression class body.
pub const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";
/// Whitespace (Unicode White_Space, what `char::is_whitespace` and `str::trim` mean), as a
/// regular expression class body: spelled out, because `\s` means other sets in other
/// regular expression engines.
pub const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// `schema` that also accepts `null` (an optional field: `null` is as if absent).
pub fn or_null(mut schema: Object) -> Object {
    if let SchemaType::Type(t) = schema.schema_type {
        schema.schema_type = SchemaType::from_iter([t, Type::Null]);
    }
    schema
}

/// A string schema with these bounds (in characters) and pattern.
pub fn string_schema(min: usize, max: usize, pattern: Option<String>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(pattern)
}

pub use crate::service::FieldError;

/// A one-line label (a version, a model): 1 to 200 characters without control characters.
pub fn label(field: &'static str, value: &str) -> Result<String, FieldError> {
    if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must be 1 to 200 characters without control characters",
        ));
    }
    Ok(value.to_string())
}

pub fn label_schema() -> Object {
    string_schema(1, 200, Some(format!("^[^{CONTROL}]+$")))
        .description(Some("1 to 200 characters without control characters"))
        .build()
}

/// An organization's URL-safe identifier: 3 to 63 lowercase letters, digits and dashes,
/// starting with a letter, not ending with a dash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slug(String);

impl Slug {
    pub fn schema() -> Object {
        string_schema(3, 63, Some("^[a-z][a-z0-9-]*[a-z0-9]$".into()))
            .description(Some(
                "3 to 63 lowercase letters, digits and dashes, starting with a letter and not ending with a dash",
            ))
            .build()
    }

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

/// An email address: at most 254 characters, no whitespace or control characters, a local part of 1 to 64
/// characters, one `@`, a domain of dot-separated non-empty labels (at least two). Kept in
/// lowercase so that `Ann@x.io` and `ann@x.io` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn schema() -> Object {
        let char = format!("@{WHITESPACE}{CONTROL}");
        let pattern = format!("^[^{char}]{{1,64}}@[^.{char}]+(\\.[^.{char}]+)+$");
        string_schema(3, 254, Some(pattern))
            .description(Some(
                "An email address (name@example.com); case does not matter",
            ))
            .build()
    }

    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let valid = value.chars().count() <= 254
            && !value.contains(|c: char| c.is_whitespace() || c.is_control())
            && value.split_once('@').is_some_and(|(local, domain)| {
                (1..=64).contains(&local.chars().count())
                    && !domain.contains('@')
                    && domain.split('.').count() >= 2
                    && domain.split('.').all(|label| !label.is_empty())
            });
        if !valid {
            return Err(FieldError::new(
                field,
                format!("{value:?} is not an email address (name@example.com)"),
            ));
        }
        Ok(Self(value.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name (an organization's or a person's): 1 to 200 characters, not blank, no
/// control characters; kept without surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 200;

    pub fn schema() -> Object {
        let pattern = format!("^[^{CONTROL}]*[^{WHITESPACE}{CONTROL}][^{CONTROL}]*$");
        string_schema(1, Self::MAX_CHARS, Some(pattern))
            .description(Some(
                "1 to 200 characters, not blank, without control characters; surrounding spaces are dropped",
            ))
            .build()
    }

    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let trimmed = value.trim();
        if trimmed.is_empty()
            || value.chars().count() > Self::MAX_CHARS
            || value.chars().any(char::is_control)
        {
            return Err(FieldError::new(
                field,
                "must be 1 to 200 characters, not blank, without control characters",
            ));
        }
        Ok(Self(trimmed.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 12 to 256 characters, not all the same character. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn schema() -> Object {
        let mut schema = string_schema(12, 256, None)
            .description(Some("12 to 256 characters, not one character repeated"))
            .build();
        // JSON Schema's `not`, which utoipa's model lacks: not one character repeated.
        schema.extensions = Some(Extensions::from_iter([(
            "not",
            json!({ "pattern": r"^([\s\S])\1*$" }),
        )]));
        schema
    }

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
            Email::parse("email", "Ann@Example.COM").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "ann",
            "ann@",
            "@x.io",
            "ann@x",
            "a b@x.io",
            "a@@x.io",
            "a@x..io",
            " ann@x.io",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    /// The schema of a rule and its `parse` give the same verdict on every sample.
    pub(crate) fn agree(schema: Object, parse: impl Fn(&str) -> bool, samples: &[&str]) {
        let schema = serde_json::to_value(schema).unwrap();
        let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
        for sample in samples {
            assert_eq!(
                validator.is_valid(&json!(sample)),
                parse(sample),
                "schema {schema} and parse disagree on {sample:?}"
            );
        }
    }

    #[test]
    fn schemas_say_what_parse_does() {
        let long = "a".repeat(200);
        let too_long = "a".repeat(201);
        let padded = format!(" {long}");
        agree(
            Slug::schema(),
            |v| Slug::parse("s", v).is_ok(),
            &[
                "acme",
                "a1b",
                "ab",
                "Acme",
                "1acme",
                "acme-",
                "a-b",
                &"a".repeat(63),
                &"a".repeat(64),
                "ac me",
                "",
            ],
        );
        agree(
            Email::schema(),
            |v| Email::parse("e", v).is_ok(),
            &[
                "a@b.co",
                "Ann@Example.COM",
                "a.b+c@x.y.z",
                "ann",
                "ann@x",
                "a@.x.io",
                "a@x.io.",
                "a@x..io",
                "a@@x.io",
                " a@x.io",
                "a\tb@x.io",
                "a\u{85}b@x.io",
                "a\u{1f}b@x.io",
                "a@x\u{3000}.io",
                "a@x.i\u{7f}o",
                &format!("{}@x.io", "l".repeat(65)),
                &format!("{}@x.io", "l".repeat(64)),
                "é@ü.de",
                "",
            ],
        );
        agree(
            DisplayName::schema(),
            |v| DisplayName::parse("n", v).is_ok(),
            &[
                "Acme",
                " Acme ",
                "Ünïcødé 名前",
                "",
                "   ",
                "a\u{7}",
                "\t",
                &long,
                &too_long,
                &padded,
                "a\u{85}b",
                "\u{a0}",
                "\u{1c}x",
                "\u{2003}",
                "x\u{2003}",
                "\u{200b}",
            ],
        );
        agree(
            Password::schema(),
            |v| Password::parse("p", v).is_ok(),
            &[
                "correct horse",
                "short",
                &"a".repeat(12),
                &"\n".repeat(12),
                "aaaaaaaaaaab",
                &"é".repeat(256),
                &"é".repeat(257),
                &format!("{}b", "é".repeat(255)),
            ],
        );
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
