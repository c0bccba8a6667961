//! Mails the control plane sends (account details, password resets, invitations): each
//! is queued as an `email` job, so SMTP trouble retries without failing the request.

use rushes_common::enqueue::{self, NewJob};
use rushes_common::job::JobPayload as _;
use rushes_common::job::email::Email;
use rushes_common::mail::Mail;
use serde_json::json;

use crate::state::AppState;

/// Queues `mail` to `to`; a failure to queue is logged, not returned.
pub async fn send(state: &AppState, to: &str, mail: Mail) {
    let mut job = NewJob::new(Email::KIND, json!(Email::new(vec![to.to_owned()], mail)));
    job.requested_by = Some("control".into());
    if let Err(err) = enqueue::enqueue(&state.db, &state.publisher, vec![job]).await {
        tracing::warn!(error = %err, "cannot queue a mail");
    }
}
