//! `/api/v1/logs` (admins): the stored log — every job's own lines and the system log
//! (service start/stop, scheduler leadership and fires, API errors) — filtered by level
//! (that level and above), service, job and time, newest first; `/jobs/{id}/logs` is one
//! job's lines in order.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/logs", get(list))
        .route("/jobs/{id}/logs", get(job_lines))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct LogLine {
    id: Uuid,
    at: DateTime<Utc>,
    level: String,
    service: String,
    job_id: Option<Uuid>,
    message: String,
    fields: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    /// Lowest level shown: debug, info, warn or error.
    level: Option<String>,
    service: Option<String>,
    job_id: Option<Uuid>,
    /// Only lines without a job (the system log).
    #[serde(default)]
    system: bool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

async fn list(State(state): State<AppState>, Query(q): Query<LogQuery>) -> ApiResult<axum::Json<Value>> {
    let levels: Vec<&str> = match q.level.as_deref() {
        None => LEVELS.to_vec(),
        Some(level) => match LEVELS.iter().position(|l| *l == level) {
            Some(from) => LEVELS[from..].to_vec(),
            None => {
                return Err(ApiError::BadRequest(format!(
                    "level `{level}` is not one of {}",
                    LEVELS.join(", ")
                )));
            }
        },
    };
    let limit = super::limit(q.limit)?;
    let lines: Vec<LogLine> = sqlx::query_as(
        "SELECT id, at, level, service, job_id, message, fields FROM logs \
         WHERE level = ANY($1) AND ($2::text IS NULL OR service = $2) AND ($3::uuid IS NULL OR job_id = $3) \
           AND (NOT $4 OR job_id IS NULL) AND ($5::timestamptz IS NULL OR at >= $5) \
           AND ($6::timestamptz IS NULL OR at < $6) AND ($7::uuid IS NULL OR id < $7) \
         ORDER BY id DESC LIMIT $8",
    )
    .bind(&levels)
    .bind(q.service)
    .bind(q.job_id)
    .bind(q.system)
    .bind(q.since)
    .bind(q.until)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&lines, limit, |l| l.id);
    Ok(axum::Json(json!({ "lines": lines, "next_before": next })))
}

async fn job_lines(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<Value>> {
    let lines: Vec<LogLine> = sqlx::query_as(
        "SELECT id, at, level, service, job_id, message, fields FROM logs WHERE job_id = $1 ORDER BY id LIMIT 5000",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "job_id": id, "lines": lines })))
}
