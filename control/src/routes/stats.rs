//! `/api/v1/stats` (admins): daily series — users added (and in total), clips found,
//! hours transcoded, hours transcribed, jobs finished by outcome — over a date range.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

/// Longest range one request may ask for.
const MAX_DAYS: i64 = 366;

pub fn router() -> Router<AppState> {
    Router::new().route("/stats", get(stats))
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
    users_added: i64,
    users_total: i64,
    clips_found: i64,
    hours_transcoded: f64,
    hours_transcribed: f64,
    jobs_succeeded: i64,
    jobs_failed: i64,
    jobs_dead: i64,
    jobs_cancelled: i64,
}

async fn stats(State(state): State<AppState>, Query(range): Query<Range>) -> ApiResult<axum::Json<Value>> {
    let to = range.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = range.from.unwrap_or(to - Duration::days(29));
    if from > to || (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::BadRequest(format!(
            "from must not be after to, and the range at most {MAX_DAYS} days"
        )));
    }
    let days: Vec<Day> = sqlx::query_as(
        "WITH days AS (SELECT d::date AS date FROM generate_series($1::date, $2::date, interval '1 day') AS d) \
         SELECT days.date, \
                (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date = days.date) AS users_added, \
                (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date <= days.date \
                    AND (u.deleted_at IS NULL OR (u.deleted_at AT TIME ZONE 'UTC')::date > days.date)) AS users_total, \
                (SELECT count(*) FROM clips c WHERE (c.first_seen_at AT TIME ZONE 'UTC')::date = days.date) AS clips_found, \
                COALESCE((SELECT sum(c.duration_s) / 3600 FROM clips c \
                          WHERE (c.transcoded_at AT TIME ZONE 'UTC')::date = days.date), 0)::float8 AS hours_transcoded, \
                COALESCE((SELECT sum(t.duration_s) / 3600 FROM transcripts t \
                          WHERE (t.transcribed_at AT TIME ZONE 'UTC')::date = days.date), 0)::float8 \
                    AS hours_transcribed, \
                (SELECT count(*) FROM jobs j WHERE j.state = 'succeeded' \
                    AND (j.finished_at AT TIME ZONE 'UTC')::date = days.date) AS jobs_succeeded, \
                (SELECT count(*) FROM jobs j WHERE j.state = 'failed' \
                    AND (j.finished_at AT TIME ZONE 'UTC')::date = days.date) AS jobs_failed, \
                (SELECT count(*) FROM jobs j WHERE j.state = 'dead' \
                    AND (j.finished_at AT TIME ZONE 'UTC')::date = days.date) AS jobs_dead, \
                (SELECT count(*) FROM jobs j WHERE j.state = 'cancelled' \
                    AND (j.finished_at AT TIME ZONE 'UTC')::date = days.date) AS jobs_cancelled \
         FROM days ORDER BY days.date",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "from": from, "to": to, "days": days })))
}
