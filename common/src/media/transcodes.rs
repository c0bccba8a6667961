//! Queueing transcodes: each clip gets a new `transcode` job, which the store makes the
//! clip's current one, in the caller's transaction; they are published when it commits.
//! An older transcode of the same clip notices it was replaced and does nothing.

use uuid::Uuid;

use crate::job::JobRecord;
use crate::job::media::Transcode;
use crate::job::store::{EnqueueError, NewJob, Tx};

/// Enqueues one transcode per `(clip, priority)`, each the clip's current one.
pub async fn queue(
    tx: &mut Tx,
    clips: &[(Uuid, u8)],
    parent: Option<Uuid>,
    requested_by: &str,
) -> Result<Vec<JobRecord>, EnqueueError> {
    let jobs = NewJob::batch(
        clips
            .iter()
            .map(|(clip_id, priority)| (Transcode { clip_id: *clip_id }, *priority)),
        parent,
        requested_by,
    );
    tx.enqueue(jobs).await
}
