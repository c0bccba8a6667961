//! The worker's claims and outcomes, batched: concurrent requests from every slot are
//! gathered into one statement each (the store's [`store::claim`] and
//! [`store::record_outcomes`]), so a busy worker costs PostgreSQL a few commits per
//! batch rather than per job — group commit.

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
    claims: mpsc::Sender<(Uuid, Reply<Claim>)>,
    outcomes: mpsc::Sender<(Recorded, Reply<bool>)>,
}

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
            async move { store::claim(&db, worker_id, stale_after, batch).await }
        }));
        tokio::spawn(batch_loop(outcome_rx, move |batch| {
            let db = db.clone();
            async move { store::record_outcomes(&db, worker_id, batch).await }
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
