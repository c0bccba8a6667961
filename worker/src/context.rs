//! What a running job sees: its identity, cancellation, progress reporting and the
//! shared handles a handler may need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use rushes_common::queue::Publisher;

use crate::services::Services;
use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

/// A job this worker is running, as the heartbeat and the cancel listener see it.
#[derive(Debug)]
pub(crate) struct RunningJob {
    pub cancel: CancellationToken,
    /// Set when the worker stops: the job goes back to its queue instead of failing.
    pub requeue_on_stop: AtomicBool,
    /// The attempt number this run holds (heartbeats are conditional on it).
    pub attempt: AtomicI32,
    /// Quick-claimed and not promoted yet: the row says `queued`, so no heartbeat.
    pub quick: AtomicBool,
    progress_bits: AtomicU32,
}

impl RunningJob {
    pub fn new() -> Self {
        Self {
            cancel: CancellationToken::new(),
            requeue_on_stop: AtomicBool::new(false),
            attempt: AtomicI32::new(0),
            quick: AtomicBool::new(false),
            progress_bits: AtomicU32::new(0f32.to_bits()),
        }
    }

    pub fn progress(&self) -> f32 {
        f32::from_bits(self.progress_bits.load(Ordering::Relaxed))
    }
}

/// Handed to every handler.
#[derive(Clone)]
pub struct JobContext {
    pub job_id: Uuid,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    pub db: PgPool,
    pub publisher: Publisher,
    pub services: Arc<Services>,
    pub logs: rushes_common::logs::LogSink,
    pub(crate) running: Arc<RunningJob>,
}

impl JobContext {
    /// Reports progress (clamped to 0–1); the heartbeat stores it.
    pub fn set_progress(&self, fraction: f32) {
        let value = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.running.progress_bits.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Resolves when the job is cancelled (by an admin, a timeout, or shutdown).
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.running.cancel.cancelled()
    }

    /// Stores a line in the job's own log (`GET /api/v1/jobs/{id}/logs`).
    pub fn log(&self, level: rushes_common::logs::Level, message: impl Into<String>) {
        let fields = serde_json::json!({ "attempt": self.attempt });
        self.logs.log(level, Some(self.job_id), message, fields);
    }

    /// A token cancelled with the job, for work that outlives a borrow of the context.
    pub fn cancel_token(&self) -> CancellationToken {
        self.running.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.running.cancel.is_cancelled()
    }
}
