//! Mails the control plane sends (account details, password resets, invitations): each
//! is queued as a job, so SMTP trouble retries without failing the request. Mails with
//! a link that grants something (reset, invitation) are `account_link` jobs: the worker
//! mints the link, so it is never in a payload.

use rushes_common::job::accounts::AccountLink;
use rushes_common::job::email::Email;
use rushes_common::job::store::{self, NewJob};
use rushes_common::mail::Mail;

use crate::error::ApiResult;
use crate::state::AppState;

/// Queues `mail` to `to`; a failure to queue is logged, not returned.
pub async fn send(state: &AppState, to: &str, mail: Mail) {
    let job = NewJob::of(&Email::new(vec![to.to_owned()], mail)).requested_by("control");
    if let Err(err) = store::enqueue(&state.db, &state.publisher, vec![job]).await {
        tracing::warn!(error = %err, "cannot queue a mail");
    }
}

/// Queues the mail of a reset or invitation link; the job is committed before this returns.
pub async fn send_link(state: &AppState, link: AccountLink) -> ApiResult<()> {
    let job = NewJob::of(&link).requested_by("control");
    store::enqueue(&state.db, &state.publisher, vec![job]).await?;
    Ok(())
}
