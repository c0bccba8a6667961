//! `transcode_upload`: an uploaded file (a review file, or audio/video sent for
//! transcription) is probed, then gets the same outputs as a clip — proxy, poster,
//! per-track audio and the 16 kHz WAV — staged and renamed into its folder.

use rushes_common::job::DEFAULT_PRIORITY;
use rushes_common::job::media::TranscodeUpload;
use rushes_common::job::store::Tx;
use rushes_common::media::UPLOAD_ORIGINAL;
use rushes_common::transcripts;
use serde_json::{Value, json};
use uuid::Uuid;

use super::clip::{publish, run_ffmpeg};
use super::transcode::{log_plan, outputs_json, proxy_settings};
use super::{JobContext, JobError, db_error};
use crate::media::plan::{self, ClipFacts};
use crate::media::probe::{self, MediaInfo, ProbeError};
use crate::media::staging::Staging;

#[derive(sqlx::FromRow)]
struct UploadRow {
    transcode_job_id: Option<Uuid>,
    purpose: String,
}

pub async fn run(ctx: JobContext, payload: TranscodeUpload) -> Result<Value, JobError> {
    let id = payload.upload_id;
    let upload: UploadRow = sqlx::query_as("SELECT transcode_job_id, purpose FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_optional(&ctx.db)
        .await
        .map_err(db_error)?
        .ok_or_else(|| JobError::Permanent(format!("unknown upload {id}")))?;
    if upload.transcode_job_id != Some(ctx.job_id) {
        return Ok(json!({ "skipped": "a newer transcode of this upload replaced this one" }));
    }
    let dir = ctx.services.media.upload_dir(id);
    let source = dir.join(UPLOAD_ORIGINAL);
    if !source.is_file() {
        return Err(JobError::Permanent("the uploaded file is gone".into()));
    }
    let info = probe::probe(&ctx.services.transcode.ffprobe, &source)
        .await
        .map_err(|err| match err {
            ProbeError::NotMedia(why) => JobError::Permanent(format!("not a media file: {why}")),
            ProbeError::Refused(why) => JobError::Permanent(why),
            err @ ProbeError::Tool(_) => JobError::Retryable(err.to_string()),
        })?;
    if info.video.is_none() && info.audio.is_empty() {
        return Err(JobError::Permanent("the upload has neither video nor audio".into()));
    }
    record_facts(&ctx, id, &info).await?;

    let facts = ClipFacts {
        has_video: info.video.is_some(),
        width: info.video.as_ref().map_or(0, |v| v.width),
        height: info.video.as_ref().map_or(0, |v| v.height),
        audio_tracks: info.audio.len(),
        duration_s: info.duration_s,
    };
    let staging = Staging::create(&dir, ctx.job_id, ctx.attempt)
        .map_err(|e| JobError::Retryable(format!("cannot prepare the output folder: {e}")))?;
    let settings = proxy_settings(&ctx).await?;
    let plan = plan::transcode(&source, &facts, &settings, &ctx.services.video, &staging, None)
        .map_err(JobError::Permanent)?;
    log_plan(&ctx, &plan, &ctx.services.video);
    run_ffmpeg(&ctx, plan.args, facts.duration_s).await?;
    publish(staging, &plan.outputs)?;

    let outputs = outputs_json(&plan.outputs);
    sqlx::query("UPDATE uploads SET outputs = $2, transcoded_at = now() WHERE id = $1 AND transcode_job_id = $3")
        .bind(id)
        .bind(&outputs)
        .bind(ctx.job_id)
        .execute(&ctx.db)
        .await
        .map_err(db_error)?;
    let transcript = if upload.purpose == "transcription" {
        queue_transcription(&ctx, id).await?
    } else {
        None
    };
    ctx.set_progress(1.0);
    Ok(json!({ "upload_id": id, "purpose": upload.purpose, "outputs": outputs, "transcript_id": transcript }))
}

/// Queues the upload's transcription (its transcript row was made with the upload);
/// returns the transcript's id. A retried transcode does not queue it twice.
async fn queue_transcription(ctx: &JobContext, upload: Uuid) -> Result<Option<Uuid>, JobError> {
    let mut tx = Tx::begin(&ctx.db).await.map_err(db_error)?;
    let transcript: Option<(Uuid, Option<Uuid>)> =
        sqlx::query_as("SELECT id, job_id FROM transcripts WHERE upload_id = $1 FOR UPDATE")
            .bind(upload)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
    let Some((transcript, current)) = transcript else {
        return Ok(None);
    };
    if current.is_none() {
        transcripts::queue(&mut tx, &[(transcript, DEFAULT_PRIORITY)], Some(ctx.job_id), "upload")
            .await
            .map_err(|e| JobError::Retryable(format!("cannot queue the transcription: {e}")))?;
    }
    tx.commit(&ctx.publisher).await.map_err(db_error)?;
    Ok(Some(transcript))
}

/// Stores what ffprobe found; the uploader's frame rate and start timecode win over
/// the file's own.
async fn record_facts(ctx: &JobContext, id: Uuid, info: &MediaInfo) -> Result<(), JobError> {
    let (num, den) = info
        .video
        .as_ref()
        .and_then(|v| v.frame_rate)
        .map_or((None, None), |(n, d)| (Some(n), Some(d)));
    sqlx::query(
        "UPDATE uploads SET container = $2, video_codec = $3, audio_codec = $4, width = $5, height = $6, \
                duration_s = $7, audio_tracks = $8, \
                frame_rate_num = COALESCE(frame_rate_num, $9), frame_rate_den = COALESCE(frame_rate_den, $10), \
                start_timecode = COALESCE(start_timecode, $11) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(&info.container)
    .bind(info.video.as_ref().map(|v| v.codec.clone()))
    .bind(info.audio.first().map(|a| a.codec.clone()))
    .bind(info.video.as_ref().map(|v| v.width))
    .bind(info.video.as_ref().map(|v| v.height))
    .bind(info.duration_s)
    .bind(i32::try_from(info.audio.len()).unwrap_or(i32::MAX))
    .bind(num)
    .bind(den)
    .bind(&info.start_timecode)
    .execute(&ctx.db)
    .await
    .map_err(db_error)?;
    Ok(())
}
