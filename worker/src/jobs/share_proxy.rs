//! `share_proxy`: a share link made for a named viewer gets a proxy of its own — the
//! clip's (or review file's) proxy with the viewer's name burned into the picture — in
//! the link's folder. The link never serves the unmarked proxy in its place.

use rushes_common::job::media::ShareProxy;
use rushes_common::media::share_dir;
use rushes_common::media::watermark::{Position, Watermark};
use serde_json::{Value, json};
use uuid::Uuid;

use super::clip::{publish, run_ffmpeg};
use super::transcode::{log_plan, proxy_settings};
use super::{JobContext, JobError, db_error};
use crate::media::plan::{self, BurnIn};
use crate::media::probe::{self, ProbeError};
use crate::media::staging::Staging;

/// The name's height, as a fraction of the picture's, and its strength.
const NAME_SIZE: f64 = 0.05;
const NAME_OPACITY: f64 = 0.7;

#[derive(sqlx::FromRow)]
struct LinkRow {
    viewer: Option<String>,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    proxy_job_id: Option<Uuid>,
    over: bool,
    watermark: Option<Value>,
}

pub async fn run(ctx: JobContext, payload: ShareProxy) -> Result<Value, JobError> {
    let id = payload.share_id;
    let link: LinkRow = sqlx::query_as(
        "SELECT l.viewer, l.clip_id, l.upload_id, l.proxy_job_id, \
                (l.revoked_at IS NOT NULL OR l.expires_at <= now()) AS over, p.watermark \
         FROM share_links l LEFT JOIN clips c ON c.id = l.clip_id LEFT JOIN uploads u ON u.id = l.upload_id \
              LEFT JOIN productions p ON p.id = COALESCE(c.production_id, u.production_id) \
         WHERE l.id = $1",
    )
    .bind(id)
    .fetch_optional(&ctx.db)
    .await
    .map_err(db_error)?
    .ok_or_else(|| JobError::Permanent(format!("unknown share link {id}")))?;
    if link.proxy_job_id != Some(ctx.job_id) {
        return Ok(json!({ "skipped": "another job makes this link's proxy" }));
    }
    if link.over {
        return Ok(json!({ "skipped": "the link was revoked or has expired" }));
    }
    let Some(viewer) = link.viewer.filter(|v| !v.trim().is_empty()) else {
        return Ok(json!({ "skipped": "the link names no viewer" }));
    };
    let media = &ctx.services.media;
    let target_dir = match (link.clip_id, link.upload_id) {
        (Some(clip), _) => media.clip_dir(clip),
        (None, Some(upload)) => media.upload_dir(upload),
        (None, None) => return Err(JobError::Permanent("the share link names nothing".into())),
    };
    let source = target_dir.join("proxy.mp4");
    if !source.is_file() && target_dir.join("proxy.m4a").is_file() {
        return Err(JobError::Permanent("sound only: no picture to carry the name".into()));
    }
    if !source.is_file() {
        // Made by the target's own transcode, which may still be running.
        return Err(JobError::Retryable("the proxy to mark is not made yet".into()));
    }
    let info = probe::probe(&ctx.services.transcode.ffprobe, &source)
        .await
        .map_err(|err| match err {
            ProbeError::NotMedia(why) | ProbeError::Refused(why) => JobError::Permanent(format!("the proxy: {why}")),
            err @ ProbeError::Tool(_) => JobError::Retryable(err.to_string()),
        })?;
    let height = info
        .video
        .as_ref()
        .and_then(|v| u32::try_from(v.height).ok())
        .filter(|h| *h > 0)
        .ok_or_else(|| JobError::Permanent("the proxy has no picture to mark".into()))?;

    let staging = Staging::create(&share_dir(&target_dir, id), ctx.job_id, ctx.attempt)
        .map_err(|e| JobError::Retryable(format!("cannot prepare the link's folder: {e}")))?;
    let text_file = staging.path("viewer.txt");
    std::fs::write(&text_file, viewer.trim())
        .map_err(|e| JobError::Retryable(format!("cannot write the viewer's name: {e}")))?;
    let font = &ctx.services.transcode.watermark_font;
    let burn_in = BurnIn {
        text_file: Some(text_file),
        font_file: font.is_file().then(|| font.clone()),
        position: name_position(link.watermark.as_ref()),
        opacity: NAME_OPACITY,
        size: NAME_SIZE,
        image: None,
    };
    let settings = proxy_settings(&ctx).await?;
    let plan = plan::marked_copy(&source, height, &burn_in, &settings, &ctx.services.video, &staging)
        .map_err(JobError::Permanent)?;
    log_plan(&ctx, &plan, &ctx.services.video);
    run_ffmpeg(&ctx, plan.args, info.duration_s).await?;
    publish(staging, &plan.outputs)?;
    // A link revoked while its copy was being made has nothing to remove the copy then.
    let over: bool = sqlx::query_scalar(
        "SELECT COALESCE((SELECT revoked_at IS NOT NULL OR expires_at <= now() FROM share_links WHERE id = $1), true)",
    )
    .bind(id)
    .fetch_one(&ctx.db)
    .await
    .map_err(db_error)?;
    if over {
        let _ = std::fs::remove_dir_all(share_dir(&target_dir, id));
        return Ok(json!({ "skipped": "the link was revoked or has expired while its copy was made" }));
    }
    Ok(json!({ "share_id": id, "outputs": plan.outputs }))
}

/// Where the name goes: at the bottom, or at the top when the production's own
/// watermark sits at the bottom.
fn name_position(watermark: Option<&Value>) -> Position {
    let mark: Option<Watermark> = watermark.and_then(|w| serde_json::from_value(w.clone()).ok());
    let low = |p: Position| matches!(p, Position::Bottom | Position::BottomLeft | Position::BottomRight);
    let taken = mark.is_some_and(|m| {
        (!m.text.trim().is_empty() && low(m.position)) || m.image.as_ref().is_some_and(|i| low(i.position))
    });
    if taken { Position::Top } else { Position::Bottom }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_keeps_clear_of_the_production_mark() {
        assert_eq!(name_position(None), Position::Bottom);
        let centre = json!({ "text": "CONFIDENTIAL", "position": "center" });
        assert_eq!(name_position(Some(&centre)), Position::Bottom);
        let low = json!({ "text": "CONFIDENTIAL", "position": "bottom-left" });
        assert_eq!(name_position(Some(&low)), Position::Top);
        let logo = json!({ "image": { "position": "bottom-right" } });
        assert_eq!(name_position(Some(&logo)), Position::Top);
    }
}
