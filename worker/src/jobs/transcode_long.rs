//! `transcode_long`: the scrub sprite sheet with its WebVTT index and the waveform
//! image, made from the proxy (smaller and faster to decode than the original).

use rushes_common::job::media::TranscodeLong;
use serde_json::{Value, json};

use super::clip::{ClipRow, publish, run_ffmpeg};
use super::{JobContext, JobError, db_error};
use crate::media::plan::{self, SpriteLayout};

pub async fn run(ctx: JobContext, payload: TranscodeLong) -> Result<Value, JobError> {
    let clip = ClipRow::load(&ctx, payload.clip_id).await?;
    let Some(proxy) = clip.outputs.get("proxy").and_then(Value::as_str) else {
        return Err(JobError::Permanent(
            "the clip has no proxy yet; transcode it first".into(),
        ));
    };
    let out_dir = clip.output_dir(&ctx);
    let proxy = out_dir.join(proxy);
    let facts = clip.facts();
    let duration = facts.duration_s.unwrap_or(0.0);
    let services = ctx.services.clone();
    let layout = (facts.has_video && duration > 0.0).then(|| {
        SpriteLayout::new(
            duration,
            services.transcode.sprite_interval.as_secs_f64(),
            facts.width,
            facts.height,
        )
    });
    if layout.is_none() && facts.audio_tracks == 0 {
        return Ok(json!({ "skipped": "nothing to draw: no video duration and no audio" }));
    }
    let staging = clip.staging(&ctx)?;
    let plan = plan::transcode_long(&proxy, &facts, layout.as_ref(), &staging);
    if let Some(layout) = &layout {
        std::fs::write(staging.path("sprite.vtt"), layout.vtt(duration))
            .map_err(|e| JobError::Retryable(format!("cannot write the sprite index: {e}")))?;
    }
    run_ffmpeg(&ctx, plan.args, facts.duration_s).await?;
    let mut names = plan.outputs.clone();
    let mut added = serde_json::Map::new();
    if layout.is_some() {
        names.push("sprite.vtt".into());
        added.insert("sprite".into(), json!("sprite.jpg"));
        added.insert("sprite_vtt".into(), json!("sprite.vtt"));
    }
    if plan.outputs.iter().any(|n| n == "waveform.png") {
        added.insert("waveform".into(), json!("waveform.png"));
    }
    publish(staging, &names)?;
    let added = Value::Object(added);
    sqlx::query("UPDATE clips SET outputs = outputs || $2, updated_at = now() WHERE id = $1")
        .bind(clip.id)
        .bind(&added)
        .execute(&ctx.db)
        .await
        .map_err(db_error)?;
    ctx.set_progress(1.0);
    Ok(json!({ "outputs": added, "thumbnails": layout.map(|l| l.count) }))
}
