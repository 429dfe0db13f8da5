//! The rules of a context's own fields, each with its JSON Schema for the API description
//! (as in `tenancy::names`: one rule, two forms, held together by the tests below).

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::service::{ServiceError, ServiceResult};
use crate::tenancy::names::{DisplayName, or_null, string_schema};

/// A context's new name, or `null` (as if absent).
pub fn display_name_or_null() -> Object {
    or_null(DisplayName::schema())
}

/// An agent, model or session id: 1 to 200 characters without control characters.
pub fn label(field: &'static str, value: &str) -> ServiceResult<String> {
    Ok(crate::tenancy::names::label(field, value)?)
}

pub fn label_schema() -> Object {
    or_null(crate::tenancy::names::label_schema())
}

/// A context type: 1 to 64 lowercase letters, digits, `_` or `-`.
pub fn context_type(value: &str) -> ServiceResult<String> {
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(ServiceError::invalid(
            "type",
            format!(
                "{value:?} is not a context type: use 1 to 64 lowercase letters, digits, '_' or '-'"
            ),
        ));
    }
    Ok(value.to_string())
}

pub fn context_type_schema() -> Object {
    or_null(
        string_schema(1, 64, Some("^[a-z0-9_-]+$".into()))
            .description(Some(
                "A kind of context, such as `conversation` (the default), `session` or `task`: 1 to 64 lowercase letters, digits, `_` or `-`",
            ))
            .build(),
    )
}

/// A token budget: at least 1, at most 2^63 - 1 (stored as a signed 64-bit integer).
pub fn token_budget(budget: u64) -> ServiceResult<i64> {
    match i64::try_from(budget) {
        Ok(budget) if budget >= 1 => Ok(budget),
        _ => Err(ServiceError::invalid(
            "token_budget",
            "must be from 1 to 9223372036854775807",
        )),
    }
}

pub fn token_budget_schema() -> Object {
    or_null(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .maximum(Some(i64::MAX))
            .description(Some("Most tokens the items may add up to"))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn agree(schema: Object, parse: impl Fn(&Value) -> bool, samples: &[Value]) {
        let schema = serde_json::to_value(schema).unwrap();
        let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
        for sample in samples {
            assert_eq!(
                validator.is_valid(sample),
                parse(sample),
                "schema {schema} and the rule disagree on {sample}"
            );
        }
    }

    /// `null` means "not given" (or "clear it", in a patch), which both accept.
    fn text(rule: impl Fn(&str) -> bool) -> impl Fn(&Value) -> bool {
        move |v| v.as_str().is_none_or(&rule)
    }

    #[test]
    fn schemas_say_what_the_rules_do() {
        agree(
            label_schema(),
            text(|v| label("agent_id", v).is_ok()),
            &[
                json!("agent-7"),
                json!(""),
                json!("a\u{1}"),
                json!("a".repeat(200)),
                json!("a".repeat(201)),
                json!("名前 with spaces"),
                Value::Null,
            ],
        );
        agree(
            context_type_schema(),
            text(|v| context_type(v).is_ok()),
            &[
                json!("conversation"),
                json!("a_b-1"),
                json!(""),
                json!("A"),
                json!("a b"),
                json!("a".repeat(64)),
                json!("a".repeat(65)),
                Value::Null,
            ],
        );
        agree(
            token_budget_schema(),
            |v| v.is_null() || v.as_u64().is_some_and(|b| token_budget(b).is_ok()),
            &[
                json!(1),
                json!(0),
                json!(-1),
                json!(i64::MAX),
                json!(i64::MAX as u64 + 1),
                Value::Null,
            ],
        );
    }
}
