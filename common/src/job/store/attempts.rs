//! A worker's writes to `jobs` and `dead_letters`: claims, outcomes, releases and
//! parked messages. Each takes many jobs in one statement (the worker's ledger batches
//! the requests of all its slots); the attempt number is the fencing token every write
//! after the claim checks, so a worker whose lease was taken over writes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::quick::CLAIM_LOCK_CLASS;
use crate::job::{JobRecord, JobState};

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The job is ours to run now.
    Claimed(Box<JobRecord>),
    /// Another worker (or an earlier delivery to us) runs it and heartbeats: not ours.
    HeldElsewhere,
    /// Finished, cancelled or dead: the delivery is a harmless duplicate.
    Settled(JobState),
    /// No such job row.
    Missing,
}

/// The attempt an outcome ends: its number (the fencing token) and, for a quick claim
/// ([`super::quick`]), which wrote nothing, the `enqueued_at` the claim read: its outcome
/// lands only on the job still waiting for that attempt, not on one an admin cancelled
/// and requeued meanwhile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt {
    pub number: i32,
    pub quick_since: Option<DateTime<Utc>>,
}

impl Attempt {
    /// An attempt claimed the ordinary way (the row says `running`).
    pub fn claimed(number: i32) -> Self {
        Self {
            number,
            quick_since: None,
        }
    }

    /// The attempt a quick claim of `job` (as [`super::quick::claim_quick`] returned it) runs.
    pub fn quick(job: &JobRecord) -> Self {
        Self {
            number: job.attempts,
            quick_since: Some(job.enqueued_at),
        }
    }
}

/// An attempt's outcome, to be recorded before the delivery is settled.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Value),
    Failed(String),
    /// The error and the delay (seconds) before the next attempt.
    Retrying(String, u64),
    /// Out of attempts: the error, and the letter parked in the same transaction.
    Dead(String, Letter),
}

/// The message of a dead job, as recorded in `dead_letters` (with the attempt that
/// died: the job's `attempts`).
#[derive(Debug, Clone)]
pub struct Letter {
    pub queue: &'static str,
    pub kind: String,
    pub body: Vec<u8>,
    pub headers: Value,
}

impl Outcome {
    fn state(&self) -> &'static str {
        match self {
            Self::Succeeded(_) => "succeeded",
            Self::Failed(_) => "failed",
            Self::Retrying(..) => "retrying",
            Self::Dead(..) => "dead",
        }
    }
}

/// An outcome to record: the job, the attempt it ends, when that attempt really
/// started (a claimed job may wait a moment for its slot), and how it ended.
pub type Recorded = (Uuid, Attempt, Option<DateTime<Utc>>, Outcome);

/// Claims `ids` for `worker_id`: `queued|retrying → running` (or a `running` job whose
/// heartbeat is older than `stale_after`, or whose worker's process is gone: the
/// liveness lock it holds in a session of its own went with that session — migration
/// `worker_liveness`), one more attempt, a fresh heartbeat, and `published_at` if the
/// enqueuer's deferred stamp has not landed yet (the job was delivered, so it was
/// published). A job quick-claimed by another session ([`super::quick`]) is held
/// elsewhere. One answer per id, in order.
pub async fn claim(
    db: &PgPool,
    worker_id: Uuid,
    stale_after: Duration,
    ids: Vec<Uuid>,
) -> Result<Vec<Claim>, sqlx::Error> {
    let stale_s = stale_after.as_secs_f64();
    // One primary-key lookup per id, in id order (the lock order of every multi-row
    // update of `jobs`): a join with the ids, never `id = ANY(…)`, whose plan may AND it
    // with a scan of every queued job's state — O(backlog) per batch during a drain.
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let claimed: Vec<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'running', worker_id = $2, attempts = attempts + 1, progress = 0, \
                started_at = now(), heartbeat_at = now(), error = NULL, retry_at = NULL, \
                published_at = coalesce(jobs.published_at, now()) \
         FROM unnest($1::uuid[]) AS asked(job_id) \
         WHERE jobs.id = asked.job_id AND pg_try_advisory_xact_lock($4, hashtext(asked.job_id::text)) \
               AND (jobs.state IN ('queued', 'retrying') \
               OR (jobs.state = 'running' AND (jobs.heartbeat_at < now() - make_interval(secs => $3) \
                                              OR worker_gone(jobs.worker_id)))) \
         RETURNING ",
        crate::job_columns!()
    ))
    .bind(&sorted)
    .bind(worker_id)
    .bind(stale_s)
    .bind(CLAIM_LOCK_CLASS)
    .fetch_all(db)
    .await?;
    let mut claimed: HashMap<Uuid, JobRecord> = claimed.into_iter().map(|j| (j.id, j)).collect();
    let claimed_ids: HashSet<Uuid> = claimed.keys().copied().collect();
    let missed: Vec<Uuid> = ids.iter().copied().filter(|id| !claimed.contains_key(id)).collect();
    let states = states_of(db, &missed).await?;
    Ok(ids
        .into_iter()
        .map(|id| match claimed.remove(&id) {
            Some(job) => Claim::Claimed(Box::new(job)),
            // A second delivery of the same job in this batch: the first one holds it.
            None if claimed_ids.contains(&id) => Claim::HeldElsewhere,
            // Queued/retrying rows were claimed above unless a concurrent claim won.
            None => unclaimed(states.get(&id).copied()),
        })
        .collect())
}

/// The states of the jobs `ids` that exist (none asked: no query).
pub(super) async fn states_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, JobState>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, JobState)> = sqlx::query_as("SELECT id, state FROM jobs WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().collect())
}

/// What a claim answers for a job it did not take, found in `state` (`None`: no row):
/// settled, missing, or held by another claim.
pub(super) fn unclaimed(state: Option<JobState>) -> Claim {
    match state {
        Some(state) if state.is_terminal() => Claim::Settled(state),
        Some(_) => Claim::HeldElsewhere,
        None => Claim::Missing,
    }
}

/// Records outcomes of jobs still ours, running the attempt named (or, quick-claimed,
/// still waiting for it); one answer per outcome, in order (`false`: cancelled
/// meanwhile, or re-claimed). A statement that failed changed nothing: it may be run
/// again.
pub async fn record_outcomes(db: &PgPool, worker_id: Uuid, outcomes: Vec<Recorded>) -> Result<Vec<bool>, sqlx::Error> {
    let asked: Vec<Uuid> = outcomes.iter().map(|(id, ..)| *id).collect();
    // Rows are locked in id order, as every other multi-row update of `jobs` locks them
    // (the ids are sorted and joined in that order): concurrent batches never deadlock.
    let mut outcomes = outcomes;
    outcomes.sort_by_key(|(id, ..)| *id);
    let n = outcomes.len();
    let (mut ids, mut attempts, mut states) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut results, mut errors, mut delays) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut started, mut quick_since) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (id, attempt, started_at, outcome) in &outcomes {
        ids.push(*id);
        attempts.push(attempt.number);
        quick_since.push(attempt.quick_since);
        started.push(*started_at);
        states.push(outcome.state());
        let (result, error, delay) = match outcome {
            Outcome::Succeeded(value) => (Some(value.clone()), None, None),
            Outcome::Retrying(e, delay_s) => (None, Some(e.clone()), Some(*delay_s as f64)),
            Outcome::Failed(e) | Outcome::Dead(e, _) => (None, Some(e.clone()), None),
        };
        results.push(result);
        errors.push(error);
        delays.push(delay);
    }
    let columns = OutcomeColumns {
        ids: &ids,
        states: &states,
        results: &results,
        errors: &errors,
        attempts: &attempts,
        delays: &delays,
        started: &started,
        quick_since: &quick_since,
    };
    if !outcomes.iter().any(|(_, _, _, o)| matches!(o, Outcome::Dead(..))) {
        // The hot path: one statement, no explicit transaction.
        let updated = apply_outcomes(db, worker_id, &columns).await?;
        return Ok(asked.iter().map(|id| updated.contains(id)).collect());
    }
    let mut tx = db.begin().await?;
    let updated = apply_outcomes(&mut *tx, worker_id, &columns).await?;
    // A dead job and its parked letter commit together.
    for (id, attempt, _, outcome) in &outcomes {
        if let Outcome::Dead(error, letter) = outcome
            && updated.contains(id)
        {
            sqlx::query(
                "INSERT INTO dead_letters (id, queue, job_id, kind, reason, body, headers, attempt) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(Uuid::now_v7())
            .bind(letter.queue)
            .bind(id)
            .bind(&letter.kind)
            .bind(error)
            .bind(&letter.body)
            .bind(&letter.headers)
            .bind(attempt.number)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(asked.iter().map(|id| updated.contains(id)).collect())
}

/// The outcome columns of a batch, one entry per job.
struct OutcomeColumns<'a> {
    ids: &'a [Uuid],
    states: &'a [&'static str],
    results: &'a [Option<Value>],
    errors: &'a [Option<String>],
    attempts: &'a [i32],
    delays: &'a [Option<f64>],
    started: &'a [Option<DateTime<Utc>>],
    quick_since: &'a [Option<DateTime<Utc>>],
}

/// Updates the rows still ours and running the recorded attempt (or quick-claimed and
/// still waiting for it); returns their ids. An attempt that ended in an error also goes
/// into the job's history (the next claim clears `error`; the history keeps every
/// attempt's).
async fn apply_outcomes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    worker_id: Uuid,
    c: &OutcomeColumns<'_>,
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let updated = sqlx::query_scalar(
        "UPDATE jobs j SET state = u.state::job_state, result = u.result, error = u.error, \
                attempts = u.attempt, worker_id = $7, published_at = coalesce(j.published_at, now()), \
                progress = CASE WHEN u.state = 'succeeded' THEN 1 ELSE j.progress END, \
                finished_at = CASE WHEN u.state = 'retrying' THEN NULL ELSE now() END, \
                retry_at = now() + make_interval(secs => u.delay_s), \
                started_at = coalesce(u.started_at, j.started_at), \
                heartbeat_at = NULL, \
                history = CASE WHEN u.error IS NULL THEN j.history ELSE j.history || jsonb_build_array( \
                    jsonb_build_object('at', now(), 'event', u.state, 'attempt', u.attempt, 'error', u.error)) END \
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::int4[], $6::float8[], \
                     $8::timestamptz[], $9::timestamptz[]) \
              AS u(id, state, result, error, attempt, delay_s, started_at, quick_since) \
         WHERE j.id = u.id AND CASE WHEN u.quick_since IS NULL \
             THEN j.state = 'running' AND j.worker_id = $7 AND j.attempts = u.attempt \
             ELSE j.state IN ('queued', 'retrying') AND j.attempts = u.attempt - 1 \
                  AND j.enqueued_at = u.quick_since END \
         RETURNING j.id",
    )
    .bind(c.ids)
    .bind(c.states)
    .bind(c.results)
    .bind(c.errors)
    .bind(c.attempts)
    .bind(c.delays)
    .bind(worker_id)
    .bind(c.started)
    .bind(c.quick_since)
    .fetch_all(executor)
    .await?
    .into_iter()
    .collect();
    Ok(updated)
}

/// Puts jobs this worker still holds back to `queued` (shutdown), not counting the
/// interrupted attempt. Returns the ids released.
pub async fn release(db: &PgPool, worker_id: Uuid, ids: Option<&[Uuid]>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE jobs SET state = 'queued', worker_id = NULL, heartbeat_at = NULL, \
                attempts = greatest(attempts - 1, 0) \
         WHERE worker_id = $1 AND state = 'running' AND ($2::uuid[] IS NULL OR id = ANY($2)) \
         RETURNING id",
    )
    .bind(worker_id)
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Parks a message the worker cannot run: a row in `dead_letters`, and — when it names
/// a job still waiting (`queued` or `retrying`) — that job `failed` with `reason`, in the
/// same statement. An empty `letter.kind` is stored as unknown (NULL).
pub async fn park(db: &PgPool, letter: &Letter, job: Option<Uuid>, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH failed AS ( \
             UPDATE jobs SET state = 'failed', error = $5, finished_at = now(), retry_at = NULL, \
                    history = history || jsonb_build_array(jsonb_build_object( \
                        'at', now(), 'event', 'failed', 'attempt', attempts, 'error', $5)) \
             WHERE id = $3 AND state IN ('queued', 'retrying') RETURNING id, attempts) \
         INSERT INTO dead_letters (id, queue, job_id, kind, reason, body, headers, attempt) \
         VALUES ($1, $2, (SELECT id FROM failed), $4, $5, $6, $7, (SELECT attempts FROM failed))",
    )
    .bind(Uuid::now_v7())
    .bind(letter.queue)
    .bind(job)
    .bind(Some(letter.kind.as_str()).filter(|k| !k.is_empty()))
    .bind(reason)
    .bind(&letter.body)
    .bind(&letter.headers)
    .execute(db)
    .await?;
    Ok(())
}
