//! `/api/v1/schedules`: cron / interval / clocked schedules (the django-celery-beat
//! model), stored in PostgreSQL; every write sets `next_run_at` and `updated_at`, and a
//! trigger announces it to the scheduler, which picks it up within milliseconds.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use rushes_common::job::MAX_PRIORITY;
use rushes_common::job::store::{self, NewJob};
use rushes_common::schedule::{Compiled, Missed, Period, ScheduleError, ScheduleRecord, Timing, Window, parse_instant};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Upcoming fire times shown with a schedule.
const UPCOMING: usize = 5;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/schedules", post(create).get(list))
        .route("/schedules/{id}", get(show).patch(update).delete(remove))
        .route("/schedules/{id}/enable", post(enable))
        .route("/schedules/{id}/disable", post(disable))
        .route("/schedules/{id}/run", post(run_now))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronBody {
    /// Required on create; on update, absent keeps the stored expression (so a time
    /// zone can change alone).
    expr: Option<String>,
    /// Absent: the stored zone on update, else UTC.
    timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntervalBody {
    every: i64,
    period: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockedBody {
    at: String,
}

/// Body of create (name and kind required) and update (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    name: Option<String>,
    description: Option<String>,
    kind: Option<String>,
    payload: Option<Value>,
    priority: Option<i64>,
    cron: Option<CronBody>,
    interval: Option<IntervalBody>,
    clocked: Option<ClockedBody>,
    enabled: Option<bool>,
    one_off: Option<bool>,
    #[serde(default, deserialize_with = "super::present")]
    start_time: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::present")]
    expires: Option<Option<String>>,
    missed: Option<String>,
}

fn invalid(err: ScheduleError) -> ApiError {
    ApiError::Unprocessable(err.to_string())
}

impl ScheduleBody {
    /// The timing this body sets, if it sets one, completed from the stored `row` (a
    /// cron body without `expr` keeps the stored expression); more than one is refused.
    fn timing(&self, row: &ScheduleRecord) -> ApiResult<Option<Timing>> {
        let given = [self.cron.is_some(), self.interval.is_some(), self.clocked.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ApiError::Unprocessable(
                "timing: give exactly one of cron, interval, clocked".into(),
            ));
        }
        if let Some(cron) = &self.cron {
            let expr = cron.expr.as_deref().or(row.cron_expr.as_deref()).ok_or_else(|| {
                ApiError::Unprocessable(
                    "cron.expr: required, e.g. \"30 1 * * *\" (minute hour day month weekday)".into(),
                )
            })?;
            let timezone = cron
                .timezone
                .as_deref()
                .or(row.cron_timezone.as_deref())
                .unwrap_or("UTC");
            return Ok(Some(Timing::Cron {
                expr: expr.trim().to_owned(),
                timezone: timezone.trim().to_owned(),
            }));
        }
        if let Some(interval) = &self.interval {
            let period: Period = interval.period.parse().map_err(invalid)?;
            return Ok(Some(Timing::Interval {
                every: interval.every,
                period,
            }));
        }
        if let Some(clocked) = &self.clocked {
            return Ok(Some(Timing::Clocked {
                at: parse_instant("clocked.at", &clocked.at).map_err(invalid)?,
            }));
        }
        Ok(None)
    }

    /// Applies this body to `row` (a new row's defaults, or the stored row) and checks
    /// the result as a whole.
    fn apply(self, mut row: ScheduleRecord, now: DateTime<Utc>) -> ApiResult<ScheduleRecord> {
        let job_given = self.kind.is_some() || self.payload.is_some() || self.priority.is_some();
        let timing_given = self.cron.is_some() || self.interval.is_some() || self.clocked.is_some();
        let window_given = self.start_time.is_some() || self.expires.is_some();
        if let Some(timing) = self.timing(&row)? {
            let compiled = timing.compile().map_err(invalid)?;
            refuse_never_firing(&timing, &compiled, now)?;
            (
                row.cron_expr,
                row.cron_timezone,
                row.interval_every,
                row.interval_period,
                row.clocked_at,
            ) = match timing {
                Timing::Cron { expr, timezone } => (Some(expr), Some(timezone), None, None, None),
                Timing::Interval { every, period } => (None, None, Some(every), Some(period.as_str().to_owned()), None),
                Timing::Clocked { at } => (None, None, None, None, Some(at)),
            };
        }
        if let Some(name) = self.name {
            let name = name.trim().to_owned();
            if name.is_empty() {
                return Err(ApiError::Unprocessable("name: must not be empty".into()));
            }
            row.name = name;
        }
        if let Some(description) = self.description {
            row.description = description;
        }
        if let Some(kind) = self.kind {
            row.kind = kind;
        }
        if let Some(payload) = self.payload {
            row.payload = payload;
        }
        if let Some(priority) = self.priority {
            let p = i16::try_from(priority)
                .ok()
                .filter(|p| (0..=i16::from(MAX_PRIORITY)).contains(p))
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!("priority: must be between 0 and 100, got {priority}"))
                })?;
            row.priority = Some(p);
        }
        if let Some(enabled) = self.enabled {
            row.enabled = enabled;
        }
        if let Some(one_off) = self.one_off {
            row.one_off = one_off;
        }
        if let Some(start) = self.start_time {
            row.start_time = start
                .map(|start| parse_instant("start_time", &start))
                .transpose()
                .map_err(invalid)?;
        }
        if let Some(expires) = self.expires {
            row.expires = expires
                .map(|expires| parse_instant("expires", &expires))
                .transpose()
                .map_err(invalid)?;
            if let Some(expires) = row.expires
                && expires <= now
            {
                return Err(ApiError::Unprocessable(format!(
                    "expires: {expires} is already past; give a later time, or null for never"
                )));
            }
        }
        if let (Some(start), Some(expires)) = (row.start_time, row.expires)
            && expires <= start
        {
            return Err(ApiError::Unprocessable(format!(
                "expires: {expires} is not after start_time {start}; the schedule could never fire"
            )));
        }
        if let Some(missed) = self.missed {
            row.missed = missed.parse::<Missed>().map_err(invalid)?.as_str().to_owned();
        }
        row.timing().map_err(invalid)?;
        if row.enabled || job_given {
            // The job it will fire must be valid now, not at 3 a.m. (A disabled default
            // whose kind is not built yet stays editable until it is.)
            let job = NewJob {
                priority: row.priority.and_then(|p| u8::try_from(p).ok()),
                ..NewJob::by_name(row.kind.clone(), row.payload.clone())
            };
            store::validate(&job).map_err(|e| ApiError::Unprocessable(format!("kind/payload: {e}")))?;
        }
        // Never a due time at or before the last run: an edit must not make a schedule
        // fire again for a time it already fired for.
        let after = row.last_run_at.map_or(now, |last| last.max(now));
        row.next_run_at = row.first_due_after(after).map_err(invalid)?;
        if row.enabled && row.next_run_at.is_none() && (timing_given || window_given) {
            let field = if row.expires.is_some() { "expires" } else { "timing" };
            return Err(ApiError::Unprocessable(format!(
                "{field}: the schedule would never fire (no due time before it expires)"
            )));
        }
        row.updated_at = now;
        Ok(row)
    }
}

/// Refuses a timing that can never fire: a clocked time already past, a cron that
/// matches no date (30 February) in the years ahead.
fn refuse_never_firing(timing: &Timing, compiled: &Compiled, now: DateTime<Utc>) -> ApiResult<()> {
    let open = Window {
        start_time: None,
        expires: None,
        anchor: now,
    };
    match timing {
        Timing::Clocked { at } if *at <= now => Err(ApiError::Unprocessable(format!(
            "clocked.at: {at} is in the past; give a future time"
        ))),
        Timing::Cron { expr, .. } if compiled.next_after(now, &open).is_none() => {
            Err(ApiError::Unprocessable(format!(
                "cron.expr: `{expr}` matches no date in the years ahead (e.g. 30 February), so it would never fire"
            )))
        }
        _ => Ok(()),
    }
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize)]
struct ScheduleView {
    id: Uuid,
    name: String,
    description: String,
    kind: String,
    payload: Value,
    priority: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clocked: Option<Value>,
    enabled: bool,
    one_off: bool,
    start_time: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
    missed: String,
    last_run_at: Option<DateTime<Utc>>,
    total_run_count: i64,
    next_run_at: Option<DateTime<Utc>>,
    /// The next fire times from now (the first is `next_run_at`).
    next_fire_times: Vec<DateTime<Utc>>,
    /// The same times in the schedule's zone (the cron's zone; UTC for the others).
    next_fire_times_local: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ScheduleView {
    fn new(row: ScheduleRecord, now: DateTime<Utc>) -> Self {
        let mut next_fire_times = Vec::new();
        if let (Some(first), Ok(compiled)) = (row.next_run_at, row.timing().and_then(|t| t.compile())) {
            next_fire_times.push(first);
            next_fire_times.extend(compiled.upcoming(first.max(now), &row.window(), UPCOMING - 1));
            next_fire_times.dedup();
            next_fire_times.truncate(UPCOMING);
        }
        if row.one_off {
            next_fire_times.truncate(1);
        }
        let zone: Tz = row
            .cron_timezone
            .as_deref()
            .and_then(|tz| tz.parse().ok())
            .unwrap_or(Tz::UTC);
        let next_fire_times_local = next_fire_times
            .iter()
            .map(|t| t.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .collect();
        Self {
            cron: row
                .cron_expr
                .as_ref()
                .map(|expr| json!({ "expr": expr, "timezone": row.cron_timezone })),
            interval: row
                .interval_every
                .map(|every| json!({ "every": every, "period": row.interval_period })),
            clocked: row.clocked_at.map(|at| json!({ "at": at })),
            id: row.id,
            name: row.name,
            description: row.description,
            kind: row.kind,
            payload: row.payload,
            priority: row.priority,
            enabled: row.enabled,
            one_off: row.one_off,
            start_time: row.start_time,
            expires: row.expires,
            missed: row.missed,
            last_run_at: row.last_run_at,
            total_run_count: row.total_run_count,
            next_run_at: row.next_run_at,
            next_fire_times,
            next_fire_times_local,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<ScheduleRecord> {
    sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::schedule_columns!(),
        " FROM schedules WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no schedule {id}")))
}

/// Applies `body` to the stored schedule under a row lock, so an edit neither undoes a
/// fire that commits meanwhile nor brings back a schedule deleted meanwhile.
async fn edit(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    body: ScheduleBody,
    action: &str,
) -> ApiResult<axum::Json<ScheduleView>> {
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    let current: ScheduleRecord = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::schedule_columns!(),
        " FROM schedules WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no schedule {id}")))?;
    let before = json!(ScheduleView::new(current.clone(), now));
    let row = save(&mut *tx, &body.apply(current, now)?).await?;
    let view = ScheduleView::new(row, now);
    audit_schedule(&mut *tx, caller, action, id, Some(before), Some(json!(view))).await?;
    tx.commit().await?;
    Ok(axum::Json(view))
}

/// Writes every editable column of `row` (insert or update by id).
async fn save<'e>(executor: impl sqlx::PgExecutor<'e>, row: &ScheduleRecord) -> ApiResult<ScheduleRecord> {
    let saved: ScheduleRecord = sqlx::query_as(concat!(
        "INSERT INTO schedules (id, name, description, kind, payload, priority, cron_expr, cron_timezone, \
             interval_every, interval_period, clocked_at, enabled, one_off, start_time, expires, missed, \
             next_run_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, \
             kind = EXCLUDED.kind, payload = EXCLUDED.payload, priority = EXCLUDED.priority, \
             cron_expr = EXCLUDED.cron_expr, cron_timezone = EXCLUDED.cron_timezone, \
             interval_every = EXCLUDED.interval_every, interval_period = EXCLUDED.interval_period, \
             clocked_at = EXCLUDED.clocked_at, enabled = EXCLUDED.enabled, one_off = EXCLUDED.one_off, \
             start_time = EXCLUDED.start_time, expires = EXCLUDED.expires, missed = EXCLUDED.missed, \
             next_run_at = EXCLUDED.next_run_at, updated_at = EXCLUDED.updated_at \
         RETURNING ",
        rushes_common::schedule_columns!()
    ))
    .bind(row.id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.kind)
    .bind(&row.payload)
    .bind(row.priority)
    .bind(&row.cron_expr)
    .bind(&row.cron_timezone)
    .bind(row.interval_every)
    .bind(&row.interval_period)
    .bind(row.clocked_at)
    .bind(row.enabled)
    .bind(row.one_off)
    .bind(row.start_time)
    .bind(row.expires)
    .bind(&row.missed)
    .bind(row.next_run_at)
    .bind(row.created_at)
    .bind(row.updated_at)
    .fetch_one(executor)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::Conflict(format!("name: a schedule called `{}` already exists", row.name))
        }
        other => other.into(),
    })?;
    Ok(saved)
}

async fn audit_schedule<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    caller: &Caller,
    action: &str,
    id: Uuid,
    before: Option<Value>,
    after: Option<Value>,
) -> ApiResult<()> {
    audit::record(
        executor,
        caller,
        Change {
            action,
            target_type: "schedule",
            target_id: Some(id.to_string()),
            before,
            after,
        },
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ScheduleBody>,
) -> ApiResult<impl IntoResponse> {
    if body.name.is_none() || body.kind.is_none() {
        return Err(ApiError::Unprocessable("name and kind are required".into()));
    }
    if body.cron.is_none() && body.interval.is_none() && body.clocked.is_none() {
        return Err(ApiError::Unprocessable(
            "timing: give exactly one of cron, interval, clocked".into(),
        ));
    }
    let now = Utc::now();
    // A hand-made clocked schedule is a one-off that still fires if the scheduler was
    // down at its time (as an email's is), unless the body says otherwise.
    let clocked = body.clocked.is_some();
    let blank = ScheduleRecord {
        id: Uuid::now_v7(),
        name: String::new(),
        description: String::new(),
        kind: String::new(),
        payload: json!({}),
        priority: None,
        cron_expr: None,
        cron_timezone: None,
        interval_every: None,
        interval_period: None,
        clocked_at: None,
        enabled: true,
        one_off: clocked,
        start_time: None,
        expires: None,
        missed: if clocked { Missed::RunOnce } else { Missed::Skip }.as_str().to_owned(),
        last_run_at: None,
        total_run_count: 0,
        next_run_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.begin().await?;
    let row = save(&mut *tx, &body.apply(blank, now)?).await?;
    let view = ScheduleView::new(row, now);
    audit_schedule(&mut *tx, &caller, "schedule.create", view.id, None, Some(json!(view))).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSchedules {
    enabled: Option<bool>,
    kind: Option<String>,
    before: Option<Uuid>,
    limit: Option<i64>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListSchedules>) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let rows: Vec<ScheduleRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::schedule_columns!(),
        " FROM schedules WHERE ($1::bool IS NULL OR enabled = $1) AND ($2::text IS NULL OR kind = $2) \
           AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    ))
    .bind(q.enabled)
    .bind(q.kind)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&rows, limit, |r| r.id);
    let now = Utc::now();
    let schedules: Vec<ScheduleView> = rows.into_iter().map(|r| ScheduleView::new(r, now)).collect();
    Ok(axum::Json(
        json!({ "schedules": schedules, "next_before": next_before }),
    ))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<ScheduleView>> {
    Ok(axum::Json(ScheduleView::new(find(&state, id).await?, Utc::now())))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<ScheduleBody>,
) -> ApiResult<axum::Json<ScheduleView>> {
    edit(&state, &caller, id, body, "schedule.update").await
}

async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    enabled: bool,
) -> ApiResult<axum::Json<ScheduleView>> {
    let body = ScheduleBody {
        enabled: Some(enabled),
        ..Default::default()
    };
    let action = if enabled { "schedule.enable" } else { "schedule.disable" };
    edit(state, caller, id, body, action).await
}

async fn enable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ScheduleView>> {
    set_enabled(&state, &caller, id, true).await
}

async fn disable(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ScheduleView>> {
    set_enabled(&state, &caller, id, false).await
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let deleted: Option<Uuid> = sqlx::query_scalar("DELETE FROM schedules WHERE id = $1 RETURNING id")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if deleted.is_none() {
        return Err(ApiError::NotFound(format!("no schedule {id}")));
    }
    audit_schedule(&mut *tx, &caller, "schedule.delete", id, None, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enqueues the schedule's job now, outside its timing (its next fire is unchanged).
async fn run_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let schedule = find(&state, id).await?;
    let job = NewJob {
        priority: schedule.priority.and_then(|p| u8::try_from(p).ok()),
        schedule_id: Some(schedule.id),
        requested_by: Some(caller.name.clone()),
        ..NewJob::by_name(schedule.kind.clone(), schedule.payload.clone())
    };
    let job = super::jobs::enqueue_audited(&state, &caller, job, "schedule.run").await?;
    sqlx::query("UPDATE schedules SET last_run_at = now(), total_run_count = total_run_count + 1 WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(job)))
}
