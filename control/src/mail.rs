//! Mails the control plane sends (account details, password resets, invitations): each
//! is queued as a job, so SMTP trouble retries without failing the request. Mails with
//! a link that grants something (reset, invitation) are `account_link` jobs: the worker
//! mints the link, so it is never in a payload.

use rushes_common::enqueue::{self, NewJob};
use rushes_common::job::JobPayload as _;
use rushes_common::job::accounts::AccountLink;
use rushes_common::job::email::Email;
use rushes_common::mail::Mail;
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

/// Queues `mail` to `to`; a failure to queue is logged, not returned.
pub async fn send(state: &AppState, to: &str, mail: Mail) {
    let mut job = NewJob::new(Email::KIND, json!(Email::new(vec![to.to_owned()], mail)));
    job.requested_by = Some("control".into());
    if let Err(err) = enqueue::enqueue(&state.db, &state.publisher, vec![job]).await {
        tracing::warn!(error = %err, "cannot queue a mail");
    }
}

/// Queues the mail of a reset or invitation link; the job is committed before this returns.
pub async fn send_link(state: &AppState, link: AccountLink) -> ApiResult<()> {
    let mut job = NewJob::new(AccountLink::KIND, json!(link));
    job.requested_by = Some("control".into());
    enqueue::enqueue(&state.db, &state.publisher, vec![job]).await?;
    Ok(())
}
