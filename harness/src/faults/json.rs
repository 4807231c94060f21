//! Readers of JSON object fields that name the field in every error they return.
//!
//! Request bodies are first parsed into a [`serde_json::Value`] and then read field by
//! field here, so a wrong type or value is reported as `attributes.latency must not be
//! negative, got -5` rather than as a line and column.

use serde_json::{Map, Value};

use super::error::ApiError;

/// The JSON object in `value`, or a bad-request error naming `what`.
pub(crate) fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(bad(format!("{what} must be a JSON object, got {}", kind(other)))),
    }
}

/// A non-negative integer field, `None` when absent or `null`.
pub(crate) fn opt_u64(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = present(map, key) else {
        return Ok(None);
    };
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
                Err(bad(format!("{path}{key} must not be negative, got {n}")))
            } else {
                Err(bad(format!("{path}{key} must be an integer, got {n}")))
            }
        }
        other => Err(bad(format!("{path}{key} must be a number, got {}", kind(other)))),
    }
}

/// A number field, `None` when absent or `null`.
pub(crate) fn opt_f64(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<f64>, ApiError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().map(Some).ok_or_else(|| bad(format!("{path}{key} must be a finite number, got {n}")))
        }
        Some(other) => Err(bad(format!("{path}{key} must be a number, got {}", kind(other)))),
    }
}

/// A string field, `None` when absent or `null`.
pub(crate) fn opt_str<'a>(map: &'a Map<String, Value>, path: &str, key: &str) -> Result<Option<&'a str>, ApiError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad(format!("{path}{key} must be a string, got {}", kind(other)))),
    }
}

/// A boolean field, `None` when absent or `null`.
pub(crate) fn opt_bool(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<bool>, ApiError> {
    match present(map, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!("{path}{key} must be a boolean, got {}", kind(other)))),
    }
}

/// A bad-request-body error with `message`.
pub(crate) fn bad(message: String) -> ApiError {
    ApiError::BadRequestBody(message)
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn names_the_field_in_errors() {
        let m = map(json!({"latency": -5, "jitter": "x", "rate": 1.5, "ok": 3}));
        let e = opt_u64(&m, "attributes.", "latency").unwrap_err();
        assert_eq!(e.to_string(), "bad request body: attributes.latency must not be negative, got -5");
        let e = opt_u64(&m, "attributes.", "jitter").unwrap_err();
        assert!(e.to_string().contains("attributes.jitter must be a number, got a string"));
        let e = opt_u64(&m, "", "rate").unwrap_err();
        assert!(e.to_string().contains("rate must be an integer, got 1.5"));
        assert_eq!(opt_u64(&m, "", "ok"), Ok(Some(3)));
        assert_eq!(opt_u64(&m, "", "absent"), Ok(None));
    }
}
