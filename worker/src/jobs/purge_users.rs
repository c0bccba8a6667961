//! `purge_users`: deletes for good the users soft-deleted long enough ago; their
//! tokens and memberships go with them, the logs keep their names.

use rushes_common::audit::{self, Actor, Change};
use rushes_common::job::accounts::PurgeUsers;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::accounts::actor;
use super::{JobContext, JobError, db_error};

pub async fn run(ctx: JobContext, payload: PurgeUsers) -> Result<Value, JobError> {
    let actor = actor(&ctx).await?;
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let purged = purge(&mut tx, &actor, payload.deleted_days_ago).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(json!({ "purged": purged }))
}

/// Deletes, in the caller's transaction, the users soft-deleted at least `days` days
/// ago, each audited as `user.purge`; how many.
pub async fn purge(tx: &mut PgConnection, actor: &Actor, days: u32) -> Result<usize, JobError> {
    let purged: Vec<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM users WHERE deleted_at IS NOT NULL \
            AND deleted_at <= now() - make_interval(days => $1) RETURNING id, username",
    )
    .bind(i32::try_from(days).unwrap_or(i32::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    for (id, username) in &purged {
        let change = Change {
            action: "user.purge",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: Some(json!({ "username": username })),
            after: None,
        };
        audit::record(&mut *tx, actor, change).await.map_err(db_error)?;
    }
    Ok(purged.len())
}
