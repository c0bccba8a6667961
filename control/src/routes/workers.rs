//! `/api/v1/workers`: the fleet's workers, their slots, GPUs and running jobs; and
//! what an admin may ask of one (Flower's pool control): drain, restart, slots.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::db::WORKER_CHANNEL;
use rushes_common::job::QueueFamily;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Most slots an admin may give one queue of one worker.
const MAX_SLOTS: u16 = 256;

/// A worker is online while it has not stopped and was seen within this window.
/// The SQL condition "online": not stopped and seen within the last 60 seconds.
macro_rules! online {
    () => {
        "(w.stopped_at IS NULL AND w.last_seen_at > now() - interval '60 seconds')"
    };
}
pub(crate) use online;

/// Online workers by version (for the metrics scrape).
pub const ONLINE_COUNT_SQL: &str = concat!(
    "SELECT version, count(*) FROM workers w WHERE ",
    online!(),
    " GROUP BY version"
);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workers", get(list))
        .route("/workers/{id}", get(show).patch(update))
        .route("/workers/{id}/drain", post(drain))
        .route("/workers/{id}/restart", post(restart))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListWorkers {
    /// Include stopped and silent workers.
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct WorkerView {
    id: Uuid,
    host: String,
    pid: i32,
    version: String,
    queues: serde_json::Value,
    slots: i32,
    gpus: serde_json::Value,
    /// Video encoder and hardware decoding chosen at start.
    capabilities: serde_json::Value,
    started_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    online: bool,
    running_jobs: i64,
    /// `drain` or `restart` once an admin asked for it, with when.
    stop_requested: Option<String>,
    stop_requested_at: Option<DateTime<Utc>>,
    /// Slots per queue an admin set (the worker applies them within a heartbeat;
    /// `queues` is what is in force).
    slots_wanted: serde_json::Value,
}

/// The columns of a [`WorkerView`] from `workers w`.
macro_rules! worker_columns {
    () => {
        concat!(
            "w.id, w.host, w.pid, w.version, w.queues, w.slots, w.gpus, w.capabilities, w.started_at, \
             w.last_seen_at, w.stopped_at, ",
            online!(),
            " AS online, \
             (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.state = 'running') AS running_jobs, \
             w.stop_requested, w.stop_requested_at, w.slots_wanted"
        )
    };
}

async fn list(State(state): State<AppState>, Query(q): Query<ListWorkers>) -> ApiResult<axum::Json<serde_json::Value>> {
    let workers: Vec<WorkerView> = sqlx::query_as(concat!(
        "SELECT ",
        worker_columns!(),
        " FROM workers w WHERE $1 OR ",
        online!(),
        " ORDER BY w.started_at DESC LIMIT $2"
    ))
    .bind(q.all)
    .bind(super::limit(q.limit)?)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(serde_json::json!({ "workers": workers })))
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<WorkerView> {
    sqlx::query_as(concat!("SELECT ", worker_columns!(), " FROM workers w WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no worker {id}")))
}

/// One worker, stopped or not.
async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<WorkerView>> {
    Ok(axum::Json(find(&state, id).await?))
}

/// A worker that is online, or why an admin cannot ask it anything.
async fn online_worker(state: &AppState, id: Uuid) -> ApiResult<WorkerView> {
    let worker = find(state, id).await?;
    if !worker.online {
        return Err(ApiError::Conflict(format!(
            "worker {id} is not online (stopped or silent): there is nothing to ask of it"
        )));
    }
    Ok(worker)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateWorker {
    /// Slots per queue (the worker's own queues only), 1–256.
    slots: BTreeMap<String, u16>,
}

/// Sets a running worker's slots per queue, applied without a restart: more slots take
/// jobs at once; fewer are taken back as running jobs end. Audited.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateWorker>,
) -> ApiResult<axum::Json<WorkerView>> {
    let worker = online_worker(&state, id).await?;
    if body.slots.is_empty() {
        return Err(ApiError::Unprocessable("slots: name at least one queue".into()));
    }
    let consumed = worker.queues.as_object().cloned().unwrap_or_default();
    for (name, slots) in &body.slots {
        let family: QueueFamily = name
            .parse()
            .map_err(|_| ApiError::Unprocessable(format!("slots: no queue `{}`", name.escape_debug())))?;
        if !consumed.contains_key(family.as_str()) {
            return Err(ApiError::Unprocessable(format!(
                "slots: worker {id} does not consume `{family}` (it takes {})",
                consumed.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if !(1..=MAX_SLOTS).contains(slots) {
            return Err(ApiError::Unprocessable(format!(
                "slots: `{family}` must have 1 to {MAX_SLOTS} slots (pause the queue to take none)"
            )));
        }
    }
    let wanted = serde_json::to_value(&body.slots).map_err(anyhow::Error::from)?;
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE workers SET slots_wanted = slots_wanted || $2 WHERE id = $1")
        .bind(id)
        .bind(&wanted)
        .execute(&mut *tx)
        .await?;
    notify(&mut tx, id).await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "worker.slots",
            target_type: "worker",
            target_id: Some(id.to_string()),
            before: Some(json!({ "queues": worker.queues })),
            after: Some(json!({ "slots": wanted })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(find(&state, id).await?))
}

/// The worker stops taking jobs, finishes every job it holds however long they run,
/// and exits 0, for its supervisor to start a fresh one. Audited.
async fn drain(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, axum::Json<WorkerView>)> {
    ask_to_stop(&state, &caller, id, "drain").await
}

/// The worker stops as on SIGTERM: it takes no more jobs, gives those it holds its grace
/// period, sends the rest back to their queues, and exits 0 for its supervisor to start
/// a fresh one. Audited.
async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, axum::Json<WorkerView>)> {
    ask_to_stop(&state, &caller, id, "restart").await
}

async fn ask_to_stop(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    how: &'static str,
) -> ApiResult<(StatusCode, axum::Json<WorkerView>)> {
    online_worker(state, id).await?;
    let mut tx = state.db.begin().await?;
    // A second request changes nothing: the first one's kind and time stay.
    let asked = sqlx::query(
        "UPDATE workers SET stop_requested = $2, stop_requested_at = now() \
         WHERE id = $1 AND stop_requested IS NULL",
    )
    .bind(id)
    .bind(how)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if asked > 0 {
        notify(&mut tx, id).await?;
        audit::record(
            &mut *tx,
            caller,
            Change {
                action: if how == "drain" {
                    "worker.drain"
                } else {
                    "worker.restart"
                },
                target_type: "worker",
                target_id: Some(id.to_string()),
                before: None,
                after: Some(json!({ "stop_requested": how })),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, axum::Json(find(state, id).await?)))
}

/// Tells the worker (it LISTENs) to read what it was asked, at commit.
async fn notify(tx: &mut sqlx::PgConnection, id: Uuid) -> ApiResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(WORKER_CHANNEL)
        .bind(id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}
