//! The audit trail: every admin change with who, what, before and after (one request's
//! changes share its request id), and every request made while impersonating.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// One change to record.
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Records a change, in the caller's transaction when given one.
pub async fn record<'e>(executor: impl PgExecutor<'e>, caller: &Caller, change: Change<'_>) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, request_id, actor_id, actor, impersonator_id, action, target_type, target_id, \
                                before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(caller.request_id)
    .bind(caller.user_id)
    .bind(&caller.name)
    .bind(caller.impersonator_id)
    .bind(change.action)
    .bind(change.target_type)
    .bind(change.target_id)
    .bind(change.before)
    .bind(change.after)
    .execute(executor)
    .await?;
    Ok(())
}

/// Logs a request made while impersonating (never fails the request).
pub async fn impersonated_request(
    state: &AppState,
    impersonator: Uuid,
    user: Uuid,
    method: &str,
    path: &str,
    status: u16,
) {
    let result = sqlx::query(
        "INSERT INTO impersonation_log (id, impersonator_id, user_id, event, method, path, status) \
         VALUES ($1, $2, $3, 'request', $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(impersonator)
    .bind(user)
    .bind(method)
    .bind(path)
    .bind(i32::from(status))
    .execute(&state.db)
    .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot record an impersonated request");
    }
}
