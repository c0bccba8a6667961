//! Kinds that turn speech into text.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{Follows, JobPayload, Mirror, QueueFamily, Target};

/// `transcribe`: run Whisper over one transcript's audio (a clip's or an upload's) with
/// the options stored on the transcript, and store its segments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcribe {
    pub transcript_id: Uuid,
}

impl JobPayload for Transcribe {
    const KIND: &'static str = "transcribe";
    const QUEUE: QueueFamily = QueueFamily::Transcribe;
    const MAX_ATTEMPTS: i32 = 3;
    /// Hours of audio on a CPU node take a while; a lease keeps the job owned meanwhile.
    const TIMEOUT: Duration = Duration::from_secs(12 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const TARGET: Option<Target> = Some(Target {
        field: "transcript_id",
        table: "transcripts",
        noun: "transcript",
        follows: Some(Follows {
            mirror: Mirror::Transcripts,
            job: "job_id",
            state: "state",
            error: "error",
        }),
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[(
            "transcript_id",
            uuid("the transcript to (re)make, with the options stored on it"),
            true,
        )])
    }
}
