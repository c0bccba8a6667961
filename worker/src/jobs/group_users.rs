//! `group_users`: enable, disable (revoking tokens) or remove every member of a group,
//! in one transaction, audited per user.

use rushes_common::audit::{self, Change};
use rushes_common::job::accounts::{GroupAction, GroupUsers};
use serde_json::{Value, json};
use uuid::Uuid;

use super::accounts::actor;
use super::{JobContext, JobError, db_error};

pub async fn run(ctx: JobContext, payload: GroupUsers) -> Result<Value, JobError> {
    let actor = actor(&ctx).await?;
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)")
        .bind(payload.group_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if !exists {
        return Err(JobError::Permanent(format!("unknown group {}", payload.group_id)));
    }
    let (action, users): (&str, Vec<Uuid>) = match payload.action {
        GroupAction::Enable | GroupAction::Disable => {
            let active = payload.action == GroupAction::Enable;
            let users = sqlx::query_scalar(
                "UPDATE users SET active = $2 FROM group_members m \
                 WHERE m.group_id = $1 AND m.user_id = users.id AND users.deleted_at IS NULL AND users.active <> $2 \
                 RETURNING users.id",
            )
            .bind(payload.group_id)
            .bind(active)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            if !active {
                sqlx::query("UPDATE tokens SET revoked_at = now() WHERE user_id = ANY($1) AND revoked_at IS NULL")
                    .bind(&users)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                // Their share links stop too (they would answer 410 anyway: see control's shares).
                sqlx::query(
                    "UPDATE share_links SET revoked_at = now() WHERE created_by_id = ANY($1) AND revoked_at IS NULL",
                )
                .bind(&users)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            (if active { "user.enable" } else { "user.disable" }, users)
        }
        GroupAction::Remove => {
            let users = sqlx::query_scalar("DELETE FROM group_members WHERE group_id = $1 RETURNING user_id")
                .bind(payload.group_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            ("group.remove_member", users)
        }
    };
    for user in &users {
        let (target_type, target_id) = match payload.action {
            GroupAction::Remove => ("group", payload.group_id.to_string()),
            _ => ("user", user.to_string()),
        };
        let change = Change {
            action,
            target_type,
            target_id: Some(target_id),
            before: None,
            after: Some(json!({ "user_id": user, "group_id": payload.group_id })),
        };
        audit::record(&mut *tx, &actor, change).await.map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)?;
    Ok(json!({ "users": users.len() }))
}
