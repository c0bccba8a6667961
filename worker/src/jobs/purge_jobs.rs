//! `purge_jobs`: deletes finished job rows older than the asked age, in batches.

use rushes_common::job::maintenance::PurgeJobs;
use rushes_common::job::store;
use serde_json::{Value, json};

use super::{JobContext, JobError};

/// Rows deleted per statement, so the table is never locked for long.
const BATCH: i64 = 5000;

pub async fn run(ctx: JobContext, payload: PurgeJobs) -> Result<Value, JobError> {
    let mut deleted: u64 = 0;
    loop {
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        let older_than_days = i32::try_from(payload.older_than_days).unwrap_or(i32::MAX);
        let done = store::purge_finished(&ctx.db, older_than_days, BATCH)
            .await
            .map_err(|e| JobError::Retryable(format!("cannot delete old jobs: {e}")))?;
        deleted += done;
        if done < BATCH as u64 {
            return Ok(json!({ "deleted": deleted }));
        }
    }
}
