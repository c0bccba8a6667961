//! A `jobs` row and its state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::{ENVELOPE_VERSION, Envelope};

/// Where a job is in its life (`job_state` in PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "job_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Committed, waiting for a worker (published or about to be).
    Queued,
    /// Claimed by a worker that heartbeats it.
    Running,
    Succeeded,
    /// Failed permanently (bad input): not retried, not parked.
    Failed,
    /// Failed, waiting in a delay queue for its next attempt.
    Retrying,
    Cancelled,
    /// Out of attempts; its message is parked in the dead-letter queue.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Retrying,
        Self::Cancelled,
        Self::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Cancelled => "cancelled",
            Self::Dead => "dead",
        }
    }

    /// No worker will touch the job again unless an admin retries it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::Dead)
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state `{s}`"))
    }
}

/// One row of `jobs`, as the API shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRecord {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    /// Shown with secret-bearing fields redacted ([`super::redact`]).
    #[serde(serialize_with = "super::redact::serialize")]
    pub payload: serde_json::Value,
    pub priority: i16,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress: f32,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub worker_id: Option<Uuid>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub enqueued_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub schedule_id: Option<Uuid>,
    /// The due time a schedule fired this job for (NULL for "run now" and unscheduled jobs).
    pub scheduled_for: Option<DateTime<Utc>>,
    pub parent_id: Option<Uuid>,
    pub requested_by: Option<String>,
    /// When a `retrying` job's next attempt is due (null in every other state).
    pub retry_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
    /// Who last retried the job (or requeued its dead letter).
    pub retried_by: Option<String>,
    /// Each attempt that ended in an error and each admin action, oldest first:
    /// `{"at", "event", "attempt", "error"?, "by"?, "state"?}`.
    pub history: serde_json::Value,
    /// Why a `queued` or `retrying` job is not running yet (computed by the API that
    /// shows it; absent where it was not computed).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_reason: Option<String>,
    /// Jobs of its queue that a `queued` job waits behind (computed like `wait_reason`).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobs_ahead: Option<i64>,
}

/// The column list matching [`JobRecord`] as a literal, for `concat!` into static SQL.
#[macro_export]
macro_rules! job_columns {
    () => {
        "id, kind, queue, payload, priority, state, attempts, max_attempts, progress, error, result, \
         worker_id, heartbeat_at, enqueued_at, published_at, started_at, finished_at, schedule_id, \
         scheduled_for, parent_id, requested_by, retry_at, cancelled_by, retried_by, history"
    };
}

/// The column list matching [`JobRecord`], for `SELECT`/`RETURNING`.
pub const JOB_COLUMNS: &str = job_columns!();

impl JobRecord {
    /// The envelope of the message that carries this job.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            id: self.id,
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            attempt: self.attempts,
            traceparent: None,
        }
    }
}
