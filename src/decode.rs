//! JSON into typed values, for every request that carries JSON (REST bodies, MCP tool
//! arguments): the one place where what a JSON Schema accepts is accepted.
//!
//! JSON Schema counts a number with no fractional part as an integer, whatever its
//! spelling (draft 2020-12, Validation section 6.1.1: `5.0` and `1e1` are integers), and
//! clients (models especially) send `5.0`. serde refuses a float for an integer field, so a
//! value is decoded as it is first and, where the decoder wanted an integer and found an
//! integral float, that number is rewritten as an integer and decoding tried again. Nothing
//! else is rewritten: a float field keeps its float, free-form JSON keeps its spelling.
//!
//! Errors name the field by its path (`items[2].token_count`, `.` for the whole value).

use serde::de::DeserializeOwned;
use serde_json::{Number, Value};
use serde_path_to_error::Segment;

/// Why a value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Syntax(serde_json::Error),
    /// The JSON does not fit: `path` names the field (`.` for the whole value).
    #[error("{}{error}", at(path))]
    Data {
        path: String,
        error: serde_json::Error,
    },
}

fn at(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        format!("field `{path}`: ")
    }
}

/// Decodes JSON text. Nothing but whitespace may follow the value, and no object may name
/// a key twice (RFC 8259 section 4 leaves duplicates to the receiver; devmesh refuses them
/// rather than keep one silently), in typed fields and free-form JSON alike.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    from_value(parse(bytes).map_err(DecodeError::Syntax)?)
}

/// JSON text into a value, by the same rules as [`from_slice`]: one value, nothing after
/// it but whitespace, no key twice in an object.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let Unique(value) = serde::Deserialize::deserialize(&mut *de)?;
    de.end()?;
    Ok(value)
}

/// A JSON value whose objects name each key once.
struct Unique(Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Unique(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key `{key}` in an object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Decodes a JSON value.
pub fn from_value<T: DeserializeOwned>(mut value: Value) -> Result<T, DecodeError> {
    loop {
        let error = match serde_path_to_error::deserialize(&value) {
            Ok(decoded) => return Ok(decoded),
            Err(error) => error,
        };
        let integral = find(&mut value, error.path()).and_then(|n| integral(n).map(|int| (n, int)));
        match integral {
            Some((slot, int)) => *slot = Value::Number(int),
            None => {
                return Err(DecodeError::Data {
                    path: error.path().to_string(),
                    error: error.into_inner(),
                });
            }
        }
    }
}

/// The value at `path`, if the path leads to one.
fn find<'v>(mut value: &'v mut Value, path: &serde_path_to_error::Path) -> Option<&'v mut Value> {
    for segment in path.iter() {
        value = match segment {
            Segment::Seq { index } => value.as_array_mut()?.get_mut(*index)?,
            Segment::Map { key } => value.as_object_mut()?.get_mut(key)?,
            Segment::Enum { variant } => value.as_object_mut()?.get_mut(variant)?,
            Segment::Unknown => return None,
        };
    }
    Some(value)
}

/// The integer a float stands for, when it has no fractional part and fits in 64 bits.
fn integral(value: &Value) -> Option<Number> {
    let Value::Number(n) = value else {
        return None;
    };
    if n.is_i64() || n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if (-TWO_63..TWO_63).contains(&f) {
        Some(Number::from(f as i64))
    } else if (0.0..2.0 * TWO_63).contains(&f) {
        Some(Number::from(f as u64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        token_count: Option<i64>,
        weight: Option<f64>,
        metadata: Option<Value>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        limit: u32,
        items: Vec<Item>,
    }

    #[test]
    fn integral_floats_count_as_integers_where_integers_are_wanted() {
        let body: Body = from_slice(
            br#"{"limit": 1e1, "items": [{"token_count": 3.0, "weight": 2.0, "metadata": {"n": 5.0}}, {"token_count": -7.0}]}"#,
        )
        .unwrap();
        assert_eq!(body.limit, 10);
        assert_eq!(body.items[0].token_count, Some(3));
        assert_eq!(body.items[1].token_count, Some(-7));
        // Floats stay floats; free-form JSON keeps its spelling.
        assert_eq!(body.items[0].weight, Some(2.0));
        assert_eq!(body.items[0].metadata, Some(json!({ "n": 5.0 })));
        assert!(body.items[0].metadata.as_ref().unwrap()["n"].is_f64());
    }

    #[test]
    fn what_is_not_an_integer_is_refused_naming_the_field() {
        for (text, path, says) in [
            (r#"{"limit": 5.5, "items": []}"#, "limit", "floating point"),
            (r#"{"limit": -1.0, "items": []}"#, "limit", "integer `-1`"),
            (
                r#"{"limit": 1e300, "items": []}"#,
                "limit",
                "floating point",
            ),
            (
                r#"{"limit": 1, "items": [{}, {"token_count": "3"}]}"#,
                "items[1].token_count",
                "string",
            ),
            (
                r#"{"limit": 1, "items": [{"extra": 1}]}"#,
                "items[0].extra",
                "unknown field",
            ),
        ] {
            let Err(DecodeError::Data { path: got, error }) = from_slice::<Body>(text.as_bytes())
            else {
                panic!("{text} is refused");
            };
            assert_eq!(got, path, "{text}");
            assert!(error.to_string().contains(says), "{text}: {error}");
        }
        assert!(matches!(
            from_slice::<Body>(b"{\"limit\": "),
            Err(DecodeError::Syntax(_))
        ));
    }
}

#[cfg(test)]
mod strictness {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Named {
        name: String,
    }

    #[test]
    fn nothing_may_follow_the_value_and_a_field_comes_once() {
        assert!(matches!(
            from_slice::<Named>(br#"{"name": "a"} trailing"#),
            Err(DecodeError::Syntax(_))
        ));
        assert!(from_slice::<Named>(b"{\"name\": \"a\"}  \n").is_ok());
        let duplicate = from_slice::<Named>(br#"{"name": "a", "name": "b"}"#).unwrap_err();
        assert!(
            duplicate.to_string().contains("duplicate key `name`"),
            "{duplicate}"
        );
        let nested = from_slice::<Value>(br#"{"m": {"k": 1, "k": 2}}"#).unwrap_err();
        assert!(nested.to_string().contains("duplicate key `k`"), "{nested}");
        // Also when an integral float sent the decoder down the second path.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Counted {
            n: u32,
            name: String,
        }
        let both = from_slice::<Counted>(br#"{"n": 1.0, "name": "a", "name": "b"}"#);
        assert!(both.is_err(), "{both:?}");
    }
}

/// A `deserialize_with` for a field that may be absent (leave alone: `None`), `null`
/// (clear: `Some(None)`) or a value (set: `Some(Some(v))`), as a PATCH reads it. Give
/// the field `#[serde(default)]` too.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}
