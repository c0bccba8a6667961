//! Share links: `POST /api/v1/clips/{id}/share` and `POST /api/v1/review-files/{id}/share`
//! make an expiring, optionally password-protected link to one clip's or one review
//! file's proxy; `/share/{token}` (public) shows what it names and counts the view;
//! `/share/{token}/{file}` serves only that proxy, poster or scrub sprite, with range
//! requests. Expired and revoked links answer 410.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, Policy, hash_password, new_token, token_digest, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Files a share link serves.
const SHARED_FILES: [&str; 5] = ["proxy.mp4", "proxy.m4a", "poster.jpg", "sprite.jpg", "sprite.vtt"];
const DEFAULT_HOURS: i32 = 72;
const MAX_HOURS: i32 = 24 * 30;

/// Authenticated routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/clips/{id}/share", post(share_clip))
        .route("/review-files/{id}/share", post(share_review_file))
        .route("/share-links", get(list))
        .route("/share-links/{id}", delete(revoke))
}

/// Public routes (outside `/api/v1`).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/share/{token}", get(open))
        .route("/share/{token}/{name}", get(file))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShare {
    expires_in_hours: Option<i32>,
    password: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct ShareView {
    id: Uuid,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
    protected: bool,
    views: i32,
    revoked_at: Option<DateTime<Utc>>,
    created_by: String,
    created_at: DateTime<Utc>,
}

async fn clip_production(state: &AppState, clip: Uuid) -> ApiResult<Uuid> {
    sqlx::query_scalar("SELECT production_id FROM clips WHERE id = $1")
        .bind(clip)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no clip {clip}")))
}

/// What a link names.
#[derive(Debug, Clone, Copy)]
enum Target {
    Clip(Uuid),
    ReviewFile(Uuid),
}

async fn share_clip(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewShare>,
) -> ApiResult<impl IntoResponse> {
    let production = clip_production(&state, id).await?;
    caller
        .require(&state, Policy::View, production)
        .await
        .map_err(|_| ApiError::NotFound(format!("no clip {id}")))?;
    create(&state, &caller, Target::Clip(id), body).await
}

async fn share_review_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewShare>,
) -> ApiResult<impl IntoResponse> {
    super::review_files::authorised(&state, &caller, id, Policy::View).await?;
    create(&state, &caller, Target::ReviewFile(id), body).await
}

async fn create(
    state: &AppState,
    caller: &Caller,
    target: Target,
    body: NewShare,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let hours = body.expires_in_hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::Unprocessable(format!("expires_in_hours: 1 to {MAX_HOURS}")));
    }
    let password = match body.password.filter(|p| !p.is_empty()) {
        Some(p) if p.chars().count() < 4 => {
            return Err(ApiError::Unprocessable("password: at least 4 characters".into()));
        }
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let token = new_token();
    let share: ShareView = sqlx::query_as(
        "INSERT INTO share_links (id, clip_id, upload_id, token_hash, password_hash, expires_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6), $7) \
         RETURNING id, clip_id, upload_id, expires_at, password_hash IS NOT NULL AS protected, views, revoked_at, \
                   created_by, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(match target {
        Target::Clip(id) => Some(id),
        Target::ReviewFile(_) => None,
    })
    .bind(match target {
        Target::ReviewFile(id) => Some(id),
        Target::Clip(_) => None,
    })
    .bind(token_digest(&token))
    .bind(password)
    .bind(hours)
    .bind(&caller.name)
    .fetch_one(&state.db)
    .await?;
    let url = format!("{}/share/{token}", state.public_url);
    Ok((StatusCode::CREATED, axum::Json(json!({ "share": share, "url": url }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListShares {
    clip_id: Option<Uuid>,
    review_file_id: Option<Uuid>,
}

/// Admins see every link; others the links they made.
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListShares>,
) -> ApiResult<axum::Json<Value>> {
    let shares: Vec<ShareView> = sqlx::query_as(
        "SELECT id, clip_id, upload_id, expires_at, password_hash IS NOT NULL AS protected, views, revoked_at, \
                created_by, created_at \
         FROM share_links WHERE ($1::uuid IS NULL OR clip_id = $1) AND ($4::uuid IS NULL OR upload_id = $4) \
               AND ($2 OR created_by = $3) \
         ORDER BY id DESC LIMIT 1000",
    )
    .bind(q.clip_id)
    .bind(caller.is_admin)
    .bind(&caller.name)
    .bind(q.review_file_id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "share_links": shares })))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let revoked: Option<Uuid> = sqlx::query_scalar(
        "UPDATE share_links SET revoked_at = now() \
         WHERE id = $1 AND revoked_at IS NULL AND ($2 OR created_by = $3) RETURNING id",
    )
    .bind(id)
    .bind(caller.is_admin)
    .bind(&caller.name)
    .fetch_optional(&state.db)
    .await?;
    match revoked {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!("no active share link {id} of yours"))),
    }
}

#[derive(sqlx::FromRow)]
struct Link {
    id: Uuid,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    password_hash: Option<String>,
    live: bool,
}

#[derive(Debug, Deserialize)]
struct Access {
    password: Option<String>,
}

/// The link for `token` if it is live and the password (query or `X-Share-Password`) fits.
async fn resolve(state: &AppState, token: &str, headers: &HeaderMap, access: Access) -> ApiResult<Link> {
    let link: Link = sqlx::query_as(
        "SELECT id, clip_id, upload_id, password_hash, (revoked_at IS NULL AND expires_at > now()) AS live \
         FROM share_links WHERE token_hash = $1",
    )
    .bind(token_digest(token))
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound("no such share link".into()))?;
    if !link.live {
        return Err(ApiError::Gone("this share link has expired or was revoked".into()));
    }
    if let Some(hash) = &link.password_hash {
        let given = access
            .password
            .or_else(|| {
                headers
                    .get("x-share-password")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if given.is_empty() || !verify_password(given, hash.clone()).await? {
            return Err(ApiError::Forbidden("this share link needs its password".into()));
        }
    }
    Ok(link)
}

async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Query(access): Query<Access>,
) -> ApiResult<axum::Json<Value>> {
    let link = resolve(&state, &token, &headers, access).await?;
    sqlx::query("UPDATE share_links SET views = views + 1 WHERE id = $1")
        .bind(link.id)
        .execute(&state.db)
        .await?;
    let (name, duration, outputs): (String, Option<f64>, Value) = sqlx::query_as(
        "SELECT name, duration_s, outputs FROM clips WHERE id = $1 \
         UNION ALL SELECT title, duration_s, outputs FROM uploads WHERE id = $2",
    )
    .bind(link.clip_id)
    .bind(link.upload_id)
    .fetch_one(&state.db)
    .await?;
    let mut files = serde_json::Map::new();
    if let Value::Object(map) = outputs {
        for (key, value) in map {
            if let Some(file) = value.as_str().filter(|f| SHARED_FILES.contains(f)) {
                files.insert(key, json!(format!("/share/{token}/{file}")));
            }
        }
    }
    Ok(axum::Json(
        json!({ "name": name, "duration_s": duration, "files": files }),
    ))
}

async fn file(
    State(state): State<AppState>,
    Path((token, name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(access): Query<Access>,
    request: Request,
) -> ApiResult<Response> {
    if !SHARED_FILES.contains(&name.as_str()) {
        return Err(ApiError::NotFound(format!("a share link serves no `{name}`")));
    }
    let link = resolve(&state, &token, &headers, access).await?;
    match (link.clip_id, link.upload_id) {
        (Some(clip), _) => super::clips::serve_output(&state, clip, &name, request).await,
        (None, Some(upload)) => crate::upload::serve_output(&state, upload, &name, request).await,
        (None, None) => Err(ApiError::NotFound("this share link names nothing".into())),
    }
}
