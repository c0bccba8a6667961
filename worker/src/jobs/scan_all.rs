//! `scan_all`: queues a `scan` of every active, unarchived production that has none
//! queued or running already (the default hourly schedule runs it).

use rushes_common::job::JobPayload as _;
use rushes_common::job::media::{Scan, ScanAll};
use rushes_common::job::store::{self, NewJob};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobContext, JobError, db_error};

pub async fn run(ctx: JobContext, _payload: ScanAll) -> Result<Value, JobError> {
    let due: Vec<(Uuid, i16)> = sqlx::query_as(
        "SELECT p.id, p.priority FROM productions p \
         WHERE p.active AND NOT p.archived AND NOT EXISTS ( \
             SELECT 1 FROM jobs j WHERE j.kind = $1 AND j.state IN ('queued', 'running', 'retrying') \
                AND j.payload->>'production_id' = p.id::text) \
         ORDER BY p.priority DESC, p.id",
    )
    .bind(Scan::KIND)
    .fetch_all(&ctx.db)
    .await
    .map_err(db_error)?;
    let jobs: Vec<NewJob> = due
        .iter()
        .map(|(id, priority)| NewJob {
            priority: u8::try_from(*priority).ok(),
            ..NewJob::of(&Scan { production_id: *id })
                .parent(ctx.job_id)
                .requested_by("scan_all")
        })
        .collect();
    let records = store::enqueue(&ctx.db, &ctx.publisher, jobs)
        .await
        .map_err(|e| JobError::Retryable(format!("cannot queue scans: {e}")))?;
    Ok(json!({ "scans": records.len() }))
}
