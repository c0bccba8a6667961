//! `/api/v1/audit-log`, `/api/v1/login-log`, `/api/v1/impersonation-log` (admins only).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit-log", get(audit_log))
        .route("/login-log", get(login_log))
        .route("/impersonation-log", get(impersonation_log))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    target_type: Option<String>,
    target_id: Option<String>,
    action: Option<String>,
    actor_id: Option<Uuid>,
    /// The actor's name, whatever its case (`admin` is the bootstrap token).
    actor: Option<String>,
    /// `user`, `bootstrap_token` or `job`.
    actor_type: Option<String>,
    request_id: Option<Uuid>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

const ACTOR_TYPES: [&str; 3] = ["user", "bootstrap_token", "job"];

#[derive(Debug, Serialize, sqlx::FromRow)]
struct AuditEntry {
    id: Uuid,
    request_id: Uuid,
    actor_id: Option<Uuid>,
    actor: String,
    /// `user`, `bootstrap_token` (actor `admin`, no `actor_id`) or `job` (a bulk job
    /// acting for its requester).
    actor_type: String,
    impersonator_id: Option<Uuid>,
    action: String,
    target_type: String,
    target_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
    at: DateTime<Utc>,
}

async fn audit_log(State(state): State<AppState>, Query(q): Query<LogQuery>) -> ApiResult<axum::Json<Value>> {
    if let Some(kind) = q.actor_type.as_deref().filter(|k| !ACTOR_TYPES.contains(k)) {
        return Err(ApiError::Unprocessable(format!(
            "actor_type: `{kind}` is not one of {}",
            ACTOR_TYPES.join(", ")
        )));
    }
    let limit = super::limit(q.limit)?;
    let entries: Vec<AuditEntry> = sqlx::query_as(
        "SELECT id, request_id, actor_id, actor, actor_type, impersonator_id, action, target_type, target_id, \
                before, after, at \
         FROM audit_log \
         WHERE ($1::text IS NULL OR target_type = $1) AND ($2::text IS NULL OR target_id = $2) \
           AND ($3::text IS NULL OR action = $3) AND ($4::uuid IS NULL OR actor_id = $4) \
           AND ($5::uuid IS NULL OR request_id = $5) AND ($6::uuid IS NULL OR id < $6) \
           AND ($8::text IS NULL OR lower(actor) = lower($8)) AND ($9::text IS NULL OR actor_type = $9) \
         ORDER BY id DESC LIMIT $7",
    )
    .bind(q.target_type)
    .bind(q.target_id)
    .bind(q.action)
    .bind(q.actor_id)
    .bind(q.request_id)
    .bind(q.before)
    .bind(limit)
    .bind(q.actor)
    .bind(q.actor_type)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&entries, limit, |e| e.id);
    Ok(axum::Json(json!({ "entries": entries, "next_before": next })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleQuery {
    username: Option<String>,
    success: Option<bool>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct LoginEntry {
    id: Uuid,
    username: String,
    user_id: Option<Uuid>,
    success: bool,
    reason: Option<String>,
    remote: Option<String>,
    at: DateTime<Utc>,
}

async fn login_log(State(state): State<AppState>, Query(q): Query<SimpleQuery>) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let entries: Vec<LoginEntry> = sqlx::query_as(
        "SELECT id, username, user_id, success, reason, remote, at FROM login_log \
         WHERE ($1::text IS NULL OR lower(username) = lower($1)) AND ($2::bool IS NULL OR success = $2) \
           AND ($3::uuid IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(q.username)
    .bind(q.success)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&entries, limit, |e| e.id);
    Ok(axum::Json(json!({ "entries": entries, "next_before": next })))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct ImpersonationEntry {
    id: Uuid,
    impersonator_id: Uuid,
    user_id: Uuid,
    event: String,
    method: Option<String>,
    path: Option<String>,
    status: Option<i32>,
    at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImpersonationQuery {
    impersonator_id: Option<Uuid>,
    user_id: Option<Uuid>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

async fn impersonation_log(
    State(state): State<AppState>,
    Query(q): Query<ImpersonationQuery>,
) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let entries: Vec<ImpersonationEntry> = sqlx::query_as(
        "SELECT id, impersonator_id, user_id, event, method, path, status, at FROM impersonation_log \
         WHERE ($1::uuid IS NULL OR impersonator_id = $1) AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::uuid IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(q.impersonator_id)
    .bind(q.user_id)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&entries, limit, |e| e.id);
    Ok(axum::Json(json!({ "entries": entries, "next_before": next })))
}
