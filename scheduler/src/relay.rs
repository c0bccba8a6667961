//! The relay: publishes jobs that were committed but never published (the broker was
//! down at enqueue), and re-publishes running jobs whose worker went silent long ago,
//! retries whose delayed message never came back and queued jobs whose message the
//! broker no longer holds — messages that may be gone. Duplicates are harmless: the
//! claim drops them.

use std::collections::HashMap;
use std::time::Duration;

use rushes_common::job::store;
use rushes_common::job::{JobRecord, QueueFamily};
use rushes_common::queue::Publisher;
use sqlx::PgPool;

/// Most jobs one relay pass publishes.
const BATCH: i64 = 1000;
/// A running job is stranded when its heartbeat is this many stale periods old.
const STRANDED_FACTOR: f64 = 4.0;

/// What one pass published.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    pub unpublished: usize,
    pub stranded: usize,
}

/// `retrying` jobs whose delayed message should have come back long ago (dead-lettering
/// out of a delay queue is not confirmed by the broker), sent again.
async fn overdue_retries(db: &PgPool, publisher: &Publisher, overdue_after_s: f64) -> anyhow::Result<usize> {
    let mut overdue: Vec<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs WHERE state = 'retrying' AND retry_at < now() - make_interval(secs => $1) \
          ORDER BY retry_at LIMIT $2"
    ))
    .bind(overdue_after_s)
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    if overdue.is_empty() {
        return Ok(0);
    }
    tracing::warn!(
        jobs = overdue.len(),
        "re-publishing retries whose delayed message did not come back"
    );
    store::publish(db, publisher, &mut overdue).await?;
    let ids: Vec<uuid::Uuid> = overdue.iter().map(|j| j.id).collect();
    store::touch_overdue_retries(db, &ids).await?;
    Ok(overdue.len())
}

pub async fn pass(
    db: &PgPool,
    publisher: &Publisher,
    grace: Duration,
    stale_after: Duration,
) -> anyhow::Result<Relayed> {
    let mut unpublished: Vec<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs WHERE published_at IS NULL AND state = 'queued' \
            AND enqueued_at < now() - make_interval(secs => $1) \
          ORDER BY enqueued_at LIMIT $2"
    ))
    .bind(grace.as_secs_f64())
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    store::publish(db, publisher, &mut unpublished).await?;

    let stranded_after = stale_after.as_secs_f64() * STRANDED_FACTOR;
    let mut stranded: Vec<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1) \
            AND (published_at IS NULL OR published_at < now() - make_interval(secs => $1)) \
          ORDER BY heartbeat_at LIMIT $2"
    ))
    .bind(stranded_after)
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    if !stranded.is_empty() {
        tracing::warn!(jobs = stranded.len(), "re-publishing jobs whose worker went silent");
    }
    store::publish(db, publisher, &mut stranded).await?;
    let overdue = overdue_retries(db, publisher, stranded_after).await?;
    Ok(Relayed {
        unpublished: unpublished.len(),
        stranded: stranded.len() + overdue,
    })
}

/// `queued` jobs whose message the broker no longer holds (a purged queue, a lost
/// node), published again; returns how many. A queue is short of messages when the
/// broker holds fewer ready ones than it has published `queued` jobs; then as many as
/// are missing (at most [`BATCH`]) of its jobs published more than `stranded_after` ago
/// go out again, oldest first. Publishing re-stamps `published_at`, so a job goes out
/// again at most once per `stranded_after`; a queue whose backlog is merely long, or
/// paused, holds every message and gets no duplicates.
pub async fn unclaimed(db: &PgPool, publisher: &Publisher, stranded_after: Duration) -> anyhow::Result<usize> {
    let families: Vec<&str> = QueueFamily::ALL.iter().map(|q| q.as_str()).collect();
    let candidates = store::unclaimed(db, &families, stranded_after, BATCH).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut by_queue: HashMap<String, Vec<JobRecord>> = HashMap::new();
    for job in candidates {
        by_queue.entry(job.queue.clone()).or_default().push(job);
    }
    let stats = publisher.broker().queue_stats().await?;
    let mut lost = Vec::new();
    for (queue, mut jobs) in by_queue {
        let ready = stats
            .iter()
            .find(|s| s.family.as_str() == queue)
            .map_or(0, |s| i64::from(s.messages));
        let published = store::count_published_queued(db, &queue, ready + BATCH).await?;
        let missing = usize::try_from(published - ready).unwrap_or(0);
        jobs.truncate(missing);
        lost.extend(jobs);
    }
    if lost.is_empty() {
        return Ok(0);
    }
    tracing::warn!(
        jobs = lost.len(),
        "re-publishing queued jobs whose message the broker no longer holds"
    );
    store::publish(db, publisher, &mut lost).await?;
    Ok(lost.len())
}
