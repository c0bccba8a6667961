//! `purge_deleted` ("purge deleted items"): takes for good what was deleted, or went
//! missing, long enough ago — transcription uploads of deleted accounts, clips whose
//! rushes are gone from storage, soft-deleted users — each audited, in one
//! transaction; then their folders on disk, and the viewer copies of share links long
//! over. A dry run rolls the transaction back and removes nothing.

use std::path::PathBuf;

use rushes_common::audit::{self, Change};
use rushes_common::job::maintenance::{DeletedItem, PurgeDeleted};
use rushes_common::media::share_dir;
use serde_json::{Value, json};
use uuid::Uuid;

use super::accounts::actor;
use super::{JobContext, JobError, db_error};

pub async fn run(ctx: JobContext, payload: PurgeDeleted) -> Result<Value, JobError> {
    let actor = actor(&ctx).await?;
    let days = i32::try_from(payload.deleted_days_ago).unwrap_or(i32::MAX);
    let wants = |item| payload.items.contains(&item);
    let mut tx = ctx.db.begin().await.map_err(db_error)?;
    let mut gone: Vec<(&str, Uuid, Value)> = Vec::new();

    // Uploads before users: purging a user orphans their uploads anew.
    if wants(DeletedItem::Uploads) {
        let uploads: Vec<(Uuid, String, String)> = sqlx::query_as(
            "DELETE FROM uploads u WHERE u.purpose = 'transcription' AND ( \
                 (u.uploaded_by_user_id IS NULL AND u.orphaned_at <= now() - make_interval(days => $1)) \
                 OR EXISTS (SELECT 1 FROM users x WHERE x.id = u.uploaded_by_user_id \
                            AND x.deleted_at <= now() - make_interval(days => $1))) \
             RETURNING u.id, u.title, u.uploaded_by",
        )
        .bind(days)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        gone.extend(
            uploads
                .into_iter()
                .map(|(id, title, by)| ("upload", id, json!({ "title": title, "uploaded_by": by }))),
        );
    }
    if wants(DeletedItem::Clips) {
        let clips: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
            "DELETE FROM clips WHERE missing AND missing_since <= now() - make_interval(days => $1) \
             RETURNING id, production_id, path",
        )
        .bind(days)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        // Their productions are walked in full at the next scan, so rushes that come
        // back are found again.
        let productions: Vec<Uuid> = clips.iter().map(|(_, production, _)| *production).collect();
        sqlx::query("UPDATE productions SET tree_digest = NULL WHERE id = ANY($1)")
            .bind(&productions)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        gone.extend(
            clips
                .into_iter()
                .map(|(id, production, path)| ("clip", id, json!({ "production_id": production, "path": path }))),
        );
    }
    for (target_type, id, before) in &gone {
        let action = format!("{target_type}.purge");
        let change = Change {
            action: &action,
            target_type,
            target_id: Some(id.to_string()),
            before: Some(before.clone()),
            after: None,
        };
        audit::record(&mut *tx, &actor, change).await.map_err(db_error)?;
    }
    let users = if wants(DeletedItem::Users) {
        super::purge_users::purge(&mut tx, &actor, payload.deleted_days_ago).await?
    } else {
        0
    };
    // Viewer copies of links long over: files only, the links stay listed.
    let copies: Vec<(Uuid, Option<Uuid>, Option<Uuid>)> = if wants(DeletedItem::ShareCopies) {
        sqlx::query_as(
            "SELECT id, clip_id, upload_id FROM share_links WHERE viewer IS NOT NULL \
               AND LEAST(COALESCE(revoked_at, 'infinity'), expires_at) <= now() - make_interval(days => $1)",
        )
        .bind(days)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
    } else {
        Vec::new()
    };
    let count = |kind: &str| gone.iter().filter(|(t, _, _)| *t == kind).count();
    let result = json!({
        "dry_run": payload.dry_run,
        "users": users,
        "clips": count("clip"),
        "uploads": count("upload"),
        "share_links_with_copies": copies.len(),
    });
    if payload.dry_run {
        tx.rollback().await.map_err(db_error)?;
        return Ok(result);
    }
    tx.commit().await.map_err(db_error)?;

    let media = &ctx.services.media;
    let mut folders: Vec<PathBuf> = gone
        .iter()
        .map(|(kind, id, _)| match *kind {
            "clip" => media.clip_dir(*id),
            _ => media.upload_dir(*id),
        })
        .collect();
    folders.extend(copies.iter().filter_map(|(link, clip, upload)| {
        let target = match (clip, upload) {
            (Some(clip), _) => media.clip_dir(*clip),
            (None, Some(upload)) => media.upload_dir(*upload),
            (None, None) => return None,
        };
        Some(share_dir(&target, *link))
    }));
    // The rows are gone for good now: a folder left behind is logged, not retried.
    let removed = tokio::task::spawn_blocking(move || {
        for folder in folders {
            if let Err(err) = std::fs::remove_dir_all(&folder)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(folder = %folder.display(), error = %err, "cannot remove a purged item's folder");
            }
        }
    })
    .await;
    if let Err(err) = removed {
        tracing::warn!(error = %err, "removing purged items' folders stopped");
    }
    Ok(result)
}
