//! Firing schedules. PostgreSQL is the timer wheel: `schedules.next_run_at` holds each
//! schedule's next due time (indexed), the leader sleeps until the earliest one (or an
//! edit's NOTIFY), then fires everything due in one transaction: the jobs rows and the
//! schedules' new `next_run_at` / `last_run_at` / `total_run_count` commit together,
//! and a fire only happens if `next_run_at` still equals the due time it read under
//! `FOR UPDATE`. A due time can therefore fire at most once, whatever crashes where or
//! however many leaders believe they lead (a unique index on the jobs' `schedule_id,
//! scheduled_for` backs it); then the jobs are published.
//!
//! Every function takes `now` explicitly, so the calendar logic is tested with an
//! injected clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rushes_common::job::JobRecord;
use rushes_common::job::store::{self, NewJob, Tx};
use rushes_common::queue::Publisher;
use rushes_common::schedule::{Compiled, Missed, ScheduleRecord};
use sqlx::PgPool;
use uuid::Uuid;

/// Most schedules fired in one transaction.
const BATCH: i64 = 2000;

/// What happened to one due schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// A job was enqueued.
    Fired,
    /// Missed while no scheduler ran, and the policy is `skip`.
    SkippedMissed,
    /// Its job could not be built (unknown kind, invalid payload): nothing enqueued.
    Invalid,
    /// A job for this due time exists already (an edit moved the schedule back): none added.
    AlreadyFired,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::SkippedMissed => "skipped_missed",
            Self::Invalid => "invalid",
            Self::AlreadyFired => "already_fired",
        }
    }
}

/// One schedule handled by a pass.
#[derive(Debug, Clone)]
pub struct Fire {
    pub schedule_id: Uuid,
    pub name: String,
    /// The job kind it fires.
    pub kind: String,
    pub due: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub next: Option<DateTime<Utc>>,
}

/// The result of one pass: what was handled and the jobs enqueued (not yet published).
#[derive(Debug, Default)]
pub struct Pass {
    pub fires: Vec<Fire>,
    pub jobs: Vec<JobRecord>,
}

/// Gives enabled schedules that have no `next_run_at` yet (installed by a migration,
/// or edited by hand) their first due time after `now`.
pub async fn initialise(db: &PgPool, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
    let rows: Vec<ScheduleRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::schedule_columns!(),
        " FROM schedules WHERE enabled AND next_run_at IS NULL"
    ))
    .fetch_all(db)
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut nexts = Vec::with_capacity(rows.len());
    for row in rows {
        let next = row.first_due_after(now).unwrap_or_else(|err| {
            tracing::error!(schedule = %row.name, error = %err, "schedule has an invalid timing; disabling it");
            None
        });
        ids.push(row.id);
        nexts.push(next);
    }
    sqlx::query(
        "UPDATE schedules s SET next_run_at = u.next, enabled = u.next IS NOT NULL \
         FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, next) \
         WHERE s.id = u.id AND s.enabled AND s.next_run_at IS NULL",
    )
    .bind(&ids)
    .bind(&nexts)
    .execute(db)
    .await?;
    Ok(ids.len())
}

/// Fires every schedule due at `now` (due times later than `grace` count as missed).
/// The jobs are committed and counted in `publisher`'s process, not published: the
/// caller publishes them beside its firing loop.
pub async fn fire_due(db: &PgPool, publisher: &Publisher, now: DateTime<Utc>, grace: Duration) -> anyhow::Result<Pass> {
    let grace = chrono::Duration::from_std(grace)?;
    let mut tx = Tx::begin(db).await?;
    let due: Vec<ScheduleRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::schedule_columns!(),
        " FROM schedules WHERE enabled AND next_run_at <= $1 \
          ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(now)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        return Ok(Pass::default());
    }

    let mut fires = Vec::with_capacity(due.len());
    let mut jobs = Vec::new();
    for schedule in &due {
        let Some(due_at) = schedule.next_run_at else { continue };
        let compiled = match schedule.timing().and_then(|t| t.compile()) {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(schedule = %schedule.name, error = %err, "invalid timing; disabling");
                fires.push(Fire {
                    schedule_id: schedule.id,
                    name: schedule.name.clone(),
                    kind: schedule.kind.clone(),
                    due: due_at,
                    outcome: FireOutcome::Invalid,
                    next: None,
                });
                continue;
            }
        };
        let late = now - due_at;
        let on_time = late <= grace;
        let mut outcome = if on_time || schedule.missed_policy() == Missed::RunOnce {
            FireOutcome::Fired
        } else {
            FireOutcome::SkippedMissed
        };
        if outcome == FireOutcome::Fired {
            let job = NewJob {
                priority: schedule.priority.and_then(|p| u8::try_from(p).ok()),
                schedule_id: Some(schedule.id),
                scheduled_for: Some(due_at),
                requested_by: Some(format!("schedule:{}", schedule.name)),
                ..NewJob::by_name(schedule.kind.clone(), schedule.payload.clone())
            };
            match store::validate(&job) {
                Ok(_) => jobs.push(job),
                Err(err) => {
                    tracing::error!(schedule = %schedule.name, error = %err, "cannot build the scheduled job");
                    outcome = FireOutcome::Invalid;
                }
            }
        }
        // Every due time up to now is consumed: the next one is strictly after now.
        let next = match compiled {
            Compiled::Clocked(_) => None,
            _ if schedule.one_off && outcome == FireOutcome::Fired => None,
            compiled => compiled.next_after(now.max(due_at), &schedule.window()),
        };
        fires.push(Fire {
            schedule_id: schedule.id,
            name: schedule.name.clone(),
            kind: schedule.kind.clone(),
            due: due_at,
            outcome,
            next,
        });
    }

    let records = tx.enqueue(jobs).await?;
    // A job refused as a duplicate of one already fired for its due time was not fired now.
    for fire in fires.iter_mut().filter(|f| f.outcome == FireOutcome::Fired) {
        if !records.iter().any(|r| r.schedule_id == Some(fire.schedule_id)) {
            fire.outcome = FireOutcome::AlreadyFired;
        }
    }
    let ids: Vec<Uuid> = fires.iter().map(|f| f.schedule_id).collect();
    let nexts: Vec<Option<DateTime<Utc>>> = fires.iter().map(|f| f.next).collect();
    let fired: Vec<bool> = fires.iter().map(|f| f.outcome == FireOutcome::Fired).collect();
    let dues: Vec<DateTime<Utc>> = fires.iter().map(|f| f.due).collect();
    sqlx::query(
        "UPDATE schedules s SET next_run_at = u.next, enabled = u.next IS NOT NULL, \
                last_run_at = CASE WHEN u.fired THEN $5 ELSE s.last_run_at END, \
                total_run_count = s.total_run_count + CASE WHEN u.fired THEN 1 ELSE 0 END \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::bool[], $4::timestamptz[]) AS u(id, next, fired, due) \
         WHERE s.id = u.id AND s.next_run_at = u.due",
    )
    .bind(&ids)
    .bind(&nexts)
    .bind(&fired)
    .bind(&dues)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let jobs = tx.commit_unpublished(publisher).await?;
    Ok(Pass { fires, jobs })
}

/// The earliest due time of any enabled schedule.
pub async fn next_due(db: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(next_run_at) FROM schedules WHERE enabled")
        .fetch_one(db)
        .await
}

/// Enabled schedules, for the `rushes_schedules_loaded` gauge.
pub async fn enabled_count(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM schedules WHERE enabled")
        .fetch_one(db)
        .await
}
