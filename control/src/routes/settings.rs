//! `/api/v1/settings` (admins): the typed settings of `common::settings`, read with
//! their defaults and descriptions, edited with validation and an audit entry each.
//! `/api/v1/cache/clear` empties the API cache on every control replica.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
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

async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let current = settings::load(&state.db).await?;
    let items: Vec<Value> = definitions()
        .iter()
        .map(|d| {
            let mut item = json!(d);
            item["default"] = d.default_value();
            item["value"] = current.get(d.key).cloned().unwrap_or_else(|| d.default_value());
            item
        })
        .collect();
    Ok(axum::Json(json!({ "settings": items })))
}

/// `{"key": value, …}`: every value is checked before any is stored.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<Map<String, Value>>,
) -> ApiResult<axum::Json<Value>> {
    if body.is_empty() {
        return Err(ApiError::Unprocessable("name at least one setting".into()));
    }
    for (key, value) in &body {
        let def = definition(key).ok_or_else(|| ApiError::Unprocessable(format!("{key}: no such setting")))?;
        def.validate(value).map_err(ApiError::Unprocessable)?;
    }
    let before = settings::load(&state.db).await?;
    let mut tx = state.db.begin().await?;
    for (key, value) in &body {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by",
        )
        .bind(key)
        .bind(value)
        .bind(&caller.name)
        .execute(&mut *tx)
        .await?;
        if key == settings::SCAN_INTERVAL_MINUTES {
            // The default "scan every active production" schedule follows the setting.
            sqlx::query(
                "UPDATE schedules SET interval_every = $1, interval_period = 'minutes', \
                     next_run_at = now() + make_interval(mins => $1::int), updated_at = now() \
                 WHERE name = 'scan-active-productions' AND interval_every IS NOT NULL",
            )
            .bind(value.as_i64().unwrap_or(60))
            .execute(&mut *tx)
            .await?;
        }
        let change = Change {
            action: "setting.update",
            target_type: "setting",
            target_id: Some(key.clone()),
            before: before.get(key.as_str()).cloned(),
            after: Some(value.clone()),
        };
        audit::record(&mut *tx, &caller, change).await?;
    }
    tx.commit().await?;
    list(State(state)).await
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
