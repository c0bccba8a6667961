//! The worker's claims and outcomes, batched: concurrent requests from every slot are
//! gathered into one statement each (the store's [`store::claim`] and
//! [`store::record_outcomes`]), so a busy worker costs PostgreSQL a few commits per
//! batch rather than per job — group commit.
//!
//! A claim more urgent than every claim of the batch being written does not wait for
//! that batch (tens of milliseconds while a backlog drains on a busy host): it goes in
//! a batch of its own, on a second writer, at once. The two never lock the same row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rushes_common::job::store;
use rushes_common::job::store::Recorded;
pub use rushes_common::job::store::{Claim, Letter, Outcome};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most requests folded into one statement.
const MAX_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// Handle to the batching writers. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    claims: mpsc::Sender<(ClaimRequest, Reply<Claim>)>,
    /// Claims more urgent than the batch being written ([`Self::claiming`]).
    urgent_claims: mpsc::Sender<(ClaimRequest, Reply<Claim>)>,
    /// One more than the highest AMQP priority among the claims of the batch being
    /// written by the first writer; 0 while it writes none.
    claiming: Arc<AtomicU16>,
    outcomes: mpsc::Sender<(Recorded, Reply<bool>)>,
}

/// A job to claim, and its delivery's AMQP priority.
type ClaimRequest = (Uuid, u8);

/// An outcome handed to the ledger: resolves once it is committed (`true`) or found
/// not ours any more (`false`).
pub type Pending = oneshot::Receiver<Result<bool, String>>;

impl Ledger {
    pub fn spawn(db: PgPool, worker_id: Uuid, stale_after: Duration) -> Self {
        let (claims, claim_rx) = mpsc::channel(4096);
        let (urgent_claims, urgent_rx) = mpsc::channel(4096);
        let (outcomes, outcome_rx) = mpsc::channel(4096);
        let claiming = Arc::new(AtomicU16::new(0));
        let (claim_db, flag) = (db.clone(), claiming.clone());
        tokio::spawn(batch_loop(claim_rx, move |batch: Vec<ClaimRequest>| {
            let (db, flag) = (claim_db.clone(), flag.clone());
            async move {
                let most_urgent = batch.iter().map(|&(_, priority)| priority).max().unwrap_or(0);
                flag.store(u16::from(most_urgent) + 1, Ordering::SeqCst);
                let ids = batch.into_iter().map(|(id, _)| id).collect();
                let claimed = store::claim(&db, worker_id, stale_after, ids).await;
                flag.store(0, Ordering::SeqCst);
                claimed
            }
        }));
        let urgent_db = db.clone();
        tokio::spawn(batch_loop(urgent_rx, move |batch: Vec<ClaimRequest>| {
            let db = urgent_db.clone();
            let ids = batch.into_iter().map(|(id, _)| id).collect();
            async move { store::claim(&db, worker_id, stale_after, ids).await }
        }));
        tokio::spawn(batch_loop(outcome_rx, move |batch| {
            let db = db.clone();
            async move { store::record_outcomes(&db, worker_id, batch).await }
        }));
        Self {
            claims,
            urgent_claims,
            claiming,
            outcomes,
        }
    }

    /// Claims a job delivered with AMQP `priority`: `queued|retrying → running` (or a
    /// stale `running` re-claimed), with this worker's id, a fresh heartbeat and one more
    /// attempt.
    pub async fn claim(&self, id: Uuid, priority: u8) -> Result<Claim, String> {
        let (tx, rx) = oneshot::channel();
        let claiming = self.claiming.load(Ordering::SeqCst);
        let writer = if claiming != 0 && u16::from(priority) >= claiming {
            &self.urgent_claims
        } else {
            &self.claims
        };
        writer
            .send(((id, priority), tx))
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

/// Times a batch that met a deadlock or a serialization failure is run again.
const RETRIES: u32 = 3;

/// A deadlock or serialization failure: nothing was written, and running the same
/// statement again is safe.
fn is_transient(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

async fn batch_loop<Req: Clone, Res, F, Fut>(mut rx: mpsc::Receiver<(Req, Reply<Res>)>, run: F)
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
        let mut tries = 0;
        let outcome = loop {
            match run(requests.clone()).await {
                // Another transaction held a row: the statement changed nothing; again.
                Err(err) if tries < RETRIES && is_transient(&err) => {
                    tries += 1;
                    tracing::debug!(error = %err, tries, "batch hit a transient conflict; running it again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(tries))).await;
                }
                other => break other,
            }
        };
        match outcome {
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
