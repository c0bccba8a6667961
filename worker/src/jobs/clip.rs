//! A clip as the transcode kinds read it: its row, its production's folder, and the
//! checks that its source is still where the scan saw it.

use std::path::PathBuf;

use serde_json::Value;
use uuid::Uuid;

use super::{JobContext, JobError, db_error};
use crate::media::plan::ClipFacts;

#[derive(sqlx::FromRow)]
pub struct ClipRow {
    pub id: Uuid,
    pub production_path: String,
    pub priority: i16,
    pub path: String,
    pub missing: bool,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_s: Option<f64>,
    pub audio_tracks: i32,
    pub transcode_job_id: Option<Uuid>,
    pub outputs: Value,
}

impl ClipRow {
    pub async fn load(ctx: &JobContext, clip_id: Uuid) -> Result<Self, JobError> {
        sqlx::query_as(
            "SELECT c.id, p.path AS production_path, p.priority, c.path, c.missing, c.width, c.height, \
                    c.duration_s, c.audio_tracks, c.transcode_job_id, c.outputs \
             FROM clips c JOIN productions p ON p.id = c.production_id WHERE c.id = $1",
        )
        .bind(clip_id)
        .fetch_optional(&ctx.db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| JobError::Permanent(format!("unknown clip {clip_id}")))
    }

    pub fn facts(&self) -> ClipFacts {
        ClipFacts {
            has_video: self.width.is_some_and(|w| w > 0),
            width: self.width.unwrap_or(0),
            height: self.height.unwrap_or(0),
            audio_tracks: usize::try_from(self.audio_tracks).unwrap_or(0),
            duration_s: self.duration_s,
        }
    }

    /// The original file, re-checked against the media roots (a symlink may have
    /// changed since the scan).
    pub fn source(&self, ctx: &JobContext) -> Result<PathBuf, JobError> {
        if self.missing {
            return Err(JobError::Permanent(format!("source file {} is missing", self.path)));
        }
        let full = format!("{}/{}", self.production_path.trim_end_matches('/'), self.path);
        ctx.services
            .roots
            .resolve(&full)
            .map_err(|e| JobError::Permanent(format!("source file: {e}")))
    }

    /// The clip's output folder.
    pub fn output_dir(&self, ctx: &JobContext) -> PathBuf {
        ctx.services.media.clip_dir(self.id)
    }
}
