//! `/api/v1/dead-letters`: messages parked because they could not run (malformed,
//! unknown kind or job, out of attempts), and requeueing them.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rushes_common::job::QueueFamily;
use rushes_common::queue::Outgoing;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dead-letters", get(list))
        .route("/dead-letters/{id}", get(show))
        .route("/dead-letters/{id}/requeue", post(requeue))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDeadLetters {
    queue: Option<String>,
    /// Include letters already requeued.
    #[serde(default)]
    all: bool,
    before: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct DeadLetterRow {
    id: Uuid,
    queue: String,
    job_id: Option<Uuid>,
    kind: Option<String>,
    reason: String,
    body: Vec<u8>,
    headers: serde_json::Value,
    dead_at: DateTime<Utc>,
    requeued_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct DeadLetterView {
    id: Uuid,
    queue: String,
    job_id: Option<Uuid>,
    kind: Option<String>,
    reason: String,
    /// The message body: JSON when it parses, else its text (lossy UTF-8).
    body: serde_json::Value,
    headers: serde_json::Value,
    dead_at: DateTime<Utc>,
    requeued_at: Option<DateTime<Utc>>,
}

impl From<DeadLetterRow> for DeadLetterView {
    fn from(row: DeadLetterRow) -> Self {
        let body = serde_json::from_slice(&row.body).map_or_else(
            |_| serde_json::Value::String(String::from_utf8_lossy(&row.body).into_owned()),
            |json| rushes_common::job::redact::secrets(&json),
        );
        Self {
            id: row.id,
            queue: row.queue,
            job_id: row.job_id,
            kind: row.kind,
            reason: row.reason,
            body,
            headers: row.headers,
            dead_at: row.dead_at,
            requeued_at: row.requeued_at,
        }
    }
}

const COLUMNS: &str = "id, queue, job_id, kind, reason, body, headers, dead_at, requeued_at";

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListDeadLetters>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let limit = super::limit(q.limit);
    let rows: Vec<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters \
         WHERE ($1::text IS NULL OR queue = $1) AND ($2 OR requeued_at IS NULL) AND ($3::uuid IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(q.queue)
    .bind(q.all)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&rows, limit, |r| r.id);
    let letters: Vec<DeadLetterView> = rows.into_iter().map(Into::into).collect();
    Ok(axum::Json(
        serde_json::json!({ "dead_letters": letters, "next_before": next_before }),
    ))
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<DeadLetterRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no dead letter {id}")))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<DeadLetterView>> {
    Ok(axum::Json(find(&state, id).await?.into()))
}

/// A job's letter: the job runs again from its first attempt. A foreign letter
/// (malformed, unknown kind): its bytes go back to their queue as they were, for
/// when a fix has been deployed.
async fn requeue(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = find(&state, id).await?;
    if letter.requeued_at.is_some() {
        return Err(ApiError::Conflict(format!("dead letter {id} was already requeued")));
    }
    match letter.job_id {
        Some(job_id) => {
            super::jobs::requeue(&state, job_id).await?;
        }
        None => {
            let family: QueueFamily = letter
                .queue
                .parse()
                .map_err(|e: rushes_common::job::UnknownQueue| ApiError::Conflict(e.to_string()))?;
            let message = Outgoing::raw(state.broker().topology(), family, letter.body.clone());
            state
                .publisher
                .publish(&[message])
                .await
                .map_err(|e| ApiError::Unavailable(format!("cannot publish: {e}")))?;
            sqlx::query("UPDATE dead_letters SET requeued_at = now() WHERE id = $1")
                .bind(id)
                .execute(&state.db)
                .await?;
        }
    }
    Ok(axum::Json(find(&state, id).await?.into()))
}
