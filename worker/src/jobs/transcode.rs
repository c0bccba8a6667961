//! `transcode`: one ffmpeg pass from the original to the proxy, per-track audio, poster
//! and 16 kHz WAV, staged and renamed into place; then the scrub extras are queued.

use rushes_common::enqueue::{self, NewJob};
use rushes_common::job::JobPayload as _;
use rushes_common::job::media::{Transcode, TranscodeLong};
use serde_json::{Value, json};

use super::clip::{ClipRow, publish, run_ffmpeg};
use super::{JobContext, JobError, db_error};
use crate::media::plan;

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
    let staging = clip.staging(&ctx)?;
    // Admins' settings override the worker's configured proxy size and bitrate.
    let mut settings = services.transcode.clone();
    if let Some(height) = stored_setting(&ctx, rushes_common::settings::PROXY_HEIGHT).await? {
        settings.proxy_height = height;
    }
    if let Some(rate) = stored_setting(&ctx, rushes_common::settings::PROXY_BITRATE_KBPS).await? {
        settings.proxy_bitrate_kbps = rate;
    }
    let plan = plan::transcode(&source, &facts, &settings, &services.video, &staging);
    ctx.log(
        rushes_common::logs::Level::Info,
        format!(
            "ffmpeg ({}{}): {}",
            services.video.encoder,
            services
                .video
                .hw_decode
                .map(|d| format!(", {d} decoding"))
                .unwrap_or_default(),
            plan.outputs.join(", ")
        ),
    );
    run_ffmpeg(&ctx, plan.args, facts.duration_s).await?;
    publish(staging, &plan.outputs)?;

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

async fn stored_setting(ctx: &JobContext, key: &str) -> Result<Option<u32>, JobError> {
    let value = rushes_common::settings::stored_integer(&ctx.db, key)
        .await
        .map_err(db_error)?;
    Ok(value.and_then(|v| u32::try_from(v).ok()))
}
