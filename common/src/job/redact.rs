//! Payload fields that carry secrets, hidden wherever a payload is shown (jobs, dead
//! letters). Jobs are built not to carry secrets at all (links are minted by the worker,
//! CSV passwords are hashed before queueing); this is the second line, for hashes and for
//! payloads an admin typed by hand.

use serde_json::Value;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Keys whose values are never shown, at any depth.
const SECRET_KEYS: [&str; 8] = [
    "password",
    "password_hash",
    "password_hashes",
    "current_password",
    "token",
    "secret",
    "api_key",
    "authorization",
];

fn is_secret(key: &str) -> bool {
    SECRET_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// `value` with every secret-bearing field replaced by [`REDACTED`].
pub fn secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if is_secret(k) && !v.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        secrets(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(secrets).collect()),
        other => other.clone(),
    }
}

/// `serialize_with` for payload fields shown to API clients.
pub fn serialize<S: serde::Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&secrets(value), serializer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_fields_are_hidden_at_any_depth() {
        let payload = json!({
            "csv": "username\nana",
            "password_hashes": {"ana": "$argon2id$v=19$..."},
            "rows": [{"Password": "hunter22", "name": "x"}],
            "token": null,
        });
        let shown = secrets(&payload);
        assert_eq!(shown["csv"], "username\nana");
        assert_eq!(shown["password_hashes"], REDACTED);
        assert_eq!(shown["rows"][0]["Password"], REDACTED);
        assert_eq!(shown["rows"][0]["name"], "x");
        assert_eq!(shown["token"], Value::Null);
    }
}
