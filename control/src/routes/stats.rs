//! `/api/v1/stats` (admins): daily series — users added (and in total), active users,
//! logins, clips found, hours transcoded, hours transcribed, jobs finished by kind and
//! outcome — over a date range, from the nightly snapshots where a day has one (they
//! outlive purges and deletions) and counted now otherwise; and per production, its
//! active users a day.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// Longest range one request may ask for.
const MAX_DAYS: i64 = 366;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/stats", get(stats))
        .route("/stats/productions/{id}", get(production_logins))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    /// First day (UTC), default 30 days ago.
    from: Option<NaiveDate>,
    /// Last day (UTC), default today.
    to: Option<NaiveDate>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Day {
    date: NaiveDate,
    /// Read from the day's snapshot (`snapshot_stats`): it outlives purges and
    /// deletions. Otherwise counted from the rows there are now.
    recorded: bool,
    users_added: i64,
    users_total: i64,
    /// Users who signed in or were last seen that day.
    active_users: i64,
    logins: i64,
    failed_logins: i64,
    clips_found: i64,
    hours_transcoded: f64,
    hours_transcribed: f64,
    jobs_succeeded: i64,
    jobs_failed: i64,
    jobs_dead: i64,
    jobs_cancelled: i64,
    /// Jobs finished that day: kind → outcome → count.
    jobs_by_kind: Value,
}

/// The jobs of outcome `$state` in a `jobs` object (kind → outcome → count).
macro_rules! outcome {
    ($state:literal) => {
        concat!(
            "(SELECT COALESCE(sum((v ->> '",
            $state,
            "')::bigint), 0) FROM jsonb_each(d.jobs) AS e(k, v))::bigint AS jobs_",
            $state
        )
    };
}

async fn stats(State(state): State<AppState>, Query(range): Query<Range>) -> ApiResult<axum::Json<Value>> {
    let (from, to) = range.days()?;
    let days: Vec<Day> = sqlx::query_as(concat!(
        "WITH days AS (SELECT d::date AS date FROM generate_series($1::date, $2::date, interval '1 day') AS d), \
              d AS (SELECT days.date, s.day IS NOT NULL AS recorded, \
                       COALESCE(s.users_added, l.users_added) AS users_added, \
                       COALESCE(s.users_total, l.users_total) AS users_total, \
                       COALESCE(s.active_users, l.active_users) AS active_users, \
                       COALESCE(s.logins, l.logins) AS logins, COALESCE(s.failed_logins, l.failed_logins) AS failed_logins, \
                       COALESCE(s.clips_found, l.clips_found) AS clips_found, \
                       COALESCE(s.hours_transcoded, l.hours_transcoded) AS hours_transcoded, \
                       COALESCE(s.hours_transcribed, l.hours_transcribed) AS hours_transcribed, \
                       COALESCE(s.jobs, l.jobs) AS jobs \
                    FROM days LEFT JOIN stats_daily s ON s.day = days.date \
                    LEFT JOIN LATERAL (SELECT * FROM stats_of_day(days.date) WHERE s.day IS NULL) l ON true) \
         SELECT d.date, d.recorded, d.users_added::bigint, d.users_total::bigint, d.active_users::bigint, \
                d.logins::bigint, d.failed_logins::bigint, d.clips_found::bigint, d.hours_transcoded, \
                d.hours_transcribed, ",
        outcome!("succeeded"),
        ", ",
        outcome!("failed"),
        ", ",
        outcome!("dead"),
        ", ",
        outcome!("cancelled"),
        ", d.jobs AS jobs_by_kind FROM d ORDER BY d.date"
    ))
    .bind(from)
    .bind(to)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "from": from, "to": to, "days": days })))
}

impl Range {
    /// The first and last day asked for (default the last 30), checked.
    fn days(&self) -> ApiResult<(NaiveDate, NaiveDate)> {
        let to = self.to.unwrap_or_else(|| Utc::now().date_naive());
        let from = self.from.unwrap_or(to - Duration::days(29));
        if from > to || (to - from).num_days() >= MAX_DAYS {
            return Err(ApiError::BadRequest(format!(
                "from must not be after to, and the range at most {MAX_DAYS} days"
            )));
        }
        Ok((from, to))
    }
}

/// `GET /stats/productions/{id}`: per day, how many users who could see the production
/// signed in or were seen (the project admin system's login graph): recorded days from
/// the snapshots, the others counted now.
async fn production_logins(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(range): Query<Range>,
) -> ApiResult<axum::Json<Value>> {
    let (from, to) = range.days()?;
    super::productions::exists(&state, id).await?;
    let days: Vec<(NaiveDate, bool, i64)> = sqlx::query_as(
        "WITH days AS (SELECT d::date AS date FROM generate_series($1::date, $2::date, interval '1 day') AS d) \
         SELECT days.date, s.day IS NOT NULL, COALESCE(s.active_users::bigint, ( \
             SELECT count(*) FROM active_users_of_day(days.date) a \
             WHERE $3 IN (SELECT production_id FROM visible_productions(a.user_id)))) \
         FROM days LEFT JOIN stats_production_daily s ON s.day = days.date AND s.production_id = $3 \
         ORDER BY days.date",
    )
    .bind(from)
    .bind(to)
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let days: Vec<Value> = days
        .into_iter()
        .map(|(date, recorded, active_users)| json!({ "date": date, "recorded": recorded, "active_users": active_users }))
        .collect();
    Ok(axum::Json(
        json!({ "production_id": id, "from": from, "to": to, "days": days }),
    ))
}
