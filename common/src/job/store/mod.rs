//! The job store: the one owner of writes to `jobs` and `dead_letters` (the worker's
//! claims, outcomes, releases and parked messages included). Jobs are enqueued through a
//! [`Tx`], a typed outbox: the rows are inserted in the caller's transaction and
//! published with confirms after it commits; a row whose publish failed stays `queued`
//! until the relay (the scheduler's leader) publishes it, so a committed job is never lost.

mod admin;
mod attempts;
mod insert;
mod new_job;
mod outbox;
mod quick;
mod relay;
mod upkeep;

pub use admin::{Resolution, cancel, requeue, resolve_dead_letter};
pub use attempts::{Attempt, Claim, Letter, Outcome, Recorded, claim, park, record_outcomes, release};
pub use insert::{check_target, check_targets};
pub use new_job::{CheckedJob, EnqueueError, NewJob, validate};
pub use outbox::{
    PUBLISH_CHUNK, STAMP_AFTER, Tx, enqueue, enqueue_one, publish, publish_chunks, publish_or_leave_to_relay,
};
pub use quick::{CLAIM_LOCK_CLASS, QuickClaim, claim_quick, promote, unlock};
pub use relay::{count_published_queued, unclaimed};
pub use upkeep::{Beat, beat, purge_finished, touch_overdue_retries};
