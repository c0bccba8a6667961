//! Uploaded files, whatever they are for (review files of a production, audio or video
//! sent for transcription): the multipart body streamed to disk under a size limit,
//! the `uploads` row with its `transcode_upload` job, the view the API shows, serving
//! its outputs and removing it. Nothing half-received is left behind.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::Request;
use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use rushes_common::job::JobRecord;
use rushes_common::job::media::TranscodeUpload;
use rushes_common::job::store::{self, NewJob, Tx};
use rushes_common::media::{UPLOAD_ORIGINAL, is_output_name};
use rushes_common::transcripts::{self, Options};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The longest text field (title, shooter, …) a multipart upload may carry.
const MAX_FIELD_BYTES: usize = 4096;

/// What a multipart upload brought: the file (already in its folder as `original`)
/// and the text fields. Dropped without [`Received::keep`], the folder is removed.
pub struct Received {
    pub id: Uuid,
    pub file_name: String,
    pub size: u64,
    pub fields: HashMap<String, String>,
    dir: Option<PathBuf>,
}

impl Received {
    /// The file stays: its row exists now.
    pub fn keep(mut self) {
        self.dir = None;
    }

    /// A text field, trimmed; `None` when absent or empty.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // A folder of many gigabytes takes a while to unlink: never on an async thread.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || remove_dir(dir));
                }
                Err(_) => remove_dir(dir),
            }
        }
    }
}

fn remove_dir(dir: PathBuf) {
    if let Err(err) = std::fs::remove_dir_all(&dir)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot remove an upload's folder");
    }
}

/// Reads a multipart body: exactly one `file` part (streamed to disk, at most the
/// configured upload size) and text parts named in `fields`; any other part is refused.
pub async fn receive(
    state: &AppState,
    caller: &Caller,
    multipart: Result<Multipart, MultipartRejection>,
    fields: &[&str],
) -> ApiResult<Received> {
    let mut multipart =
        multipart.map_err(|e| ApiError::UnsupportedMediaType(format!("expected multipart/form-data: {e}")))?;
    let limit = size_limit(state, caller).await?;
    let id = Uuid::now_v7();
    let dir = state.media.upload_dir(id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| internal(e, "cannot create the upload folder"))?;
    let mut received = Received {
        id,
        file_name: String::new(),
        size: 0,
        fields: HashMap::new(),
        dir: Some(dir.clone()),
    };
    let mut have_file = false;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if have_file {
                return Err(ApiError::Unprocessable("file: one file per upload".into()));
            }
            have_file = true;
            received.file_name = display_name(field.file_name());
            received.size = save_file(&limit, field, &dir.join(UPLOAD_ORIGINAL)).await?;
        } else if fields.contains(&name.as_str()) {
            let text = read_text(field, &name).await?;
            received.fields.insert(name, text);
        } else {
            return Err(ApiError::Unprocessable(format!(
                "unknown field `{name}` (expected file, {})",
                fields.join(", ")
            )));
        }
    }
    if !have_file {
        return Err(ApiError::Unprocessable(
            "file: missing (a multipart part named `file`)".into(),
        ));
    }
    if received.size == 0 {
        return Err(ApiError::Unprocessable("file: empty".into()));
    }
    Ok(received)
}

/// How large this caller's next file may be: the upload limit, or what is left of
/// their quota if that is less.
struct SizeLimit {
    bytes: u64,
    why: String,
}

async fn size_limit(state: &AppState, caller: &Caller) -> ApiResult<SizeLimit> {
    let limit = SizeLimit {
        bytes: state.upload_max_bytes,
        why: format!("the upload limit of {} bytes", state.upload_max_bytes),
    };
    let (Some(user), quota @ 1..) = (caller.user_id, state.upload_quota_bytes) else {
        return Ok(limit);
    };
    let used: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(size_bytes), 0)::bigint FROM uploads WHERE uploaded_by_user_id = $1")
            .bind(user)
            .fetch_one(&state.db)
            .await?;
    let left = quota.saturating_sub(u64::try_from(used).unwrap_or(0));
    if left == 0 {
        return Err(ApiError::PayloadTooLarge(format!(
            "your uploads use your whole quota of {quota} bytes: delete some first"
        )));
    }
    if left < limit.bytes {
        return Ok(SizeLimit {
            bytes: left,
            why: format!("what is left of your upload quota ({left} of {quota} bytes)"),
        });
    }
    Ok(limit)
}

async fn save_file(limit: &SizeLimit, mut field: Field<'_>, path: &std::path::Path) -> ApiResult<u64> {
    let mut out = tokio::fs::File::create(path)
        .await
        .map_err(|e| internal(e, "cannot create the upload file"))?;
    let mut size: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        size += chunk.len() as u64;
        if size > limit.bytes {
            return Err(ApiError::PayloadTooLarge(format!("file: larger than {}", limit.why)));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| internal(e, "cannot write the upload file"))?;
    }
    out.flush()
        .await
        .map_err(|e| internal(e, "cannot write the upload file"))?;
    Ok(size)
}

async fn read_text(mut field: Field<'_>, name: &str) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FIELD_BYTES {
            return Err(ApiError::Unprocessable(format!(
                "{name}: at most {MAX_FIELD_BYTES} bytes"
            )));
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| ApiError::Unprocessable(format!("{name}: not UTF-8 text")))?;
    if text.contains('\0') {
        return Err(ApiError::Unprocessable(format!(
            "{name}: must not contain NUL characters"
        )));
    }
    Ok(text)
}

/// The uploaded name without any folder part, for display only (never a path).
fn display_name(name: Option<&str>) -> String {
    let name = name.unwrap_or_default();
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.is_empty() { "upload".to_owned() } else { clean }
}

fn multipart_error(err: MultipartError) -> ApiError {
    let status = err.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(err.body_text())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", err.body_text()))
    }
}

fn internal(err: std::io::Error, what: &'static str) -> ApiError {
    ApiError::Internal(anyhow::Error::new(err).context(what))
}

/// What the uploader says about a new upload.
pub struct NewUpload {
    pub purpose: &'static str,
    pub production_id: Option<Uuid>,
    pub title: String,
    pub roll: Option<String>,
    pub shooter: Option<String>,
    pub shoot_date: Option<NaiveDate>,
    pub frame_rate: Option<(i32, i32)>,
    pub start_timecode: Option<String>,
    /// For an upload sent for transcription: how, once it is transcoded.
    pub transcript: Option<Options>,
    pub priority: u8,
}

/// What [`create`] made: the upload, its transcode job, and its transcript (if any).
pub struct Created {
    pub upload: UploadView,
    pub job: JobRecord,
    pub transcript_id: Option<Uuid>,
}

/// Inserts the upload's row, its transcode job (and its transcript) in one
/// transaction, keeps the file once that is committed, then publishes the job.
///
/// The database work runs in its own task: a client that hangs up while the commit is
/// under way cannot cancel it halfway, so a committed upload never loses its file and an
/// upload that did not commit never leaves one behind.
pub async fn create(state: &AppState, received: Received, new: NewUpload, caller: &Caller) -> ApiResult<Created> {
    let db = state.db.clone();
    let publisher = state.publisher.clone();
    let uploader = (caller.name.clone(), caller.user_id);
    let committed = tokio::spawn(async move {
        let mut tx = Tx::begin(&db).await?;
        let job = insert(&mut tx, &received, &new, &uploader).await?;
        let transcript_id = match &new.transcript {
            Some(options) => {
                Some(transcripts::insert_for_upload(&mut tx, received.id, options, &uploader.0, uploader.1).await?)
            }
            None => None,
        };
        // Published only once the file is kept, so that no worker looks for it sooner.
        let mut jobs = tx.commit_unpublished(&publisher).await?;
        let id = received.id;
        received.keep();
        store::publish_or_leave_to_relay(&db, &publisher, &mut jobs).await;
        let job = jobs.pop().unwrap_or(job);
        Ok::<_, ApiError>((id, job, transcript_id))
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("the upload's transaction did not finish")))?;
    let (id, job, transcript_id) = committed?;
    Ok(Created {
        upload: load(state, id).await?,
        job,
        transcript_id,
    })
}

/// Inserts the upload's row and queues its transcode (in the caller's transaction).
async fn insert(
    tx: &mut Tx,
    received: &Received,
    new: &NewUpload,
    (name, user_id): &(String, Option<Uuid>),
) -> ApiResult<JobRecord> {
    let (num, den) = new.frame_rate.map_or((None, None), |(n, d)| (Some(n), Some(d)));
    sqlx::query(
        "INSERT INTO uploads (id, purpose, production_id, title, file_name, size_bytes, roll, shooter, shoot_date, \
                              frame_rate_num, frame_rate_den, start_timecode, language, translate, uploaded_by, \
                              uploaded_by_user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(received.id)
    .bind(new.purpose)
    .bind(new.production_id)
    .bind(&new.title)
    .bind(&received.file_name)
    .bind(i64::try_from(received.size).unwrap_or(i64::MAX))
    .bind(&new.roll)
    .bind(&new.shooter)
    .bind(new.shoot_date)
    .bind(num)
    .bind(den)
    .bind(&new.start_timecode)
    .bind(new.transcript.as_ref().and_then(|o| o.language.as_deref()))
    .bind(new.transcript.as_ref().is_some_and(|o| o.translate))
    .bind(name)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    queue_transcode(tx, received.id, new.priority, name).await
}

/// Enqueues a new `transcode_upload` job, which the store makes the upload's current
/// one (in the caller's transaction).
pub async fn queue_transcode(tx: &mut Tx, id: Uuid, priority: u8, requested_by: &str) -> ApiResult<JobRecord> {
    let job = NewJob::of(&TranscodeUpload { upload_id: id })
        .priority(priority)
        .requested_by(requested_by);
    Ok(tx.enqueue_one(job).await?)
}

/// An upload as the API shows it; `media` holds URLs of its outputs.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct UploadView {
    pub id: Uuid,
    pub purpose: String,
    pub production_id: Option<Uuid>,
    pub title: String,
    pub file_name: String,
    pub size_bytes: i64,
    pub roll: Option<String>,
    pub shooter: Option<String>,
    pub shoot_date: Option<NaiveDate>,
    #[serde(skip)]
    pub frame_rate_num: Option<i32>,
    #[serde(skip)]
    pub frame_rate_den: Option<i32>,
    pub start_timecode: Option<String>,
    pub language: Option<String>,
    pub translate: bool,
    pub container: Option<String>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub duration_s: Option<f64>,
    pub audio_tracks: i32,
    pub transcode_state: String,
    pub transcode_job_id: Option<Uuid>,
    pub transcode_error: Option<String>,
    #[serde(skip)]
    pub outputs: Value,
    pub transcoded_at: Option<DateTime<Utc>>,
    pub uploaded_by: String,
    #[serde(skip)]
    pub uploaded_by_user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub frame_rate: Option<String>,
    #[sqlx(skip)]
    pub media: Value,
}

pub const UPLOAD_COLUMNS: &str = "id, purpose, production_id, title, file_name, size_bytes, roll, shooter, shoot_date, \
     frame_rate_num, frame_rate_den, start_timecode, language, translate, container, video_codec, audio_codec, width, \
     height, duration_s, audio_tracks, transcode_state::text AS transcode_state, transcode_job_id, transcode_error, \
     outputs, transcoded_at, uploaded_by, uploaded_by_user_id, created_at";

impl UploadView {
    /// Fills the derived fields: the frame rate as `num/den` and output URLs under `base`.
    pub fn finish(mut self, base: &str) -> Self {
        self.frame_rate = match (self.frame_rate_num, self.frame_rate_den) {
            (Some(n), Some(d)) => Some(format!("{n}/{d}")),
            _ => None,
        };
        let mut media = serde_json::Map::new();
        if let Value::Object(outputs) = &self.outputs {
            for (key, value) in outputs {
                match value {
                    Value::String(file) => {
                        media.insert(key.clone(), json!(format!("{base}/{}/media/{file}", self.id)));
                    }
                    Value::Array(files) => {
                        let urls: Vec<String> = files
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|f| format!("{base}/{}/media/{f}", self.id))
                            .collect();
                        media.insert(key.clone(), json!(urls));
                    }
                    _ => {}
                }
            }
        }
        self.media = Value::Object(media);
        self
    }

    /// Where the API serves this upload: review files and transcription uploads differ.
    pub fn base_path(&self) -> &'static str {
        if self.purpose == "review" {
            "/api/v1/review-files"
        } else {
            "/api/v1/uploads"
        }
    }
}

/// The upload `id`, or 404.
pub async fn load(state: &AppState, id: Uuid) -> ApiResult<UploadView> {
    let view: UploadView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no upload {id}")))?;
    let base = view.base_path();
    Ok(view.finish(base))
}

/// Deletes the row (share links and transcripts follow) and the upload's folder.
pub async fn delete(state: &AppState, id: Uuid) -> ApiResult<()> {
    let deleted: Option<Uuid> = sqlx::query_scalar("DELETE FROM uploads WHERE id = $1 RETURNING id")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    if deleted.is_none() {
        return Err(ApiError::NotFound(format!("no upload {id}")));
    }
    remove_folder(state, id).await;
    Ok(())
}

/// Removes an upload's folder (its row is gone already); failures are logged.
pub async fn remove_folder(state: &AppState, id: Uuid) {
    let dir = state.media.upload_dir(id);
    if let Err(err) = tokio::task::spawn_blocking(move || remove_dir(dir)).await {
        tracing::warn!(upload.id = %id, error = %err, "cannot remove an upload's folder");
    }
}

/// Serves one output of an upload (whitelisted names only) with range requests.
pub async fn serve_output(state: &AppState, id: Uuid, name: &str, request: Request) -> ApiResult<Response> {
    if !is_output_name(name) {
        return Err(ApiError::NotFound(format!("an upload has no `{name}`")));
    }
    crate::routes::clips::serve_file(state.media.upload_dir(id).join(name), request).await
}
