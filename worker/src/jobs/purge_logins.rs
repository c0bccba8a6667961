//! `purge_logins`: the login records' retention. Deletes login-log rows older than the
//! asked age (in batches), password resets used or expired that long ago, and login
//! counters no rule remembers any more.

use rushes_common::job::maintenance::PurgeLogins;
use serde_json::{Value, json};

use super::{JobContext, JobError};

/// Rows deleted per statement, so the table is never locked for long.
const BATCH: i64 = 5000;

/// Counters idle this long are forgotten by every rule (the longest rule forgets after an hour).
const IDLE_COUNTER_HOURS: i32 = 24;

fn failed(what: &str) -> impl Fn(sqlx::Error) -> JobError + '_ {
    move |e| JobError::Retryable(format!("cannot delete {what}: {e}"))
}

pub async fn run(ctx: JobContext, payload: PurgeLogins) -> Result<Value, JobError> {
    let days = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
    let mut login_log: u64 = 0;
    loop {
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let done = sqlx::query(
            "DELETE FROM login_log WHERE id IN ( \
                 SELECT id FROM login_log WHERE at < now() - make_interval(days => $1) LIMIT $2)",
        )
        .bind(days(payload.login_log_days))
        .bind(BATCH)
        .execute(&ctx.db)
        .await
        .map_err(failed("old login-log rows"))?
        .rows_affected();
        login_log += done;
        if done < BATCH as u64 {
            break;
        }
    }
    let resets = sqlx::query(
        "DELETE FROM password_resets \
         WHERE COALESCE(used_at, expires_at) < now() - make_interval(days => $1)",
    )
    .bind(days(payload.resets_days))
    .execute(&ctx.db)
    .await
    .map_err(failed("old password resets"))?
    .rows_affected();
    let counters =
        sqlx::query("DELETE FROM throttles WHERE last_at IS NULL OR last_at < now() - make_interval(hours => $1)")
            .bind(IDLE_COUNTER_HOURS)
            .execute(&ctx.db)
            .await
            .map_err(failed("idle login counters"))?
            .rows_affected();
    Ok(json!({ "login_log": login_log, "password_resets": resets, "counters": counters }))
}
