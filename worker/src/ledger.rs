//! The worker's claims and outcomes, batched: concurrent requests from every slot are
//! gathered into one statement each (the store's [`store::claim`] and
//! [`store::record_outcomes`]), so a busy worker costs PostgreSQL a few commits per
//! batch rather than per job — group commit.
//!
//! A claim more urgent than every claim of the batch being written does not wait for
//! that batch (tens of milliseconds while a backlog drains on a busy host): it goes in
//! a batch of its own, on a second writer, at once. The two never lock the same row.
//!
//! While a queue's jobs are short, its claims are quick ([`store::claim_quick`]): a
//! third writer takes each job's claim lock in a database session of its own and writes
//! nothing; the job's outcome is then its only row version after the insert. The lock
//! is held by a [`QuickHold`] and released when that is dropped (the outcome committed,
//! or the job went back unrun).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rushes_common::job::store;
pub use rushes_common::job::store::{Attempt, Claim, Letter, Outcome};
use rushes_common::job::store::{QuickClaim, Recorded};
use sqlx::{PgConnection, PgPool};
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
    /// Quick claims ([`store::claim_quick`]).
    quick_claims: mpsc::Sender<(Uuid, Reply<Claimed>)>,
}

/// What a claim found, and — for a job quick-claimed — the hold on its claim lock.
pub type Claimed = (Claim, Option<QuickHold>);

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
        let (quick_claims, quick_rx) = mpsc::channel(4096);
        let (unlocks, unlock_rx) = mpsc::unbounded_channel();
        let session = QuickSession {
            db: db.clone(),
            worker_id,
            stale_after,
            connection: None,
            generation: 0,
            held: Arc::new(Mutex::new(HashMap::new())),
            unlocks,
        };
        tokio::spawn(session.run(quick_rx, unlock_rx));
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
            quick_claims,
        }
    }

    /// Claims a job delivered with AMQP `priority`: `queued|retrying → running` (or a
    /// stale `running` re-claimed), with this worker's id, a fresh heartbeat and one more
    /// attempt; or, `quick`, by its claim lock alone (see [`store::claim_quick`]).
    pub async fn claim(&self, id: Uuid, priority: u8, quick: bool) -> Result<Claimed, String> {
        let claiming = self.claiming.load(Ordering::SeqCst);
        let urgent = claiming != 0 && u16::from(priority) >= claiming;
        if quick && !urgent {
            return ask(&self.quick_claims, id).await;
        }
        let writer = if urgent { &self.urgent_claims } else { &self.claims };
        Ok((ask(writer, (id, priority)).await?, None))
    }

    /// Hands over the outcome of `attempt`, to be recorded with the next batch if the
    /// job is still ours, running that attempt; the answer is `false` when it is not
    /// (cancelled meanwhile, or re-claimed after our heartbeat went stale — by another
    /// worker or by ourselves).
    pub async fn submit(
        &self,
        id: Uuid,
        attempt: Attempt,
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
        attempt: Attempt,
        started_at: Option<DateTime<Utc>>,
        outcome: Outcome,
    ) -> Result<bool, String> {
        let pending = self.submit(id, attempt, started_at, outcome).await?;
        pending.await.map_err(|_| "ledger stopped".to_owned())?
    }
}

/// Sends `request` to a writer and waits for its answer.
async fn ask<Req, Res>(writer: &mpsc::Sender<(Req, Reply<Res>)>, request: Req) -> Result<Res, String> {
    let (tx, rx) = oneshot::channel();
    writer
        .send((request, tx))
        .await
        .map_err(|_| "ledger stopped".to_owned())?;
    rx.await.map_err(|_| "ledger stopped".to_owned())?
}

/// The claim lock of a job quick-claimed by this worker, released when dropped (or at
/// once with [`QuickHold::release`]); the database session that holds it ends with the
/// worker's process, and the lock with it.
pub struct QuickHold {
    id: Uuid,
    /// The session the lock was taken in (a later one does not hold it).
    generation: u64,
    held: Arc<Mutex<HashMap<Uuid, u64>>>,
    unlocks: mpsc::UnboundedSender<Unlock>,
    /// The release was asked for.
    released: bool,
}

/// Longest [`QuickHold::release`] waits for the lock to go.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// A claim lock to release, in the session of that generation; answered once done.
type Unlock = (u64, Uuid, Option<oneshot::Sender<()>>);

impl QuickHold {
    /// Releases the lock and waits until it is gone (before a message goes back to its
    /// queue: another worker may take it at once).
    pub async fn release(mut self) {
        let (tx, rx) = oneshot::channel();
        self.send_release(Some(tx));
        // A database out of reach holds the writer up: the lock goes when it can, and a
        // claim meanwhile finds the job held and looks again later.
        let _ = tokio::time::timeout(RELEASE_WAIT, rx).await;
    }

    /// This worker no longer holds the job (a second delivery of it may be claimed), and
    /// its lock is to go.
    fn send_release(&mut self, done: Option<oneshot::Sender<()>>) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.id) == Some(&self.generation) {
            held.remove(&self.id);
        }
        let _ = self.unlocks.send((self.generation, self.id, done));
    }
}

impl Drop for QuickHold {
    fn drop(&mut self) {
        self.send_release(None);
    }
}

/// The writer of quick claims and of their locks' release, on a connection of its own
/// (session-level locks live as long as their session).
struct QuickSession {
    db: PgPool,
    worker_id: Uuid,
    stale_after: Duration,
    connection: Option<PgConnection>,
    /// Counts sessions: a lock taken in a session that was lost is gone already.
    generation: u64,
    /// The jobs held, with the generation of the session holding them.
    held: Arc<Mutex<HashMap<Uuid, u64>>>,
    unlocks: mpsc::UnboundedSender<Unlock>,
}

impl QuickSession {
    async fn run(
        mut self,
        mut claims: mpsc::Receiver<(Uuid, Reply<Claimed>)>,
        mut unlocks: mpsc::UnboundedReceiver<Unlock>,
    ) {
        loop {
            tokio::select! {
                biased;
                first = claims.recv() => {
                    let Some(first) = first else { break };
                    let (ids, replies) = gather(&mut claims, first);
                    // Locks released in the same call, first: a job given back may be
                    // among these deliveries.
                    let pending = drain(&mut unlocks, Vec::new());
                    for (reply, claimed) in replies.into_iter().zip(self.claim(pending, ids).await) {
                        let _ = reply.send(claimed);
                    }
                }
                Some(first) = unlocks.recv() => {
                    self.unlock(drain(&mut unlocks, vec![first])).await;
                }
            }
        }
    }

    /// The session, opened if need be.
    async fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.connection.is_none() {
            self.connection = Some(self.db.acquire().await?.detach());
        }
        self.connection
            .as_mut()
            .ok_or_else(|| sqlx::Error::Protocol("no claim session".into()))
    }

    /// The session failed: its locks are gone with it.
    fn lost(&mut self, err: &sqlx::Error) {
        tracing::warn!(error = %err, "claim-lock session lost; its jobs' outcomes stay fenced by their attempt");
        self.connection = None;
        self.generation += 1;
    }

    /// Releases the locks of `pending` and claims `ids`, in one call.
    async fn claim(&mut self, pending: Vec<Unlock>, ids: Vec<Uuid>) -> Vec<Result<Claimed, String>> {
        let release = self.releasable(&pending);
        let held: HashSet<Uuid> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        let worker_id = self.worker_id;
        let quick = match self.connection().await {
            Ok(session) => store::claim_quick(session, worker_id, &release, &ids, &held).await,
            Err(err) => Err(err),
        };
        if let Err(err) = &quick {
            self.lost(err);
        }
        released(pending);
        let quick = match quick {
            Ok(quick) => quick,
            Err(err) => return ids.iter().map(|_| Err(err.to_string())).collect(),
        };
        // Jobs a quick claim does not take (running: live elsewhere, stale, or their
        // holder gone) are claimed the ordinary way, which decides.
        let ordinary: Vec<Uuid> = ids
            .iter()
            .zip(&quick)
            .filter(|(_, q)| matches!(q, QuickClaim::Ordinary))
            .map(|(id, _)| *id)
            .collect();
        let mut ordinary = if ordinary.is_empty() {
            Ok(Vec::new().into_iter())
        } else {
            store::claim(&self.db, worker_id, self.stale_after, ordinary)
                .await
                .map(Vec::into_iter)
                .map_err(|err| err.to_string())
        };
        ids.into_iter()
            .zip(quick)
            .map(|(id, quick)| match quick {
                QuickClaim::Claimed(job) => {
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id, self.generation);
                    let hold = QuickHold {
                        id,
                        generation: self.generation,
                        held: self.held.clone(),
                        unlocks: self.unlocks.clone(),
                        released: false,
                    };
                    Ok((Claim::Claimed(job), Some(hold)))
                }
                QuickClaim::Answered(claim) => Ok((claim, None)),
                QuickClaim::Ordinary => match &mut ordinary {
                    Ok(answers) => answers
                        .next()
                        .map(|claim| (claim, None))
                        .ok_or_else(|| "the claim gave no answer".to_owned()),
                    Err(err) => Err(err.clone()),
                },
            })
            .collect()
    }

    /// Releases the locks of this session among `pending`, and tells the waiters.
    async fn unlock(&mut self, pending: Vec<Unlock>) {
        let ids = self.releasable(&pending);
        if !ids.is_empty() {
            let unlocked = match self.connection().await {
                Ok(session) => store::unlock(session, &ids).await,
                Err(err) => Err(err),
            };
            if let Err(err) = unlocked {
                self.lost(&err);
            }
        }
        released(pending);
    }

    /// The jobs of `pending` whose locks this session holds (a lost session's are gone).
    fn releasable(&self, pending: &[Unlock]) -> Vec<Uuid> {
        if self.connection.is_none() {
            return Vec::new();
        }
        pending
            .iter()
            .filter(|(generation, ..)| *generation == self.generation)
            .map(|(_, id, _)| *id)
            .collect()
    }
}

/// Tells whoever waits for these releases that they are done.
fn released(pending: Vec<Unlock>) {
    for (_, _, done) in pending {
        if let Some(done) = done {
            let _ = done.send(());
        }
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

/// `first` and the requests waiting behind it, up to [`MAX_BATCH`].
fn gather<Req, Res>(
    rx: &mut mpsc::Receiver<(Req, Reply<Res>)>,
    first: (Req, Reply<Res>),
) -> (Vec<Req>, Vec<Reply<Res>>) {
    let (mut requests, mut replies) = (vec![first.0], vec![first.1]);
    while requests.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok((request, reply)) => {
                requests.push(request);
                replies.push(reply);
            }
            Err(_) => break,
        }
    }
    (requests, replies)
}

/// `pending` and every release waiting behind it.
fn drain(rx: &mut mpsc::UnboundedReceiver<Unlock>, mut pending: Vec<Unlock>) -> Vec<Unlock> {
    while let Ok(unlock) = rx.try_recv() {
        pending.push(unlock);
    }
    pending
}

async fn batch_loop<Req: Clone, Res, F, Fut>(mut rx: mpsc::Receiver<(Req, Reply<Res>)>, run: F)
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Result<Vec<Res>, sqlx::Error>>,
{
    while let Some(first) = rx.recv().await {
        let (requests, replies) = gather(&mut rx, first);
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
