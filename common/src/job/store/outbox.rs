//! The typed outbox: jobs inserted in the caller's transaction ([`Tx::enqueue`]) are
//! counted and published with confirms once it commits ([`Tx::commit`]). When the
//! broker is down the rows stay `queued` with `published_at` NULL and the relay
//! publishes them later: committing never fails because of the broker.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::insert::{adopts_rows, insert, insert_checked};
use super::new_job::{CheckedJob, EnqueueError, NewJob};
use crate::job::JobRecord;
use crate::queue::{Outgoing, PublishError, Publisher};

/// A transaction that remembers the jobs enqueued (or requeued) through it. It derefs
/// to the connection, so any other statement runs in it too (`&mut *tx`). Dropped
/// without [`Tx::commit`], it rolls back and nothing is published.
pub struct Tx {
    tx: Transaction<'static, Postgres>,
    db: PgPool,
    /// New rows, counted and published after commit.
    inserted: Vec<JobRecord>,
    /// Rows put back to `queued` ([`super::requeue`]), published after commit.
    requeued: Vec<JobRecord>,
}

impl Tx {
    pub async fn begin(db: &PgPool) -> Result<Self, sqlx::Error> {
        Ok(Self {
            tx: db.begin().await?,
            db: db.clone(),
            inserted: Vec::new(),
            requeued: Vec::new(),
        })
    }

    /// Inserts `jobs` (checked against the catalogue) and returns their rows; they are
    /// published after [`Tx::commit`]. A scheduled job already fired for its due time is
    /// missing from the rows returned.
    pub async fn enqueue(&mut self, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let records = insert(&mut self.tx, jobs).await?;
        self.inserted.extend_from_slice(&records);
        Ok(records)
    }

    /// [`Tx::enqueue`] of many jobs already checked ([`NewJob::check`]), none checked
    /// again nor read back (`POST /jobs/batch`); returns their ids, in order. They are
    /// counted at commit; publish them after [`Tx::commit_unpublished`], e.g. with
    /// [`publish_chunks`]. A job of a schedule that already fired for its due time is an
    /// error here, not skipped.
    pub async fn enqueue_checked(&mut self, jobs: Vec<CheckedJob>) -> Result<Vec<Uuid>, EnqueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let records = insert_checked(&mut self.tx, jobs).await?;
        let ids = records.iter().map(|job| job.id).collect();
        self.inserted.extend(records);
        Ok(ids)
    }

    /// [`Tx::enqueue`] of one job.
    pub async fn enqueue_one(&mut self, job: NewJob) -> Result<JobRecord, EnqueueError> {
        self.enqueue(vec![job]).await?.pop().ok_or(EnqueueError::NotInserted)
    }

    /// Publishes `job`, put back to `queued` in this transaction, after commit.
    pub(super) fn requeued(&mut self, job: JobRecord) {
        self.requeued.push(job);
    }

    /// Commits, counts the jobs inserted (`rushes_jobs_enqueued_total`) and publishes
    /// every job enqueued or requeued through this transaction; a publish failure is
    /// logged and left to the relay. Returns those jobs (the inserted ones first),
    /// `published_at` set when published.
    pub async fn commit(self, publisher: &Publisher) -> Result<Vec<JobRecord>, sqlx::Error> {
        let db = self.db.clone();
        let mut jobs = self.commit_unpublished(publisher).await?;
        publish_or_leave_to_relay(&db, publisher, &mut jobs).await;
        Ok(jobs)
    }

    /// Commits and counts like [`Tx::commit`], but leaves publishing to the caller
    /// ([`publish`]): the scheduler publishes fired jobs beside its firing loop.
    pub async fn commit_unpublished(self, publisher: &Publisher) -> Result<Vec<JobRecord>, sqlx::Error> {
        self.tx.commit().await?;
        count_enqueued(publisher, &self.inserted);
        let mut jobs = self.inserted;
        jobs.extend(self.requeued);
        Ok(jobs)
    }
}

impl Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Counts committed new jobs in `rushes_jobs_enqueued_total`.
fn count_enqueued(publisher: &Publisher, inserted: &[JobRecord]) {
    let enqueued = publisher.jobs_enqueued();
    // One increment per run of jobs of the same kind and queue (a batch is one run).
    for run in inserted.chunk_by(|a, b| a.kind == b.kind && a.queue == b.queue) {
        enqueued.count_n(&run[0].kind, &run[0].queue, run.len() as u64);
    }
}

/// Enqueues `jobs` in a transaction of their own: committed, counted, then published
/// (a publish failure is logged; the relay publishes them later).
pub async fn enqueue(db: &PgPool, publisher: &Publisher, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    if adopts_rows(&jobs) {
        let mut tx = Tx::begin(db).await?;
        tx.enqueue(jobs).await?;
        return Ok(tx.commit(publisher).await?);
    }
    // The insert is the only statement: it commits on its own, without the round trips
    // of a BEGIN and a COMMIT (each a wait for a busy database).
    let mut records = insert(&mut *db.acquire().await?, jobs).await?;
    count_enqueued(publisher, &records);
    publish_or_leave_to_relay(db, publisher, &mut records).await;
    Ok(records)
}

/// [`enqueue`] of one job.
pub async fn enqueue_one(db: &PgPool, publisher: &Publisher, job: NewJob) -> Result<JobRecord, EnqueueError> {
    enqueue(db, publisher, vec![job])
        .await?
        .pop()
        .ok_or(EnqueueError::NotInserted)
}

/// Publishes committed jobs, logging rather than returning a failure: the relay
/// publishes them later. Their `published_at` is written a moment later
/// ([`STAMP_AFTER`]), off the caller's path, and set on `jobs` at once.
pub async fn publish_or_leave_to_relay(db: &PgPool, publisher: &Publisher, jobs: &mut [JobRecord]) {
    if let Err(err) = publish_with(db, publisher, jobs, Stamp::Later).await {
        tracing::warn!(error = %err, jobs = jobs.len(), "jobs committed but not published; the relay will publish them");
    }
}

/// Most jobs [`publish_chunks`] publishes at a time.
pub const PUBLISH_CHUNK: usize = 1000;

/// Publishes many committed rows [`PUBLISH_CHUNK`] at a time, each chunk confirmed and
/// then marked published (a moment later, as [`publish_or_leave_to_relay`] does).
/// Stops at the first failure: the rest stay unpublished for the relay.
pub async fn publish_chunks(db: &PgPool, publisher: &Publisher, records: &mut [JobRecord]) -> Result<(), PublishError> {
    for chunk in records.chunks_mut(PUBLISH_CHUNK) {
        publish_with(db, publisher, chunk, Stamp::Later).await?;
    }
    Ok(())
}

/// Publishes committed rows with confirms, then records `published_at` (the relay's
/// way: a failure is returned, and the stamp is written before this returns, so its
/// next pass does not publish them again). Re-publishing a job stamps it again.
pub async fn publish(db: &PgPool, publisher: &Publisher, records: &mut [JobRecord]) -> Result<(), PublishError> {
    publish_with(db, publisher, records, Stamp::Now).await
}

/// How long after a confirmed publish an enqueuer's jobs get their `published_at`. By
/// then a worker has usually claimed them, and a claim writes it itself: the stamp
/// then writes nothing, so the fast path costs one row version less per job and the
/// enqueuer one round trip less. It stays far inside the relay's grace (seconds); a
/// process that stops before it leaves at worst a duplicate message, which the claim
/// drops.
pub const STAMP_AFTER: Duration = Duration::from_millis(100);

/// When `published_at` is written after a confirmed publish.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// Before returning, on every row (the relay, re-publishing).
    Now,
    /// [`STAMP_AFTER`] later in the background, on the rows still `queued` and unstamped.
    Later,
}

async fn publish_with(
    db: &PgPool,
    publisher: &Publisher,
    records: &mut [JobRecord],
    stamp: Stamp,
) -> Result<(), PublishError> {
    if records.is_empty() {
        return Ok(());
    }
    let topology = publisher.broker().topology();
    let messages: Vec<Outgoing> = records.iter().map(|job| Outgoing::job(topology, job)).collect();
    publisher.publish(&messages).await?;
    let ids: Vec<Uuid> = records.iter().map(|j| j.id).collect();
    match stamp {
        Stamp::Now => match stamp_published(db, ids, stamp).await {
            Ok(Some(at)) => records.iter_mut().for_each(|r| r.published_at = Some(at)),
            Ok(None) => {}
            // The messages are out; at worst the relay publishes a duplicate, which the claim drops.
            Err(err) => tracing::warn!(error = %err, "published but could not record published_at"),
        },
        Stamp::Later => {
            let confirmed = Utc::now();
            records.iter_mut().for_each(|r| r.published_at = Some(confirmed));
            let db = db.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STAMP_AFTER).await;
                if let Err(err) = stamp_published(&db, ids, stamp).await {
                    tracing::warn!(error = %err, "published but could not record published_at");
                }
            });
        }
    }
    Ok(())
}

/// Writes `published_at = now()` on the jobs `ids` (with [`Stamp::Later`], only those
/// still `queued` and unstamped); returns the time written, if any row was.
async fn stamp_published(db: &PgPool, mut ids: Vec<Uuid>, stamp: Stamp) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    // Rows are locked in id order, as every multi-row update of `jobs` locks them.
    ids.sort_unstable();
    let stamps: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE jobs SET published_at = now() FROM unnest($1::uuid[]) AS asked(job_id) \
         WHERE jobs.id = asked.job_id AND ($2 OR (jobs.published_at IS NULL AND jobs.state = 'queued')) \
         RETURNING jobs.published_at",
    )
    .bind(&ids)
    .bind(stamp == Stamp::Now)
    .fetch_all(db)
    .await?;
    Ok(stamps.first().copied())
}
