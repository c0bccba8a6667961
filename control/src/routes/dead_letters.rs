//! `/api/v1/dead-letters`: messages parked because they could not run (malformed,
//! unknown kind or job, out of attempts); requeueing them, or discarding them (resolved
//! without a re-run). Both audited.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::QueueFamily;
use rushes_common::job::store::{self, Resolution, Tx};
use rushes_common::queue::Outgoing;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dead-letters", get(list))
        .route("/dead-letters/{id}", get(show))
        .route("/dead-letters/{id}/requeue", post(requeue))
        .route("/dead-letters/{id}/discard", post(discard))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDeadLetters {
    queue: Option<String>,
    /// Include letters already resolved (requeued or discarded).
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
    attempt: Option<i32>,
    requeued_by: Option<String>,
    discarded_at: Option<DateTime<Utc>>,
    discarded_by: Option<String>,
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
    /// The attempt that died (the job's `attempts` then); null for a foreign message.
    attempt: Option<i32>,
    headers: serde_json::Value,
    dead_at: DateTime<Utc>,
    requeued_at: Option<DateTime<Utc>>,
    requeued_by: Option<String>,
    /// Resolved without a re-run: the job stays dead.
    discarded: bool,
    discarded_at: Option<DateTime<Utc>>,
    discarded_by: Option<String>,
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
            attempt: row.attempt,
            headers: row.headers,
            dead_at: row.dead_at,
            requeued_at: row.requeued_at,
            requeued_by: row.requeued_by,
            discarded: row.discarded_at.is_some(),
            discarded_at: row.discarded_at,
            discarded_by: row.discarded_by,
        }
    }
}

const COLUMNS: &str = "id, queue, job_id, kind, reason, body, headers, dead_at, requeued_at, attempt, requeued_by, discarded_at, discarded_by";

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListDeadLetters>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let limit = super::limit(q.limit)?;
    let rows: Vec<DeadLetterRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters \
         WHERE ($1::text IS NULL OR queue = $1) AND ($2 OR (requeued_at IS NULL AND discarded_at IS NULL)) \
           AND ($3::uuid IS NULL OR id < $3) \
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

/// Refuses to act on a letter already resolved.
fn require_open(letter: &DeadLetterRow) -> ApiResult<()> {
    if letter.requeued_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "dead letter {} was already requeued",
            letter.id
        )));
    }
    if letter.discarded_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "dead letter {} was already discarded",
            letter.id
        )));
    }
    Ok(())
}

async fn audit_letter<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    caller: &Caller,
    action: &str,
    letter: &DeadLetterRow,
) -> ApiResult<()> {
    audit::record(
        executor,
        caller,
        Change {
            action,
            target_type: "dead_letter",
            target_id: Some(letter.id.to_string()),
            before: None,
            after: Some(json!({
                "queue": letter.queue,
                "job_id": letter.job_id,
                "kind": letter.kind,
                "reason": letter.reason,
            })),
        },
    )
    .await
}

/// A job's letter: the job runs again from its first attempt. A foreign letter
/// (malformed, unknown kind): its bytes go back to their queue as they were, for
/// when a fix has been deployed.
async fn requeue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = find(&state, id).await?;
    require_open(&letter)?;
    match letter.job_id {
        Some(job_id) => {
            let mut tx = Tx::begin(&state.db).await?;
            super::jobs::requeue(&mut tx, &state, &caller, job_id).await?;
            // The job's open letter is resolved with it; this one too if it was not it.
            store::resolve_dead_letter(&mut tx, id, &caller.name, Resolution::Requeued).await?;
            audit_letter(&mut *tx, &caller, "dead_letter.requeue", &letter).await?;
            tx.commit(&state.publisher).await?;
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
            let mut tx = state.db.begin().await?;
            store::resolve_dead_letter(&mut tx, id, &caller.name, Resolution::Requeued).await?;
            audit_letter(&mut *tx, &caller, "dead_letter.requeue", &letter).await?;
            tx.commit().await?;
        }
    }
    Ok(axum::Json(find(&state, id).await?.into()))
}

/// Resolves a letter without running anything again: it leaves the open list, its job
/// (if any) stays dead. The broker's parked copy is left where it is.
async fn discard(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<DeadLetterView>> {
    let letter = find(&state, id).await?;
    require_open(&letter)?;
    let mut tx = state.db.begin().await?;
    if !store::resolve_dead_letter(&mut tx, id, &caller.name, Resolution::Discarded).await? {
        // Resolved by someone else meanwhile.
        drop(tx);
        require_open(&find(&state, id).await?)?;
        return Err(ApiError::Conflict(format!("dead letter {id} was resolved meanwhile")));
    }
    audit_letter(&mut *tx, &caller, "dead_letter.discard", &letter).await?;
    tx.commit().await?;
    Ok(axum::Json(find(&state, id).await?.into()))
}
