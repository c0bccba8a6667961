//! The worker's writes to `jobs` on the hot path, batched: concurrent claims and
//! outcomes from every slot are gathered into one statement each, so a busy worker
//! costs PostgreSQL a few commits per batch rather than per job.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rushes_common::job::{JobRecord, JobState};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most requests folded into one statement.
const MAX_BATCH: usize = 512;

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

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// Handle to the batching writers. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    claims: mpsc::Sender<(Uuid, Reply<Claim>)>,
    outcomes: mpsc::Sender<(Recorded, Reply<bool>)>,
}

/// An outcome to record: the job, the attempt it ends, when that attempt really
/// started (a claimed job may wait a moment for its slot), and how it ended.
type Recorded = (Uuid, i32, Option<DateTime<Utc>>, Outcome);

/// An outcome handed to the ledger: resolves once it is committed (`true`) or found
/// not ours any more (`false`).
pub type Pending = oneshot::Receiver<Result<bool, String>>;

impl Ledger {
    pub fn spawn(db: PgPool, worker_id: Uuid, stale_after: Duration) -> Self {
        let (claims, claim_rx) = mpsc::channel(4096);
        let (outcomes, outcome_rx) = mpsc::channel(4096);
        let claim_db = db.clone();
        tokio::spawn(batch_loop(claim_rx, move |batch| {
            let db = claim_db.clone();
            async move { claim_batch(&db, worker_id, stale_after, batch).await }
        }));
        tokio::spawn(batch_loop(outcome_rx, move |batch| {
            let db = db.clone();
            async move { record_batch(&db, worker_id, batch).await }
        }));
        Self { claims, outcomes }
    }

    /// Claims a job: `queued|retrying → running` (or a stale `running` re-claimed),
    /// with this worker's id, a fresh heartbeat and one more attempt.
    pub async fn claim(&self, id: Uuid) -> Result<Claim, String> {
        let (tx, rx) = oneshot::channel();
        self.claims
            .send((id, tx))
            .await
            .map_err(|_| "ledger stopped".to_owned())?;
        rx.await.map_err(|_| "ledger stopped".to_owned())?
    }

    /// Hands over the outcome of `attempt`, to be recorded with the next batch if the
    /// job is still ours, running that attempt; the answer is `false` when it is not
    /// (cancelled meanwhile, or re-claimed after our heartbeat went stale — by another
    /// worker or by ourselves).
    pub async fn submit(
        &self,
        id: Uuid,
        attempt: i32,
        started_at: Option<DateTime<Utc>>,
        outcome: Outcome,
    ) -> Result<Pending, String> {
        let (tx, rx) = oneshot::channel();
        self.outcomes
            .send(((id, attempt, started_at, outcome), tx))
            .await
            .map_err(|_| "ledger stopped".to_owned())?;
        Ok(rx)
    }

    /// [`Self::submit`], waiting for the commit.
    pub async fn record(
        &self,
        id: Uuid,
        attempt: i32,
        started_at: Option<DateTime<Utc>>,
        outcome: Outcome,
    ) -> Result<bool, String> {
        let pending = self.submit(id, attempt, started_at, outcome).await?;
        pending.await.map_err(|_| "ledger stopped".to_owned())?
    }
}

async fn batch_loop<Req, Res, F, Fut>(mut rx: mpsc::Receiver<(Req, Reply<Res>)>, run: F)
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Result<Vec<Res>, sqlx::Error>>,
{
    while let Some(first) = rx.recv().await {
        let mut requests = vec![first.0];
        let mut replies = vec![first.1];
        while requests.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((req, reply)) => {
                    requests.push(req);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        match run(requests).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(err) => {
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

async fn claim_batch(
    db: &PgPool,
    worker_id: Uuid,
    stale_after: Duration,
    ids: Vec<Uuid>,
) -> Result<Vec<Claim>, sqlx::Error> {
    let stale_s = stale_after.as_secs_f64();
    let claimed: Vec<JobRecord> = sqlx::query_as(concat!(
        "UPDATE jobs SET state = 'running', worker_id = $2, attempts = attempts + 1, progress = 0, \
                started_at = now(), heartbeat_at = now(), error = NULL, retry_at = NULL \
         WHERE id = ANY($1) AND (state IN ('queued', 'retrying') \
               OR (state = 'running' AND heartbeat_at < now() - make_interval(secs => $3))) \
         RETURNING ",
        rushes_common::job_columns!()
    ))
    .bind(&ids)
    .bind(worker_id)
    .bind(stale_s)
    .fetch_all(db)
    .await?;
    let mut claimed: HashMap<Uuid, JobRecord> = claimed.into_iter().map(|j| (j.id, j)).collect();
    let claimed_ids: HashSet<Uuid> = claimed.keys().copied().collect();
    let missed: Vec<Uuid> = ids.iter().copied().filter(|id| !claimed.contains_key(id)).collect();
    let mut states: HashMap<Uuid, JobState> = HashMap::new();
    if !missed.is_empty() {
        let rows: Vec<(Uuid, JobState)> = sqlx::query_as("SELECT id, state FROM jobs WHERE id = ANY($1)")
            .bind(&missed)
            .fetch_all(db)
            .await?;
        states.extend(rows);
    }
    Ok(ids
        .into_iter()
        .map(|id| match (claimed.remove(&id), states.get(&id)) {
            (Some(job), _) => Claim::Claimed(Box::new(job)),
            // A second delivery of the same job in this batch: the first one holds it.
            (None, _) if claimed_ids.contains(&id) => Claim::HeldElsewhere,
            (None, Some(state)) if state.is_terminal() => Claim::Settled(*state),
            // Queued/retrying rows were claimed above unless a concurrent claim won.
            (None, Some(_)) => Claim::HeldElsewhere,
            (None, None) => Claim::Missing,
        })
        .collect())
}

async fn record_batch(db: &PgPool, worker_id: Uuid, outcomes: Vec<Recorded>) -> Result<Vec<bool>, sqlx::Error> {
    let n = outcomes.len();
    let (mut ids, mut attempts, mut states) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut results, mut errors, mut delays) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut started = Vec::with_capacity(n);
    for (id, attempt, started_at, outcome) in &outcomes {
        ids.push(*id);
        attempts.push(*attempt);
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
    };
    if !outcomes.iter().any(|(_, _, _, o)| matches!(o, Outcome::Dead(..))) {
        // The hot path: one statement, no explicit transaction.
        let updated = apply_outcomes(db, worker_id, &columns).await?;
        return Ok(ids.iter().map(|id| updated.contains(id)).collect());
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
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(ids.iter().map(|id| updated.contains(id)).collect())
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
}

/// Updates the rows still ours and running the recorded attempt; returns their ids.
/// An attempt that ended in an error also goes into the job's history (the next claim
/// clears `error`; the history keeps every attempt's).
async fn apply_outcomes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    worker_id: Uuid,
    c: &OutcomeColumns<'_>,
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let updated = sqlx::query_scalar(
        "UPDATE jobs j SET state = u.state::job_state, result = u.result, error = u.error, \
                progress = CASE WHEN u.state = 'succeeded' THEN 1 ELSE j.progress END, \
                finished_at = CASE WHEN u.state = 'retrying' THEN NULL ELSE now() END, \
                retry_at = now() + make_interval(secs => u.delay_s), \
                started_at = coalesce(u.started_at, j.started_at), \
                heartbeat_at = NULL, \
                history = CASE WHEN u.error IS NULL THEN j.history ELSE j.history || jsonb_build_array( \
                    jsonb_build_object('at', now(), 'event', u.state, 'attempt', u.attempt, 'error', u.error)) END \
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::int4[], $6::float8[], \
                     $8::timestamptz[]) \
              AS u(id, state, result, error, attempt, delay_s, started_at) \
         WHERE j.id = u.id AND j.state = 'running' AND j.worker_id = $7 AND j.attempts = u.attempt \
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
