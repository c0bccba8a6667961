//! Quick claims: a claim that writes nothing. While a queue's jobs are short, a worker
//! claims a delivered job by taking a session-level advisory lock keyed by the job's id
//! in a database session of its own, instead of updating the row to `running`. The job
//! then goes `queued → succeeded` (or failed, retrying, dead) in one row version, written
//! by its outcome ([`super::record_outcomes`]), which fences on the attempt and on the
//! `enqueued_at` the claim read. A job that runs longer than its worker expects is
//! [`promote`]d to an ordinary `running` claim, heartbeats and all.
//!
//! The claim is one call of the SQL function `claim_quick` (migration `quick_claims`):
//! it takes the locks first, then reads the rows, so a job claimed the ordinary way
//! before shows as `running`. Every claim respects the lock: an ordinary claim
//! ([`super::claim`]) takes the same key for its transaction and passes over a job
//! quick-claimed elsewhere. When the holder's process dies its session ends, the lock
//! goes with it, and the job (still `queued`) is claimed again from its redelivered
//! message; an outcome never lands twice, because it only lands on a job still waiting
//! for that attempt.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::attempts::{Claim, states_of, unclaimed};
use crate::job::{JobRecord, JobState};

/// First key of a job's claim lock (`pg_try_advisory_lock(class, hashtext(id))`); the
/// second is a 32-bit hash of the id, so two jobs may share a lock: the second then
/// looks held elsewhere and is checked again later, which costs time, never a job.
pub const CLAIM_LOCK_CLASS: i32 = 0x4A42;

/// What a quick claim found for one job.
#[derive(Debug)]
pub enum QuickClaim {
    /// Ours: locked in the claiming session, the record as its attempt will run
    /// (`running`, one more attempt, started now by the database's clock).
    Claimed(Box<JobRecord>),
    /// Not a job a quick claim takes (`running`: live elsewhere, or stale, or its holder
    /// gone): an ordinary [`super::claim`] decides.
    Ordinary,
    /// Settled, held elsewhere or missing, as an ordinary claim would answer.
    Answered(Claim),
}

#[derive(sqlx::FromRow)]
struct LockedRow {
    now: DateTime<Utc>,
    #[sqlx(flatten)]
    job: JobRecord,
}

/// Claims `ids` for `worker_id` by locking them in `session` (a connection no other
/// work uses: the locks live as long as it does), after releasing the locks of
/// `release`, in one round trip (migration `quick_claims`). `held` are the jobs this
/// session holds already (a second delivery of one of them is held, not claimed twice).
/// One answer per id, in order; the ids answered [`QuickClaim::Claimed`] stay locked
/// until released.
pub async fn claim_quick(
    session: &mut PgConnection,
    worker_id: Uuid,
    release: &[Uuid],
    ids: &[Uuid],
    held: &HashSet<Uuid>,
) -> Result<Vec<QuickClaim>, sqlx::Error> {
    let mut wanted: Vec<Uuid> = ids.iter().copied().filter(|id| !held.contains(id)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let rows: Vec<LockedRow> = sqlx::query_as("SELECT now() AS now, q.* FROM claim_quick($1, $2, $3) AS q")
        .bind(CLAIM_LOCK_CLASS)
        .bind(release)
        .bind(&wanted)
        .fetch_all(&mut *session)
        .await?;
    let mut answers: HashMap<Uuid, QuickClaim> = rows
        .into_iter()
        .map(|LockedRow { now, mut job }| {
            job.state = JobState::Running;
            job.attempts += 1;
            job.worker_id = Some(worker_id);
            job.started_at = Some(now);
            job.heartbeat_at = None;
            job.published_at = job.published_at.or(Some(now));
            job.progress = 0.0;
            job.error = None;
            job.retry_at = None;
            (job.id, QuickClaim::Claimed(Box::new(job)))
        })
        .collect();
    // The rest were held elsewhere (waiting, yet locked by another session), settled,
    // running or missing: duplicates, mostly.
    let rest: Vec<Uuid> = wanted.into_iter().filter(|id| !answers.contains_key(id)).collect();
    let states = states_of(&mut *session, &rest).await?;
    for id in rest {
        let answer = match states.get(&id).copied() {
            Some(JobState::Running) => QuickClaim::Ordinary,
            state => QuickClaim::Answered(unclaimed(state)),
        };
        answers.insert(id, answer);
    }
    Ok(ids
        .iter()
        // None: held by this session already, or a second delivery of the same job in
        // this batch.
        .map(|id| answers.remove(id).unwrap_or(QuickClaim::Answered(Claim::HeldElsewhere)))
        .collect())
}

/// Releases the claim locks of `ids` held by `session` (after their outcomes committed,
/// or when their jobs go back to the queue unrun).
pub async fn unlock(session: &mut PgConnection, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        claim_quick(session, Uuid::nil(), ids, &[], &HashSet::new()).await?;
    }
    Ok(())
}

/// Turns a quick claim that is running long into an ordinary one: the row becomes
/// `running` for `worker_id`, attempt `attempt`, heartbeating from now. `false` when
/// the job is not waiting for that attempt any more (cancelled, or requeued by an
/// admin): the run should stop. Its claim lock may go once this returns `true`.
pub async fn promote(
    db: &PgPool,
    worker_id: Uuid,
    job: &JobRecord,
    started_at: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let promoted = sqlx::query(
        "UPDATE jobs SET state = 'running', worker_id = $2, attempts = $3, progress = 0, \
                started_at = coalesce($5, now()), heartbeat_at = now(), error = NULL, retry_at = NULL, \
                published_at = coalesce(published_at, now()) \
         WHERE id = $1 AND state IN ('queued', 'retrying') AND attempts = $3 - 1 AND enqueued_at = $4",
    )
    .bind(job.id)
    .bind(worker_id)
    .bind(job.attempts)
    .bind(job.enqueued_at)
    .bind(started_at)
    .execute(db)
    .await?;
    Ok(promoted.rows_affected() == 1)
}
