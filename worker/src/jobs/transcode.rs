//! `transcode`: one ffmpeg pass from the original to the proxy, per-track audio, poster
//! and 16 kHz WAV, staged and renamed into place; then the scrub extras are queued.

use std::sync::Arc;
use std::time::Duration;

use rushes_common::enqueue::{self, NewJob};
use rushes_common::job::JobPayload as _;
use rushes_common::job::media::{Transcode, TranscodeLong};
use serde_json::{Value, json};

use super::clip::ClipRow;
use super::{JobContext, JobError, db_error};
use crate::media::ffmpeg::{FfmpegError, FfmpegRun};
use crate::media::plan;
use crate::media::staging::Staging;

/// Every transcode may take at least this long, whatever its clip's duration.
const BASE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(ctx: JobContext, payload: Transcode) -> Result<Value, JobError> {
    let clip = ClipRow::load(&ctx, payload.clip_id).await?;
    if clip.transcode_job_id != Some(ctx.job_id) {
        return Ok(json!({ "skipped": "a newer transcode of this clip replaced this one" }));
    }
    let source = clip.source(&ctx)?;
    let facts = clip.facts();
    if !facts.has_video && facts.audio_tracks == 0 {
        return Err(JobError::Permanent("the clip has neither video nor audio".into()));
    }
    let services = ctx.services.clone();
    let staging = Staging::create(&clip.output_dir(&ctx), ctx.job_id, ctx.attempt)
        .map_err(|e| JobError::Retryable(format!("cannot prepare the output folder: {e}")))?;
    let plan = plan::transcode(&source, &facts, &services.transcode, &services.video, &staging);
    let run = FfmpegRun {
        binary: &services.transcode.ffmpeg,
        args: plan.args,
        duration_s: facts.duration_s,
        timeout: time_limit(facts.duration_s, services.transcode.timeout_factor),
    };
    let progress_ctx = ctx.clone();
    run.run(
        &ctx.cancel_token(),
        Arc::new(move |f| progress_ctx.set_progress(f * 0.99)),
    )
    .await
    .map_err(ffmpeg_failure)?;
    staging
        .commit(&plan.outputs)
        .map_err(|e| JobError::Retryable(format!("cannot publish the outputs: {e}")))?;

    let mut outputs = serde_json::Map::new();
    let mut tracks = Vec::new();
    for name in &plan.outputs {
        match name.as_str() {
            "proxy.mp4" | "proxy.m4a" => outputs.insert("proxy".into(), json!(name)),
            "poster.jpg" => outputs.insert("poster".into(), json!(name)),
            "audio.wav" => outputs.insert("wav".into(), json!(name)),
            _ => {
                tracks.push(name.clone());
                None
            }
        };
    }
    outputs.insert("tracks".into(), json!(tracks));
    let outputs = Value::Object(outputs);
    sqlx::query(
        "UPDATE clips SET outputs = $2, transcoded_at = now(), updated_at = now() \
         WHERE id = $1 AND transcode_job_id = $3",
    )
    .bind(clip.id)
    .bind(&outputs)
    .bind(ctx.job_id)
    .execute(&ctx.db)
    .await
    .map_err(db_error)?;

    let mut long = NewJob::new(TranscodeLong::KIND, json!(TranscodeLong { clip_id: clip.id }));
    long.priority = u8::try_from(clip.priority).ok();
    long.parent_id = Some(ctx.job_id);
    long.requested_by = Some("transcode".into());
    if let Err(err) = enqueue::enqueue(&ctx.db, &ctx.publisher, vec![long]).await {
        tracing::warn!(error = %err, "cannot queue the scrub sprite and waveform");
    }
    ctx.set_progress(1.0);
    Ok(json!({ "outputs": outputs, "encoder": services.video.encoder, "hw_decode": services.video.hw_decode }))
}

/// Five minutes plus `factor` times the clip's duration, within the kind's ceiling.
pub fn time_limit(duration_s: Option<f64>, factor: f64) -> Duration {
    let scaled = duration_s
        .filter(|d| d.is_finite() && *d > 0.0)
        .map_or(Duration::from_secs(3600), |d| {
            Duration::from_secs_f64((d * factor.max(1.0)).min(1e6))
        });
    (BASE_TIMEOUT + scaled).min(<Transcode as rushes_common::job::JobPayload>::TIMEOUT)
}

/// ffmpeg's verdict as a job outcome: bad input is permanent, a stalled run may retry.
pub fn ffmpeg_failure(err: FfmpegError) -> JobError {
    match err {
        FfmpegError::Failed(reason) => JobError::Permanent(format!("ffmpeg: {reason}")),
        FfmpegError::Cancelled => JobError::Cancelled,
        err @ (FfmpegError::TimedOut(_) | FfmpegError::Spawn(_)) => JobError::Retryable(err.to_string()),
    }
}
