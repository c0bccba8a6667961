//! `/api/v1/workers`: the fleet's workers, their slots, GPUs and running jobs.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::Query;
use crate::state::AppState;

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
    Router::new().route("/workers", get(list))
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
}

async fn list(State(state): State<AppState>, Query(q): Query<ListWorkers>) -> ApiResult<axum::Json<serde_json::Value>> {
    let workers: Vec<WorkerView> = sqlx::query_as(concat!(
        "SELECT w.id, w.host, w.pid, w.version, w.queues, w.slots, w.gpus, w.capabilities, w.started_at, w.last_seen_at, \
                w.stopped_at, ",
        online!(),
        " AS online, \
         (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.state = 'running') AS running_jobs \
         FROM workers w WHERE $1 OR ",
        online!(),
        " ORDER BY w.started_at DESC LIMIT $2"
    ))
    .bind(q.all)
    .bind(super::limit(q.limit)?)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(serde_json::json!({ "workers": workers })))
}
