//! Typed settings admins edit at run time, stored in the `settings` table: each key's
//! type, range and default live here, so control validates edits and every process
//! reads them the same way. A key without a row has its default; `whisper_model` has
//! none: unset, each worker uses its own `RUSHES_WHISPER_MODEL`.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgExecutor;

/// Whisper model names a worker can be asked to load.
pub const WHISPER_MODELS: [&str; 10] = [
    "tiny",
    "tiny.en",
    "base",
    "base.en",
    "small",
    "small.en",
    "medium",
    "medium.en",
    "large-v3",
    "turbo",
];

/// What values a setting takes.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    Integer { min: i64, max: i64 },
    Choice { options: &'static [&'static str] },
}

/// One setting's definition.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Definition {
    pub key: &'static str,
    pub description: &'static str,
    #[serde(flatten)]
    pub kind: Kind,
    #[serde(skip)]
    default: DefaultValue,
}

#[derive(Debug, Clone, Copy)]
enum DefaultValue {
    Integer(i64),
    /// No fleet-wide default: each worker's own configuration decides.
    PerWorker,
}

impl Definition {
    /// The value without a row (`null` where each worker's configuration decides).
    pub fn default_value(&self) -> Value {
        match self.default {
            DefaultValue::Integer(n) => Value::from(n),
            DefaultValue::PerWorker => Value::Null,
        }
    }

    /// Checks a new value; the message names the key and what it accepts.
    pub fn validate(&self, value: &Value) -> Result<(), String> {
        match self.kind {
            Kind::Integer { min, max } => match value.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(format!("{}: a whole number from {min} to {max}, got {value}", self.key)),
            },
            Kind::Choice { options } => match value.as_str() {
                Some(s) if options.contains(&s) => Ok(()),
                _ => Err(format!("{}: one of {}, got {value}", self.key, options.join(", "))),
            },
        }
    }
}

pub const WHISPER_MODEL: &str = "whisper_model";
pub const PROXY_HEIGHT: &str = "proxy_height";
pub const PROXY_BITRATE_KBPS: &str = "proxy_bitrate_kbps";
pub const SCAN_INTERVAL_MINUTES: &str = "scan_interval_minutes";
pub const ONLINE_WINDOW_MINUTES: &str = "online_window_minutes";
pub const CACHE_TTL_SECONDS: &str = "cache_ttl_seconds";

static DEFINITIONS: [Definition; 6] = [
    Definition {
        key: WHISPER_MODEL,
        description: "Whisper model transcription workers load; unset (null), each worker uses its \
                      RUSHES_WHISPER_MODEL. Only a model an online worker has installed is accepted (or with \
                      \"force\": true). GPU memory: tiny and base ~1 GiB, small ~2, medium ~5, turbo ~6, \
                      large-v3 ~10; a worker that lacks the model or whose GPU is smaller stops taking transcribe",
        kind: Kind::Choice {
            options: &WHISPER_MODELS,
        },
        default: DefaultValue::PerWorker,
    },
    Definition {
        key: PROXY_HEIGHT,
        description: "Height of proxy videos in pixels (never upscaled)",
        kind: Kind::Integer { min: 144, max: 2160 },
        default: DefaultValue::Integer(540),
    },
    Definition {
        key: PROXY_BITRATE_KBPS,
        description: "Video bitrate of proxies in kbit/s",
        kind: Kind::Integer { min: 100, max: 50_000 },
        default: DefaultValue::Integer(2500),
    },
    Definition {
        key: SCAN_INTERVAL_MINUTES,
        description: "Minutes between scans of every active production (the default scan schedule)",
        kind: Kind::Integer { min: 5, max: 10_080 },
        default: DefaultValue::Integer(60),
    },
    Definition {
        key: ONLINE_WINDOW_MINUTES,
        description: "A user seen within this many minutes counts as online",
        kind: Kind::Integer { min: 1, max: 1440 },
        default: DefaultValue::Integer(5),
    },
    Definition {
        key: CACHE_TTL_SECONDS,
        description: "Seconds the API caches dashboard counts and similar reads",
        kind: Kind::Integer { min: 0, max: 86_400 },
        default: DefaultValue::Integer(600),
    },
];

/// Every setting.
pub fn definitions() -> &'static [Definition] {
    &DEFINITIONS
}

pub fn definition(key: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.key == key)
}

/// Current values of every setting (stored or default).
pub async fn load<'e>(executor: impl PgExecutor<'e>) -> Result<HashMap<&'static str, Value>, sqlx::Error> {
    let stored: HashMap<String, Value> = sqlx::query_as::<_, (String, Value)>("SELECT key, value FROM settings")
        .fetch_all(executor)
        .await?
        .into_iter()
        .collect();
    Ok(DEFINITIONS
        .iter()
        .map(|d| {
            let value = stored
                .get(d.key)
                .filter(|v| d.validate(v).is_ok())
                .cloned()
                .unwrap_or_else(|| d.default_value());
            (d.key, value)
        })
        .collect())
}

/// A text setting an admin has set (`None` when unset: the caller keeps its own
/// configured value).
pub async fn stored_text<'e>(executor: impl PgExecutor<'e>, key: &str) -> Result<Option<String>, sqlx::Error> {
    let value: Option<Value> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(executor)
        .await?;
    Ok(value.and_then(|v| v.as_str().map(str::to_owned)))
}

/// An integer setting an admin has set (`None` when unset: the caller keeps its own
/// configured value).
pub async fn stored_integer<'e>(executor: impl PgExecutor<'e>, key: &str) -> Result<Option<i64>, sqlx::Error> {
    let Some(def) = definition(key) else {
        return Ok(None);
    };
    let stored: Option<Value> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(executor)
        .await?;
    Ok(stored.filter(|v| def.validate(v).is_ok()).and_then(|v| v.as_i64()))
}

/// An integer setting's current value: stored, or its default.
pub async fn integer<'e>(executor: impl PgExecutor<'e>, key: &str) -> Result<i64, sqlx::Error> {
    let fallback = definition(key).and_then(|d| d.default_value().as_i64()).unwrap_or(0);
    Ok(stored_integer(executor, key).await?.unwrap_or(fallback))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_validated_by_kind() {
        let Some(height) = definition(PROXY_HEIGHT) else {
            panic!("proxy_height is defined");
        };
        assert!(height.validate(&json!(720)).is_ok());
        assert!(height.validate(&json!(10)).is_err());
        assert!(height.validate(&json!("720")).is_err());
        let Some(model) = definition(WHISPER_MODEL) else {
            panic!("whisper_model is defined");
        };
        assert_eq!(model.default_value(), Value::Null, "each worker's own model");
        assert!(model.validate(&json!("large-v3")).is_ok());
        assert!(model.validate(&json!("huge")).is_err_and(|e| e.contains("turbo")));
    }
}
