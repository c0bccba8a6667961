//! What admins do to jobs and dead letters: cancel, requeue (retry), and resolve a dead
//! letter (requeued or discarded). Each runs in the caller's transaction, which the
//! caller audits and commits.

use sqlx::PgConnection;
use uuid::Uuid;

use super::outbox::Tx;
use crate::db::CANCEL_CHANNEL;
use crate::job::JobRecord;

/// Cancels a queued, retrying or running job as `by`; a worker running it is told to
/// stop when `tx` commits. `None` when the job is in none of those states (or absent).
pub async fn cancel(tx: &mut PgConnection, id: Uuid, by: &str) -> Result<Option<JobRecord>, sqlx::Error> {
    // `state` and `attempts` in SET are the row's values before the update.
    let cancelled: Option<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'cancelled', finished_at = now(), heartbeat_at = NULL, retry_at = NULL, \
                cancelled_by = $2, \
                history = history || jsonb_build_array(jsonb_build_object( \
                    'at', now(), 'event', 'cancelled', 'attempt', attempts, 'state', state, 'by', $2)) \
         WHERE id = $1 AND state IN ('queued', 'retrying', 'running') RETURNING ",
        crate::job_columns!()
    ))
    .bind(id)
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    if cancelled.is_some() {
        // The state change is the cancellation (every worker honours it); the NOTIFY
        // only makes a running job stop at once.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CANCEL_CHANNEL)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(cancelled)
}

/// Puts a failed, dead or cancelled job back to `queued` from attempt 1 as `by`,
/// recording the previous outcome in its history and resolving its open dead letter;
/// it is published when `tx` commits. `None` when the job is in none of those states.
pub async fn requeue(tx: &mut Tx, id: Uuid, by: &str) -> Result<Option<JobRecord>, sqlx::Error> {
    let reset: Option<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'queued', attempts = 0, progress = 0, error = NULL, result = NULL, \
                worker_id = NULL, heartbeat_at = NULL, started_at = NULL, finished_at = NULL, \
                published_at = NULL, enqueued_at = now(), retry_at = NULL, retried_by = $2, \
                history = history || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object( \
                    'at', now(), 'event', 'retried', 'attempt', attempts, 'state', state, 'error', error, 'by', $2))) \
         WHERE id = $1 AND state IN ('failed', 'dead', 'cancelled') RETURNING ",
        crate::job_columns!()
    ))
    .bind(id)
    .bind(by)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(job) = reset else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE dead_letters SET requeued_at = now(), requeued_by = $2 \
         WHERE job_id = $1 AND requeued_at IS NULL AND discarded_at IS NULL",
    )
    .bind(id)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    tx.requeued(job.clone());
    Ok(Some(job))
}

/// How an admin resolves a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its job (or its bytes) runs again.
    Requeued,
    /// Resolved without a re-run: its job, if any, stays dead.
    Discarded,
}

/// Resolves dead letter `id` as `by`, if it is still open; whether it was.
pub async fn resolve_dead_letter(
    tx: &mut PgConnection,
    id: Uuid,
    by: &str,
    how: Resolution,
) -> Result<bool, sqlx::Error> {
    let sql = match how {
        Resolution::Requeued => {
            "UPDATE dead_letters SET requeued_at = now(), requeued_by = $2 \
             WHERE id = $1 AND requeued_at IS NULL AND discarded_at IS NULL"
        }
        Resolution::Discarded => {
            "UPDATE dead_letters SET discarded_at = now(), discarded_by = $2 \
             WHERE id = $1 AND requeued_at IS NULL AND discarded_at IS NULL"
        }
    };
    let resolved = sqlx::query(sql).bind(id).bind(by).execute(&mut *tx).await?;
    Ok(resolved.rows_affected() > 0)
}
