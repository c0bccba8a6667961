//! `email`: sends one rendered mail; temporary SMTP trouble retries, a refusal is final.

use rushes_common::job::email::Email;
use serde_json::{Value, json};

use super::{JobContext, JobError};
use crate::mailer::MailError;

pub async fn run(ctx: JobContext, payload: Email) -> Result<Value, JobError> {
    let send = ctx
        .services
        .mailer
        .send(&payload.to, &payload.subject, &payload.text, &payload.html);
    tokio::select! {
        sent = send => match sent {
            Ok(()) => Ok(json!({ "sent_to": payload.to })),
            Err(MailError::Permanent(reason)) => Err(JobError::Permanent(reason)),
            Err(MailError::Temporary(reason)) => Err(JobError::Retryable(reason)),
        },
        _ = ctx.cancelled() => Err(JobError::Cancelled),
    }
}
