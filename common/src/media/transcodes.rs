//! Queueing transcodes: each clip gets a new `transcode` job and points at it, in the
//! caller's transaction; the caller publishes the returned jobs after committing.
//! An older transcode of the same clip notices it was replaced and does nothing.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::enqueue::{self, EnqueueError, NewJob};
use crate::job::JobRecord;
use crate::job::media::Transcode;

/// Inserts one transcode per `(clip, priority)` and makes it the clip's current one.
pub async fn queue(
    tx: &mut PgConnection,
    clips: &[(Uuid, u8)],
    parent: Option<Uuid>,
    requested_by: &str,
) -> Result<Vec<JobRecord>, EnqueueError> {
    if clips.is_empty() {
        return Ok(Vec::new());
    }
    let jobs = NewJob::batch(
        clips
            .iter()
            .map(|(clip_id, priority)| (Transcode { clip_id: *clip_id }, *priority)),
        parent,
        requested_by,
    );
    let records = enqueue::insert(&mut *tx, jobs).await?;
    let clip_ids: Vec<Uuid> = clips.iter().map(|(id, _)| *id).collect();
    let job_ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    sqlx::query(
        "UPDATE clips c SET transcode_job_id = u.job_id, transcode_state = 'queued', transcode_error = NULL \
         FROM unnest($1::uuid[], $2::uuid[]) AS u(clip_id, job_id) WHERE c.id = u.clip_id",
    )
    .bind(clip_ids)
    .bind(job_ids)
    .execute(&mut *tx)
    .await?;
    Ok(records)
}
