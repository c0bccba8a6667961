//! Deserializer errors in the caller's words: serde, serde_json, chrono and uuid speak of
//! `i32`, `struct X` and "line 1 column 70"; a 4xx message instead names the field and
//! what it expects ("field `limit`: expected an integer, got \"ten\"").

/// `field `path`: what is wrong`, or only what is wrong when there is no path (the
/// whole body). A missing field reads "field `a.b` is required".
pub fn field_error(path: &str, message: &str) -> String {
    let path = path.trim_matches('.');
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let full = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return format!("field `{full}` is required");
    }
    let what = humanize(message);
    if path.is_empty() {
        what
    } else {
        format!("field `{path}`: {what}")
    }
}

/// A serde_json message without its " at line L column C" tail.
pub fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let tail = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&tail).map(str::to_owned).unwrap_or(text)
}

/// One deserializer message, reworded where it speaks Rust.
pub fn humanize(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((got, expected)) = rest.rsplit_once(", expected ")
        {
            return format!("expected {}, got {}", expected_words(expected), got_words(got));
        }
    }
    match message {
        "invalid digit found in string" | "cannot parse integer from empty string" => "expected an integer".into(),
        "number too large to fit in target type" | "number too small to fit in target type" => {
            "the number is out of range".into()
        }
        "invalid float literal" => "expected a number".into(),
        "provided string was not `true` or `false`" => "expected true or false".into(),
        "input contains invalid characters"
        | "premature end of input"
        | "trailing input"
        | "input is out of range"
        | "input is not enough for unique date and time"
        | "no possible date and time matching input" => DATE_TIME.into(),
        _ if message.starts_with("UUID parsing failed") || message.contains("urn:uuid:") => UUID.into(),
        _ => message.to_owned(),
    }
}

const DATE_TIME: &str = "expected a date and time such as 2026-03-01T09:00:00Z (RFC 3339: a date, a time and a zone)";
const UUID: &str = "expected a UUID such as 0190a3c2-6f1e-7c3a-9d2b-1a2b3c4d5e6f";

/// What a Rust type or serde "expected ..." clause means to a caller.
pub fn expected_words(expected: &str) -> String {
    let bare = expected.rsplit("::").next().unwrap_or(expected);
    match bare {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "String" | "str" | "a borrowed string" => "a string".into(),
        "a sequence" => "a list".into(),
        "a map" => "an object".into(),
        "Uuid" | "a UUID string" => "a UUID".into(),
        "a formatted date and time string or a unix timestamp" | "DateTime" | "a formatted date and time string" => {
            "a date and time such as 2026-03-01T09:00:00Z".into()
        }
        other if other.starts_with("struct ") => "an object".into(),
        other if other.starts_with("variant identifier") || other.starts_with("enum ") => {
            "one of the allowed values".into()
        }
        other => other.to_owned(),
    }
}

/// What the caller sent, from serde's "unexpected" clause.
fn got_words(got: &str) -> String {
    for prefix in ["integer ", "floating point ", "boolean ", "character "] {
        if let Some(value) = got.strip_prefix(prefix) {
            return value.to_owned();
        }
    }
    if let Some(text) = got.strip_prefix("string ") {
        return shorten(text);
    }
    match got {
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "unit value" | "null" => "null".into(),
        other => other.to_owned(),
    }
}

/// A quoted value cut to 40 characters.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_owned()
    } else {
        format!("{}…\"", text.chars().take(39).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_the_callers_words() {
        assert_eq!(
            field_error("limit", "invalid type: string \"ten\", expected i64"),
            "field `limit`: expected an integer, got \"ten\""
        );
        assert_eq!(field_error("", "missing field `name`"), "field `name` is required");
        assert_eq!(field_error("a", "missing field `b`"), "field `a.b` is required");
        assert_eq!(
            field_error("limit", "invalid digit found in string"),
            "field `limit`: expected an integer"
        );
        assert!(field_error("at", "premature end of input").contains("2026-03-01T09:00:00Z"));
        assert_eq!(
            field_error("x", "invalid value: integer `-1`, expected u32"),
            "field `x`: expected a whole number, 0 or more, got `-1`"
        );
    }

    #[test]
    fn drops_the_position() {
        let err = serde_json::from_str::<serde_json::Value>("{\"a\": }").err();
        let text = err.as_ref().map(without_position).unwrap_or_default();
        assert!(!text.is_empty() && !text.contains("line"), "{text}");
    }
}
