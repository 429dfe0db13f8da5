//! The rules of agents' and tasks' own fields, each with its JSON Schema for the API
//! description (as in `tenancy::names`: one rule, two forms, tested together below).

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::service::FieldError;
use crate::tenancy::names::string_schema;
pub use crate::tenancy::names::{label, label_schema};

/// A capability name: 1 to 64 characters, lowercase ASCII letters, digits, `_`, `.` and
/// `-`, starting with a letter (`code_review`, `k8s_deploy`, `security.scan`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CapabilityName(String);

/// A tag: 1 to 64 characters, lowercase ASCII letters, digits, `_`, `.`, `:` and `-`,
/// starting with a letter or digit (`prod`, `team:platform`, `gpu`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag(String);

pub const CAPABILITY_PATTERN: &str = "^[a-z][a-z0-9_.-]{0,63}$";
pub const TAG_PATTERN: &str = "^[a-z0-9][a-z0-9_.:-]{0,63}$";

fn word(value: &str, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    (1..=64).contains(&value.len())
        && value.chars().next().is_some_and(first)
        && value.chars().all(rest)
}

impl CapabilityName {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let ok = word(
            value,
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'),
        );
        if !ok {
            return Err(FieldError::new(
                field,
                format!(
                    "{} is not a capability name: use 1 to 64 lowercase letters, digits, '_', '.' \
                     or '-', starting with a letter (such as code_review)",
                    quoted(value)
                ),
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(CAPABILITY_PATTERN))
            .description(Some(
                "1 to 64 lowercase letters, digits, '_', '.' or '-', starting with a letter",
            ))
            .build()
    }
}

impl Tag {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, FieldError> {
        let ok = word(
            value,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-'),
        );
        if !ok {
            return Err(FieldError::new(
                field,
                format!(
                    "{} is not a tag: use 1 to 64 lowercase letters, digits, '_', '.', ':' or '-', \
                     starting with a letter or digit (such as team:platform)",
                    quoted(value)
                ),
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn schema() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TAG_PATTERN))
            .description(Some(
                "1 to 64 lowercase letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
            ))
            .build()
    }
}

/// Free text of at most `max` characters without control characters (newlines and tabs
/// allowed), such as a description.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, FieldError> {
    if value.chars().count() > max
        || value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(FieldError::new(
            field,
            format!(
                "must be at most {max} characters, without control characters other than newlines and tabs"
            ),
        ));
    }
    Ok(value.to_string())
}

pub fn text_schema(max: usize) -> Object {
    string_schema(
        0,
        max,
        Some(r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$".to_string()),
    )
    .description(Some(format!(
        "At most {max} characters, without control characters other than newlines and tabs"
    )))
    .build()
}

/// A span of time in a request: `"30s"`, `"500ms"`, `"5m"`, `"2h"`, `"1d"`, or a number
/// of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a duration such as \"30s\", \"500ms\", \"5m\" or a whole number of seconds",
            )
        })? {
            Raw::Seconds(s) => Ok(Span(Duration::from_secs(s))),
            Raw::Text(t) => t
                .parse::<crate::config::Duration>()
                .map(|d| Span(d.get()))
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The schema of a [`Span`].
pub fn span_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Integer,
            Type::Null,
        ]))
        .pattern(Some("^[0-9]+ *(ms|s|m|h|d)?$"))
        .minimum(Some(0))
        .description(Some(
            "A duration: \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\", or a whole number of seconds",
        ))
        .build()
}

/// Checks that a span lies within `min..=max`.
pub fn span_within(
    field: &'static str,
    span: Span,
    min: Duration,
    max: Duration,
) -> Result<Duration, FieldError> {
    if span.0 < min || span.0 > max {
        return Err(FieldError::new(
            field,
            format!(
                "must be from {} to {} (it is {})",
                humanize(min),
                humanize(max),
                humanize(span.0)
            ),
        ));
    }
    Ok(span.0)
}

/// `1500ms`, `30s`, `2m`...: how spans are shown back.
pub fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else if !ms.is_multiple_of(3_600_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

/// The largest amount in US dollars a field takes: a sum of many stays finite.
pub const MAX_USD: f64 = 1_000_000.0;

/// An amount in US dollars: from 0 to [`MAX_USD`].
pub fn usd(field: &'static str, value: f64) -> Result<f64, FieldError> {
    if !(0.0..=MAX_USD).contains(&value) {
        return Err(FieldError::new(
            field,
            format!("must be an amount in US dollars from 0 to 1000000 (it is {value})"),
        ));
    }
    Ok(value)
}

/// A value as a message quotes it: at most 64 characters of it.
fn quoted(value: &str) -> String {
    if value.chars().count() <= 64 {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(64).collect();
        format!("{head:?}... ({} characters)", value.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_and_tags_follow_their_rules() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        for ok in [
            "code_review",
            "k8s_deploy",
            "security.scan",
            "a",
            "x-1",
            long.as_str(),
        ] {
            assert!(CapabilityName::parse("c", ok).is_ok(), "{ok:?}");
            assert!(Tag::parse("t", ok).is_ok(), "{ok:?}");
        }
        for bad in ["Code", "", "has space", "é", too_long.as_str(), "_x"] {
            let err = CapabilityName::parse("capabilities[0].name", bad).unwrap_err();
            assert_eq!(err.field, "capabilities[0].name");
            assert!(Tag::parse("tags[0]", bad).is_err(), "{bad:?}");
        }
        // Tags may start with a digit and hold ':'; capability names may not.
        for v in ["1abc", "team:platform"] {
            assert!(CapabilityName::parse("c", v).is_err(), "{v:?}");
            assert!(Tag::parse("t", v).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn spans_read_as_the_configuration_does() {
        let span: Span = serde_json::from_str("\"1500ms\"").unwrap();
        assert_eq!(span.0, Duration::from_millis(1500));
        let span: Span = serde_json::from_str("30").unwrap();
        assert_eq!(span.0, Duration::from_secs(30));
        assert!(serde_json::from_str::<Span>("\"soon\"").is_err());
        assert!(serde_json::from_str::<Span>("-1").is_err());
        assert_eq!(humanize(Duration::from_secs(120)), "2m");
        assert!(
            span_within(
                "t",
                Span(Duration::ZERO),
                Duration::from_millis(100),
                Duration::from_secs(10)
            )
            .is_err()
        );
    }
}
