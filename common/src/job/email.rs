//! `email`: one rendered message to its recipients, over SMTP.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalogue::{JobPayload, QueueFamily, Target};
use crate::mail::Mail;

/// A rendered mail (see [`crate::mail`]) and who receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Email {
    pub fn new(to: Vec<String>, mail: Mail) -> Self {
        Self {
            to,
            subject: mail.subject,
            text: mail.text,
            html: mail.html,
        }
    }
}

impl JobPayload for Email {
    const KIND: &'static str = "email";
    const QUEUE: QueueFamily = QueueFamily::Email;
    /// With the backoff: retried for about 40 minutes of SMTP trouble.
    const MAX_ATTEMPTS: i32 = 10;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const BACKOFF_BASE: Duration = Duration::from_secs(5);

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[
            (
                "to",
                array("recipients' addresses (at least one)", string("an address")),
                true,
            ),
            ("subject", string("not empty"), true),
            ("text", string("the plain-text body"), true),
            ("html", string("the HTML body"), true),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        if self.to.is_empty() {
            return Err("to: at least one recipient is needed".into());
        }
        if let Some(bad) = self.to.iter().find(|a| !crate::mail::looks_like_address(a)) {
            return Err(format!("to: `{bad}` is not an email address"));
        }
        if self.subject.trim().is_empty() {
            return Err("subject must not be empty".into());
        }
        Ok(())
    }
}

/// `send_email_draft`: expands an admin draft's recipients (users, groups, everyone
/// active) and queues one `email` per address, so one rejected address blocks no other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmailDraft {
    pub draft_id: uuid::Uuid,
}

impl JobPayload for SendEmailDraft {
    const KIND: &'static str = "send_email_draft";
    const QUEUE: QueueFamily = QueueFamily::Email;
    const MAX_ATTEMPTS: i32 = 5;
    const TIMEOUT: Duration = Duration::from_secs(300);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);
    const TARGET: Option<Target> = Some(Target {
        field: "draft_id",
        table: "email_drafts",
        noun: "mail draft",
        follows: None,
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("draft_id", uuid("the mail-out draft to send"), true)])
    }
}
