//! `scan`: reconciles one production's clips with its folder. New and changed files are
//! probed and queued for transcoding, vanished ones marked missing; an unchanged tree
//! (same digest as the last scan) writes nothing but the time of the scan. Skipped files
//! are `broken` (looks like media, does not probe or is refused) or `not_media`. The
//! owner hears about new clips and newly broken files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use rushes_common::job::email::Email;
use rushes_common::job::media::Scan;
use rushes_common::job::store::{self, NewJob, Tx};
use rushes_common::logs::Level;
use rushes_common::mail::{self, SCAN_SUMMARY_BROKEN, SCAN_SUMMARY_EXAMPLES, ScanSummary};
use rushes_common::media::skips::{NOT_MEDIA_REASON, SkipKind};
use rushes_common::media::{PathError, transcodes};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobContext, JobError, db_error};
use crate::media::probe::{self, MediaInfo, ProbeError};
use crate::media::walk::{self, Entry};

/// Rows per statement when recording skipped files.
const SKIP_BATCH: usize = 5000;
/// Refused and skipped paths listed in the job result.
const LISTED: usize = 20;
/// First key of the per-production scan lock (`pg_try_advisory_lock(class, hash)`).
const SCAN_LOCK_CLASS: i32 = 0x5343;

#[derive(sqlx::FromRow)]
struct Production {
    friendly_name: String,
    path: String,
    priority: i16,
    active: bool,
    tree_digest: Option<Vec<u8>>,
    owner_email: Option<String>,
}

/// A path the database already knows for this production.
struct Known {
    clip: Option<(Uuid, bool)>,
    size: i64,
    mtime_ns: i64,
}

/// What probing decided about a new or changed file.
enum Verdict {
    Media(Box<MediaInfo>),
    /// Skipped: `broken` when it looked like media, `not_media` when it was never probed.
    Skipped(SkipKind, String),
    /// ffprobe could not run: left for the next scan.
    Unresolved(String),
}

#[derive(Default)]
struct Counts {
    new: Vec<String>,
    changed: u64,
    missing: u64,
    reappeared: u64,
    not_media: u64,
    /// Paths and reasons of the broken files found (the mail lists some).
    broken: Vec<(String, String)>,
    unresolved: u64,
}

pub async fn run(ctx: JobContext, payload: Scan) -> Result<Value, JobError> {
    let production: Production = sqlx::query_as(
        "SELECT p.friendly_name, p.path, p.priority, p.active, p.tree_digest, u.email AS owner_email \
         FROM productions p LEFT JOIN users u ON u.id = p.owner_id WHERE p.id = $1",
    )
    .bind(payload.production_id)
    .fetch_optional(&ctx.db)
    .await
    .map_err(db_error)?
    .ok_or_else(|| JobError::Permanent(format!("unknown production {}", payload.production_id)))?;
    if !production.active {
        return Ok(json!({ "skipped": "the production is inactive" }));
    }
    let services = ctx.services.clone();
    let root = services.roots.resolve_dir(&production.path).map_err(|e| match e {
        // Storage that is not mounted right now may come back.
        PathError::NotFound(_) => JobError::Retryable(format!("production folder: {e}")),
        e => JobError::Permanent(format!("production folder: {e}")),
    })?;
    // One scan per production at a time, held on a connection of its own: a worker
    // that dies releases it with its connection.
    let mut lock = ctx.db.acquire().await.map_err(db_error)?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
        .bind(SCAN_LOCK_CLASS)
        .bind(payload.production_id.to_string())
        .fetch_one(&mut *lock)
        .await
        .map_err(db_error)?;
    if !locked {
        return Ok(json!({ "skipped": "another scan of this production is running" }));
    }
    let outcome = reconcile(&ctx, &payload, &production, root).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(SCAN_LOCK_CLASS)
        .bind(payload.production_id.to_string())
        .execute(&mut *lock)
        .await;
    if unlocked.is_err() {
        // The lock must not outlive this scan on a pooled connection.
        lock.close_on_drop();
    }
    outcome
}

async fn reconcile(
    ctx: &JobContext,
    payload: &Scan,
    production: &Production,
    root: PathBuf,
) -> Result<Value, JobError> {
    let services = ctx.services.clone();

    let walk_root = root.clone();
    let roots = services.roots.clone();
    let tree = tokio::task::spawn_blocking(move || walk::walk(&walk_root, &roots))
        .await
        .map_err(|e| JobError::Retryable(format!("folder walk stopped: {e}")))?
        .map_err(|e| JobError::Retryable(format!("cannot read {}: {e}", root.display())))?;
    let mut refused: Vec<Value> = tree
        .refused
        .iter()
        .take(LISTED)
        .map(|(path, reason)| json!({ "path": path, "reason": reason }))
        .collect();
    if production.tree_digest.as_deref() == Some(tree.digest.as_slice()) {
        // Nothing to reconcile, but the scan happened: `last_scan_at` says when.
        sqlx::query("UPDATE productions SET last_scan_at = now() WHERE id = $1")
            .bind(payload.production_id)
            .execute(&ctx.db)
            .await
            .map_err(db_error)?;
        return Ok(json!({ "files": tree.entries.len(), "unchanged": true, "refused": refused }));
    }

    let known = load_known(ctx, payload.production_id).await?;
    let live_clips = known.values().filter(|k| matches!(k.clip, Some((_, false)))).count();
    if tree.entries.is_empty() && live_clips > 0 {
        // An unmounted share looks like an empty folder: never mark a whole production missing.
        return Err(JobError::Retryable(format!(
            "{} is empty but {live_clips} clips were there; is the storage mounted?",
            root.display()
        )));
    }
    let candidates: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| {
            known
                .get(&e.rel)
                .is_none_or(|k| k.size != e.size || k.mtime_ns != e.mtime_ns)
        })
        .collect();
    let verdicts = probe_all(ctx, &candidates).await?;

    let mut tx = Tx::begin(&ctx.db).await.map_err(db_error)?;
    let mut counts = Counts::default();
    let mut transcodes = Vec::new();
    let mut skips: Vec<(&Entry, SkipKind, String)> = Vec::new();
    for (entry, verdict) in candidates.iter().zip(verdicts) {
        let previous = known.get(&entry.rel);
        match verdict {
            Verdict::Media(info) => {
                let id = upsert_clip(&mut tx, payload.production_id, entry, &info).await?;
                match previous.and_then(|k| k.clip) {
                    Some(_) => counts.changed += 1,
                    None => counts.new.push(entry.rel.clone()),
                }
                if previous.is_some_and(|k| k.clip.is_none()) {
                    forget_skip(&mut tx, payload.production_id, &entry.rel).await?;
                }
                transcodes.push(id);
            }
            Verdict::Skipped(kind, reason) => {
                match kind {
                    SkipKind::Broken => counts.broken.push((entry.rel.clone(), reason.clone())),
                    SkipKind::NotMedia => counts.not_media += 1,
                }
                if let Some((id, false)) = previous.and_then(|k| k.clip) {
                    set_missing(&mut tx, &[id], true).await?;
                    counts.missing += 1;
                }
                skips.push((*entry, kind, reason));
            }
            Verdict::Unresolved(reason) => {
                counts.unresolved += 1;
                if refused.len() < LISTED {
                    refused.push(json!({ "path": entry.rel, "reason": reason }));
                }
            }
        }
    }
    record_skips(&mut tx, payload.production_id, &skips).await?;
    // Broken files first: they are the ones somebody needs to look at.
    let skipped: Vec<Value> = skips
        .iter()
        .filter(|(_, kind, _)| *kind == SkipKind::Broken)
        .chain(skips.iter().filter(|(_, kind, _)| *kind == SkipKind::NotMedia))
        .take(LISTED)
        .map(|(entry, kind, reason)| json!({ "path": entry.rel, "reason": reason, "kind": kind }))
        .collect();

    let present: HashMap<&str, &Entry> = tree.entries.iter().map(|e| (e.rel.as_str(), e)).collect();
    let mut vanished = Vec::new();
    let mut back = Vec::new();
    let mut gone_skips = Vec::new();
    for (path, k) in &known {
        let here = present.get(path.as_str());
        match (k.clip, here) {
            (Some((id, false)), None) => vanished.push(id),
            (Some((id, true)), Some(e)) if e.size == k.size && e.mtime_ns == k.mtime_ns => back.push(id),
            (None, None) => gone_skips.push(path.clone()),
            _ => {}
        }
    }
    set_missing(&mut tx, &vanished, true).await?;
    set_missing(&mut tx, &back, false).await?;
    counts.missing += vanished.len() as u64;
    counts.reappeared = back.len() as u64;
    if !gone_skips.is_empty() {
        sqlx::query("DELETE FROM scan_skips WHERE production_id = $1 AND path = ANY($2)")
            .bind(payload.production_id)
            .bind(&gone_skips)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }

    let priority = u8::try_from(production.priority).unwrap_or(rushes_common::job::DEFAULT_PRIORITY);
    let clips: Vec<(Uuid, u8)> = transcodes.iter().map(|id| (*id, priority)).collect();
    let jobs = transcodes::queue(&mut tx, &clips, Some(ctx.job_id), "scan")
        .await
        .map_err(|e| JobError::Retryable(format!("cannot queue transcodes: {e}")))?;
    // A digest is kept only when every file was settled; otherwise the next scan looks again.
    let digest = (counts.unresolved == 0).then_some(tree.digest.to_vec());
    sqlx::query("UPDATE productions SET tree_digest = $2, last_scan_at = now() WHERE id = $1")
        .bind(payload.production_id)
        .bind(digest)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit(&ctx.publisher).await.map_err(db_error)?;

    let mailed = notify_owner(ctx, production, payload.production_id, &counts).await;
    ctx.log(
        Level::Info,
        format!(
            "{} files: {} new, {} changed, {} missing, {} broken, {} not media, {} transcodes queued",
            tree.entries.len(),
            counts.new.len(),
            counts.changed,
            counts.missing,
            counts.broken.len(),
            counts.not_media,
            jobs.len()
        ),
    );
    ctx.set_progress(1.0);
    Ok(json!({
        "files": tree.entries.len(),
        "unchanged": false,
        "new": counts.new.len(),
        "changed": counts.changed,
        "missing": counts.missing,
        "reappeared": counts.reappeared,
        "broken": counts.broken.len(),
        "not_media": counts.not_media,
        "unresolved": counts.unresolved,
        "transcodes": jobs.len(),
        "owner_notified": mailed,
        "refused": refused,
        "skipped": skipped,
    }))
}

async fn load_known(ctx: &JobContext, production_id: Uuid) -> Result<HashMap<String, Known>, JobError> {
    let clips: Vec<(String, i64, i64, Uuid, bool)> =
        sqlx::query_as("SELECT path, size_bytes, mtime_ns, id, missing FROM clips WHERE production_id = $1")
            .bind(production_id)
            .fetch_all(&ctx.db)
            .await
            .map_err(db_error)?;
    let skips: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT path, size_bytes, mtime_ns FROM scan_skips WHERE production_id = $1")
            .bind(production_id)
            .fetch_all(&ctx.db)
            .await
            .map_err(db_error)?;
    let mut known = HashMap::with_capacity(clips.len() + skips.len());
    for (path, size, mtime_ns, id, missing) in clips {
        known.insert(
            path,
            Known {
                clip: Some((id, missing)),
                size,
                mtime_ns,
            },
        );
    }
    // A skip row is newer than a clip row of the same path (the file stopped being media).
    for (path, size, mtime_ns) in skips {
        known.insert(
            path,
            Known {
                clip: None,
                size,
                mtime_ns,
            },
        );
    }
    Ok(known)
}

/// Probes the candidates a few at a time, reporting progress; stops on cancel.
async fn probe_all(ctx: &JobContext, candidates: &[&Entry]) -> Result<Vec<Verdict>, JobError> {
    let ffprobe = ctx.services.transcode.ffprobe.clone();
    let concurrency = ctx.services.transcode.probe_concurrency.max(1);
    let total = candidates.len().max(1) as f32;
    let mut verdicts: Vec<Option<Verdict>> = (0..candidates.len()).map(|_| None).collect();
    let paths: Vec<(usize, PathBuf)> = candidates.iter().map(|e| e.abs.clone()).enumerate().collect();
    let mut stream = futures_util::stream::iter(paths)
        .map(|(i, path)| {
            let ffprobe = ffprobe.clone();
            async move { (i, verdict(&ffprobe, &path).await) }
        })
        .buffer_unordered(concurrency);
    let mut done = 0usize;
    while let Some((i, v)) = stream.next().await {
        if ctx.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        verdicts[i] = Some(v);
        done += 1;
        ctx.set_progress(0.95 * done as f32 / total);
    }
    Ok(verdicts
        .into_iter()
        .map(|v| v.unwrap_or(Verdict::Unresolved("not probed".into())))
        .collect())
}

async fn verdict(ffprobe: &Path, path: &Path) -> Verdict {
    let sniff_path = path.to_path_buf();
    let worth = tokio::task::spawn_blocking(move || probe::worth_probing(&sniff_path))
        .await
        .unwrap_or(true);
    if !worth {
        return Verdict::Skipped(SkipKind::NotMedia, NOT_MEDIA_REASON.into());
    }
    // It looked like media: whatever keeps it from being a clip makes it broken, a
    // refused container (a playlist named `.mov`) included.
    match probe::probe(ffprobe, path).await {
        Ok(info) => Verdict::Media(Box::new(info)),
        Err(ProbeError::NotMedia(reason) | ProbeError::Refused(reason)) => Verdict::Skipped(SkipKind::Broken, reason),
        Err(err @ ProbeError::Tool(_)) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot probe");
            Verdict::Unresolved(err.to_string())
        }
    }
}

async fn upsert_clip(tx: &mut Tx, production_id: Uuid, entry: &Entry, info: &MediaInfo) -> Result<Uuid, JobError> {
    let (card, name) = match entry.rel.rsplit_once('/') {
        Some((card, name)) => (card, name),
        None => ("", entry.rel.as_str()),
    };
    let mtime = DateTime::<Utc>::from_timestamp_nanos(entry.mtime_ns);
    let shoot_date = info.created_on.unwrap_or(mtime).date_naive();
    let tc_start = info.timecode_start_s();
    let tc_end = tc_start.zip(info.duration_s).map(|(s, d)| s + d);
    let video = info.video.as_ref();
    let channels: Vec<i32> = info.audio.iter().map(|a| a.channels).collect();
    sqlx::query_scalar(
        "INSERT INTO clips (id, production_id, path, name, card, shoot_date, size_bytes, mtime_ns, container, \
                            video_codec, audio_codec, width, height, duration_s, frame_rate_num, frame_rate_den, \
                            start_timecode, tc_start_s, tc_end_s, audio_tracks, audio_channels, created_on) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
         ON CONFLICT (production_id, path) DO UPDATE SET \
             size_bytes = EXCLUDED.size_bytes, mtime_ns = EXCLUDED.mtime_ns, missing = false, \
             container = EXCLUDED.container, video_codec = EXCLUDED.video_codec, \
             audio_codec = EXCLUDED.audio_codec, width = EXCLUDED.width, height = EXCLUDED.height, \
             duration_s = EXCLUDED.duration_s, frame_rate_num = EXCLUDED.frame_rate_num, \
             frame_rate_den = EXCLUDED.frame_rate_den, start_timecode = EXCLUDED.start_timecode, \
             tc_start_s = EXCLUDED.tc_start_s, tc_end_s = EXCLUDED.tc_end_s, \
             audio_tracks = EXCLUDED.audio_tracks, audio_channels = EXCLUDED.audio_channels, \
             created_on = EXCLUDED.created_on, updated_at = now() \
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(production_id)
    .bind(&entry.rel)
    .bind(name)
    .bind(card)
    .bind(shoot_date)
    .bind(entry.size)
    .bind(entry.mtime_ns)
    .bind(&info.container)
    .bind(video.map(|v| v.codec.clone()))
    .bind(info.audio.first().map(|a| a.codec.clone()))
    .bind(video.map(|v| v.width))
    .bind(video.map(|v| v.height))
    .bind(info.duration_s)
    .bind(video.and_then(|v| v.frame_rate).map(|r| r.0))
    .bind(video.and_then(|v| v.frame_rate).map(|r| r.1))
    .bind(&info.start_timecode)
    .bind(tc_start)
    .bind(tc_end)
    .bind(i32::try_from(info.audio.len()).unwrap_or(i32::MAX))
    .bind(channels)
    .bind(info.created_on)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)
}

async fn forget_skip(tx: &mut Tx, production_id: Uuid, path: &str) -> Result<(), JobError> {
    sqlx::query("DELETE FROM scan_skips WHERE production_id = $1 AND path = $2")
        .bind(production_id)
        .bind(path)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn set_missing(tx: &mut Tx, ids: &[Uuid], missing: bool) -> Result<(), JobError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE clips SET missing = $2, updated_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .bind(missing)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn record_skips(tx: &mut Tx, production_id: Uuid, skips: &[(&Entry, SkipKind, String)]) -> Result<(), JobError> {
    for chunk in skips.chunks(SKIP_BATCH) {
        let paths: Vec<&str> = chunk.iter().map(|(e, _, _)| e.rel.as_str()).collect();
        let sizes: Vec<i64> = chunk.iter().map(|(e, _, _)| e.size).collect();
        let mtimes: Vec<i64> = chunk.iter().map(|(e, _, _)| e.mtime_ns).collect();
        let reasons: Vec<&str> = chunk.iter().map(|(_, _, r)| r.as_str()).collect();
        let kinds: Vec<&str> = chunk.iter().map(|(_, k, _)| k.as_str()).collect();
        sqlx::query(
            "INSERT INTO scan_skips (production_id, path, size_bytes, mtime_ns, reason, kind) \
             SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[]) \
             ON CONFLICT (production_id, path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, \
                 mtime_ns = EXCLUDED.mtime_ns, reason = EXCLUDED.reason, kind = EXCLUDED.kind",
        )
        .bind(production_id)
        .bind(paths)
        .bind(sizes)
        .bind(mtimes)
        .bind(reasons)
        .bind(kinds)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// Mails the owner a summary when the scan found new clips or broken files. Returns
/// whether a mail was queued.
async fn notify_owner(ctx: &JobContext, production: &Production, production_id: Uuid, counts: &Counts) -> bool {
    let worth_telling = !counts.new.is_empty() || !counts.broken.is_empty();
    let Some(owner) = production.owner_email.as_deref().filter(|_| worth_telling) else {
        return false;
    };
    let examples: Vec<String> = counts.new.iter().take(SCAN_SUMMARY_EXAMPLES).cloned().collect();
    let broken: Vec<(String, String)> = counts.broken.iter().take(SCAN_SUMMARY_BROKEN).cloned().collect();
    // A page a person can open without a token (the control plane serves it).
    let link = mail::production_page(&ctx.services.smtp.public_url, production_id);
    let mail = mail::scan_summary(&ScanSummary {
        production: &production.friendly_name,
        new_clips: counts.new.len() as u64,
        changed_clips: counts.changed,
        missing_clips: counts.missing,
        examples: &examples,
        broken_files: counts.broken.len() as u64,
        broken: &broken,
        link: &link,
    });
    let job = NewJob::of(&Email::new(vec![owner.to_owned()], mail))
        .parent(ctx.job_id)
        .requested_by("scan");
    match store::enqueue(&ctx.db, &ctx.publisher, vec![job]).await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(error = %err, "cannot queue the scan summary mail");
            false
        }
    }
}
