//! Sending mail over SMTP with lettre: temporary trouble (4xx, a server that cannot be
//! reached) is worth a retry; a 5xx answer (a rejected address) is final.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpConfig;

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Will fail again: a malformed or rejected address, a refused message.
    #[error("{0}")]
    Permanent(String),
    /// Worth another attempt later.
    #[error("{0}")]
    Temporary(String),
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> anyhow::Result<Self> {
        let host = config.smtp_host.as_str();
        let mut builder = match config.smtp_tls.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        builder = builder.port(config.smtp_port).timeout(Some(config.smtp_timeout));
        if let (Some(user), Some(password)) = (&config.smtp_user, &config.smtp_password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = config
            .smtp_from
            .parse::<Mailbox>()
            .map_err(|e| anyhow::anyhow!("RUSHES_SMTP_FROM `{}` is not a mailbox: {e}", config.smtp_from))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one message with a plain-text and an HTML alternative.
    pub async fn send(&self, to: &[String], subject: &str, text: &str, html: &str) -> Result<(), MailError> {
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for address in to {
            let mailbox = address
                .parse::<Mailbox>()
                .map_err(|e| MailError::Permanent(format!("`{address}` is not an email address: {e}")))?;
            message = message.to(mailbox);
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(text.to_owned(), html.to_owned()))
            .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_permanent() => Err(MailError::Permanent(format!("SMTP server refused: {err}"))),
            Err(err) => Err(MailError::Temporary(format!("SMTP: {err}"))),
        }
    }
}
