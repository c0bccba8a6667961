//! `/api/v1/dashboard` (admins): where the fleet's work stands — clips by stage, and
//! live: running jobs with their targets, queues (depths, jobs by state, paused, by
//! whom and why), online workers with slots and GPUs, users online.
//!
//! Freshness: the clip counts (the one expensive part, a pass over `clips` and
//! `transcripts`) are cached for at most `cache_ttl_seconds`, and dropped on every
//! replica as soon as a statement changes either table (a trigger's NOTIFY), so they
//! lag a committed change only by the notification's delivery (milliseconds);
//! `counted_at` says when they were counted. Everything else is read on every request.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use rushes_common::settings;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::workers::online;
use crate::error::ApiResult;
use crate::state::AppState;

const COUNTS_KEY: &str = "counts.dashboard";

pub fn router() -> Router<AppState> {
    Router::new().route("/dashboard", get(dashboard))
}

/// Clip counts by stage, one pass over `clips`.
async fn clip_counts(state: &AppState) -> ApiResult<Value> {
    let ttl = Duration::from_secs(
        u64::try_from(settings::integer(&state.db, settings::CACHE_TTL_SECONDS).await?).unwrap_or(0),
    );
    if let Some(hit) = state.cache.get(COUNTS_KEY, ttl) {
        return Ok(hit);
    }
    let generation = state.cache.generation();
    let (waiting, transcoded, failed, missing): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE transcode_state IN ('pending', 'queued', 'running') AND NOT missing), \
                count(*) FILTER (WHERE transcode_state = 'done'), \
                count(*) FILTER (WHERE transcode_state IN ('failed', 'cancelled')), \
                count(*) FILTER (WHERE missing) \
         FROM clips",
    )
    .fetch_one(&state.db)
    .await?;
    let (waiting_transcribe, transcribed, transcribe_failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state IN ('queued', 'running')), count(*) FILTER (WHERE state = 'done'), \
                count(*) FILTER (WHERE state IN ('failed', 'cancelled')) \
         FROM transcripts WHERE clip_id IS NOT NULL",
    )
    .fetch_one(&state.db)
    .await?;
    let counts = json!({
        "clips_waiting_transcode": waiting,
        "clips_transcoded": transcoded,
        "clips_failed": failed,
        "clips_waiting_transcribe": waiting_transcribe,
        "clips_transcribed": transcribed,
        "clips_transcribe_failed": transcribe_failed,
        "clips_missing": missing,
        "counted_at": Utc::now(),
    });
    if !ttl.is_zero() {
        state.cache.put_unless_dropped(COUNTS_KEY, counts.clone(), generation);
    }
    Ok(counts)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct RunningJob {
    id: Uuid,
    kind: String,
    queue: String,
    /// The production or clip the job works on, when it has one.
    target: Option<String>,
    progress: f32,
    worker_id: Option<Uuid>,
    worker_host: Option<String>,
    started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct OnlineWorker {
    id: Uuid,
    host: String,
    queues: Value,
    slots: i32,
    gpus: Value,
    capabilities: Value,
    last_seen_at: DateTime<Utc>,
}

async fn dashboard(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let mut body = clip_counts(&state).await?;
    let running: Vec<RunningJob> = sqlx::query_as(
        "SELECT j.id, j.kind, j.queue, \
                COALESCE(j.payload->>'clip_id', j.payload->>'production_id') AS target, \
                j.progress, j.worker_id, w.host AS worker_host, j.started_at \
         FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id \
         WHERE j.state = 'running' ORDER BY j.started_at LIMIT 500",
    )
    .fetch_all(&state.db)
    .await?;
    let workers: Vec<OnlineWorker> = sqlx::query_as(concat!(
        "SELECT w.id, w.host, w.queues, w.slots, w.gpus, w.capabilities, w.last_seen_at FROM workers w WHERE ",
        online!(),
        " ORDER BY w.host"
    ))
    .fetch_all(&state.db)
    .await?;
    let window = settings::integer(&state.db, settings::ONLINE_WINDOW_MINUTES).await?;
    let users_online: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE active AND deleted_at IS NULL \
            AND last_seen_at > now() - make_interval(mins => $1::int)",
    )
    .bind(window)
    .fetch_one(&state.db)
    .await?;
    // As `GET /queues` shows them (depths null while the broker is unreachable).
    let queues = super::queues::views(&state, None).await?;
    body["running_jobs"] = json!(running);
    body["workers_online"] = json!(workers);
    body["users_online"] = json!(users_online);
    body["queues"] = json!(queues);
    Ok(axum::Json(body))
}
