//! Review files: cuts and other files uploaded to a production for people to watch and
//! share (`/api/v1/productions/{id}/review-files`, `/api/v1/review-files/{id}`).
//! Uploading and retranscoding need the `transcode` policy on the production, deleting
//! `edit_metadata`, watching `view`.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::Path;
use crate::state::AppState;
use crate::upload::{self, NewUpload, UPLOAD_COLUMNS, UploadView};

const BASE: &str = "/api/v1/review-files";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/productions/{id}/review-files",
            get(list).post(create).layer(DefaultBodyLimit::disable()),
        )
        .route("/review-files/{id}", get(show).delete(remove))
        .route("/review-files/{id}/retranscode", post(retranscode))
        .route("/review-files/{id}/media/{name}", get(media))
}

/// The review file `id` if the caller holds `policy` on its production (404 otherwise,
/// so that ids of productions one cannot see are not confirmed).
pub(crate) async fn authorised(state: &AppState, caller: &Caller, id: Uuid, policy: Policy) -> ApiResult<UploadView> {
    let not_found = || ApiError::NotFound(format!("no review file {id}"));
    let file = upload::load(state, id).await.map_err(|_| not_found())?;
    let Some(production) = file.production_id.filter(|_| file.purpose == "review") else {
        return Err(not_found());
    };
    caller
        .require(state, policy, production)
        .await
        .map_err(|err| match err {
            ApiError::NotFound(_) => not_found(),
            err => err,
        })?;
    Ok(file)
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(production): Path<Uuid>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&state, Policy::Transcode, production).await?;
    let priority: i16 = sqlx::query_scalar("SELECT priority FROM productions WHERE id = $1")
        .bind(production)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no production {production}")))?;
    let received = upload::receive(&state, &caller, multipart, &["title"]).await?;
    let title = received.field("title").unwrap_or(&received.file_name).to_owned();
    let new = NewUpload {
        purpose: "review",
        production_id: Some(production),
        title,
        roll: None,
        shooter: None,
        shoot_date: None,
        frame_rate: None,
        start_timecode: None,
        transcript: None,
        priority: u8::try_from(priority).unwrap_or(rushes_common::job::DEFAULT_PRIORITY),
    };
    let created = upload::create(&state, received, new, &caller).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "review_file": created.upload, "job": created.job })),
    ))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(production): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    caller.require(&state, Policy::View, production).await?;
    let files: Vec<UploadView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE production_id = $1 AND purpose = 'review' ORDER BY id DESC"
    )))
    .bind(production)
    .fetch_all(&state.db)
    .await?;
    let files: Vec<UploadView> = files.into_iter().map(|f| f.finish(BASE)).collect();
    Ok(axum::Json(json!({ "review_files": files })))
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<UploadView>> {
    Ok(axum::Json(authorised(&state, &caller, id, Policy::View).await?))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    authorised(&state, &caller, id, Policy::EditMetadata).await?;
    upload::delete(&state, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn retranscode(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    authorised(&state, &caller, id, Policy::Transcode).await?;
    let mut tx = rushes_common::job::store::Tx::begin(&state.db).await?;
    let job = upload::queue_transcode(&mut tx, id, rushes_common::job::DEFAULT_PRIORITY, &caller.name).await?;
    crate::audit::record(
        &mut *tx,
        &caller,
        crate::audit::Change {
            action: "review_file.retranscode",
            target_type: "review_file",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(json!({ "job_id": job.id })),
        },
    )
    .await?;
    let published = tx.commit(&state.publisher).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "job": published.first().unwrap_or(&job) })),
    ))
}

async fn media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(Uuid, String)>,
    request: Request,
) -> ApiResult<Response> {
    authorised(&state, &caller, id, Policy::View).await?;
    upload::serve_output(&state, id, &name, request).await
}
