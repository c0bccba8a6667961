//! A clip as the transcode kinds handle it: its row, the checks that its source is
//! still where the scan saw it, and one ffmpeg run from staging to published outputs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::{JobContext, JobError, db_error};
use crate::media::ffmpeg::{FfmpegError, FfmpegRun};
use rushes_common::media::watermark::{self, Watermark};

use crate::media::plan::{BurnIn, ClipFacts, ImageOverlay};
use crate::media::staging::Staging;

/// Every run may take at least this long, whatever its clip's duration.
const BASE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(sqlx::FromRow)]
pub struct ClipRow {
    pub id: Uuid,
    pub production_id: Uuid,
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
    pub base_name: String,
    pub series: i32,
    pub friendly_name: String,
    /// The production's watermark, when it has one.
    pub watermark: Option<Value>,
}

impl ClipRow {
    pub async fn load(ctx: &JobContext, clip_id: Uuid) -> Result<Self, JobError> {
        sqlx::query_as(
            "SELECT c.id, c.production_id, p.path AS production_path, p.priority, c.path, c.missing, c.width, c.height, \
                    c.duration_s, c.audio_tracks, c.transcode_job_id, c.outputs, b.name AS base_name, p.series, \
                    p.friendly_name, p.watermark \
             FROM clips c JOIN productions p ON p.id = c.production_id \
                  JOIN base_productions b ON b.id = p.base_production_id \
             WHERE c.id = $1",
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

    /// The original file, re-checked against its production's folder (a symlink may
    /// have changed since the scan).
    pub fn source(&self, ctx: &JobContext) -> Result<PathBuf, JobError> {
        if self.missing {
            return Err(JobError::Permanent(format!("source file {} is missing", self.path)));
        }
        ctx.services
            .roots
            .resolve_inside(&self.production_path, &self.path)
            .map_err(|e| JobError::Permanent(format!("source file: {e}")))
    }

    /// The production's watermark for this clip, its text written beside the outputs
    /// (`None`: no watermark, or no picture to draw it on).
    pub fn burn_in(&self, ctx: &JobContext, staging: &Staging) -> Result<Option<BurnIn>, JobError> {
        let Some(stored) = self.watermark.clone().filter(|_| self.facts().has_video) else {
            return Ok(None);
        };
        let mark: Watermark = serde_json::from_value(stored)
            .map_err(|e| JobError::Permanent(format!("the production's watermark cannot be read: {e}")))?;
        let clip = std::path::Path::new(&self.path)
            .file_name()
            .map_or_else(|| self.path.clone(), |n| n.to_string_lossy().into_owned());
        let production = format!("{} Series {}", self.base_name, self.series);
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let text = mark.render(&watermark::Values {
            production: &production,
            base_production: &self.base_name,
            series: self.series,
            friendly_name: &self.friendly_name,
            clip: &clip,
            date: &date,
        });
        let text_file = if text.trim().is_empty() {
            None
        } else {
            let file = staging.path("watermark.txt");
            std::fs::write(&file, text)
                .map_err(|e| JobError::Retryable(format!("cannot write the watermark's text: {e}")))?;
            Some(file)
        };
        let image = match &mark.image {
            Some(image) => {
                let file = ctx.services.media.watermark_image_path(self.production_id);
                // The control plane keeps the image while the watermark names it: a
                // missing one is storage not yet in step (shared folders), worth a retry.
                if !file.is_file() {
                    return Err(JobError::Retryable(format!(
                        "the production's watermark image {} is not there",
                        file.display()
                    )));
                }
                Some(ImageOverlay {
                    file,
                    position: image.position,
                    opacity: image.opacity,
                    size: image.size,
                })
            }
            None => None,
        };
        let font = &ctx.services.transcode.watermark_font;
        Ok(Some(BurnIn {
            text_file,
            font_file: font.is_file().then(|| font.clone()),
            position: mark.position,
            opacity: mark.opacity,
            size: mark.size,
            image,
        }))
    }

    /// The clip's output folder.
    pub fn output_dir(&self, ctx: &JobContext) -> PathBuf {
        ctx.services.media.clip_dir(self.id)
    }

    /// A staging folder for this attempt beside the clip's outputs.
    pub fn staging(&self, ctx: &JobContext) -> Result<Staging, JobError> {
        Staging::create(&self.output_dir(ctx), ctx.job_id, ctx.attempt)
            .map_err(|e| JobError::Retryable(format!("cannot prepare the output folder: {e}")))
    }
}

/// Runs ffmpeg for the job: progress into the job, killed on cancel, and stopped after
/// five minutes plus `RUSHES_TRANSCODE_TIMEOUT_FACTOR` times the clip's duration.
pub async fn run_ffmpeg(ctx: &JobContext, args: Vec<OsString>, duration_s: Option<f64>) -> Result<(), JobError> {
    let settings = &ctx.services.transcode;
    let run = FfmpegRun {
        binary: &settings.ffmpeg,
        args,
        duration_s,
        timeout: time_limit(duration_s, settings.timeout_factor),
    };
    let progress = ctx.clone();
    run.run(&ctx.cancel_token(), Arc::new(move |f| progress.set_progress(f * 0.99)))
        .await
        .map_err(|err| match err {
            // Bad input fails the same way again; a stalled or unstartable run may not.
            FfmpegError::Failed(reason) => JobError::Permanent(format!("ffmpeg: {reason}")),
            FfmpegError::Refused(why) => JobError::Permanent(why),
            FfmpegError::Cancelled => JobError::Cancelled,
            err @ (FfmpegError::TimedOut(_) | FfmpegError::Spawn(_)) => JobError::Retryable(err.to_string()),
        })
}

/// Moves the staged outputs into the clip's folder.
pub fn publish(staging: Staging, names: &[String]) -> Result<(), JobError> {
    staging
        .commit(names)
        .map_err(|e| JobError::Retryable(format!("cannot publish the outputs: {e}")))
}

/// Five minutes plus `factor` times the clip's duration, within the kind's ceiling.
fn time_limit(duration_s: Option<f64>, factor: f64) -> Duration {
    let scaled = duration_s
        .filter(|d| d.is_finite() && *d > 0.0)
        .map_or(Duration::from_secs(3600), |d| {
            Duration::from_secs_f64((d * factor.max(1.0)).min(1e6))
        });
    (BASE_TIMEOUT + scaled).min(<rushes_common::job::media::Transcode as rushes_common::job::JobPayload>::TIMEOUT)
}
