//! Small builders for the payload JSON Schemas each kind publishes (`GET /kinds`),
//! written by hand beside each payload type and checked against it by a unit test.

use serde_json::{Map, Value, json};

/// An object with exactly these properties: `(name, schema, required)`.
pub fn object(properties: &[(&str, Value, bool)]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for (name, schema, is_required) in properties {
        props.insert((*name).to_owned(), schema.clone());
        if *is_required {
            required.push(Value::from(*name));
        }
    }
    let mut schema = json!({ "type": "object", "properties": props, "additionalProperties": false });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

/// A UUID string naming `what`.
pub fn uuid(what: &str) -> Value {
    json!({ "type": "string", "format": "uuid", "description": what })
}

pub fn string(what: &str) -> Value {
    json!({ "type": "string", "description": what })
}

pub fn boolean(what: &str) -> Value {
    json!({ "type": "boolean", "description": what })
}

/// An RFC 3339 instant.
pub fn instant(what: &str) -> Value {
    json!({ "type": "string", "format": "date-time", "description": what })
}

/// An integer from `min` up (to `max` when given).
pub fn integer(what: &str, min: i64, max: Option<i64>) -> Value {
    let mut schema = json!({ "type": "integer", "minimum": min, "description": what });
    if let Some(max) = max {
        schema["maximum"] = max.into();
    }
    schema
}

pub fn number(what: &str, min: f64, max: f64) -> Value {
    json!({ "type": "number", "minimum": min, "maximum": max, "description": what })
}

/// One of fixed strings.
pub fn one_of_strings(what: &str, values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values, "description": what })
}

/// A list of `items`.
pub fn array(what: &str, items: Value) -> Value {
    json!({ "type": "array", "items": items, "description": what })
}
