//! `/api/v1/queues`: depth, consumers and in-flight jobs per queue; pause (with who,
//! when and why) and resume, both audited.

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use rushes_common::db::PAUSE_CHANNEL;
use rushes_common::job::QueueFamily;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/queues", get(list))
        .route("/queues/{name}", get(show))
        .route("/queues/{name}/pause", post(pause))
        .route("/queues/{name}/resume", post(resume))
}

#[derive(Debug, Serialize)]
pub(crate) struct QueueView {
    name: &'static str,
    /// The RabbitMQ queue behind it (with the deployment's prefix).
    broker_queue: String,
    /// Messages ready in RabbitMQ (null while the broker is unreachable).
    depth: Option<u32>,
    /// Consumers attached in RabbitMQ (null while the broker is unreachable).
    consumers: Option<u32>,
    /// Jobs of this queue running now.
    in_flight: i64,
    queued: i64,
    retrying: i64,
    paused: bool,
    paused_at: Option<DateTime<Utc>>,
    paused_by: Option<String>,
    /// Why, in the pauser's words.
    pause_reason: Option<String>,
}

/// Jobs queued, running and retrying per queue (the partial index on active states
/// keeps this cheap however many finished jobs the table holds).
pub struct ActiveCounts(Vec<(String, String, i64)>);

impl ActiveCounts {
    pub const STATES: [&'static str; 3] = ["queued", "running", "retrying"];

    pub async fn read(db: &sqlx::PgPool) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query_as(
            "SELECT queue, state::text, count(*) FROM jobs \
             WHERE state IN ('queued', 'running', 'retrying') GROUP BY 1, 2",
        )
        .fetch_all(db)
        .await?;
        Ok(Self(rows))
    }

    pub fn get(&self, family: QueueFamily, state: &str) -> i64 {
        self.0
            .iter()
            .find(|(q, s, _)| q == family.as_str() && s == state)
            .map_or(0, |c| c.2)
    }
}

/// A row of `queue_pauses`.
#[derive(sqlx::FromRow)]
struct PauseRow {
    queue: String,
    paused_at: DateTime<Utc>,
    paused_by: Option<String>,
    reason: Option<String>,
}

/// Every queue (or `only` one) as it stands now: broker depth and consumers, jobs by
/// state, pause.
pub(crate) async fn views(state: &AppState, only: Option<QueueFamily>) -> ApiResult<Vec<QueueView>> {
    let stats = match state.broker().queue_stats().await {
        Ok(stats) => Some(stats),
        Err(err) => {
            tracing::warn!(error = %err, "broker unreachable; queue depths unknown");
            None
        }
    };
    let counts = ActiveCounts::read(&state.db).await?;
    let pauses: Vec<PauseRow> = sqlx::query_as("SELECT queue, paused_at, paused_by, reason FROM queue_pauses")
        .fetch_all(&state.db)
        .await?;
    Ok(QueueFamily::ALL
        .into_iter()
        .filter(|f| only.is_none_or(|o| o == *f))
        .map(|family| {
            let broker = stats.as_ref().and_then(|s| s.iter().find(|s| s.family == family));
            let pause = pauses.iter().find(|p| p.queue == family.as_str());
            QueueView {
                name: family.as_str(),
                broker_queue: state.broker().topology().queue(family),
                depth: broker.map(|b| b.messages),
                consumers: broker.map(|b| b.consumers),
                in_flight: counts.get(family, "running"),
                queued: counts.get(family, "queued"),
                retrying: counts.get(family, "retrying"),
                paused: pause.is_some(),
                paused_at: pause.map(|p| p.paused_at),
                paused_by: pause.and_then(|p| p.paused_by.clone()),
                pause_reason: pause.and_then(|p| p.reason.clone()),
            }
        })
        .collect())
}

fn family(name: &str) -> ApiResult<QueueFamily> {
    name.parse()
        .map_err(|e: rushes_common::job::UnknownQueue| ApiError::NotFound(e.to_string()))
}

async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(serde_json::json!({ "queues": views(&state, None).await? })))
}

async fn show_one(state: &AppState, family: QueueFamily) -> ApiResult<axum::Json<QueueView>> {
    views(state, Some(family))
        .await?
        .pop()
        .map(axum::Json)
        .ok_or_else(|| ApiError::NotFound(format!("no queue {family}")))
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<axum::Json<QueueView>> {
    show_one(&state, family(&name)?).await
}

/// `POST /queues/{name}/pause`: an optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Pause {
    reason: Option<String>,
}

/// Longest pause reason, in characters.
const REASON_CHARS: usize = 500;

/// Workers stop taking from the queue (in-flight jobs finish); stored in PostgreSQL so
/// every worker, including ones started later, honours it. Pausing a paused queue
/// changes nothing (the first pause's who, when and why stay).
async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<Pause>,
) -> ApiResult<axum::Json<QueueView>> {
    let family = family(&name)?;
    let reason = body.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    if let Some(reason) = &reason {
        if reason.chars().count() > REASON_CHARS {
            return Err(ApiError::Unprocessable(format!(
                "reason: at most {REASON_CHARS} characters"
            )));
        }
        if reason.contains('\0') {
            return Err(ApiError::Unprocessable(
                "reason: must not contain NUL characters".into(),
            ));
        }
    }
    set_paused(&state, &caller, family, true, reason.as_deref()).await?;
    show_one(&state, family).await
}

async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<QueueView>> {
    let family = family(&name)?;
    set_paused(&state, &caller, family, false, None).await?;
    show_one(&state, family).await
}

/// Pauses or resumes; an actual change is announced to the workers and audited.
async fn set_paused(
    state: &AppState,
    caller: &Caller,
    family: QueueFamily,
    paused: bool,
    reason: Option<&str>,
) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let changed = if paused {
        sqlx::query(
            "INSERT INTO queue_pauses (queue, paused_by, reason) VALUES ($1, $2, $3) ON CONFLICT (queue) DO NOTHING",
        )
        .bind(family.as_str())
        .bind(&caller.name)
        .bind(reason)
        .execute(&mut *tx)
        .await?
    } else {
        sqlx::query("DELETE FROM queue_pauses WHERE queue = $1")
            .bind(family.as_str())
            .execute(&mut *tx)
            .await?
    }
    .rows_affected();
    if changed == 0 {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PAUSE_CHANNEL)
        .bind(family.as_str())
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        caller,
        Change {
            action: if paused { "queue.pause" } else { "queue.resume" },
            target_type: "queue",
            target_id: Some(family.as_str().to_owned()),
            before: None,
            after: Some(json!({ "paused": paused, "reason": reason })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
