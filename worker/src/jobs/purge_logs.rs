//! `purge_logs`: system-log lines older than the asked age (all of them for "clear all
//! logs"), and audit entries older than theirs when asked, in batches; the purge itself
//! is audited with what went.

use rushes_common::audit::{self, Change};
use rushes_common::job::maintenance::PurgeLogs;
use serde_json::{Value, json};

use super::accounts::actor;
use super::{JobContext, JobError, db_error};

/// Rows deleted per statement, so the tables are never locked for long.
const BATCH: i64 = 5000;

/// Deletes rows of `table` whose `at` is older than `days` (every row for 0), batch by
/// batch; how many went.
async fn purge(ctx: &JobContext, table: &'static str, days: u32) -> Result<u64, JobError> {
    let statement = match table {
        "logs" => {
            "DELETE FROM logs WHERE id IN (SELECT id FROM logs \
                   WHERE $1 = 0 OR at < now() - make_interval(days => $1) LIMIT $2)"
        }
        _ => {
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
              WHERE at < now() - make_interval(days => $1) LIMIT $2)"
        }
    };
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut deleted = 0;
    loop {
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let done = sqlx::query(statement)
            .bind(days)
            .bind(BATCH)
            .execute(&ctx.db)
            .await
            .map_err(db_error)?
            .rows_affected();
        deleted += done;
        if done < BATCH as u64 {
            return Ok(deleted);
        }
    }
}

pub async fn run(ctx: JobContext, payload: PurgeLogs) -> Result<Value, JobError> {
    let logs = purge(&ctx, "logs", payload.logs_days).await?;
    let audit_entries = match payload.audit_days {
        Some(days) => Some(purge(&ctx, "audit_log", days).await?),
        None => None,
    };
    let outcome = json!({ "logs": logs, "audit_entries": audit_entries });
    let change = Change {
        action: if payload.logs_days == 0 {
            "logs.clear"
        } else {
            "logs.purge"
        },
        target_type: "logs",
        target_id: None,
        before: Some(json!({ "logs_days": payload.logs_days, "audit_days": payload.audit_days })),
        after: Some(outcome.clone()),
    };
    audit::record(&ctx.db, &actor(&ctx).await?, change)
        .await
        .map_err(db_error)?;
    Ok(outcome)
}
