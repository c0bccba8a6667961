//! Inserting `jobs` rows: each is checked against the catalogue, names the table that
//! mirrors its state (`jobs.mirror`, from [`crate::job::Follows`]), and becomes the
//! current job of the row it works on where that row follows its current job.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::new_job::{EnqueueError, NewJob, validate};
use crate::job::{DEFAULT_PRIORITY, Follows, JobRecord, spec};

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

/// Inserts the rows in one statement, then adopts them ([`adopt`]). A scheduled job
/// whose schedule already fired for the same due time is not inserted again (the
/// unique `jobs_schedule_due_idx`): it is missing from the rows returned.
pub(super) async fn insert(tx: &mut PgConnection, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
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
    let mut mirrors = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (kind, max_attempts) = validate(&job)?;
        ids.push(Uuid::now_v7());
        queues.push(job.queue.unwrap_or(kind.queue).as_str().to_owned());
        mirrors.push(kind.target.and_then(|t| t.follows).map(|f| f.mirror.as_str()));
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
                           scheduled_for, mirror) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[], $7::uuid[], \
                              $8::uuid[], $9::text[], $10::timestamptz[], $11::text[]) \
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
    .bind(mirrors)
    .fetch_all(&mut *tx)
    .await?;
    adopt(tx, &records).await?;
    Ok(records)
}

/// The rows of one table that adopt new jobs, and those jobs.
struct Adoptions {
    table: &'static str,
    follows: Follows,
    rows: Vec<Uuid>,
    jobs: Vec<Uuid>,
}

/// Makes each job the current one of the row it works on, where that row follows its
/// current job ([`Follows`]): a transcode enqueued on its own then runs (an older one
/// notices it was replaced) and the clip shows its state. One statement per table.
async fn adopt(tx: &mut PgConnection, records: &[JobRecord]) -> Result<(), sqlx::Error> {
    let mut by_table: BTreeMap<&'static str, Adoptions> = BTreeMap::new();
    for job in records {
        let Some(target) = spec(&job.kind).and_then(|k| k.target) else {
            continue;
        };
        let (Some(follows), Some(row)) = (
            target.follows,
            job.payload
                .get(target.field)
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<Uuid>().ok()),
        ) else {
            continue;
        };
        let adoptions = by_table.entry(target.table).or_insert_with(|| Adoptions {
            table: target.table,
            follows,
            rows: Vec::new(),
            jobs: Vec::new(),
        });
        adoptions.rows.push(row);
        adoptions.jobs.push(job.id);
    }
    for Adoptions {
        table,
        follows,
        rows,
        jobs,
    } in by_table.into_values()
    {
        // Table and column names come from the catalogue, never from a request.
        let sql = format!(
            "UPDATE {table} t SET {job} = u.job_id, {state} = 'queued', {error} = NULL \
             FROM unnest($1::uuid[], $2::uuid[]) AS u(row_id, job_id) WHERE t.id = u.row_id",
            job = follows.job,
            state = follows.state,
            error = follows.error
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rows)
            .bind(jobs)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
