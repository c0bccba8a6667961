//! A job to enqueue, built from its typed payload ([`NewJob::of`]) or, where the kind
//! comes from a request or a schedule row, by name; and its checks against the catalogue.

use serde_json::Value;
use uuid::Uuid;

use crate::job::{JobPayload, KindSpec, MAX_PRIORITY, QueueFamily, spec};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// 0–100; the default is [`crate::job::DEFAULT_PRIORITY`].
    pub priority: Option<u8>,
    /// Another family's queue than the kind's own (e.g. a `sleep` probing GPU nodes).
    pub queue: Option<QueueFamily>,
    pub max_attempts: Option<i32>,
    pub schedule_id: Option<Uuid>,
    /// The due time a schedule fires this job for.
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    pub parent_id: Option<Uuid>,
    pub requested_by: Option<String>,
}

impl NewJob {
    /// A job of kind `P`. A payload that does not serialise becomes `null`, which the
    /// enqueue refuses as an invalid payload.
    pub fn of<P: JobPayload>(payload: &P) -> Self {
        Self::by_name(P::KIND, serde_json::to_value(payload).unwrap_or(Value::Null))
    }

    /// A job whose kind is named at run time (`POST /jobs`, a schedule's row): the
    /// enqueue checks the name and the payload against the catalogue.
    pub fn by_name(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            priority: None,
            queue: None,
            max_attempts: None,
            schedule_id: None,
            scheduled_for: None,
            parent_id: None,
            requested_by: None,
        }
    }

    /// Its priority (0–100).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The job that enqueued it.
    pub fn parent(mut self, parent: Uuid) -> Self {
        self.parent_id = Some(parent);
        self
    }

    /// Who asked for it (a user, `schedule:<name>`, the kind that enqueued it).
    pub fn requested_by(mut self, who: impl Into<String>) -> Self {
        self.requested_by = Some(who.into());
        self
    }

    /// This job checked against the catalogue ([`validate`]), once: what
    /// [`super::Tx::enqueue_checked`] inserts without checking it again.
    pub fn check(self) -> Result<CheckedJob, EnqueueError> {
        let (kind, max_attempts) = validate(&self)?;
        Ok(CheckedJob {
            job: self,
            kind,
            max_attempts,
        })
    }

    /// One job of kind `P` per `(payload, priority)`, all with the same parent and requester.
    pub fn batch<P: JobPayload>(
        items: impl IntoIterator<Item = (P, u8)>,
        parent: Option<Uuid>,
        requested_by: &str,
    ) -> Vec<Self> {
        items
            .into_iter()
            .map(|(payload, priority)| Self {
                parent_id: parent,
                ..Self::of(&payload).priority(priority).requested_by(requested_by)
            })
            .collect()
    }
}

/// A job that passed [`validate`] ([`NewJob::check`]), with its kind and effective
/// `max_attempts`.
#[derive(Debug, Clone)]
pub struct CheckedJob {
    pub(super) job: NewJob,
    pub(super) kind: &'static KindSpec,
    pub(super) max_attempts: i32,
}

impl CheckedJob {
    pub fn job(&self) -> &NewJob {
        &self.job
    }

    /// Its kind in the catalogue.
    pub fn kind(&self) -> &'static KindSpec {
        self.kind
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("unknown job kind `{0}`")]
    UnknownKind(String),
    #[error("invalid payload for `{kind}`: {message}")]
    InvalidPayload { kind: String, message: String },
    #[error("priority must be between 0 and {MAX_PRIORITY}, got {0}")]
    Priority(u8),
    #[error("max_attempts must be between 1 and 100, got {0}")]
    MaxAttempts(i32),
    #[error("queue: `{kind}` jobs run on the `{expected}` queue, not `{queue}`")]
    WrongQueue {
        kind: String,
        queue: QueueFamily,
        expected: QueueFamily,
    },
    #[error("payload: {field} `{id}` names no {noun}")]
    MissingTarget {
        field: &'static str,
        noun: &'static str,
        id: String,
    },
    #[error("the job was not inserted (its schedule already fired for that due time)")]
    NotInserted,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Checks a job against the catalogue: known kind, valid payload, priority and attempts
/// in range. Returns the kind and the effective `max_attempts`.
pub fn validate(job: &NewJob) -> Result<(&'static KindSpec, i32), EnqueueError> {
    let kind = spec(&job.kind).ok_or_else(|| EnqueueError::UnknownKind(job.kind.clone()))?;
    kind.validate(&job.payload)
        .map_err(|message| EnqueueError::InvalidPayload {
            kind: job.kind.clone(),
            message,
        })?;
    if let Some(priority) = job.priority.filter(|p| *p > MAX_PRIORITY) {
        return Err(EnqueueError::Priority(priority));
    }
    let max_attempts = job.max_attempts.unwrap_or(kind.max_attempts);
    if !(1..=100).contains(&max_attempts) {
        return Err(EnqueueError::MaxAttempts(max_attempts));
    }
    if let Some(queue) = job.queue.filter(|q| *q != kind.queue && !kind.any_queue) {
        return Err(EnqueueError::WrongQueue {
            kind: job.kind.clone(),
            queue,
            expected: kind.queue,
        });
    }
    Ok((kind, max_attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_runs_on_its_own_queue_unless_it_may_run_anywhere() {
        let mut transcode = NewJob::of(&crate::job::media::Transcode {
            clip_id: Uuid::now_v7(),
        });
        transcode.queue = Some(QueueFamily::Email);
        let err = validate(&transcode).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("queue: `transcode` jobs run on the `transcode` queue, not `email`")
        );
        transcode.queue = Some(QueueFamily::Transcode);
        assert!(validate(&transcode).is_ok());
        let mut probe = NewJob::by_name("sleep", serde_json::json!({ "seconds": 0 }));
        probe.queue = Some(QueueFamily::Transcribe);
        assert!(validate(&probe).is_ok(), "a sleep probes any queue");
    }
}
