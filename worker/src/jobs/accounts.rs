//! Shared by the bulk account kinds: the job's requester as the audit trail's actor.

use rushes_common::audit::{Actor, ActorKind};

use super::{JobContext, JobError, db_error};

/// The job as an actor: its id groups its audit entries, its requester is named.
pub async fn actor(ctx: &JobContext) -> Result<Actor, JobError> {
    let requested_by: Option<String> = sqlx::query_scalar("SELECT requested_by FROM jobs WHERE id = $1")
        .bind(ctx.job_id)
        .fetch_optional(&ctx.db)
        .await
        .map_err(db_error)?
        .flatten();
    Ok(Actor {
        request_id: ctx.job_id,
        user_id: None,
        name: requested_by.unwrap_or_else(|| "job".to_owned()),
        impersonator_id: None,
        kind: ActorKind::Job,
    })
}
