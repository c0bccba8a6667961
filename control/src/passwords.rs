//! Argon2id password hashing on a bounded pool. Each hash takes about 19 MiB and a
//! CPU for tens of milliseconds, so at most one runs per CPU at a time, a bounded
//! queue waits behind them, and past that a caller is answered 503 at once: a flood
//! of logins slows logins down instead of taking the process's memory. Unknown
//! usernames are checked against a dummy hash made once, so they cost what a known
//! one costs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::{OnceCell, Semaphore};

use crate::error::{ApiError, ApiResult};

/// Callers that may wait for a free hashing slot, per slot.
const QUEUE_PER_SLOT: usize = 16;

/// The process's pool: one slot per CPU.
static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let slots = std::thread::available_parallelism().map_or(2, usize::from);
    Pool::new(slots, slots * QUEUE_PER_SLOT)
});

/// The hash unknown usernames are verified against.
static DUMMY: OnceCell<String> = OnceCell::const_new();

/// A bounded number of concurrent Argon2 computations and of callers waiting for one.
pub struct Pool {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Pool {
    pub fn new(slots: usize, max_waiting: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free; 503 when too many wait.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(ApiError::Unavailable(
                        "too many password checks at once; try again in a moment".into(),
                    ));
                }
                let acquired = self.slots.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                acquired.map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?
            }
        };
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("password hashing stopped")))
    }
}

/// Argon2id hash of a password, in PHC string form.
pub async fn hash(password: String) -> ApiResult<String> {
    POOL.run(move || {
        use argon2::PasswordHasher as _;
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
    })
    .await?
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot hash the password: {e}")))
}

/// Whether `password` matches a stored PHC hash (false for a malformed hash).
pub async fn verify(password: String, hash: String) -> ApiResult<bool> {
    POOL.run(move || {
        use argon2::PasswordVerifier as _;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
}

/// Verifies `password` against the stored hash, or against the dummy hash when there
/// is none (an unknown user), so that both take the same time; false in the latter case.
pub async fn verify_or_dummy(password: String, stored: Option<String>) -> ApiResult<bool> {
    match stored {
        Some(stored) => verify(password, stored).await,
        None => {
            verify(password, dummy_hash().await?.to_owned()).await?;
            Ok(false)
        }
    }
}

/// The dummy hash, made on first use (the server makes it at start, see [`warm_up`]).
async fn dummy_hash() -> ApiResult<&'static str> {
    DUMMY
        .get_or_try_init(|| {
            let secret: [u8; 24] = rand::random();
            hash(secret.iter().map(|b| format!("{b:02x}")).collect())
        })
        .await
        .map(String::as_str)
}

/// Makes the dummy hash now, so that the first unknown username costs no more than others.
pub async fn warm_up() {
    if let Err(err) = dummy_hash().await {
        tracing::warn!(error = %err, "cannot make the dummy password hash yet");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_beyond_the_queue_are_turned_away_and_the_rest_run() {
        let pool = Arc::new(Pool::new(1, 1));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || held.recv().is_ok()).await })
        };
        // Wait until the one slot is taken.
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 2).await })
        };
        while pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| 3).await;
        assert!(matches!(refused, Err(ApiError::Unavailable(_))), "{refused:?}");
        assert!(release.send(()).is_ok());
        assert!(matches!(busy.await, Ok(Ok(true))));
        assert!(matches!(queued.await, Ok(Ok(2))));
        assert!(matches!(pool.run(|| 4).await, Ok(4)));
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let stored = hash("correct horse".into()).await.ok();
        assert!(stored.is_some());
        assert!(matches!(
            verify_or_dummy("correct horse".into(), stored.clone()).await,
            Ok(true)
        ));
        assert!(matches!(verify_or_dummy("wrong horse".into(), stored).await, Ok(false)));
        assert!(matches!(verify_or_dummy("anything".into(), None).await, Ok(false)));
        let first = dummy_hash().await.ok();
        assert!(first.is_some() && first == dummy_hash().await.ok(), "made once");
    }
}
