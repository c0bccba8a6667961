//! `snapshot_stats`: one day's figures into `stats_daily` and each production's active
//! users into `stats_production_daily`, in one transaction (a day recorded again is
//! rewritten), so that history outlives job purges and deletions. The figures are the
//! SQL function `stats_of_day`'s, the ones `GET /stats` counts for days not recorded.

use chrono::{Duration, Utc};
use rushes_common::job::maintenance::SnapshotStats;
use serde_json::{Value, json};

use super::{JobContext, JobError, db_error};

pub async fn run(ctx: JobContext, payload: SnapshotStats) -> Result<Value, JobError> {
    let day = payload
        .day
        .unwrap_or_else(|| (Utc::now() - Duration::days(1)).date_naive());
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let recorded: Value = sqlx::query_scalar(
        "INSERT INTO stats_daily (day, users_total, users_added, active_users, logins, failed_logins, clips_total, \
                                  clips_found, hours_transcoded, hours_transcribed, jobs, taken_at) \
         SELECT $1, f.*, now() FROM stats_of_day($1) f \
         ON CONFLICT (day) DO UPDATE SET users_total = EXCLUDED.users_total, users_added = EXCLUDED.users_added, \
            active_users = EXCLUDED.active_users, logins = EXCLUDED.logins, failed_logins = EXCLUDED.failed_logins, \
            clips_total = EXCLUDED.clips_total, clips_found = EXCLUDED.clips_found, \
            hours_transcoded = EXCLUDED.hours_transcoded, hours_transcribed = EXCLUDED.hours_transcribed, \
            jobs = EXCLUDED.jobs, taken_at = EXCLUDED.taken_at \
         RETURNING to_jsonb(stats_daily.*)",
    )
    .bind(day)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    sqlx::query("DELETE FROM stats_production_daily WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let productions = sqlx::query(
        "INSERT INTO stats_production_daily (day, production_id, active_users) \
         SELECT $1, v.production_id, count(DISTINCT a.user_id) FROM active_users_of_day($1) a \
              CROSS JOIN LATERAL visible_productions(a.user_id) v GROUP BY v.production_id",
    )
    .bind(day)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    tx.commit().await.map_err(db_error)?;
    Ok(json!({ "day": day, "recorded": recorded, "productions": productions }))
}
