//! `/api/v1/uploads`: audio or video that belongs to no production, sent for
//! transcription. The multipart upload (`file`, `title`, optional `language`,
//! `translate`, `roll`, `shooter`, `date`, `frame_rate`, `start_timecode`) is streamed to
//! disk; a `transcode_upload` job makes its WAV (and proxy), then a `transcribe` job
//! fills its transcript, and the uploader is mailed. Needs the `transcribe` policy.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use chrono::NaiveDate;
use rushes_common::timecode::{FrameRate, Timecode};
use rushes_common::transcripts::Options;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::upload::{self, NewUpload, Received, UPLOAD_COLUMNS, UploadView};

const BASE: &str = "/api/v1/uploads";
const FIELDS: [&str; 8] = [
    "title",
    "language",
    "translate",
    "roll",
    "shooter",
    "date",
    "frame_rate",
    "start_timecode",
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/uploads", get(list).post(create).layer(DefaultBodyLimit::disable()))
        .route("/uploads/{id}", get(show).delete(remove))
        .route("/uploads/{id}/media/{name}", get(media))
}

/// The caller's own transcription upload (any, for admins), or 404.
async fn own(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<UploadView> {
    let not_found = || ApiError::NotFound(format!("no upload {id}"));
    let upload = upload::load(state, id).await.map_err(|_| not_found())?;
    let mine = caller.user_id.is_some() && upload.uploaded_by_user_id == caller.user_id;
    if upload.purpose != "transcription" || !(caller.is_admin || mine) {
        return Err(not_found());
    }
    Ok(upload)
}

fn flag(value: Option<&str>, name: &str) -> ApiResult<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(other) => Err(ApiError::Unprocessable(format!("{name}: true or false, got `{other}`"))),
    }
}

/// The uploader's fields, checked; each error names its field.
fn describe(received: &Received) -> ApiResult<NewUpload> {
    let text = |name: &str| received.field(name).map(str::to_owned);
    let title = text("title").unwrap_or_else(|| received.file_name.clone());
    if title.chars().count() > 500 {
        return Err(ApiError::Unprocessable("title: at most 500 characters".into()));
    }
    let shoot_date = received
        .field("date")
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::Unprocessable(format!("date: YYYY-MM-DD, got `{d}`")))
        })
        .transpose()?;
    let rate = received
        .field("frame_rate")
        .map(|r| {
            FrameRate::parse(r)
                .ok_or_else(|| ApiError::Unprocessable(format!("frame_rate: like 25, 29.97 or 30000/1001, got `{r}`")))
        })
        .transpose()?;
    let start_timecode = text("start_timecode");
    if let Some(tc) = &start_timecode {
        let Some(rate) = rate else {
            return Err(ApiError::Unprocessable(
                "start_timecode: needs frame_rate too, to count its frames".into(),
            ));
        };
        if Timecode::parse(tc, rate).is_none() {
            return Err(ApiError::Unprocessable(format!(
                "start_timecode: HH:MM:SS:FF (HH:MM:SS;FF drop-frame) at {rate} fps, got `{tc}`"
            )));
        }
    }
    let options = Options {
        audio_track: 0,
        language: text("language").filter(|l| l != "auto"),
        translate: flag(received.field("translate"), "translate")?,
        initial_prompt: None,
    };
    options.validate().map_err(ApiError::Unprocessable)?;
    let new = NewUpload {
        purpose: "transcription",
        production_id: None,
        title,
        roll: text("roll"),
        shooter: text("shooter"),
        shoot_date,
        frame_rate: rate.map(|r| (r.num, r.den)),
        start_timecode,
        transcript: Some(options),
        priority: rushes_common::job::DEFAULT_PRIORITY,
    };
    Ok(new)
}

/// `201` with the upload, its job (whose result names the transcript) and the transcript's id.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::Transcribe).await?;
    let received = upload::receive(&state, &caller, multipart, &FIELDS).await?;
    let new = describe(&received)?;
    let created = upload::create(&state, received, new, &caller).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "upload": created.upload, "job": created.job, "transcript_id": created.transcript_id })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListUploads {
    limit: Option<i64>,
    before: Option<Uuid>,
}

/// The caller's uploads for transcription (everyone's, for admins), newest first.
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListUploads>,
) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let rows: Vec<UploadView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE purpose = 'transcription' AND ($1 OR uploaded_by_user_id = $2) \
           AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    )))
    .bind(caller.is_admin)
    .bind(caller.user_id)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&rows, limit, |u| u.id);
    let uploads: Vec<UploadView> = rows.into_iter().map(|u| u.finish(BASE)).collect();
    Ok(axum::Json(json!({ "uploads": uploads, "next_before": next })))
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    let upload = own(&state, &caller, id).await?;
    let transcript: Option<Uuid> = sqlx::query_scalar("SELECT id FROM transcripts WHERE upload_id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    let mut body = serde_json::to_value(&upload).map_err(|e| ApiError::Internal(e.into()))?;
    body["transcript_id"] = json!(transcript);
    Ok(axum::Json(body))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    own(&state, &caller, id).await?;
    upload::delete(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(Uuid, String)>,
    request: Request,
) -> ApiResult<Response> {
    own(&state, &caller, id).await?;
    upload::serve_output(&state, id, &name, request).await
}
