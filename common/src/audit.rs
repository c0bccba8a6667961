//! The audit trail's one writer: every admin change with who, what, before and after.
//! The control plane records its requests' changes (one request id per request); workers
//! record the changes of bulk jobs (the job id as request id, its requester as actor).

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Groups the changes of one request or job.
    pub request_id: Uuid,
    pub user_id: Option<Uuid>,
    pub name: String,
    pub impersonator_id: Option<Uuid>,
    pub kind: ActorKind,
}

/// What sort of actor made a change (`audit_log.actor_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// A user account (`user_id` set).
    User,
    /// The bootstrap admin token: named `admin`, a name no user may take.
    BootstrapToken,
    /// A job acting for its requester (the job id is the request id).
    Job,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::BootstrapToken => "bootstrap_token",
            Self::Job => "job",
        }
    }
}

/// One change to record.
pub struct Change<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Records a change, in the caller's transaction when given one.
pub async fn record<'e>(executor: impl PgExecutor<'e>, actor: &Actor, change: Change<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, request_id, actor_id, actor, impersonator_id, action, target_type, target_id, \
                                before, after, actor_type) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(Uuid::now_v7())
    .bind(actor.request_id)
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(actor.impersonator_id)
    .bind(change.action)
    .bind(change.target_type)
    .bind(change.target_id)
    .bind(change.before)
    .bind(change.after)
    .bind(actor.kind.as_str())
    .execute(executor)
    .await?;
    Ok(())
}
