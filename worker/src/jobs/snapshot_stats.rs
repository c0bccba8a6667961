//! `snapshot_stats`: one day's figures into `stats_daily` and each production's active
//! users into `stats_production_daily`, in one transaction (a day recorded again is
//! rewritten), so that history outlives job purges and deletions.

use chrono::{Duration, Utc};
use rushes_common::job::maintenance::SnapshotStats;
use serde_json::{Value, json};

use super::{JobContext, JobError, db_error};

/// The users seen on day `$1` (UTC): a successful sign-in that day, or last seen then.
macro_rules! active_users {
    () => {
        "(SELECT user_id FROM login_log WHERE success AND user_id IS NOT NULL AND (at AT TIME ZONE 'UTC')::date = $1 \
          UNION SELECT id FROM users WHERE (last_seen_at AT TIME ZONE 'UTC')::date = $1)"
    };
}

pub async fn run(ctx: JobContext, payload: SnapshotStats) -> Result<Value, JobError> {
    let day = payload
        .day
        .unwrap_or_else(|| (Utc::now() - Duration::days(1)).date_naive());
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let recorded: Value = sqlx::query_scalar(concat!(
        "INSERT INTO stats_daily (day, users_total, users_added, active_users, logins, failed_logins, clips_total, \
                                  clips_found, hours_transcoded, hours_transcribed, jobs, taken_at) \
         SELECT $1, \
            (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date <= $1 \
                AND (u.deleted_at IS NULL OR (u.deleted_at AT TIME ZONE 'UTC')::date > $1)), \
            (SELECT count(*) FROM users u WHERE (u.created_at AT TIME ZONE 'UTC')::date = $1), \
            (SELECT count(*) FROM ",
        active_users!(),
        " a), \
            (SELECT count(*) FROM login_log WHERE success AND (at AT TIME ZONE 'UTC')::date = $1), \
            (SELECT count(*) FROM login_log WHERE NOT success AND (at AT TIME ZONE 'UTC')::date = $1), \
            (SELECT count(*) FROM clips c WHERE (c.first_seen_at AT TIME ZONE 'UTC')::date <= $1 AND NOT c.missing), \
            (SELECT count(*) FROM clips c WHERE (c.first_seen_at AT TIME ZONE 'UTC')::date = $1), \
            COALESCE((SELECT sum(c.duration_s) / 3600 FROM clips c \
                      WHERE (c.transcoded_at AT TIME ZONE 'UTC')::date = $1), 0)::float8, \
            COALESCE((SELECT sum(t.duration_s) / 3600 FROM transcripts t \
                      WHERE (t.transcribed_at AT TIME ZONE 'UTC')::date = $1), 0)::float8, \
            COALESCE((SELECT jsonb_object_agg(kind, outcomes) FROM ( \
                 SELECT kind, jsonb_object_agg(state, n) AS outcomes FROM ( \
                     SELECT kind, state::text AS state, count(*) AS n FROM jobs \
                     WHERE state::text IN ('succeeded', 'failed', 'dead', 'cancelled') \
                       AND (finished_at AT TIME ZONE 'UTC')::date = $1 \
                     GROUP BY kind, state) per_state \
                 GROUP BY kind) per_kind), '{}'::jsonb), \
            now() \
         ON CONFLICT (day) DO UPDATE SET users_total = EXCLUDED.users_total, users_added = EXCLUDED.users_added, \
            active_users = EXCLUDED.active_users, logins = EXCLUDED.logins, failed_logins = EXCLUDED.failed_logins, \
            clips_total = EXCLUDED.clips_total, clips_found = EXCLUDED.clips_found, \
            hours_transcoded = EXCLUDED.hours_transcoded, hours_transcribed = EXCLUDED.hours_transcribed, \
            jobs = EXCLUDED.jobs, taken_at = EXCLUDED.taken_at \
         RETURNING to_jsonb(stats_daily.*)"
    ))
    .bind(day)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query("DELETE FROM stats_production_daily WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let productions = sqlx::query(concat!(
        "INSERT INTO stats_production_daily (day, production_id, active_users) \
         SELECT $1, v.production_id, count(DISTINCT a.user_id) FROM ",
        active_users!(),
        " a(user_id) CROSS JOIN LATERAL visible_productions(a.user_id) v GROUP BY v.production_id"
    ))
    .bind(day)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    tx.commit().await.map_err(db_error)?;
    Ok(json!({ "day": day, "recorded": recorded, "productions": productions }))
}
