//! A production's cover image: `PUT /api/v1/productions/{id}/cover` with a JPEG, PNG
//! or WebP body (at most 10 MiB, at most 12 000 px a side) stores a JPEG thumbnail of
//! at most 640×640; `GET` serves it, `DELETE` resets to none. Changing it needs the
//! `edit_metadata` policy on the production.

use std::io::Cursor;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::put;
use axum::{Extension, Router};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageReader};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::AppState;

/// Largest cover image accepted.
pub const MAX_COVER_BYTES: usize = 10 << 20;
/// Most memory one decode may allocate (a 12 000 × 12 000 RGBA image is ~576 MB: refused
/// by this before it is allocated).
const MAX_DECODE_BYTES: u64 = 256 << 20;
/// Cover images decoded at once per control process.
pub const DECODES_AT_ONCE: usize = 2;
const MAX_SIDE: u32 = 12_000;
const THUMBNAIL_SIDE: u32 = 640;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/productions/{id}/cover",
        put(upload)
            .get(serve)
            .delete(reset)
            .layer(DefaultBodyLimit::max(MAX_COVER_BYTES)),
    )
}

/// Decodes an image sent to the API (format from its bytes, not its name), refusing
/// anything too large to decode safely.
pub(crate) fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a JPEG, PNG or WebP image".into());
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| e.to_string())
}

/// Decodes the image and encodes a thumbnail as JPEG.
fn thumbnail(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let thumb = decode(bytes)?.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).into_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&thumb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Makes a file of an image sent to the API with `make` (decoding and encoding, off the
/// async threads), at most [`DECODES_AT_ONCE`] at a time; `422` when it is no usable image.
pub(crate) async fn remade(
    state: &AppState,
    body: Bytes,
    make: fn(&[u8]) -> Result<Vec<u8>, String>,
) -> ApiResult<Vec<u8>> {
    if body.is_empty() {
        return Err(ApiError::Unprocessable("the body must be the image".into()));
    }
    // Bounded: a burst of large images queues here instead of exhausting memory.
    let _slot = state
        .image_decodes
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("image decoding is shut")))?;
    tokio::task::spawn_blocking(move || make(&body))
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("the image task failed")))?
        .map_err(|why| ApiError::Unprocessable(format!("not a usable image: {why}")))
}

/// Writes `bytes` to `path` whole or not at all (through a `.part` file), its folder made.
pub(crate) async fn store(path: &std::path::Path, bytes: &[u8], what: &'static str) -> ApiResult<()> {
    let partial = path.with_extension("part");
    let write = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&partial, bytes).await?;
        tokio::fs::rename(&partial, path).await
    };
    write
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context(format!("cannot store {what}"))))
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    caller.require(&state, Policy::EditMetadata, id).await?;
    super::productions::exists(&state, id).await?;
    let jpeg = remade(&state, body?, thumbnail).await?;
    store(&state.media.cover_path(id), &jpeg, "the cover image").await?;
    let url = format!(
        "/api/v1/productions/{id}/cover?v={}",
        chrono::Utc::now().timestamp_millis()
    );
    set_cover(&state, &caller, id, Some(&url)).await?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "cover_image": url, "bytes": jpeg.len() })),
    ))
}

async fn set_cover(state: &AppState, caller: &Caller, id: Uuid, url: Option<&str>) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let before: Option<Option<String>> =
        sqlx::query_scalar("SELECT cover_image FROM productions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(before) = before else {
        return Err(ApiError::NotFound(format!("no production {id}")));
    };
    sqlx::query("UPDATE productions SET cover_image = $2 WHERE id = $1")
        .bind(id)
        .bind(url)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        caller,
        Change {
            action: if url.is_some() {
                "production.cover_set"
            } else {
                "production.cover_reset"
            },
            target_type: "production",
            target_id: Some(id.to_string()),
            before: Some(json!({ "cover_image": before })),
            after: Some(json!({ "cover_image": url })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn serve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    request: Request,
) -> ApiResult<Response> {
    caller.require(&state, Policy::View, id).await?;
    super::clips::serve_file(state.media.cover_path(id), request).await
}

async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require(&state, Policy::EditMetadata, id).await?;
    set_cover(&state, &caller, id, None).await?;
    if let Err(err) = tokio::fs::remove_file(state.media.cover_path(id)).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(production.id = %id, error = %err, "cannot remove the cover image");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32 (IEEE) of a PNG chunk's type and data.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffff_u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A valid 1×1 PNG whose header then claims `side`×`side` pixels.
    fn png_claiming(side: u32) -> Vec<u8> {
        let mut png = Vec::new();
        let pixel = image::RgbaImage::new(1, 1);
        if DynamicImage::ImageRgba8(pixel)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .is_err()
        {
            return Vec::new();
        }
        // Signature (8), length (4), "IHDR" at 12, width at 16, height at 20, CRC at 29.
        png[16..20].copy_from_slice(&side.to_be_bytes());
        png[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn images_too_large_to_decode_are_refused_before_allocating() {
        assert!(thumbnail(&png_claiming(1)).is_ok());
        let huge = thumbnail(&png_claiming(11_000));
        assert!(huge.is_err(), "an 11 000 px square RGBA needs 484 MB");
        assert!(thumbnail(&png_claiming(20_000)).is_err(), "beyond the side limit");
        assert!(thumbnail(b"not an image").is_err());
    }
}
