//! `/api/v1/jobs`: enqueue, list, show, cancel and retry jobs (each action audited),
//! and why a waiting job waits.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::Utc;
use rushes_common::job::store::{self, NewJob, Tx};
use rushes_common::job::{JobRecord, JobState, MAX_PRIORITY, QueueFamily, catalogue, housekeeping_kinds, spec};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::workers::online;
use crate::audit::{self, Change};
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

/// A job as `POST /jobs` and each item of `POST /jobs/batch` take it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateJob {
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

impl CreateJob {
    /// The job `caller` asks for, its priority and queue checked (the rest is checked
    /// against the catalogue by [`store::validate`]).
    pub(super) fn into_job(self, caller: &Caller) -> ApiResult<NewJob> {
        let priority = match self.priority {
            None => None,
            Some(p) => Some(u8::try_from(p).ok().filter(|p| *p <= MAX_PRIORITY).ok_or_else(|| {
                ApiError::Unprocessable(format!("priority must be between 0 and {MAX_PRIORITY}, got {p}"))
            })?),
        };
        let queue = self
            .queue
            .map(|q| q.parse::<QueueFamily>())
            .transpose()
            .map_err(|e| ApiError::Unprocessable(format!("queue: {e}")))?;
        Ok(NewJob {
            priority,
            queue,
            max_attempts: self.max_attempts,
            requested_by: Some(caller.name.clone()),
            ..NewJob::by_name(self.kind, self.payload)
        })
    }
}

/// Enqueues a job whose payload is valid, whose row (clip, production, upload, …)
/// exists, on its own kind's queue; a kind whose row follows its current job (a clip's
/// transcode) becomes that row's current job, so it runs.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateJob>,
) -> ApiResult<impl IntoResponse> {
    let job = body.into_job(&caller)?;
    let job = enqueue_audited(&state, &caller, job, "job.enqueue").await?;
    let location = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(job)))
}

/// Enqueues one job someone asked for by name (`POST /jobs`, a schedule's "run now"):
/// its row must exist, it becomes that row's current job where the row follows one,
/// and the enqueue is audited as `action`, all in one transaction; then it is published.
pub async fn enqueue_audited(state: &AppState, caller: &Caller, job: NewJob, action: &str) -> ApiResult<JobRecord> {
    store::validate(&job)?;
    let mut tx = Tx::begin(&state.db).await?;
    store::check_target(&mut *tx, &job).await?;
    let job = tx.enqueue_one(job).await?;
    audit::record(
        &mut *tx,
        caller,
        Change {
            action,
            target_type: "job",
            target_id: Some(job.id.to_string()),
            before: None,
            after: Some(json!({
                "kind": job.kind,
                "queue": job.queue,
                "priority": job.priority,
                "max_attempts": job.max_attempts,
                "payload": rushes_common::job::redact::secrets(&job.payload),
                "schedule_id": job.schedule_id,
            })),
        },
    )
    .await?;
    let published = tx.commit(&state.publisher).await?;
    Ok(published.into_iter().next().unwrap_or(job))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListJobs {
    kind: Option<String>,
    /// One state or a comma-separated list.
    state: Option<String>,
    queue: Option<String>,
    schedule_id: Option<Uuid>,
    parent_id: Option<Uuid>,
    /// Jobs working on this production, its clips, uploads or their transcripts.
    production_id: Option<Uuid>,
    /// Jobs working on this clip or its transcripts.
    clip_id: Option<Uuid>,
    /// Include the housekeeping kinds (`reap_workers`, …); by default only when `kind`
    /// or `schedule_id` is given.
    housekeeping: Option<bool>,
    /// Page: jobs enqueued before this job id (ids are time-ordered).
    before: Option<Uuid>,
    limit: Option<i64>,
}

/// The states of a `state` filter (`queued,retrying`), or 422 naming the valid ones.
fn parse_states(list: &str) -> ApiResult<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<JobState>().map(|st| st.as_str().to_owned()).map_err(|_| {
                let valid: Vec<&str> = JobState::ALL.iter().map(|st| st.as_str()).collect();
                ApiError::Unprocessable(format!("state: unknown state `{s}` (valid: {})", valid.join(", ")))
            })
        })
        .collect()
}

async fn list(State(state): State<AppState>, Query(q): Query<ListJobs>) -> ApiResult<impl IntoResponse> {
    let states = q.state.as_deref().map(parse_states).transpose()?;
    if let Some(kind) = q.kind.as_deref().filter(|k| spec(k).is_none()) {
        let known: Vec<&str> = catalogue().iter().map(|k| k.name).collect();
        return Err(ApiError::Unprocessable(format!(
            "kind: unknown kind `{kind}` (known: {})",
            known.join(", ")
        )));
    }
    if let Some(queue) = q.queue.as_deref() {
        queue
            .parse::<QueueFamily>()
            .map_err(|e| ApiError::Unprocessable(format!("queue: {e}")))?;
    }
    let housekeeping = q.housekeeping.unwrap_or(q.kind.is_some() || q.schedule_id.is_some());
    let limit = super::limit(q.limit)?;
    let mut jobs: Vec<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs \
          WHERE ($1::text IS NULL OR kind = $1) AND ($2::text[] IS NULL OR state = ANY($2::text[]::job_state[])) \
            AND ($3::text IS NULL OR queue = $3) AND ($4::uuid IS NULL OR schedule_id = $4) \
            AND ($5::uuid IS NULL OR parent_id = $5) AND ($6::uuid IS NULL OR id < $6) \
            AND ($8 OR NOT kind = ANY($9)) \
            AND ($10::uuid IS NULL OR job_target(payload) = ANY(ARRAY( \
                  SELECT $10::text UNION ALL SELECT id::text FROM transcripts WHERE clip_id = $10))) \
            AND ($11::uuid IS NULL OR job_target(payload) = ANY(ARRAY( \
                  SELECT $11::text \
                  UNION ALL SELECT id::text FROM clips WHERE production_id = $11 \
                  UNION ALL SELECT id::text FROM uploads WHERE production_id = $11 \
                  UNION ALL SELECT t.id::text FROM transcripts t JOIN clips c ON c.id = t.clip_id \
                            WHERE c.production_id = $11 \
                  UNION ALL SELECT t.id::text FROM transcripts t JOIN uploads u ON u.id = t.upload_id \
                            WHERE u.production_id = $11))) \
          ORDER BY id DESC LIMIT $7"
    ))
    .bind(q.kind)
    .bind(states)
    .bind(q.queue)
    .bind(q.schedule_id)
    .bind(q.parent_id)
    .bind(q.before)
    .bind(limit)
    .bind(housekeeping)
    .bind(housekeeping_kinds())
    .bind(q.clip_id)
    .bind(q.production_id)
    .fetch_all(&state.db)
    .await?;
    annotate(&state.db, &mut jobs).await?;
    let next_before = super::next_before(&jobs, limit, |j| j.id);
    Ok(axum::Json(json!({ "jobs": jobs, "next_before": next_before })))
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
    let mut job = [find(&state.db, id).await?];
    annotate(&state.db, &mut job).await?;
    let [job] = job;
    Ok(axum::Json(job))
}

/// Says why each `queued` or `retrying` job is not running yet (`wait_reason`, and
/// `jobs_ahead` for queued ones): its queue is paused, no online worker takes its
/// queue, its message is not with the broker yet, its retry is not due, or the jobs
/// ahead of it in its queue (higher AMQP priority first, then first come).
/// A queued job younger than this many times its enqueuer's deferred stamp
/// ([`store::STAMP_AFTER`]) without `published_at` is most likely published and waiting
/// for that stamp: it is told its place in the queue, not that the broker lacks it.
const JUST_ENQUEUED_STAMPS: u32 = 10;

async fn annotate(db: &sqlx::PgPool, jobs: &mut [JobRecord]) -> ApiResult<()> {
    let waiting = |j: &JobRecord| matches!(j.state, JobState::Queued | JobState::Retrying);
    let queues: Vec<String> = jobs
        .iter()
        .filter(|j| waiting(j))
        .map(|j| j.queue.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if queues.is_empty() {
        return Ok(());
    }
    let pauses: HashMap<String, (Option<String>, Option<String>)> =
        sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
            "SELECT queue, paused_by, reason FROM queue_pauses WHERE queue = ANY($1)",
        )
        .bind(&queues)
        .fetch_all(db)
        .await?
        .into_iter()
        .map(|(q, by, reason)| (q, (by, reason)))
        .collect();
    let served: HashSet<String> = sqlx::query_scalar(concat!(
        "SELECT DISTINCT q FROM workers w, jsonb_object_keys(w.queues) AS q WHERE ",
        online!(),
        " AND q = ANY($1)"
    ))
    .bind(&queues)
    .fetch_all(db)
    .await?
    .into_iter()
    .collect();
    let queued: Vec<Uuid> = jobs
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .map(|j| j.id)
        .collect();
    let ahead: HashMap<Uuid, i64> = if queued.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, i64)>(
            "SELECT id, ahead FROM ( \
                 SELECT id, row_number() OVER (PARTITION BY queue ORDER BY (priority + 5) / 10 DESC, id) - 1 AS ahead \
                 FROM jobs WHERE state = 'queued' AND queue = ANY($1)) ranked \
             WHERE id = ANY($2)",
        )
        .bind(&queues)
        .bind(&queued)
        .fetch_all(db)
        .await?
        .into_iter()
        .collect()
    };
    let now = Utc::now();
    for job in jobs.iter_mut().filter(|j| waiting(j)) {
        let queue = job.queue.clone();
        let retry_pending = job.state == JobState::Retrying && job.retry_at.is_some_and(|at| at > now);
        let reason = if retry_pending {
            format!(
                "attempt {} of {} failed; the next is due at {}",
                job.attempts,
                job.max_attempts,
                job.retry_at.map(|at| at.to_rfc3339()).unwrap_or_default()
            )
        } else if let Some((by, why)) = pauses.get(&queue) {
            let by = by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
            let why = why.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            format!("queue `{queue}` is paused{by}{why}")
        } else if !served.contains(&queue) {
            format!("no worker online takes the `{queue}` queue")
        } else if job.state == JobState::Retrying {
            "its retry is due; waiting to be delivered".to_owned()
        } else if job.published_at.is_none()
            && (Utc::now() - job.enqueued_at)
                .to_std()
                .is_ok_and(|age| age > store::STAMP_AFTER * JUST_ENQUEUED_STAMPS)
        {
            "not handed to the broker yet; the relay publishes it within seconds".to_owned()
        } else {
            match ahead.get(&job.id) {
                Some(0) | None => format!("next in the `{queue}` queue, waiting for a free worker slot"),
                Some(n) => format!("behind {n} jobs in the `{queue}` queue"),
            }
        };
        job.wait_reason = Some(reason);
        job.jobs_ahead = ahead.get(&job.id).copied();
    }
    for job in jobs.iter_mut().filter(|j| j.state != JobState::Retrying) {
        job.retry_at = None;
    }
    Ok(())
}

/// Cancels a queued, retrying or running job. The state change is the cancellation
/// (every worker honours it); the NOTIFY only makes a running job stop at once.
async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<JobRecord>> {
    let mut tx = state.db.begin().await?;
    let Some(job) = store::cancel(&mut tx, id, &caller.name).await? else {
        drop(tx);
        let job = find(&state.db, id).await?;
        return Err(ApiError::Conflict(format!(
            "job {id} is already {}",
            job.state.as_str()
        )));
    };
    audit_job(&mut *tx, &caller, "job.cancel", &job).await?;
    tx.commit().await?;
    Ok(axum::Json(job))
}

async fn audit_job<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    caller: &Caller,
    action: &str,
    job: &JobRecord,
) -> ApiResult<()> {
    audit::record(
        executor,
        caller,
        Change {
            action,
            target_type: "job",
            target_id: Some(job.id.to_string()),
            before: None,
            after: Some(json!({ "kind": job.kind, "queue": job.queue, "state": job.state })),
        },
    )
    .await
}

/// Runs a failed, dead or cancelled job again from its first attempt; its previous
/// error stays in its history.
async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<JobRecord>> {
    let mut tx = Tx::begin(&state.db).await?;
    let job = requeue(&mut tx, &state, &caller, id).await?;
    audit_job(&mut *tx, &caller, "job.retry", &job).await?;
    let published = tx.commit(&state.publisher).await?;
    Ok(axum::Json(published.into_iter().next().unwrap_or(job)))
}

/// Puts a settled (not succeeded) job back to `queued` from attempt 1 in the caller's
/// transaction ([`store::requeue`]), published when it commits; shared with the
/// dead-letter requeue. A job in another state is a conflict.
pub async fn requeue(tx: &mut Tx, state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<JobRecord> {
    match store::requeue(tx, id, &caller.name).await? {
        Some(job) => Ok(job),
        None => {
            let job = find(&state.db, id).await?;
            Err(ApiError::Conflict(format!(
                "job {id} is {}; only failed, dead or cancelled jobs can be retried",
                job.state.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_filter_takes_a_list_and_names_the_valid_states() {
        assert_eq!(
            parse_states("queued, retrying").ok(),
            Some(vec!["queued".to_owned(), "retrying".to_owned()])
        );
        let err = parse_states("queued,exploded").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "state: unknown state `exploded` (valid: queued, running, succeeded, failed, retrying, cancelled, dead)"
            )
        );
    }
}
