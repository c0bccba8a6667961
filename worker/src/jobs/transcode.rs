//! `transcode`: one ffmpeg pass from the original to the proxy, per-track audio, poster
//! and 16 kHz WAV, staged and renamed into place; then the scrub extras are queued.

use rushes_common::job::media::{Transcode, TranscodeLong};
use rushes_common::job::store::{self, NewJob, Tx};
use rushes_common::transcripts;
use serde_json::{Value, json};
use uuid::Uuid;

use super::clip::{ClipRow, publish, run_ffmpeg};
use super::{JobContext, JobError, db_error};
use crate::config::TranscodeConfig;
use crate::media::backend::VideoBackend;
use crate::media::formats::{self, MAX_AUDIO_TRACKS};
use crate::media::plan;

pub async fn run(ctx: JobContext, payload: Transcode) -> Result<Value, JobError> {
    let clip = ClipRow::load(&ctx, payload.clip_id).await?;
    if clip.transcode_job_id != Some(ctx.job_id) && !take_over(&ctx, clip.id).await? {
        return Ok(json!({ "skipped": "a newer transcode of this clip replaced this one" }));
    }
    let source = clip.source(&ctx)?;
    let facts = clip.facts();
    if !facts.has_video && facts.audio_tracks == 0 {
        return Err(JobError::Permanent("the clip has neither video nor audio".into()));
    }
    if facts.audio_tracks > MAX_AUDIO_TRACKS {
        return Err(JobError::Permanent(formats::too_many_tracks(facts.audio_tracks)));
    }
    let services = ctx.services.clone();
    let staging = clip.staging(&ctx)?;
    let settings = proxy_settings(&ctx).await?;
    let burn_in = clip.burn_in(&ctx, &staging)?;
    let plan = plan::transcode(&source, &facts, &settings, &services.video, &staging, burn_in.as_ref())
        .map_err(JobError::Permanent)?;
    log_plan(&ctx, &plan, &services.video);
    let mut video = services.video.clone();
    let plan = match run_ffmpeg(&ctx, plan.args.clone(), facts.duration_s).await {
        // The GPU's encoder or decoder failed (a busy NVENC, a stream NVDEC cannot
        // take): once more in software, which needs no GPU.
        Err(err) if video != VideoBackend::software() && blames_gpu(&err) => {
            ctx.log(
                rushes_common::logs::Level::Warn,
                format!("{err}; the GPU's video engine failed: once more in software"),
            );
            video = VideoBackend::software();
            let again = plan::transcode(&source, &facts, &settings, &video, &staging, burn_in.as_ref())
                .map_err(JobError::Permanent)?;
            log_plan(&ctx, &again, &video);
            run_ffmpeg(&ctx, again.args.clone(), facts.duration_s).await?;
            again
        }
        Err(err) => return Err(err),
        Ok(()) => plan,
    };
    publish(staging, &plan.outputs)?;

    let outputs = outputs_json(&plan.outputs);
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

    queue_transcription(&ctx, &clip).await;

    let long = NewJob {
        priority: u8::try_from(clip.priority).ok(),
        ..NewJob::of(&TranscodeLong { clip_id: clip.id })
            .parent(ctx.job_id)
            .requested_by("transcode")
    };
    if let Err(err) = store::enqueue(&ctx.db, &ctx.publisher, vec![long]).await {
        tracing::warn!(error = %err, "cannot queue the scrub sprite and waveform");
    }
    ctx.set_progress(1.0);
    Ok(json!({ "outputs": outputs, "encoder": video.encoder, "hw_decode": video.hw_decode }))
}

/// Whether ffmpeg's failure names the GPU's video path (NVENC, NVDEC/CUVID, CUDA).
fn blames_gpu(err: &JobError) -> bool {
    let message = match err {
        JobError::Permanent(m) | JobError::Retryable(m) | JobError::Unable(m) => m.to_ascii_lowercase(),
        JobError::Cancelled => return false,
    };
    ["nvenc", "cuvid", "nvdec", "cuda"]
        .iter()
        .any(|word| message.contains(word))
}

/// Makes this job the clip's current transcode unless a newer one is (job ids are
/// time-ordered): a transcode queued on its own — by a schedule, or before the API made
/// hand-enqueued ones current — runs rather than skipping for a replacement that does
/// not exist. Whether the job is now the current one.
async fn take_over(ctx: &JobContext, clip: Uuid) -> Result<bool, JobError> {
    let taken = sqlx::query(
        "UPDATE clips SET transcode_job_id = $2, transcode_state = 'running', transcode_error = NULL \
         WHERE id = $1 AND (transcode_job_id IS NULL OR transcode_job_id < $2)",
    )
    .bind(clip)
    .bind(ctx.job_id)
    .execute(&ctx.db)
    .await
    .map_err(db_error)?
    .rows_affected();
    Ok(taken == 1)
}

/// Scan → transcode → transcribe: a clip with sound whose production transcribes on
/// ingest, and that has no transcript yet, gets one queued. A failure here is logged,
/// not the transcode's: the clip can be transcribed by hand.
async fn queue_transcription(ctx: &JobContext, clip: &ClipRow) {
    if clip.audio_tracks == 0 {
        return;
    }
    let queue = async {
        let mut tx = Tx::begin(&ctx.db).await?;
        let wanted: bool = sqlx::query_scalar(
            "SELECT p.auto_transcribe AND NOT EXISTS (SELECT 1 FROM transcripts t WHERE t.clip_id = c.id) \
             FROM clips c JOIN productions p ON p.id = c.production_id WHERE c.id = $1",
        )
        .bind(clip.id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or(false);
        if !wanted {
            return Ok(());
        }
        let pairs = transcripts::upsert_for_clips(&mut tx, &[clip.id], None, "transcode", None).await?;
        let priority = u8::try_from(clip.priority).unwrap_or(rushes_common::job::DEFAULT_PRIORITY);
        let queued: Vec<(Uuid, u8)> = pairs.iter().map(|(_, t)| (*t, priority)).collect();
        transcripts::queue(&mut tx, &queued, Some(ctx.job_id), "transcode").await?;
        tx.commit(&ctx.publisher).await?;
        anyhow::Ok(())
    };
    if let Err(err) = queue.await {
        tracing::warn!(clip.id = %clip.id, error = %err, "cannot queue the clip's transcription");
    }
}

/// The worker's proxy settings, with the admins' stored settings (proxy height and
/// bitrate) taking precedence.
pub(super) async fn proxy_settings(ctx: &JobContext) -> Result<TranscodeConfig, JobError> {
    let mut settings = ctx.services.transcode.clone();
    if let Some(height) = stored_setting(ctx, rushes_common::settings::PROXY_HEIGHT).await? {
        settings.proxy_height = height;
    }
    if let Some(rate) = stored_setting(ctx, rushes_common::settings::PROXY_BITRATE_KBPS).await? {
        settings.proxy_bitrate_kbps = rate;
    }
    Ok(settings)
}

/// Names the backend and the outputs in the job's log.
pub(super) fn log_plan(ctx: &JobContext, plan: &plan::Plan, video: &VideoBackend) {
    ctx.log(
        rushes_common::logs::Level::Info,
        format!(
            "ffmpeg ({}{}): {}",
            video.encoder,
            video.hw_decode.map(|d| format!(", {d} decoding")).unwrap_or_default(),
            plan.outputs.join(", ")
        ),
    );
}

/// `{"proxy", "poster", "wav", "tracks": [..]}` from the files a plan wrote.
pub(super) fn outputs_json(names: &[String]) -> Value {
    let mut outputs = serde_json::Map::new();
    let mut tracks = Vec::new();
    for name in names {
        let key = match name.as_str() {
            "proxy.mp4" | "proxy.m4a" => "proxy",
            "poster.jpg" => "poster",
            "audio.wav" => "wav",
            _ => {
                tracks.push(name.clone());
                continue;
            }
        };
        outputs.insert(key.into(), json!(name));
    }
    outputs.insert("tracks".into(), json!(tracks));
    Value::Object(outputs)
}

async fn stored_setting(ctx: &JobContext, key: &str) -> Result<Option<u32>, JobError> {
    let value = rushes_common::settings::stored_integer(&ctx.db, key)
        .await
        .map_err(db_error)?;
    Ok(value.and_then(|v| u32::try_from(v).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_gpu_video_path_are_told_from_the_rest() {
        for gpu in [
            "ffmpeg: [h264_nvenc @ 0x1] OpenEncodeSessionEx failed: out of memory (10)",
            "ffmpeg: [h264_cuvid @ 0x2] cuvidCreateDecoder failed",
            "ffmpeg: Device creation failed: -542398533. Failed to set value 'cuda' for option 'hwaccel'",
        ] {
            assert!(blames_gpu(&JobError::Permanent(gpu.into())), "{gpu}");
        }
        for other in [
            "ffmpeg: moov atom not found",
            "ffmpeg: Invalid data found when processing input",
        ] {
            assert!(!blames_gpu(&JobError::Permanent(other.into())), "{other}");
        }
        assert!(!blames_gpu(&JobError::Cancelled));
    }
}
