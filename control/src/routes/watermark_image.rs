//! A production's watermark image (a logo): `PUT /api/v1/productions/{id}/watermark-image`
//! with a JPEG, PNG or WebP body (admins; at most 10 MiB) stores it as a PNG of at most
//! 1024 px a side, its transparency kept, decoded and encoded again here so that the
//! worker's ffmpeg only ever reads a PNG this process wrote. `GET` serves it; `DELETE`
//! removes it, refused while the production's watermark draws it. The watermark draws
//! it when it has `image` (`PATCH /productions/{id}` with `watermark.image`); replacing
//! the image then makes the proxies again.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::put;
use axum::{Extension, Router};
use image::ImageFormat;
use serde_json::{Value, json};
use uuid::Uuid;

use super::covers::{MAX_COVER_BYTES, remade, store};
use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::AppState;

/// Longest side of the stored image: a mark is a fraction of a proxy's height.
const MAX_SIDE: u32 = 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/productions/{id}/watermark-image",
        put(upload)
            .get(serve)
            .delete(remove)
            .layer(DefaultBodyLimit::max(MAX_COVER_BYTES)),
    )
}

/// The image as the stored PNG: at most [`MAX_SIDE`] a side, RGBA.
fn as_png(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut image = super::covers::decode(bytes)?;
    if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
        image = image.thumbnail(MAX_SIDE, MAX_SIDE);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(image.into_rgba8())
        .write_to(&mut out, ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// Whether the production's watermark draws the image (its row locked, in a transaction).
async fn drawn(executor: impl sqlx::PgExecutor<'_>, id: Uuid) -> ApiResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(watermark ? 'image' AND watermark->'image' <> 'null'::jsonb, false) \
         FROM productions WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(executor)
    .await?
    .unwrap_or(false))
}

async fn log(state: &AppState, caller: &Caller, id: Uuid, action: &str, after: Option<Value>) -> ApiResult<()> {
    audit::record(
        &state.db,
        caller,
        Change {
            action,
            target_type: "production",
            target_id: Some(id.to_string()),
            before: None,
            after,
        },
    )
    .await
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    caller.require_admin()?;
    super::productions::exists(&state, id).await?;
    let png = remade(&state, body?, as_png).await?;
    store(&state.media.watermark_image_path(id), &png, "the watermark image").await?;
    log(
        &state,
        &caller,
        id,
        "production.watermark_image_set",
        Some(json!({ "bytes": png.len() })),
    )
    .await?;
    let remade = if drawn(&state.db, id).await? {
        super::productions::remake_proxies_of(&state, &caller, id, "the watermark image changed").await?
    } else {
        0
    };
    Ok((
        StatusCode::OK,
        axum::Json(json!({
            "watermark_image": format!("/api/v1/productions/{id}/watermark-image"),
            "bytes": png.len(),
            "proxies_remade": remade,
        })),
    ))
}

async fn serve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    request: Request,
) -> ApiResult<Response> {
    caller.require(&state, Policy::View, id).await?;
    super::clips::serve_file(state.media.watermark_image_path(id), request).await
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    super::productions::exists(&state, id).await?;
    // The production's row stays locked until the file is gone: a watermark naming the
    // image is either committed before (and seen here) or checked after (and refused).
    let mut tx = state.db.begin().await?;
    if drawn(&mut *tx, id).await? {
        return Err(ApiError::Conflict(
            "the production's watermark draws this image: take `image` out of the watermark first".into(),
        ));
    }
    let removed = tokio::fs::remove_file(state.media.watermark_image_path(id)).await;
    tx.commit().await?;
    match removed {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound(format!("production {id} has no watermark image")));
        }
        Err(err) => {
            return Err(ApiError::Internal(
                anyhow::Error::new(err).context("cannot remove the watermark image"),
            ));
        }
    }
    log(&state, &caller, id, "production.watermark_image_removed", None).await?;
    Ok(StatusCode::NO_CONTENT)
}
