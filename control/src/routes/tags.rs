//! `/api/v1/tags` and clip tags and markers. Creating, renaming and deleting tags needs
//! the `manage_tags` policy; applying a tag or placing a marker needs only to see the
//! clip's production.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, patch, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tags", post(create).get(list))
        .route("/tags/{id}", patch(rename).delete(remove))
        .route("/clips/{id}/tags", post(apply))
        .route("/clips/{id}/tags/{tag_id}", delete(unapply))
        .route("/clips/{id}/markers", post(add_marker).get(markers))
        .route("/markers/{id}", delete(remove_marker))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct TagView {
    id: Uuid,
    name: String,
    clips: i64,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    name: String,
}

fn tag_name(body: &TagBody) -> ApiResult<&str> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::Unprocessable("name: 1 to 100 characters".into()));
    }
    Ok(name)
}

fn duplicate(name: &str) -> impl Fn(sqlx::Error) -> ApiError + '_ {
    move |err| match ApiError::from(err) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("a tag called `{name}` exists")),
        other => other,
    }
}

async fn log(
    state: &AppState,
    caller: &Caller,
    action: &str,
    id: Uuid,
    before: Option<Value>,
    after: Option<Value>,
) -> ApiResult<()> {
    let change = Change {
        action,
        target_type: "tag",
        target_id: Some(id.to_string()),
        before,
        after,
    };
    audit::record(&state.db, caller, change).await
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<TagBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageTags).await?;
    let name = tag_name(&body)?;
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO tags (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(&state.db)
        .await
        .map_err(duplicate(name))?;
    log(&state, &caller, "tag.create", id, None, Some(json!({ "name": name }))).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "id": id, "name": name }))))
}

/// Every tag, each with the number of clips it is on that the caller can see (a count
/// over productions they cannot see would tell them about those).
async fn list(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<axum::Json<Value>> {
    let tags: Vec<TagView> = sqlx::query_as(
        "SELECT t.id, t.name, \
                (SELECT count(*) FROM clip_tags ct JOIN clips c ON c.id = ct.clip_id \
                 WHERE ct.tag_id = t.id \
                   AND ($1::uuid IS NULL OR (c.production_id IN (SELECT production_id FROM visible_productions($1)) \
                                             AND NOT c.hidden))) \
                AS clips, \
                t.created_at \
         FROM tags t ORDER BY lower(t.name) LIMIT 5000",
    )
    .bind(caller.scope())
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "tags": tags })))
}

async fn rename(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<TagBody>,
) -> ApiResult<axum::Json<Value>> {
    caller.require_global(&state, Policy::ManageTags).await?;
    let name = tag_name(&body)?;
    let before: Option<String> = sqlx::query_scalar("SELECT name FROM tags WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    let Some(before) = before else {
        return Err(ApiError::NotFound(format!("no tag {id}")));
    };
    sqlx::query("UPDATE tags SET name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(&state.db)
        .await
        .map_err(duplicate(name))?;
    log(
        &state,
        &caller,
        "tag.rename",
        id,
        Some(json!({ "name": before })),
        Some(json!({ "name": name })),
    )
    .await?;
    Ok(axum::Json(json!({ "id": id, "name": name })))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_global(&state, Policy::ManageTags).await?;
    let name: Option<String> = sqlx::query_scalar("DELETE FROM tags WHERE id = $1 RETURNING name")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    let Some(name) = name else {
        return Err(ApiError::NotFound(format!("no tag {id}")));
    };
    log(&state, &caller, "tag.delete", id, Some(json!({ "name": name })), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The clip's production, if the caller may see it (a hidden clip is "not found").
async fn visible_clip(state: &AppState, caller: &Caller, clip: Uuid) -> ApiResult<()> {
    let production: Option<Uuid> = sqlx::query_scalar("SELECT production_id FROM clips WHERE id = $1")
        .bind(clip)
        .fetch_optional(&state.db)
        .await?;
    let production = production.ok_or_else(|| ApiError::NotFound(format!("no clip {clip}")))?;
    caller
        .require(state, Policy::View, production)
        .await
        .map_err(|_| ApiError::NotFound(format!("no clip {clip}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Apply {
    tag_id: Uuid,
}

async fn apply(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<Apply>,
) -> ApiResult<StatusCode> {
    visible_clip(&state, &caller, id).await?;
    sqlx::query("INSERT INTO clip_tags (clip_id, tag_id, tagged_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(body.tag_id)
        .bind(&caller.name)
        .execute(&state.db)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Unprocessable(_) => ApiError::Unprocessable(format!("tag_id: no tag {}", body.tag_id)),
            other => other,
        })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unapply(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, tag)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    visible_clip(&state, &caller, id).await?;
    let removed = sqlx::query("DELETE FROM clip_tags WHERE clip_id = $1 AND tag_id = $2")
        .bind(id)
        .bind(tag)
        .execute(&state.db)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("clip {id} has no tag {tag}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct MarkerView {
    id: Uuid,
    clip_id: Uuid,
    at_s: f64,
    label: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMarker {
    at_s: f64,
    #[serde(default)]
    label: String,
}

async fn add_marker(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewMarker>,
) -> ApiResult<impl IntoResponse> {
    visible_clip(&state, &caller, id).await?;
    let duration: Option<f64> = sqlx::query_scalar("SELECT duration_s FROM clips WHERE id = $1")
        .bind(id)
        .fetch_one(&state.db)
        .await?;
    if !body.at_s.is_finite() || body.at_s < 0.0 || duration.is_some_and(|d| body.at_s > d) {
        return Err(ApiError::Unprocessable(format!(
            "at_s: a time within the clip (0 to {} s)",
            duration.unwrap_or(0.0)
        )));
    }
    let marker: MarkerView = sqlx::query_as(
        "INSERT INTO markers (id, clip_id, at_s, label, created_by) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, clip_id, at_s, label, created_by, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .bind(body.at_s)
    .bind(body.label.trim())
    .bind(&caller.name)
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, axum::Json(marker)))
}

async fn markers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    visible_clip(&state, &caller, id).await?;
    let markers: Vec<MarkerView> = sqlx::query_as(
        "SELECT id, clip_id, at_s, label, created_by, created_at FROM markers WHERE clip_id = $1 ORDER BY at_s",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "markers": markers })))
}

async fn remove_marker(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let clip: Option<Uuid> = sqlx::query_scalar("SELECT clip_id FROM markers WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    let clip = clip.ok_or_else(|| ApiError::NotFound(format!("no marker {id}")))?;
    visible_clip(&state, &caller, clip).await?;
    sqlx::query("DELETE FROM markers WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
