//! What the relay (the scheduler's leader) reads to find messages that may be gone:
//! queued jobs published long ago that no worker has claimed. Publishing them again
//! goes through [`super::publish`], which stamps `published_at` anew.

use std::time::Duration;

use sqlx::PgPool;

use crate::job::JobRecord;

/// `queued` jobs of each of `queues` whose message went to the broker more than `age`
/// ago, oldest first, at most `limit` per queue: no worker has claimed them, so their
/// message may be gone (a purged queue, a lost broker node). One range scan per queue
/// (`jobs_queued_published_idx`).
pub async fn unclaimed(db: &PgPool, queues: &[&str], age: Duration, limit: i64) -> Result<Vec<JobRecord>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT j.* FROM unnest($1::text[]) AS q(name) CROSS JOIN LATERAL ( \
             SELECT ",
        crate::job_columns!(),
        " FROM jobs WHERE state = 'queued' AND published_at IS NOT NULL AND queue = q.name \
                 AND published_at < now() - make_interval(secs => $2) \
               ORDER BY published_at LIMIT $3) j"
    ))
    .bind(queues)
    .bind(age.as_secs_f64())
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How many published `queued` jobs `queue` has, counting no further than `cap` (so a
/// long backlog costs no more than the caller needs to know).
pub async fn count_published_queued(db: &PgPool, queue: &str, cap: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM jobs \
           WHERE state = 'queued' AND published_at IS NOT NULL AND queue = $1 LIMIT $2) published",
    )
    .bind(queue)
    .bind(cap)
    .fetch_one(db)
    .await
}
