//! Kinds that turn a production's rushes into clips people can stream: scanning,
//! transcoding and the long-running extras (scrub sprites, waveforms).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{Follows, JobPayload, Mirror, QueueFamily, Target};

/// `scan`: walk one production's folder and reconcile its clips.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    pub production_id: Uuid,
}

impl JobPayload for Scan {
    const KIND: &'static str = "scan";
    const QUEUE: QueueFamily = QueueFamily::Scan;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(2 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(30);
    const TARGET: Option<Target> = Some(Target {
        field: "production_id",
        table: "productions",
        noun: "production",
        follows: None,
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("production_id", uuid("the production to scan"), true)])
    }
}

/// `scan_all`: enqueue a `scan` for every active, unarchived production.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanAll {}

impl JobPayload for ScanAll {
    const KIND: &'static str = "scan_all";
    const QUEUE: QueueFamily = QueueFamily::Scan;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(300);
    const BACKOFF_BASE: Duration = Duration::from_secs(30);

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[])
    }
}

/// `transcode`: proxy, per-track audio, poster and the 16 kHz WAV of one clip.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcode {
    pub clip_id: Uuid,
}

impl JobPayload for Transcode {
    const KIND: &'static str = "transcode";
    const QUEUE: QueueFamily = QueueFamily::Transcode;
    const MAX_ATTEMPTS: i32 = 3;
    /// The ceiling; each job also gets a limit from its clip's duration.
    const TIMEOUT: Duration = Duration::from_secs(8 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(30);
    const TARGET: Option<Target> = Some(Target {
        field: "clip_id",
        table: "clips",
        noun: "clip",
        follows: Some(Follows {
            mirror: Mirror::Clips,
            job: "transcode_job_id",
            state: "transcode_state",
            error: "transcode_error",
        }),
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("clip_id", uuid("the clip to transcode"), true)])
    }
}

/// `transcode_long`: scrub sprite sheet with its WebVTT index, and a waveform image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeLong {
    pub clip_id: Uuid,
}

impl JobPayload for TranscodeLong {
    const KIND: &'static str = "transcode_long";
    const QUEUE: QueueFamily = QueueFamily::TranscodeLong;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(8 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const TARGET: Option<Target> = Some(Target {
        field: "clip_id",
        table: "clips",
        noun: "clip",
        follows: None,
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("clip_id", uuid("the clip whose sprite and waveform to draw"), true)])
    }
}

/// `transcode_upload`: probe an uploaded file (a review file, or audio/video sent for
/// transcription) and make its proxy, poster and 16 kHz WAV beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeUpload {
    pub upload_id: Uuid,
}

impl JobPayload for TranscodeUpload {
    const KIND: &'static str = "transcode_upload";
    const QUEUE: QueueFamily = QueueFamily::Transcode;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(8 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(30);
    const TARGET: Option<Target> = Some(Target {
        field: "upload_id",
        table: "uploads",
        noun: "upload",
        follows: Some(Follows {
            mirror: Mirror::Uploads,
            job: "transcode_job_id",
            state: "transcode_state",
            error: "transcode_error",
        }),
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("upload_id", uuid("the upload (review file or audio) to prepare"), true)])
    }
}

/// `share_proxy`: the proxy of a share link made for a named viewer — the clip's (or
/// review file's) own proxy with the viewer's name burned into its picture, so that a
/// copy that leaks says whose it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareProxy {
    pub share_id: Uuid,
}

impl JobPayload for ShareProxy {
    const KIND: &'static str = "share_proxy";
    const QUEUE: QueueFamily = QueueFamily::Transcode;
    /// The clip's own proxy may still be in the making: a few waits for it.
    const MAX_ATTEMPTS: i32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(8 * 3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(30);
    const TARGET: Option<Target> = Some(Target {
        field: "share_id",
        table: "share_links",
        noun: "share link",
        follows: None,
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[("share_id", uuid("the share link whose viewer's proxy to make"), true)])
    }
}
