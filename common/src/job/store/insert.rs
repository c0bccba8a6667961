//! Inserting `jobs` rows: each is checked against the catalogue, names the table that
//! mirrors its state (`jobs.mirror`, from [`crate::job::Follows`]), and becomes the
//! current job of the row it works on where that row follows its current job.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::{PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use super::new_job::{CheckedJob, EnqueueError, NewJob};
use crate::job::{DEFAULT_PRIORITY, Follows, JobRecord, JobState, Target, spec};

/// Checks that the row a job works on ([`crate::job::Target`]) exists, so that a job
/// that could only fail is refused when it is enqueued rather than dead later.
pub async fn check_target<'e>(executor: impl PgExecutor<'e>, job: &NewJob) -> Result<(), EnqueueError> {
    let Some(target) = spec(&job.kind).and_then(|k| k.target) else {
        return Ok(());
    };
    let Some(id) = job.payload.get(target.field).and_then(Value::as_str) else {
        return Ok(());
    };
    let id: Uuid = id.parse().map_err(|_| missing_target(target, id))?;
    // The table name comes from the catalogue, never from a request.
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1)", target.table);
    let exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(executor)
        .await?;
    if exists {
        Ok(())
    } else {
        Err(missing_target(target, &id.to_string()))
    }
}

/// [`check_target`] for many jobs at once, one query per table named: the index of each
/// job whose row does not exist, in order, with the error saying which.
pub async fn check_targets(
    conn: &mut PgConnection,
    jobs: &[CheckedJob],
) -> Result<Vec<(usize, EnqueueError)>, sqlx::Error> {
    let mut problems = Vec::new();
    // Table → (index of the job, the row's id), in the order the jobs came.
    let mut wanted: BTreeMap<&'static str, Vec<(usize, Uuid)>> = BTreeMap::new();
    for (index, checked) in jobs.iter().enumerate() {
        let Some(target) = checked.kind.target else {
            continue;
        };
        let Some(id) = checked.job.payload.get(target.field).and_then(Value::as_str) else {
            continue;
        };
        match id.parse::<Uuid>() {
            Ok(uuid) => wanted.entry(target.table).or_default().push((index, uuid)),
            Err(_) => problems.push((index, missing_target(target, id))),
        }
    }
    for (table, rows) in wanted {
        let ids: Vec<Uuid> = rows.iter().map(|(_, id)| *id).collect();
        // The table name comes from the catalogue, never from a request.
        let sql = format!("SELECT id FROM {table} WHERE id = ANY($1)");
        let found: HashSet<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        for (index, id) in rows.into_iter().filter(|(_, id)| !found.contains(id)) {
            if let Some(target) = jobs[index].kind.target {
                problems.push((index, missing_target(target, &id.to_string())));
            }
        }
    }
    problems.sort_by_key(|(index, _)| *index);
    Ok(problems)
}

fn missing_target(target: Target, id: &str) -> EnqueueError {
    EnqueueError::MissingTarget {
        field: target.field,
        noun: target.noun,
        id: id.to_owned(),
    }
}

/// The columns of new rows, one array per column, for `INSERT … SELECT * FROM unnest(…)`.
struct Columns {
    ids: Vec<Uuid>,
    kinds: Vec<String>,
    queues: Vec<String>,
    payloads: Vec<Value>,
    priorities: Vec<i16>,
    attempts: Vec<i32>,
    schedules: Vec<Option<Uuid>>,
    parents: Vec<Option<Uuid>>,
    requesters: Vec<Option<String>>,
    scheduled_for: Vec<Option<DateTime<Utc>>>,
    mirrors: Vec<Option<&'static str>>,
}

/// The column list and row source both inserts share.
macro_rules! insert_unnest {
    () => {
        "INSERT INTO jobs (id, kind, queue, payload, priority, max_attempts, schedule_id, parent_id, requested_by, \
                           scheduled_for, mirror) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int2[], $6::int4[], $7::uuid[], \
                              $8::uuid[], $9::text[], $10::timestamptz[], $11::text[])"
    };
}

impl Columns {
    fn of(jobs: Vec<CheckedJob>) -> Self {
        let n = jobs.len();
        let mut columns = Self {
            ids: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            attempts: Vec::with_capacity(n),
            schedules: Vec::with_capacity(n),
            parents: Vec::with_capacity(n),
            requesters: Vec::with_capacity(n),
            scheduled_for: Vec::with_capacity(n),
            mirrors: Vec::with_capacity(n),
        };
        for CheckedJob {
            job,
            kind,
            max_attempts,
        } in jobs
        {
            columns.ids.push(Uuid::now_v7());
            columns.queues.push(job.queue.unwrap_or(kind.queue).as_str().to_owned());
            columns
                .mirrors
                .push(kind.target.and_then(|t| t.follows).map(|f| f.mirror.as_str()));
            columns.kinds.push(job.kind);
            columns.payloads.push(job.payload);
            columns
                .priorities
                .push(i16::from(job.priority.unwrap_or(DEFAULT_PRIORITY)));
            columns.attempts.push(max_attempts);
            columns.schedules.push(job.schedule_id);
            columns.parents.push(job.parent_id);
            columns.requesters.push(job.requested_by);
            columns.scheduled_for.push(job.scheduled_for);
        }
        columns
    }

    fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, Postgres, O, PgArguments>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.kinds)
            .bind(&self.queues)
            .bind(&self.payloads)
            .bind(&self.priorities)
            .bind(&self.attempts)
            .bind(&self.schedules)
            .bind(&self.parents)
            .bind(&self.requesters)
            .bind(&self.scheduled_for)
            .bind(&self.mirrors)
    }

    /// The rows as inserted (the columns' defaults: `queued`, no attempt yet, …),
    /// enqueued at `enqueued_at`, in order.
    fn into_records(self, enqueued_at: DateTime<Utc>) -> Vec<JobRecord> {
        let Self {
            ids,
            kinds,
            queues,
            payloads,
            priorities,
            attempts,
            schedules,
            parents,
            requesters,
            scheduled_for,
            ..
        } = self;
        // Every column has one value per id: the `unwrap_or_default`s never apply.
        let (mut kinds, mut queues, mut payloads, mut priorities) = (
            kinds.into_iter(),
            queues.into_iter(),
            payloads.into_iter(),
            priorities.into_iter(),
        );
        let (mut attempts, mut schedules, mut parents, mut requesters, mut scheduled_for) = (
            attempts.into_iter(),
            schedules.into_iter(),
            parents.into_iter(),
            requesters.into_iter(),
            scheduled_for.into_iter(),
        );
        ids.into_iter()
            .map(|id| JobRecord {
                id,
                kind: kinds.next().unwrap_or_default(),
                queue: queues.next().unwrap_or_default(),
                payload: payloads.next().unwrap_or_default(),
                priority: priorities.next().unwrap_or_default(),
                state: JobState::Queued,
                attempts: 0,
                max_attempts: attempts.next().unwrap_or_default(),
                progress: 0.0,
                error: None,
                result: None,
                worker_id: None,
                heartbeat_at: None,
                enqueued_at,
                published_at: None,
                started_at: None,
                finished_at: None,
                schedule_id: schedules.next().flatten(),
                scheduled_for: scheduled_for.next().flatten(),
                parent_id: parents.next().flatten(),
                requested_by: requesters.next().flatten(),
                retry_at: None,
                cancelled_by: None,
                retried_by: None,
                history: Value::Array(Vec::new()),
                wait_reason: None,
                jobs_ahead: None,
            })
            .collect()
    }
}

/// Checks the jobs, inserts the rows in one statement and returns them as stored, then
/// adopts them ([`adopt`]). A scheduled job whose schedule already fired for the same
/// due time is not inserted again (the unique `jobs_schedule_due_idx`): it is missing
/// from the rows returned. Without a scheduled job, nothing can be skipped: the rows
/// are built from what was inserted ([`insert_checked`]), not read back.
pub(super) async fn insert(tx: &mut PgConnection, jobs: Vec<NewJob>) -> Result<Vec<JobRecord>, EnqueueError> {
    let checked = jobs.into_iter().map(NewJob::check).collect::<Result<Vec<_>, _>>()?;
    if checked.iter().all(|c| c.job.scheduled_for.is_none()) {
        // Only a schedule's due time can conflict: the rows are what was inserted, and
        // reading them back would cost the database and the decoding for nothing.
        return insert_checked(tx, checked).await;
    }
    let columns = Columns::of(checked);
    let query = sqlx::query_as::<_, JobRecord>(concat!(
        insert_unnest!(),
        " ON CONFLICT DO NOTHING RETURNING ",
        crate::job_columns!()
    ));
    let records = columns.bind(query).fetch_all(&mut *tx).await?;
    adopt(tx, &records).await?;
    Ok(records)
}

/// Inserts jobs already checked ([`NewJob::check`]) in one statement without reading
/// them back: the rows returned are built from what was inserted, in order (many jobs
/// at a time: `POST /jobs/batch`). Then adopts them ([`adopt`]). A job of a schedule
/// that already fired for its due time is an error here, not skipped.
pub(super) async fn insert_checked(
    tx: &mut PgConnection,
    jobs: Vec<CheckedJob>,
) -> Result<Vec<JobRecord>, EnqueueError> {
    let columns = Columns::of(jobs);
    // `now()` is the transaction's time: the `enqueued_at` every new row defaults to.
    let query = sqlx::query_as::<_, (i64, DateTime<Utc>)>(concat!(
        "WITH inserted AS (",
        insert_unnest!(),
        " RETURNING 1) SELECT count(*), now() FROM inserted"
    ));
    let (inserted, enqueued_at) = columns.bind(query).fetch_one(&mut *tx).await?;
    if usize::try_from(inserted).ok() != Some(columns.ids.len()) {
        return Err(EnqueueError::NotInserted);
    }
    let records = columns.into_records(enqueued_at);
    adopt(tx, &records).await?;
    Ok(records)
}

/// Whether inserting `jobs` writes rows of other tables ([`adopt`]): then one
/// statement alone cannot insert them atomically.
pub(super) fn adopts_rows(jobs: &[NewJob]) -> bool {
    jobs.iter().any(|job| {
        spec(&job.kind)
            .and_then(|k| k.target)
            .is_some_and(|t| t.follows.is_some())
    })
}

/// The rows of one table that adopt new jobs, and those jobs.
struct Adoptions {
    table: &'static str,
    follows: Follows,
    /// Row → its new current job.
    jobs: HashMap<Uuid, Uuid>,
}

/// Makes each job the current one of the row it works on, where that row follows its
/// current job ([`Follows`]): a transcode enqueued on its own then runs (an older one
/// notices it was replaced) and the clip shows its state. One statement per table; of
/// several jobs for one row, the last becomes its current one.
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
            jobs: HashMap::new(),
        });
        adoptions.jobs.insert(row, job.id);
    }
    for Adoptions { table, follows, jobs } in by_table.into_values() {
        let (rows, jobs): (Vec<Uuid>, Vec<Uuid>) = jobs.into_iter().unzip();
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
