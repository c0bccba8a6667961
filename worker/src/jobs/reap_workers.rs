//! `reap_workers`: marks workers gone whose heartbeat stopped without a clean exit
//! (killed, host lost). Their jobs are re-claimed through their own stale heartbeats.

use rushes_common::job::maintenance::ReapWorkers;
use serde_json::{Value, json};

use super::{JobContext, JobError};

pub async fn run(ctx: JobContext, payload: ReapWorkers) -> Result<Value, JobError> {
    let gone: Vec<uuid::Uuid> = sqlx::query_scalar(
        "UPDATE workers SET stopped_at = last_seen_at \
         WHERE stopped_at IS NULL AND last_seen_at < now() - make_interval(secs => $1) RETURNING id",
    )
    .bind(payload.silent_for_s as f64)
    .fetch_all(&ctx.db)
    .await
    .map_err(|e| JobError::Retryable(format!("cannot mark silent workers: {e}")))?;
    if !gone.is_empty() {
        tracing::warn!(workers = gone.len(), "marked silent workers gone");
    }
    Ok(json!({ "marked_gone": gone }))
}
