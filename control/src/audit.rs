//! The audit trail: every admin change with who, what, before and after (one request's
//! changes share its request id), and every request made while impersonating.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

pub use rushes_common::audit::Change;

/// Records a change made by `caller`, in the caller's transaction when given one.
pub async fn record<'e>(executor: impl PgExecutor<'e>, caller: &Caller, change: Change<'_>) -> ApiResult<()> {
    rushes_common::audit::record(executor, &caller.actor(), change).await?;
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
