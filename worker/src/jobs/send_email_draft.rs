//! `send_email_draft`: resolves an admin draft's recipients and queues one `email` job
//! per address in the same transaction that marks the draft sent (so a retry after a
//! crash neither loses nor doubles the mail-out).

use rushes_common::job::email::{Email, SendEmailDraft};
use rushes_common::job::store::{NewJob, Tx};
use rushes_common::mail;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobContext, JobError, db_error};

#[derive(sqlx::FromRow)]
struct Draft {
    subject: String,
    html: String,
    user_ids: Vec<Uuid>,
    group_ids: Vec<Uuid>,
    everyone: bool,
    state: String,
}

pub async fn run(ctx: JobContext, payload: SendEmailDraft) -> Result<Value, JobError> {
    let mut tx = Tx::begin(&ctx.db).await.map_err(db_error)?;
    let draft: Draft = sqlx::query_as(
        "SELECT subject, html, user_ids, group_ids, everyone, state FROM email_drafts WHERE id = $1 FOR UPDATE",
    )
    .bind(payload.draft_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?
    .ok_or_else(|| JobError::Permanent(format!("no email draft {} (deleted?)", payload.draft_id)))?;
    if draft.state == "sent" {
        return Ok(json!({ "skipped": "the draft was already sent" }));
    }
    let addresses: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT u.email FROM users u \
         WHERE u.active AND u.deleted_at IS NULL \
           AND ($3 OR u.id = ANY($1) \
                OR u.id IN (SELECT m.user_id FROM group_members m WHERE m.group_id = ANY($2))) \
         ORDER BY u.email",
    )
    .bind(&draft.user_ids)
    .bind(&draft.group_ids)
    .bind(draft.everyone)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    let message = mail::announcement(&draft.subject, &draft.html);
    let jobs: Vec<NewJob> = addresses
        .iter()
        .filter(|a| mail::looks_like_address(a))
        .map(|address| {
            NewJob::of(&Email::new(vec![address.clone()], message.clone()))
                .parent(ctx.job_id)
                .requested_by("email draft")
        })
        .collect();
    let records = tx
        .enqueue(jobs)
        .await
        .map_err(|e| JobError::Retryable(format!("cannot queue the mails: {e}")))?;
    sqlx::query(
        "UPDATE email_drafts SET state = 'sent', sent_at = now(), recipients = $2, updated_at = now() WHERE id = $1",
    )
    .bind(payload.draft_id)
    .bind(i32::try_from(records.len()).unwrap_or(i32::MAX))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit(&ctx.publisher).await.map_err(db_error)?;
    Ok(json!({ "recipients": records.len() }))
}
