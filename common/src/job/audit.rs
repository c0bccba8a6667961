//! What PostgreSQL says about a set of jobs after a run: how many are still active, and
//! whether the job path kept its promises (no success recorded twice, no attempt after
//! the recorded success, read from the jobs' own stored log lines). The chaos bench and
//! tests check a run with these; an operator can ask the same after an incident.

use sqlx::PgPool;
use uuid::Uuid;

/// How many of `ids` are queued, running or retrying.
pub async fn active(db: &PgPool, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state IN ('queued', 'running', 'retrying')")
        .bind(ids)
        .fetch_one(db)
        .await
}

/// Jobs of `ids` with two `succeeded` lines (a worker killed before its lines were
/// written may lose lines, never add any).
pub async fn successes_recorded_twice(db: &PgPool, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM logs WHERE job_id = ANY($1) AND message = 'succeeded' \
                               GROUP BY job_id HAVING count(*) > 1) d",
    )
    .bind(ids)
    .fetch_one(db)
    .await
}

/// Lines of `ids` from an attempt after the one whose success was recorded.
pub async fn lines_after_success(db: &PgPool, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM logs l JOIN logs s ON s.job_id = l.job_id AND s.message = 'succeeded' \
         WHERE l.job_id = ANY($1) AND (l.fields->>'attempt')::int > (s.fields->>'attempt')::int",
    )
    .bind(ids)
    .fetch_one(db)
    .await
}
