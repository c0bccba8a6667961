//! `/api/v1/jobs`: enqueue, list, show, cancel and retry jobs.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use rushes_common::db::CANCEL_CHANNEL;
use rushes_common::enqueue::{self, NewJob};
use rushes_common::job::{JobRecord, JobState, MAX_PRIORITY, QueueFamily};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", post(create).get(list))
        .route("/jobs/{id}", get(show))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJob {
    kind: String,
    #[serde(default = "empty_object")]
    payload: serde_json::Value,
    /// 0–100; parsed wide so that out-of-range values get a clear message.
    priority: Option<i64>,
    queue: Option<String>,
    max_attempts: Option<i32>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateJob>,
) -> ApiResult<impl IntoResponse> {
    let priority = match body.priority {
        None => None,
        Some(p) => Some(u8::try_from(p).ok().filter(|p| *p <= MAX_PRIORITY).ok_or_else(|| {
            ApiError::Unprocessable(format!("priority must be between 0 and {MAX_PRIORITY}, got {p}"))
        })?),
    };
    let queue = body
        .queue
        .map(|q| q.parse::<QueueFamily>())
        .transpose()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let job = NewJob {
        priority,
        queue,
        max_attempts: body.max_attempts,
        requested_by: Some(caller.name),
        ..NewJob::new(body.kind, body.payload)
    };
    let job = enqueue_one(&state, job).await?;
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(job)))
}

/// Enqueues one job (committed, then published) and counts it.
pub async fn enqueue_one(state: &AppState, job: NewJob) -> ApiResult<JobRecord> {
    let mut records = enqueue::enqueue(&state.db, &state.publisher, vec![job]).await?;
    let job = records.pop().ok_or_else(|| anyhow::anyhow!("insert returned no row"))?;
    state
        .metrics
        .jobs_enqueued
        .with_label_values(&[job.kind.as_str(), job.queue.as_str()])
        .inc();
    Ok(job)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListJobs {
    kind: Option<String>,
    state: Option<String>,
    queue: Option<String>,
    schedule_id: Option<Uuid>,
    parent_id: Option<Uuid>,
    /// Page: jobs enqueued before this job id (ids are time-ordered).
    before: Option<Uuid>,
    limit: Option<i64>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListJobs>) -> ApiResult<impl IntoResponse> {
    let job_state = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = super::limit(q.limit);
    let jobs: Vec<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs \
          WHERE ($1::text IS NULL OR kind = $1) AND ($2::job_state IS NULL OR state = $2) \
            AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR schedule_id = $4) \
            AND ($5::uuid IS NULL OR parent_id = $5) AND ($6::uuid IS NULL OR id < $6) \
          ORDER BY id DESC LIMIT $7"
    ))
    .bind(q.kind)
    .bind(job_state)
    .bind(q.queue)
    .bind(q.schedule_id)
    .bind(q.parent_id)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&jobs, limit, |j| j.id);
    Ok(axum::Json(
        serde_json::json!({ "jobs": jobs, "next_before": next_before }),
    ))
}

/// The job with `id`, or 404.
pub async fn find(db: &sqlx::PgPool, id: Uuid) -> ApiResult<JobRecord> {
    sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<JobRecord>> {
    Ok(axum::Json(find(&state.db, id).await?))
}

/// Cancels a queued, retrying or running job. The state change is the cancellation
/// (every worker honours it); the NOTIFY only makes a running job stop at once.
async fn cancel(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<JobRecord>> {
    let mut tx = state.db.begin().await?;
    let cancelled: Option<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'cancelled', finished_at = now(), heartbeat_at = NULL \
         WHERE id = $1 AND state IN ('queued', 'retrying', 'running') RETURNING ",
        rushes_common::job_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(job) = cancelled else {
        let job = find(&state.db, id).await?;
        return Err(ApiError::Conflict(format!(
            "job {id} is already {}",
            job.state.as_str()
        )));
    };
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CANCEL_CHANNEL)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(axum::Json(job))
}

/// Runs a failed, dead or cancelled job again from its first attempt.
async fn retry(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<JobRecord>> {
    let job = requeue(&state, id).await?;
    Ok(axum::Json(job))
}

/// Puts a settled (not succeeded) job back to `queued` and publishes it; shared with
/// the dead-letter requeue.
pub async fn requeue(state: &AppState, id: Uuid) -> ApiResult<JobRecord> {
    let reset: Option<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'queued', attempts = 0, progress = 0, error = NULL, result = NULL, \
                worker_id = NULL, heartbeat_at = NULL, started_at = NULL, finished_at = NULL, \
                published_at = NULL, enqueued_at = now() \
         WHERE id = $1 AND state IN ('failed', 'dead', 'cancelled') RETURNING ",
        rushes_common::job_columns!()
    ))
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    let Some(job) = reset else {
        let job = find(&state.db, id).await?;
        return Err(ApiError::Conflict(format!(
            "job {id} is {}; only failed, dead or cancelled jobs can be retried",
            job.state.as_str()
        )));
    };
    sqlx::query("UPDATE dead_letters SET requeued_at = now() WHERE job_id = $1 AND requeued_at IS NULL")
        .bind(id)
        .execute(&state.db)
        .await?;
    let mut records = [job];
    if let Err(err) = enqueue::publish(&state.db, &state.publisher, &mut records).await {
        tracing::warn!(job.id = %id, error = %err, "requeued job not published yet; the relay will publish it");
    }
    let [job] = records;
    Ok(job)
}
