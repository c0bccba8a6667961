//! Share links: `POST /api/v1/clips/{id}/share` and `POST /api/v1/review-files/{id}/share`
//! make an expiring, optionally password-protected link to one clip's or one review
//! file's proxy; `/share/{token}` (public) shows what it names and counts the view;
//! `/share/{token}/{file}` serves only that proxy, poster or scrub sprite, with range
//! requests.
//!
//! Making a link needs the `share` policy on the production; making and revoking are
//! audited. A link is served only while its maker still may share that production
//! (active, not deleted, still holding `share`): a maker who leaves the group, is
//! deactivated or is deleted takes their links down with them. Expired, revoked and
//! such orphaned links answer 410.
//!
//! A password (at least 8 characters) is given in the `X-Share-Password` header or a
//! POST body, never in the URL; wrong ones are limited per link ([`throttle::SHARE_LINK`]).
//! A right one buys a short-lived signed grant ([`crate::share_grant`]), sent back as a
//! cookie scoped to the link and in the body, which stands in for the password (a
//! player's range requests pay no Argon2 check each).

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use rushes_common::job::media::ShareProxy;
use rushes_common::job::store::{NewJob, Tx};
use rushes_common::media::share_dir;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy, hash_password, new_token, token_digest, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::{share_grant, throttle};

/// Files a share link serves.
const SHARED_FILES: [&str; 5] = ["proxy.mp4", "proxy.m4a", "poster.jpg", "sprite.jpg", "sprite.vtt"];
const DEFAULT_HOURS: i32 = 72;
/// A viewer's proxy is wanted soon: someone is about to open the link.
const SHARE_PROXY_PRIORITY: u8 = 60;
const MAX_HOURS: i32 = 24 * 30;
/// Shortest and longest link password, in characters.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = rushes_common::accounts::MAX_PASSWORD;

/// Authenticated routes (under `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/clips/{id}/share", post(share_clip))
        .route("/review-files/{id}/share", post(share_review_file))
        .route("/share-links", get(list))
        .route("/share-links/{id}", patch(update).delete(revoke))
}

/// Public routes (outside `/api/v1`).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/share/{token}", get(open).post(open_with_body))
        .route("/share/{token}/{name}", get(file))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewShare {
    expires_in_hours: Option<i32>,
    password: Option<String>,
    /// Who the link is for: their name is burned into the link's own proxy.
    viewer: Option<String>,
}

/// Longest viewer name, in characters.
const MAX_VIEWER: usize = 80;

/// A viewer's name as stored: trimmed, 1 to [`MAX_VIEWER`] characters, one line.
fn checked_viewer(viewer: Option<String>) -> ApiResult<Option<String>> {
    let Some(viewer) = viewer.map(|v| v.trim().to_owned()) else {
        return Ok(None);
    };
    if viewer.is_empty() || viewer.chars().count() > MAX_VIEWER || viewer.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "viewer: a name of 1 to {MAX_VIEWER} characters on one line"
        )));
    }
    Ok(Some(viewer))
}

/// Whether a link may serve what it names (SQL over `l`, `c`, `u`): its maker may still
/// share it (the bootstrap token — no account, named `admin`, a name no user may take —
/// always may), and it is still shown at all (a hidden clip, or anything of an archived
/// production, is served by no link until it is shown again).
macro_rules! link_serves {
    () => {
        "((l.created_by_id IS NULL AND l.created_by = 'admin') \
          OR may_share(l.created_by_id, COALESCE(c.production_id, u.production_id))) \
         AND (c.id IS NULL OR NOT c.hidden) \
         AND NOT EXISTS (SELECT 1 FROM productions ap \
                         WHERE ap.id = COALESCE(c.production_id, u.production_id) AND ap.archived)"
    };
}

/// The links and what they name.
macro_rules! links_from {
    () => {
        " FROM share_links l LEFT JOIN clips c ON c.id = l.clip_id LEFT JOIN uploads u ON u.id = l.upload_id "
    };
}

macro_rules! share_select {
    () => {
        concat!(
            "SELECT l.id, l.clip_id, l.upload_id, COALESCE(c.production_id, u.production_id) AS production_id, \
                    l.expires_at, l.password_hash IS NOT NULL AS protected, l.views, l.revoked_at, l.created_by, \
                    l.created_by_id, l.created_at, l.viewer, \
                    (SELECT j.state::text FROM jobs j WHERE j.id = l.proxy_job_id) AS viewer_proxy, \
                    (l.revoked_at IS NULL AND l.expires_at > now() AND ",
            link_serves!(),
            ") AS active",
            links_from!()
        )
    };
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct ShareView {
    id: Uuid,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    production_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
    protected: bool,
    views: i32,
    revoked_at: Option<DateTime<Utc>>,
    /// The maker's name, for display; `created_by_id` is the account (none: the bootstrap token).
    created_by: String,
    created_by_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    /// Served now: not revoked, not expired, and its maker still may share it.
    active: bool,
    /// Who the link was made for (their name is burned into its proxy).
    viewer: Option<String>,
    /// The state of the job making that proxy (`succeeded`: ready).
    viewer_proxy: Option<String>,
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

impl Target {
    fn clip(self) -> Option<Uuid> {
        match self {
            Self::Clip(id) => Some(id),
            Self::ReviewFile(_) => None,
        }
    }

    fn review_file(self) -> Option<Uuid> {
        match self {
            Self::ReviewFile(id) => Some(id),
            Self::Clip(_) => None,
        }
    }
}

async fn share_clip(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewShare>,
) -> ApiResult<impl IntoResponse> {
    let production = clip_production(&state, id).await?;
    caller
        .require(&state, Policy::Share, production)
        .await
        .map_err(|err| match err {
            ApiError::NotFound(_) => ApiError::NotFound(format!("no clip {id}")),
            err => err,
        })?;
    create(&state, &caller, Target::Clip(id), body).await
}

async fn share_review_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewShare>,
) -> ApiResult<impl IntoResponse> {
    super::review_files::authorised(&state, &caller, id, Policy::Share).await?;
    create(&state, &caller, Target::ReviewFile(id), body).await
}

/// A link password's hash: `None` for an empty one (no password); refused outside
/// [`MIN_PASSWORD`]..=[`MAX_PASSWORD`] characters.
async fn checked_password(password: String) -> ApiResult<Option<String>> {
    let length = password.chars().count();
    if length == 0 {
        return Ok(None);
    }
    if length < MIN_PASSWORD {
        return Err(ApiError::Unprocessable(format!(
            "password: at least {MIN_PASSWORD} characters"
        )));
    }
    if length > MAX_PASSWORD {
        return Err(ApiError::Unprocessable(format!(
            "password: at most {MAX_PASSWORD} characters"
        )));
    }
    Ok(Some(hash_password(password).await?))
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
    let password = match body.password {
        Some(p) => checked_password(p).await?,
        None => None,
    };
    let viewer = checked_viewer(body.viewer)?;
    if viewer.is_some() {
        let pictureless: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM clips WHERE id = $1 AND width = 0) \
                 OR EXISTS (SELECT 1 FROM uploads WHERE id = $2 AND width = 0)",
        )
        .bind(target.clip())
        .bind(target.review_file())
        .fetch_one(&state.db)
        .await?;
        if pictureless {
            return Err(ApiError::Unprocessable(
                "viewer: this has sound only, no picture to carry the viewer's name".into(),
            ));
        }
    }
    let token = new_token();
    let id = Uuid::now_v7();
    let mut tx = Tx::begin(&state.db).await?;
    sqlx::query(
        "INSERT INTO share_links (id, clip_id, upload_id, token_hash, password_hash, expires_at, created_by, \
                                  created_by_id, viewer) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6), $7, $8, $9)",
    )
    .bind(id)
    .bind(target.clip())
    .bind(target.review_file())
    .bind(token_digest(&token))
    .bind(password)
    .bind(hours)
    .bind(&caller.name)
    .bind(caller.user_id)
    .bind(&viewer)
    .execute(&mut *tx)
    .await?;
    if viewer.is_some() {
        // The link's own proxy, with the name burned in; the job is the link's current one
        // before anyone can run it.
        let job = NewJob::of(&ShareProxy { share_id: id })
            .priority(SHARE_PROXY_PRIORITY)
            .requested_by(&caller.name);
        let job = tx.enqueue_one(job).await?;
        sqlx::query("UPDATE share_links SET proxy_job_id = $2 WHERE id = $1")
            .bind(id)
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
    }
    let share: ShareView = sqlx::query_as(concat!(share_select!(), "WHERE l.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        caller,
        Change {
            action: "share_link.create",
            target_type: "share_link",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(serde_json::to_value(&share).unwrap_or(Value::Null)),
        },
    )
    .await?;
    tx.commit(&state.publisher).await?;
    let url = format!("{}/share/{token}", state.public_url);
    Ok((StatusCode::CREATED, axum::Json(json!({ "share": share, "url": url }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListShares {
    clip_id: Option<Uuid>,
    review_file_id: Option<Uuid>,
    production_id: Option<Uuid>,
    /// The maker's username (case-insensitive).
    created_by: Option<String>,
    created_by_id: Option<Uuid>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

/// Admins see every link; others the links they made.
async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListShares>,
) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let shares: Vec<ShareView> = sqlx::query_as(concat!(
        share_select!(),
        "WHERE ($1::uuid IS NULL OR l.clip_id = $1) AND ($2::uuid IS NULL OR l.upload_id = $2) \
           AND ($3::uuid IS NULL OR COALESCE(c.production_id, u.production_id) = $3) \
           AND ($4::text IS NULL OR lower(l.created_by) = lower($4)) \
           AND ($5::uuid IS NULL OR l.created_by_id = $5) \
           AND ($6 OR l.created_by_id = $7) \
           AND ($8::uuid IS NULL OR l.id < $8) \
         ORDER BY l.id DESC LIMIT $9"
    ))
    .bind(q.clip_id)
    .bind(q.review_file_id)
    .bind(q.production_id)
    .bind(q.created_by.as_deref().map(str::trim))
    .bind(q.created_by_id)
    .bind(caller.is_admin)
    .bind(caller.user_id)
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&shares, limit, |s| s.id);
    Ok(axum::Json(json!({ "share_links": shares, "next_before": next_before })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareUpdate {
    /// A new expiry, this many hours from now.
    expires_in_hours: Option<i32>,
    /// A new password; `null` or empty removes it. Grants handed out for the old one
    /// stop working.
    #[serde(default, deserialize_with = "super::present")]
    password: Option<Option<String>>,
}

/// Changes a live link's expiry or password: its maker's own, or any for an admin
/// (as revoking). Audited, without the password.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<ShareUpdate>,
) -> ApiResult<axum::Json<ShareView>> {
    if body.expires_in_hours.is_none() && body.password.is_none() {
        return Err(ApiError::Unprocessable(
            "name expires_in_hours, password or both".into(),
        ));
    }
    if let Some(hours) = body.expires_in_hours
        && !(1..=MAX_HOURS).contains(&hours)
    {
        return Err(ApiError::Unprocessable(format!("expires_in_hours: 1 to {MAX_HOURS}")));
    }
    let password = match body.password.clone() {
        Some(password) => Some(checked_password(password.unwrap_or_default()).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let edited: Option<Uuid> = sqlx::query_scalar(
        "UPDATE share_links SET \
                expires_at = CASE WHEN $4::int IS NULL THEN expires_at ELSE now() + make_interval(hours => $4) END, \
                password_hash = CASE WHEN $5 THEN $6 ELSE password_hash END \
         WHERE id = $1 AND revoked_at IS NULL AND ($2 OR created_by_id = $3) RETURNING id",
    )
    .bind(id)
    .bind(caller.is_admin)
    .bind(caller.user_id)
    .bind(body.expires_in_hours)
    .bind(password.is_some())
    .bind(password.flatten())
    .fetch_optional(&mut *tx)
    .await?;
    if edited.is_none() {
        return Err(ApiError::NotFound(format!("no active share link {id} of yours")));
    }
    let share: ShareView = sqlx::query_as(concat!(share_select!(), "WHERE l.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let mut after = json!({ "expires_at": share.expires_at, "protected": share.protected });
    if body.password.is_some() {
        after["password_changed"] = json!(true);
    }
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "share_link.edit",
            target_type: "share_link",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(after),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(share))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let revoked: Option<(Uuid, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "UPDATE share_links SET revoked_at = now() \
         WHERE id = $1 AND revoked_at IS NULL AND ($2 OR created_by_id = $3) RETURNING id, clip_id, upload_id",
    )
    .bind(id)
    .bind(caller.is_admin)
    .bind(caller.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((_, clip_id, upload_id)) = revoked else {
        return Err(ApiError::NotFound(format!("no active share link {id} of yours")));
    };
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "share_link.revoke",
            target_type: "share_link",
            target_id: Some(id.to_string()),
            before: None,
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    // The viewer's copy, if one was made, goes with the link.
    if let Ok(dir) = target_dir(&state, clip_id, upload_id) {
        let dir = share_dir(&dir, id);
        if let Err(err) = tokio::fs::remove_dir_all(&dir).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(share.id = %id, error = %err, "cannot remove the link's own proxy");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every live link `user` made (the user is being deactivated or deleted).
pub(crate) async fn revoke_all_of<'e>(executor: impl sqlx::PgExecutor<'e>, user: Uuid) -> ApiResult<u64> {
    Ok(
        sqlx::query("UPDATE share_links SET revoked_at = now() WHERE created_by_id = $1 AND revoked_at IS NULL")
            .bind(user)
            .execute(executor)
            .await?
            .rows_affected(),
    )
}

#[derive(sqlx::FromRow)]
struct Link {
    id: Uuid,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    /// Made for this viewer: its proxy is its own, with their name burned in.
    viewer: Option<String>,
    password_hash: Option<String>,
    expires_at: DateTime<Utc>,
    live: bool,
}

/// A grant handed out for a right password.
struct Grant {
    token: String,
    expires_at: DateTime<Utc>,
}

/// Refuses a password in the query string (it would end up in logs and histories).
fn refuse_query_password(query: &HashMap<String, String>) -> ApiResult<()> {
    if query.contains_key("password") {
        return Err(ApiError::BadRequest(
            "a share link's password never goes in the URL: send it in the X-Share-Password header \
             or as {\"password\": …} in a POST body"
                .into(),
        ));
    }
    Ok(())
}

/// The link for `token` if it is live and the caller holds a grant for it or gives its
/// password (`password`, else the `X-Share-Password` header); with a new grant when the
/// password was checked.
async fn resolve(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
    password: Option<String>,
) -> ApiResult<(Link, Option<Grant>)> {
    let link: Link = sqlx::query_as(concat!(
        "SELECT l.id, l.clip_id, l.upload_id, l.viewer, l.password_hash, l.expires_at, \
                (l.revoked_at IS NULL AND l.expires_at > now() AND ",
        link_serves!(),
        ") AS live",
        links_from!(),
        "WHERE l.token_hash = $1"
    ))
    .bind(token_digest(token))
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound("no such share link".into()))?;
    if !link.live {
        return Err(ApiError::Gone("this share link has expired or was revoked".into()));
    }
    let Some(hash) = link.password_hash.clone() else {
        return Ok((link, None));
    };
    let now = Utc::now();
    if share_grant::presented(headers)
        .iter()
        .any(|grant| state.share_grants.check(grant, link.id, &hash, now))
    {
        return Ok((link, None));
    }
    let given = password
        .or_else(|| {
            headers
                .get("x-share-password")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            ApiError::Forbidden(
                "this share link needs its password: send it in the X-Share-Password header or as \
                 {\"password\": …} in a POST body"
                    .into(),
            )
        })?;
    if given.chars().count() > MAX_PASSWORD {
        return Err(ApiError::Forbidden("wrong password for this share link".into()));
    }
    let key = format!("share:{}", link.id);
    if let Err(limit) = throttle::attempt(&state.db, &[(key.clone(), throttle::SHARE_LINK)], now).await? {
        return Err(ApiError::TooManyRequests(format!(
            "too many wrong passwords for this share link; try again in {} s",
            limit.seconds(now)
        )));
    }
    let right = match verify_password(given, hash.clone()).await {
        Ok(right) => right,
        Err(err) => {
            throttle::refund(&state.db, &key).await?;
            return Err(err);
        }
    };
    if !right {
        return Err(ApiError::Forbidden("wrong password for this share link".into()));
    }
    throttle::refund(&state.db, &key).await?;
    let expires_at = (now + share_grant::GRANT_LIFETIME).min(link.expires_at);
    let grant = Grant {
        token: state.share_grants.sign(link.id, &hash, expires_at),
        expires_at,
    };
    Ok((link, Some(grant)))
}

/// The folder of what a link shares: its clip's or upload's.
fn target_dir(state: &AppState, clip: Option<Uuid>, upload: Option<Uuid>) -> ApiResult<std::path::PathBuf> {
    match (clip, upload) {
        (Some(clip), _) => Ok(state.media.clip_dir(clip)),
        (None, Some(upload)) => Ok(state.media.upload_dir(upload)),
        (None, None) => Err(ApiError::NotFound("this share link names nothing".into())),
    }
}

/// Adds the grant's cookie (scoped to the link) to a response.
fn with_grant(state: &AppState, token: &str, grant: Option<&Grant>, mut response: Response) -> Response {
    if let Some(grant) = grant {
        let cookie = share_grant::cookie(
            &grant.token,
            &format!("/share/{token}"),
            state.public_url.starts_with("https://"),
            grant.expires_at - Utc::now(),
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    password: Option<String>,
}

async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    refuse_query_password(&query)?;
    show(&state, &token, &headers, None).await
}

/// `POST /share/{token}` with `{"password"}`: what `GET` shows, for clients that would
/// rather not put the password in a header.
async fn open_with_body(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<OpenBody>,
) -> ApiResult<Response> {
    refuse_query_password(&query)?;
    show(&state, &token, &headers, body.password).await
}

/// What the link names and where its files are; counts the view.
async fn show(state: &AppState, token: &str, headers: &HeaderMap, password: Option<String>) -> ApiResult<Response> {
    let (link, grant) = resolve(state, token, headers, password).await?;
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
    let mut body = json!({ "name": name, "duration_s": duration, "files": files });
    if let Some(grant) = &grant {
        body["grant"] = json!({ "token": grant.token, "expires_at": grant.expires_at });
    }
    Ok(with_grant(
        state,
        token,
        grant.as_ref(),
        axum::Json(body).into_response(),
    ))
}

async fn file(
    State(state): State<AppState>,
    Path((token, name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> ApiResult<Response> {
    refuse_query_password(&query)?;
    if !SHARED_FILES.contains(&name.as_str()) {
        return Err(ApiError::NotFound(format!("a share link serves no `{name}`")));
    }
    let (link, grant) = resolve(&state, &token, &headers, None).await?;
    if link.viewer.is_some() && name == "proxy.mp4" {
        // The link's own copy, or none: never the unmarked proxy in its place.
        let own = share_dir(&target_dir(&state, link.clip_id, link.upload_id)?, link.id).join("proxy.mp4");
        if tokio::fs::try_exists(&own).await.unwrap_or(false) {
            let response = super::clips::serve_file(own, request).await?;
            return Ok(with_grant(&state, &token, grant.as_ref(), response));
        }
        let job: Option<String> = sqlx::query_scalar(
            "SELECT j.state::text FROM share_links l JOIN jobs j ON j.id = l.proxy_job_id WHERE l.id = $1",
        )
        .bind(link.id)
        .fetch_optional(&state.db)
        .await?;
        return Err(match job.as_deref() {
            Some("failed" | "dead" | "cancelled") => {
                ApiError::NotFound("this link's own copy, with its viewer's name, could not be made".into())
            }
            _ => ApiError::Unavailable(
                "this link's own copy, with its viewer's name, is still being made: try again shortly".into(),
            ),
        });
    }
    let response = match (link.clip_id, link.upload_id) {
        (Some(clip), _) => super::clips::serve_output(&state, clip, &name, request).await?,
        (None, Some(upload)) => crate::upload::serve_output(&state, upload, &name, request).await?,
        (None, None) => return Err(ApiError::NotFound("this share link names nothing".into())),
    };
    Ok(with_grant(&state, &token, grant.as_ref(), response))
}
