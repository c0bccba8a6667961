//! `account_link`: mails a password-reset or invitation link. The token is minted here,
//! at send time, and only its digest is stored: the link exists in the mail and nowhere
//! else (not in the job's payload, its dead letter or the broker). A retry mints a new
//! one; a reset row that was never mailed cannot be used by anyone.

use rushes_common::job::accounts::{AccountLink, INVITATION_DAYS, RESET_LINK_MINUTES};
use rushes_common::mail::{self, Mail};
use rushes_common::tokens::{new_token, token_digest};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobContext, JobError, db_error};
use crate::mailer::MailError;

pub async fn run(ctx: JobContext, payload: AccountLink) -> Result<Value, JobError> {
    let base = ctx.services.smtp.public_url.trim_end_matches('/').to_owned();
    let token = new_token();
    let (to, message) = match payload {
        AccountLink::PasswordReset { user_id } => {
            let Some((to, message)) = reset(&ctx, user_id, &base, &token).await? else {
                return Ok(json!({ "sent": false, "reason": "the account is no longer active" }));
            };
            (to, message)
        }
        AccountLink::Invitation { invitation_id } => {
            let Some((to, message)) = invitation(&ctx, invitation_id, &base, &token).await? else {
                return Ok(json!({ "sent": false, "reason": "the invitation is no longer pending" }));
            };
            (to, message)
        }
    };
    let to = vec![to];
    let send = ctx
        .services
        .mailer
        .send(&to, &message.subject, &message.text, &message.html);
    tokio::select! {
        sent = send => match sent {
            Ok(()) => Ok(json!({ "sent": true, "sent_to": to })),
            Err(MailError::Permanent(reason)) => Err(JobError::Permanent(reason)),
            Err(MailError::Temporary(reason)) => Err(JobError::Retryable(reason)),
        },
        _ = ctx.cancelled() => Err(JobError::Cancelled),
    }
}

/// Stores a reset token's digest for an active user; their address and the mail.
async fn reset(ctx: &JobContext, user: Uuid, base: &str, token: &str) -> Result<Option<(String, Mail)>, JobError> {
    let account: Option<(String, String)> =
        sqlx::query_as("SELECT username, email FROM users WHERE id = $1 AND active AND deleted_at IS NULL")
            .bind(user)
            .fetch_optional(&ctx.db)
            .await
            .map_err(db_error)?;
    let Some((username, email)) = account else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(mins => $4))",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(token_digest(token))
    .bind(i32::try_from(RESET_LINK_MINUTES).unwrap_or(60))
    .execute(&ctx.db)
    .await
    .map_err(db_error)?;
    let link = format!("{base}/reset-password?token={token}");
    Ok(Some((
        email,
        mail::password_reset(&username, &link, RESET_LINK_MINUTES),
    )))
}

/// Gives a pending invitation this token (the previous link stops working) and a fresh
/// validity; its address and the mail.
async fn invitation(
    ctx: &JobContext,
    invitation: Uuid,
    base: &str,
    token: &str,
) -> Result<Option<(String, Mail)>, JobError> {
    let pending: Option<(String, String)> = sqlx::query_as(
        "UPDATE invitations SET token_hash = $2, sent_at = now(), expires_at = now() + make_interval(days => $3) \
         WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING email, invited_by",
    )
    .bind(invitation)
    .bind(token_digest(token))
    .bind(i32::try_from(INVITATION_DAYS).unwrap_or(14))
    .fetch_optional(&ctx.db)
    .await
    .map_err(db_error)?;
    let Some((email, invited_by)) = pending else {
        return Ok(None);
    };
    let link = format!("{base}/accept-invitation?token={token}");
    Ok(Some((email, mail::invitation(&invited_by, &link, INVITATION_DAYS))))
}
