//! Enqueueing: the `jobs` rows are committed first, then their messages are published
//! with confirms. A row whose publish failed stays `queued` with `published_at` NULL
//! until the relay (the scheduler's leader) publishes it: a committed job is never lost.

use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::job::{DEFAULT_PRIORITY, JobRecord, KindSpec, MAX_PRIORITY, QueueFamily, spec};
use crate::queue::{Outgoing, PublishError, Publisher};

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    /// 0–100; the default is [`DEFAULT_PRIORITY`].
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
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
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

    /// One job of kind `P` per `(payload, priority)`, all with the same parent and requester.
    pub fn batch<P: crate::job::JobPayload>(
        items: impl IntoIterator<Item = (P, u8)>,
        parent: Option<Uuid>,
        requested_by: &str,
    ) -> Vec<Self> {
        items
            .into_iter()
            .map(|(payload, priority)| {
                let mut job = Self::new(P::KIND, serde_json::json!(payload));
                job.priority = Some(priority);
                job.parent_id = parent;
                job.requested_by = Some(requested_by.to_owned());
                job
            })
            .collect()
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
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Inserts and publishes `jobs`. The rows are committed even when publishing fails
/// (the error is logged and the relay publishes them later).
pub async fn enqueue(db: &PgPool, publisher: &Publisher, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
    let mut records = insert(db, jobs).await?;
    if let Err(err) = publish(db, publisher, &mut records).await {
        tracing::warn!(error = %err, jobs = records.len(), "jobs committed but not published; the relay will publish them");
    }
    Ok(records)
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

/// Checks that the row a job works on ([`crate::job::Target`]) exists, so that a job
/// that could only fail is refused when it is enqueued rather than dead later.
pub async fn check_target<'e>(executor: impl PgExecutor<'e>, job: &NewJob) -> Result<(), EnqueueError> {
    let Some(target) = spec(&job.kind).and_then(|k| k.target) else {
        return Ok(());
    };
    let Some(id) = job.payload.get(target.field).and_then(Value::as_str) else {
        return Ok(());
    };
    let missing = || EnqueueError::MissingTarget {
        field: target.field,
        noun: target.noun,
        id: id.to_owned(),
    };
    let id: Uuid = id.parse().map_err(|_| missing())?;
    // The table name comes from the catalogue, never from a request.
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1)", target.table);
    let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(executor)
        .await?;
    if exists { Ok(()) } else { Err(missing()) }
}

/// Makes each job the current one of the row it works on, where that row follows its
/// current job ([`crate::job::Follows`]): a transcode enqueued on its own then runs
/// (an older one notices it was replaced) and the clip shows its state. Bulk paths
/// ([`crate::media::transcodes`], [`crate::transcripts`]) do the same in one statement.
pub async fn adopt(tx: &mut sqlx::PgConnection, records: &[JobRecord]) -> Result<(), sqlx::Error> {
    for job in records {
        let Some(target) = spec(&job.kind).and_then(|k| k.target) else {
            continue;
        };
        let (Some(follows), Some(id)) = (
            target.follows,
            job.payload
                .get(target.field)
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<Uuid>().ok()),
        ) else {
            continue;
        };
        // Table and column names come from the catalogue, never from a request.
        let sql = format!(
            "UPDATE {} SET {} = $2, {} = 'queued', {} = NULL WHERE id = $1",
            target.table, follows.job, follows.state, follows.error
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Inserts the rows (one statement, so one transaction unless `executor` is already one).
/// A scheduled job whose schedule already fired for the same due time is not inserted
/// again (the unique `jobs_schedule_due_idx`): it is missing from the rows returned.
pub async fn insert<'e>(executor: impl PgExecutor<'e>, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
    let mut ids = Vec::with_capacity(jobs.len());
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut queues = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    let mut priorities = Vec::with_capacity(jobs.len());
    let mut attempts = Vec::with_capacity(jobs.len());
    let mut schedules = Vec::with_capacity(jobs.len());
    let mut parents = Vec::with_capacity(jobs.len());
    let mut requesters = Vec::with_capacity(jobs.len());
    let mut scheduled_for = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (kind, max_attempts) = validate(&job)?;
        ids.push(Uuid::now_v7());
        queues.push(job.queue.unwrap_or(kind.queue).as_str().to_owned());
        kinds.push(job.kind);
        payloads.push(job.payload);
        priorities.push(i16::from(job.priority.unwrap_or(DEFAULT_PRIORITY)));
        attempts.push(max_attempts);
        schedules.push(job.schedule_id);
        parents.push(job.parent_id);
        requesters.push(job.requested_by);
        scheduled_for.push(job.scheduled_for);
    }
    let records = sqlx::query_as::<_, JobRecord>(concat!(
        "INSERT INTO jobs (id, kind, queue, payload, priority, max_attempts, schedule_id, parent_id, requested_by, \
                           scheduled_for) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[], $7::uuid[], \
                              $8::uuid[], $9::text[], $10::timestamptz[]) \
         ON CONFLICT DO NOTHING \
         RETURNING ",
        crate::job_columns!()
    ))
    .bind(ids)
    .bind(kinds)
    .bind(queues)
    .bind(payloads)
    .bind(priorities)
    .bind(attempts)
    .bind(schedules)
    .bind(parents)
    .bind(requesters)
    .bind(scheduled_for)
    .fetch_all(executor)
    .await?;
    Ok(records)
}

/// Publishes committed rows with confirms, then records `published_at`.
pub async fn publish(db: &PgPool, publisher: &Publisher, records: &mut [JobRecord]) -> Result<(), PublishError> {
    if records.is_empty() {
        return Ok(());
    }
    let topology = publisher.broker().topology();
    let messages: Vec<Outgoing> = records.iter().map(|job| Outgoing::job(topology, job)).collect();
    publisher.publish(&messages).await?;
    let ids: Vec<Uuid> = records.iter().map(|j| j.id).collect();
    match sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
        "UPDATE jobs SET published_at = now() WHERE id = ANY($1) RETURNING published_at",
    )
    .bind(&ids)
    .fetch_all(db)
    .await
    {
        Ok(stamps) => {
            if let Some(at) = stamps.first() {
                records.iter_mut().for_each(|r| r.published_at = Some(*at));
            }
        }
        // The messages are out; at worst the relay publishes a duplicate, which the claim drops.
        Err(err) => tracing::warn!(error = %err, "published but could not record published_at"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_runs_on_its_own_queue_unless_it_may_run_anywhere() {
        let mut transcode = NewJob::new("transcode", serde_json::json!({ "clip_id": Uuid::now_v7() }));
        transcode.queue = Some(QueueFamily::Email);
        let err = validate(&transcode).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("queue: `transcode` jobs run on the `transcode` queue, not `email`")
        );
        transcode.queue = Some(QueueFamily::Transcode);
        assert!(validate(&transcode).is_ok());
        let mut probe = NewJob::new("sleep", serde_json::json!({ "seconds": 0 }));
        probe.queue = Some(QueueFamily::Transcribe);
        assert!(validate(&probe).is_ok(), "a sleep probes any queue");
    }
}
