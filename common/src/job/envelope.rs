//! The message body every job message carries: versioned JSON.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the envelope this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Body of a job message. The `jobs` row stays the source of truth; the envelope
/// lets a message be understood (and dead-lettered with a reason) on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// The job's id (also the message's `message_id`).
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Attempts made before this message was published.
    pub attempt: i32,
    /// W3C `traceparent` of the enqueuing request, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Why a message body is not a job envelope we can run.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported envelope version {0} (this build reads {ENVELOPE_VERSION})")]
    Version(u32),
}

impl Envelope {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and a JSON value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(body: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Envelope = serde_json::from_slice(body)?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(envelope.v));
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() -> Result<(), EnvelopeError> {
        let e = Envelope {
            v: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            kind: "sleep".into(),
            payload: serde_json::json!({"seconds": 1}),
            attempt: 0,
            traceparent: None,
        };
        assert_eq!(Envelope::from_bytes(&e.to_bytes())?, e);
        assert!(matches!(
            Envelope::from_bytes(b"{not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::from_bytes(br#"{"hello":1}"#),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut future = serde_json::to_value(&e)?;
        future["v"] = 2.into();
        let bytes = serde_json::to_vec(&future)?;
        assert!(matches!(Envelope::from_bytes(&bytes), Err(EnvelopeError::Version(2))));
        Ok(())
    }
}
