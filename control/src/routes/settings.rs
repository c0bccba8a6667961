//! `/api/v1/settings` (admins): the typed settings of `common::settings`, read with
//! their defaults and descriptions, edited with validation and an audit entry each
//! (`null` resets one to its default). `whisper_model` shows what the fleet really uses
//! and only takes a model an online worker has installed (unless `"force": true`).
//! `/api/v1/cache/clear` empties the API cache on every control replica.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use rushes_common::db::PAUSE_CHANNEL;
use rushes_common::settings::{self, definition, definitions};
use serde_json::{Map, Value, json};

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(list).patch(update))
        .route("/cache/clear", post(clear_cache))
}

/// What the online transcription workers report about Whisper models.
#[derive(Debug, Default)]
pub(crate) struct WhisperFleet {
    /// The models able workers transcribe with now.
    pub in_use: Vec<String>,
    /// Every model some online worker could load (installed, and fits its GPUs).
    pub usable: Vec<String>,
}

/// Reads the online workers' `capabilities.transcribe` (workers that consume `transcribe`).
pub(crate) async fn whisper_fleet(state: &AppState) -> ApiResult<WhisperFleet> {
    let in_use: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT DISTINCT w.capabilities->'transcribe'->>'model' FROM workers w WHERE ",
        super::workers::online!(),
        " AND w.capabilities->'transcribe'->>'model' IS NOT NULL \
          AND jsonb_typeof(w.capabilities->'transcribe'->'unable') IS DISTINCT FROM 'string' ORDER BY 1"
    ))
    .fetch_all(&state.db)
    .await?;
    let usable: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT DISTINCT m FROM workers w, jsonb_array_elements_text(CASE \
             WHEN jsonb_typeof(w.capabilities->'transcribe'->'usable') = 'array' THEN w.capabilities->'transcribe'->'usable' \
             WHEN jsonb_typeof(w.capabilities->'transcribe'->'installed') = 'array' \
                 THEN w.capabilities->'transcribe'->'installed' \
             ELSE '[]'::jsonb END) AS m WHERE ",
        super::workers::online!(),
        " ORDER BY 1"
    ))
    .fetch_all(&state.db)
    .await?;
    Ok(WhisperFleet { in_use, usable })
}

/// The Whisper model in effect: the admins' setting, else the one model the online
/// workers use of their own accord (`null` when none transcribes or they differ).
pub(crate) fn effective_whisper_model(stored: Option<&Value>, fleet: &WhisperFleet) -> Value {
    match stored.filter(|v| !v.is_null()) {
        Some(value) => value.clone(),
        None => match fleet.in_use.as_slice() {
            [one] => Value::from(one.as_str()),
            _ => Value::Null,
        },
    }
}

/// Every setting: definition, default, current value, whether an admin set it (`set`);
/// `whisper_model` also with the models the fleet uses (`in_use`).
async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let current = settings::load(&state.db).await?;
    let stored: Vec<String> = sqlx::query_scalar("SELECT key FROM settings")
        .fetch_all(&state.db)
        .await?;
    let fleet = whisper_fleet(&state).await?;
    let items: Vec<Value> = definitions()
        .iter()
        .map(|d| {
            let mut item = json!(d);
            item["default"] = d.default_value();
            item["value"] = current.get(d.key).cloned().unwrap_or_else(|| d.default_value());
            item["set"] = json!(stored.iter().any(|k| k == d.key));
            if d.key == settings::WHISPER_MODEL {
                item["value"] = effective_whisper_model(current.get(d.key), &fleet);
                item["in_use"] = json!(fleet.in_use);
            }
            item
        })
        .collect();
    Ok(axum::Json(json!({ "settings": items })))
}

/// `{"key": value, …}` (`null` resets a key to its default), optionally `"force": true`:
/// every value is checked before any is stored. A Whisper model no online worker has is
/// refused unless forced, then set with a warning in the answer (`warnings`).
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut body): Json<Map<String, Value>>,
) -> ApiResult<axum::Json<Value>> {
    let force = match body.remove("force") {
        None => false,
        Some(Value::Bool(force)) => force,
        Some(other) => return Err(ApiError::Unprocessable(format!("force: true or false, got {other}"))),
    };
    if body.is_empty() {
        return Err(ApiError::Unprocessable("name at least one setting".into()));
    }
    for (key, value) in &body {
        let def = definition(key).ok_or_else(|| ApiError::Unprocessable(format!("{key}: no such setting")))?;
        if !value.is_null() {
            def.validate(value).map_err(ApiError::Unprocessable)?;
        }
    }
    let mut warnings = Vec::new();
    if let Some(Value::String(model)) = body.get(settings::WHISPER_MODEL) {
        let fleet = whisper_fleet(&state).await?;
        if !fleet.usable.contains(model) {
            let have = if fleet.usable.is_empty() {
                "no online worker transcribes".to_owned()
            } else {
                format!("the online transcription workers have {}", fleet.usable.join(", "))
            };
            let problem = format!("whisper_model: no online worker has `{model}` installed ({have})");
            if !force {
                return Err(ApiError::Unprocessable(format!(
                    "{problem}; install it on a worker first (deploy/install-model.sh), or send \"force\": true \
                     to set it anyway"
                )));
            }
            warnings.push(format!(
                "{problem}: transcription waits until a worker that has it comes online"
            ));
        }
    }
    let before = settings::load(&state.db).await?;
    let mut tx = state.db.begin().await?;
    for (key, value) in &body {
        let def = definition(key).ok_or_else(|| ApiError::Unprocessable(format!("{key}: no such setting")))?;
        let reset = value.is_null();
        if reset {
            sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), \
                     updated_by = EXCLUDED.updated_by",
            )
            .bind(key)
            .bind(value)
            .bind(&caller.name)
            .execute(&mut *tx)
            .await?;
        }
        let effective = if reset { def.default_value() } else { value.clone() };
        if key == settings::SCAN_INTERVAL_MINUTES {
            // The default "scan every active production" schedule follows the setting.
            sqlx::query(
                "UPDATE schedules SET interval_every = $1, interval_period = 'minutes', \
                     next_run_at = now() + make_interval(mins => $1::int), updated_at = now() \
                 WHERE name = 'scan-active-productions' AND interval_every IS NOT NULL",
            )
            .bind(effective.as_i64().unwrap_or(60))
            .execute(&mut *tx)
            .await?;
        }
        if key == settings::WHISPER_MODEL {
            // Workers re-check their model (and whether to take `transcribe`) at once.
            sqlx::query("SELECT pg_notify($1, 'whisper_model')")
                .bind(PAUSE_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        let change = Change {
            action: if reset { "setting.reset" } else { "setting.update" },
            target_type: "setting",
            target_id: Some(key.clone()),
            before: before.get(key.as_str()).cloned(),
            after: Some(effective),
        };
        audit::record(&mut *tx, &caller, change).await?;
    }
    tx.commit().await?;
    let axum::Json(mut answer) = list(State(state)).await?;
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok(axum::Json(answer))
}

/// Clears the API cache here and, through NOTIFY, on every other control replica.
async fn clear_cache(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<StatusCode> {
    let dropped = state.cache.clear();
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(crate::cache::CLEAR_CHANNEL)
        .bind(&caller.name)
        .execute(&mut *tx)
        .await?;
    let change = Change {
        action: "cache.clear",
        target_type: "cache",
        target_id: None,
        before: Some(json!({ "entries_here": dropped })),
        after: None,
    };
    audit::record(&mut *tx, &caller, change).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
