//! Writes outside a job's claim and outcome: a worker's heartbeat over its running
//! jobs, the relay's note that it re-sent an overdue retry, and purging old rows.

use std::collections::HashSet;

use sqlx::PgPool;
use uuid::Uuid;

/// One running job as its worker sees it, for [`beat`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beat {
    pub id: Uuid,
    /// The attempt the worker runs (a fencing token: a re-claimed job is not ours).
    pub attempt: i32,
    /// 0–1.
    pub progress: f32,
}

/// Records the heartbeat and progress of `worker`'s running jobs; returns the ids that
/// are still its own (the others were cancelled or re-claimed elsewhere).
pub async fn beat(db: &PgPool, worker: Uuid, jobs: &[Beat]) -> Result<HashSet<Uuid>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let progress: Vec<f32> = jobs.iter().map(|j| j.progress).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.attempt).collect();
    let alive: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE jobs j SET heartbeat_at = now(), progress = u.progress \
         FROM unnest($1::uuid[], $2::real[], $3::int4[]) AS u(id, progress, attempt) \
         WHERE j.id = u.id AND j.state = 'running' AND j.worker_id = $4 AND j.attempts = u.attempt \
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&progress)
    .bind(&attempts)
    .bind(worker)
    .fetch_all(db)
    .await?;
    Ok(alive.into_iter().collect())
}

/// Moves the due time of `retrying` jobs whose delayed message the relay just sent again.
pub async fn touch_overdue_retries(db: &PgPool, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE jobs SET retry_at = now() WHERE id = ANY($1) AND state = 'retrying'")
        .bind(ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes at most `batch` settled jobs finished more than `older_than_days` ago;
/// returns how many.
pub async fn purge_finished(db: &PgPool, older_than_days: i32, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id IN ( \
             SELECT id FROM jobs WHERE finished_at < now() - make_interval(days => $1) \
                AND state IN ('succeeded', 'failed', 'cancelled', 'dead') LIMIT $2)",
    )
    .bind(older_than_days)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
