//! `/api/v1/base-productions` and `/api/v1/productions`: shows and their series, each
//! a rushes folder inside the media roots that no other production's folder is inside
//! or around; scan now (one scan at a time), transcode what is pending, list the files
//! scans skipped.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::media::Scan;
use rushes_common::job::store::{NewJob, Tx};
use rushes_common::job::{DEFAULT_PRIORITY, JobPayload as _, JobRecord, MAX_PRIORITY};
use rushes_common::media::skips::SkipKind;
use rushes_common::media::watermark::Watermark;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/base-productions", post(create_base).get(list_bases))
        .route("/base-productions/{id}", patch(rename_base).delete(remove_base))
        .route("/productions", post(create).get(list))
        .route("/productions/{id}", get(show).patch(update).delete(remove))
        .route("/productions/{id}/scan", post(scan))
        .route("/productions/{id}/transcode-pending", post(transcode_pending))
        .route("/productions/{id}/skipped", get(skipped))
}

/// Key of the transaction lock that serialises changes of production folders (create,
/// update, import), so two overlapping folders cannot both be checked clean at once.
const PATH_LOCK: i64 = 0x5052_4f44_5041_5448;
/// First key of the lock that serialises scan requests of one production.
const SCAN_REQUEST_LOCK: i32 = 0x5352;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseBody {
    name: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct BaseView {
    id: Uuid,
    name: String,
    group_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

/// Creates the base production and its namesake group (reused if one exists).
async fn create_base(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BaseBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::Unprocessable("name: must not be empty".into()));
    }
    let mut tx = state.db.begin().await?;
    let group_id: Uuid = sqlx::query_scalar(
        "INSERT INTO groups (id, name) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let base: BaseView = sqlx::query_as(
        "INSERT INTO base_productions (id, name, group_id) VALUES ($1, $2, $3) \
         RETURNING id, name, group_id, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(group_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("a base production called `{name}` exists")),
        other => other,
    })?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "base_production.create",
            target_type: "base_production",
            target_id: Some(base.id.to_string()),
            before: None,
            after: Some(json!(base)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(base)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseUpdate {
    name: Option<String>,
    /// The group that sees the base production's productions (its namesake at first).
    group_id: Option<Uuid>,
}

/// Renames a base production (its productions' names follow) and its namesake group
/// when that still bears the old name; a name taken by another base or group → `409`.
/// With `group_id`, moves it to another group: that group is granted each of its
/// productions, and the group it leaves loses those grants.
async fn rename_base(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<BaseUpdate>,
) -> ApiResult<axum::Json<BaseView>> {
    caller.require_admin()?;
    if body.name.is_none() && body.group_id.is_none() {
        return Err(ApiError::Unprocessable(
            "name a new `name`, a new `group_id`, or both".into(),
        ));
    }
    let name = body.name.as_deref().map(str::trim);
    if name.is_some_and(str::is_empty) {
        return Err(ApiError::Unprocessable("name: must not be empty".into()));
    }
    let mut tx = state.db.begin().await?;
    let before: BaseView =
        sqlx::query_as("SELECT id, name, group_id, created_at FROM base_productions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no base production {id}")))?;
    let moving = body.group_id.filter(|g| Some(*g) != before.group_id);
    if let Some(group) = moving {
        move_base(&mut tx, &before, group).await?;
    }
    let name = name.unwrap_or(&before.name);
    let taken = |what: &'static str| {
        move |e: sqlx::Error| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(format!("a {what} called `{name}` exists")),
            other => other,
        }
    };
    // The namesake group follows a rename; a group the base production moves to or
    // leaves keeps its name.
    sqlx::query("UPDATE groups SET name = $2 WHERE id = $1 AND name = $3")
        .bind(before.group_id.filter(|_| moving.is_none()))
        .bind(name)
        .bind(&before.name)
        .execute(&mut *tx)
        .await
        .map_err(taken("group"))?;
    let after: BaseView =
        sqlx::query_as("UPDATE base_productions SET name = $2 WHERE id = $1 RETURNING id, name, group_id, created_at")
            .bind(id)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(taken("base production"))?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "base_production.update",
            target_type: "base_production",
            target_id: Some(id.to_string()),
            before: Some(json!(before)),
            after: Some(json!(after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// Deletes a base production that has no productions (`409` otherwise); its namesake
/// group stays, and may then be deleted.
async fn remove_base(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let mut tx = state.db.begin().await?;
    let before: BaseView =
        sqlx::query_as("SELECT id, name, group_id, created_at FROM base_productions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no base production {id}")))?;
    let productions: i64 = sqlx::query_scalar("SELECT count(*) FROM productions WHERE base_production_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if productions > 0 {
        return Err(ApiError::Conflict(format!(
            "base production `{}` still has {productions} production(s): delete them first",
            before.name
        )));
    }
    // Roles scoped to it go with it (a trigger of the schema).
    sqlx::query("DELETE FROM base_productions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Unprocessable(_) => {
                ApiError::Conflict(format!("base production `{}` is still in use", before.name))
            }
            other => other,
        })?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "base_production.delete",
            target_type: "base_production",
            target_id: Some(id.to_string()),
            before: Some(json!(before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_bases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<axum::Json<Value>> {
    let bases: Vec<BaseView> = sqlx::query_as(
        "SELECT b.id, b.name, b.group_id, b.created_at FROM base_productions b \
         WHERE $1::uuid IS NULL OR b.id IN (SELECT p.base_production_id FROM productions p \
                                            WHERE p.id IN (SELECT production_id FROM visible_productions($1))) \
         ORDER BY b.name LIMIT 1000",
    )
    .bind(caller.scope())
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "base_productions": bases })))
}

/// Hands the base production's productions from the group it has to `group`.
async fn move_base(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, base: &BaseView, group: Uuid) -> ApiResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)")
        .bind(group)
        .fetch_one(&mut **tx)
        .await?;
    if !exists {
        return Err(ApiError::Unprocessable(format!("group_id: no group {group}")));
    }
    sqlx::query(
        "DELETE FROM group_productions WHERE group_id = $1 \
           AND production_id IN (SELECT id FROM productions WHERE base_production_id = $2)",
    )
    .bind(base.group_id)
    .bind(base.id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO group_productions (group_id, production_id) \
         SELECT $1, id FROM productions WHERE base_production_id = $2 ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(base.id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE base_productions SET group_id = $2 WHERE id = $1")
        .bind(base.id)
        .bind(group)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Body of create (the first four required) and update (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductionBody {
    base_production_id: Option<Uuid>,
    series: Option<i64>,
    friendly_name: Option<String>,
    path: Option<String>,
    priority: Option<i64>,
    owner_id: Option<Uuid>,
    active: Option<bool>,
    archived: Option<bool>,
    auto_transcribe: Option<bool>,
    /// Absent: unchanged; `null`: none; an object: its fields over the stored ones.
    #[serde(default, deserialize_with = "super::present")]
    watermark: Option<Option<Value>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct ProductionView {
    id: Uuid,
    base_production_id: Uuid,
    base_name: String,
    /// "Base name Series N".
    name: String,
    series: i32,
    friendly_name: String,
    path: String,
    priority: i16,
    owner_id: Option<Uuid>,
    active: bool,
    archived: bool,
    /// Clips are transcribed after their first transcode.
    auto_transcribe: bool,
    /// Burned into the picture of the proxies made while set.
    watermark: Option<Value>,
    cover_image: Option<String>,
    last_scan_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    /// Present clips that are not hidden.
    clips: i64,
}

macro_rules! production_select {
    () => {
        "SELECT p.id, p.base_production_id, b.name AS base_name, b.name || ' Series ' || p.series AS name, \
                p.series, p.friendly_name, p.path, p.priority, p.owner_id, p.active, p.archived, p.auto_transcribe, \
                p.watermark, p.cover_image, \
                p.last_scan_at, p.created_at, \
                (SELECT count(*) FROM clips c WHERE c.production_id = p.id AND NOT c.missing AND NOT c.hidden) AS clips \
         FROM productions p JOIN base_productions b ON b.id = p.base_production_id "
    };
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<ProductionView> {
    sqlx::query_as(concat!(production_select!(), "WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no production {id}")))
}

fn check_priority(priority: Option<i64>) -> ApiResult<Option<i16>> {
    priority
        .map(|p| {
            i16::try_from(p)
                .ok()
                .filter(|p| (0..=i16::from(MAX_PRIORITY)).contains(p))
                .ok_or_else(|| ApiError::Unprocessable(format!("priority: must be between 0 and 100, got {p}")))
        })
        .transpose()
}

fn check_series(series: Option<i64>) -> ApiResult<Option<i32>> {
    series
        .map(|s| {
            i32::try_from(s)
                .ok()
                .filter(|s| *s >= 0)
                .ok_or_else(|| ApiError::Unprocessable(format!("series: must be a whole number from 0, got {s}")))
        })
        .transpose()
}

fn check_name(name: Option<String>) -> ApiResult<Option<String>> {
    match name.map(|n| n.trim().to_owned()) {
        Some(n) if n.is_empty() => Err(ApiError::Unprocessable("friendly_name: must not be empty".into())),
        other => Ok(other),
    }
}

/// The watermark to store from what was sent (`None`: unchanged; `Some(None)`: none),
/// its fields over the `stored` one's; checked (422 naming the field).
pub(crate) fn check_watermark(sent: Option<Option<Value>>, stored: Option<&Value>) -> ApiResult<Option<Option<Value>>> {
    let Some(sent) = sent else { return Ok(None) };
    let Some(sent) = sent else { return Ok(Some(None)) };
    let Value::Object(fields) = sent else {
        return Err(ApiError::Unprocessable(
            "watermark: an object {\"text\", \"position\", \"opacity\", \"size\"} or null".into(),
        ));
    };
    let mut merged = stored.and_then(Value::as_object).cloned().unwrap_or_default();
    merged.extend(fields);
    let mark: Watermark = serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." { String::new() } else { format!(".{at}") };
        ApiError::Unprocessable(format!("watermark{at}: {}", e.into_inner()))
    })?;
    if let Some(problem) = mark.problem() {
        return Err(ApiError::Unprocessable(format!("watermark.{problem}")));
    }
    Ok(Some(Some(json!(mark))))
}

/// The folder, resolved inside the media roots (stored canonical).
fn check_path(state: &AppState, path: Option<String>) -> ApiResult<Option<String>> {
    path.map(|p| {
        state
            .roots
            .resolve_dir(&p)
            .map(|canonical| canonical.to_string_lossy().into_owned())
            .map_err(|e| ApiError::Unprocessable(format!("path: {e}")))
    })
    .transpose()
}

/// Takes the lock that serialises changes of production folders, until the transaction ends.
pub(crate) async fn lock_paths(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>) -> ApiResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PATH_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Refuses (422, naming it) another production whose folder is the folder of production
/// `id`, inside it or around it: one file belongs to one production. Call it inside the
/// transaction that wrote the path, after [`lock_paths`].
pub(crate) async fn refuse_overlap(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, id: Uuid) -> ApiResult<()> {
    let other: Option<(Uuid, String, String, String)> = sqlx::query_as(
        "SELECT o.id, b.name || ' Series ' || o.series, o.path, \
                CASE WHEN o.path = p.path THEN 'is' \
                     WHEN starts_with(p.path, rtrim(o.path, '/') || '/') THEN 'is inside' \
                     ELSE 'holds' END \
         FROM productions p JOIN productions o ON o.id <> p.id \
              JOIN base_productions b ON b.id = o.base_production_id \
         WHERE p.id = $1 \
           AND (o.path = p.path OR starts_with(p.path, rtrim(o.path, '/') || '/') \
                OR starts_with(o.path, rtrim(p.path, '/') || '/')) \
         ORDER BY o.path LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    match other {
        None => Ok(()),
        Some((other_id, name, other_path, relation)) => {
            let relation = match relation.as_str() {
                "is" => "is the folder of",
                "is inside" => "is inside the folder of",
                _ => "holds the folder of",
            };
            Err(ApiError::Unprocessable(format!(
                "path: this folder {relation} production `{name}` ({other_id}, `{other_path}`); \
                 a folder belongs to one production: choose a folder neither inside nor around another's"
            )))
        }
    }
}

/// A foreign key that points nowhere, answered with the field's name.
fn unknown_reference(err: sqlx::Error) -> ApiError {
    match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            let field = if db.message().contains("owner") {
                "owner_id: no such user"
            } else {
                "base_production_id: no such base production"
            };
            ApiError::Unprocessable(field.into())
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::Conflict("that base production already has a production of this series".into())
        }
        _ => err.into(),
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ProductionBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let (Some(base), Some(series), Some(friendly_name), Some(path)) = (
        body.base_production_id,
        check_series(body.series)?,
        check_name(body.friendly_name)?,
        body.path,
    ) else {
        return Err(ApiError::Unprocessable(
            "base_production_id, series, friendly_name and path are required".into(),
        ));
    };
    let path = check_path(&state, Some(path))?;
    let priority = check_priority(body.priority)?.unwrap_or(i16::from(DEFAULT_PRIORITY));
    let watermark = check_watermark(body.watermark, None)?.flatten();
    let id = Uuid::now_v7();
    require_watermark_image(&state, id, watermark.as_ref())?;
    let mut tx = state.db.begin().await?;
    lock_paths(&mut tx).await?;
    sqlx::query(
        "INSERT INTO productions (id, base_production_id, series, friendly_name, path, priority, owner_id, active, \
                                  archived, auto_transcribe, watermark) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(base)
    .bind(series)
    .bind(friendly_name)
    .bind(path)
    .bind(priority)
    .bind(body.owner_id)
    .bind(body.active.unwrap_or(true))
    .bind(body.archived.unwrap_or(false))
    .bind(body.auto_transcribe.unwrap_or(true))
    .bind(watermark)
    .execute(&mut *tx)
    .await
    .map_err(unknown_reference)?;
    refuse_overlap(&mut tx, id).await?;
    // The base production's namesake group sees each of its productions.
    sqlx::query(
        "INSERT INTO group_productions (group_id, production_id) \
         SELECT b.group_id, $1 FROM base_productions b WHERE b.id = $2 AND b.group_id IS NOT NULL \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(base)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let created = find(&state, id).await?;
    audit_production(&state, &caller, "production.create", None, &created).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListProductions {
    base_production_id: Option<Uuid>,
    /// Archived productions are hidden unless asked for.
    #[serde(default)]
    include_archived: bool,
    active: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListProductions>,
) -> ApiResult<axum::Json<Value>> {
    let productions: Vec<ProductionView> = sqlx::query_as(concat!(
        production_select!(),
        "WHERE ($1::uuid IS NULL OR p.base_production_id = $1) AND ($2 OR NOT p.archived) \
           AND ($3::bool IS NULL OR p.active = $3) \
           AND ($4::uuid IS NULL OR p.id IN (SELECT production_id FROM visible_productions($4))) \
         ORDER BY b.name, p.series LIMIT 1000"
    ))
    .bind(q.base_production_id)
    .bind(q.include_archived)
    .bind(q.active)
    .bind(caller.scope())
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "productions": productions })))
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ProductionView>> {
    caller.require(&state, Policy::View, id).await?;
    Ok(axum::Json(find(&state, id).await?))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<ProductionBody>,
) -> ApiResult<axum::Json<ProductionView>> {
    caller.require_admin()?;
    if body.base_production_id.is_some() {
        return Err(ApiError::Unprocessable(
            "base_production_id: a production cannot move to another base production".into(),
        ));
    }
    let series = check_series(body.series)?;
    let friendly_name = check_name(body.friendly_name)?;
    let path = check_path(&state, body.path)?;
    let priority = check_priority(body.priority)?;
    let before = find(&state, id).await?;
    let watermark = check_watermark(body.watermark, before.watermark.as_ref())?;
    let mut tx = state.db.begin().await?;
    lock_paths(&mut tx).await?;
    let updated = sqlx::query(
        "UPDATE productions SET series = COALESCE($2, series), friendly_name = COALESCE($3, friendly_name), \
             path = COALESCE($4, path), priority = COALESCE($5, priority), owner_id = COALESCE($6, owner_id), \
             active = COALESCE($7, active), archived = COALESCE($8, archived), \
             auto_transcribe = COALESCE($9, auto_transcribe), \
             watermark = CASE WHEN $10 THEN $11 ELSE watermark END, \
             tree_digest = CASE WHEN $4 IS NULL OR $4 = path THEN tree_digest END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(series)
    .bind(friendly_name)
    .bind(path)
    .bind(priority)
    .bind(body.owner_id)
    .bind(body.active)
    .bind(body.archived)
    .bind(body.auto_transcribe)
    .bind(watermark.is_some())
    .bind(watermark.clone().flatten())
    .execute(&mut *tx)
    .await
    .map_err(unknown_reference)?;
    if updated.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("no production {id}")));
    }
    refuse_overlap(&mut tx, id).await?;
    // Checked with the row locked: a delete of the image waits for this commit, or this
    // waits for it and sees the image gone.
    require_watermark_image(&state, id, watermark.as_ref().and_then(Option::as_ref))?;
    tx.commit().await?;
    let after = find(&state, id).await?;
    audit_production(&state, &caller, "production.update", Some(&before), &after).await?;
    if after.watermark != before.watermark {
        remake_proxies_of(&state, &caller, after.id, "the watermark changed").await?;
    }
    Ok(axum::Json(after))
}

/// A new watermark shows on proxies made from now on: the production's clips with
/// pictures are transcoded again (audited as a retranscode of the production, `because`
/// saying why); how many.
pub(crate) async fn remake_proxies_of(state: &AppState, caller: &Caller, id: Uuid, because: &str) -> ApiResult<usize> {
    let clips: Vec<(Uuid, i16)> = sqlx::query_as(
        "SELECT c.id, p.priority FROM clips c JOIN productions p ON p.id = c.production_id \
         WHERE c.production_id = $1 AND NOT c.missing AND c.width > 0 ORDER BY c.path",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    if clips.is_empty() {
        return Ok(0);
    }
    let watermark: Option<Value> = sqlx::query_scalar("SELECT watermark FROM productions WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .flatten();
    let count = clips.len();
    let clips = clips
        .into_iter()
        .map(|(id, priority)| (id, u8::try_from(priority).unwrap_or(DEFAULT_PRIORITY)));
    let request = super::clips::TranscodeRequest {
        action: "clip.retranscode",
        target_type: "production",
        target_id: Some(id.to_string()),
        asked: json!({ "production_id": id, "because": because, "watermark": watermark }),
    };
    super::clips::queue_transcodes(state, caller, clips, request).await?;
    Ok(count)
}

/// `404` for a production there is not (admins pass `Caller::require` for any id: no
/// file or member is written for one that is not there).
pub(crate) async fn exists(state: &AppState, id: Uuid) -> ApiResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM productions WHERE id = $1)")
        .bind(id)
        .fetch_one(&state.db)
        .await?;
    if exists {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no production {id}")))
    }
}

/// A watermark without its image (what an imported production can draw): `None` when
/// the image was all there was.
pub(crate) fn without_image(watermark: Option<Value>) -> Option<Value> {
    let mut watermark = watermark?;
    if let Some(fields) = watermark.as_object_mut() {
        fields.remove("image");
        if fields
            .get("text")
            .and_then(Value::as_str)
            .is_none_or(|t| t.trim().is_empty())
        {
            return None;
        }
    }
    Some(watermark)
}

/// Refuses a watermark that draws the production's image before there is one.
fn require_watermark_image(state: &AppState, id: Uuid, watermark: Option<&Value>) -> ApiResult<()> {
    let draws = watermark.is_some_and(|w| w.get("image").is_some_and(|i| !i.is_null()));
    if draws && !state.media.watermark_image_path(id).is_file() {
        return Err(ApiError::Unprocessable(format!(
            "watermark.image: the production has no watermark image yet: send it first \
             (PUT /api/v1/productions/{id}/watermark-image)"
        )));
    }
    Ok(())
}

/// Deletes the production with its clips (database rows and our outputs); the rushes
/// themselves stay untouched.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let before = find(&state, id).await?;
    let mut tx = state.db.begin().await?;
    let clips: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM clips WHERE production_id = $1")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    let uploads: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM uploads WHERE production_id = $1")
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM productions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "production.delete",
            target_type: "production",
            target_id: Some(id.to_string()),
            before: Some(json!(before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    super::clips::remove_outputs(&state, &clips).await;
    for upload in uploads {
        crate::upload::remove_folder(&state, upload).await;
    }
    for (file, what) in [
        (state.media.cover_path(id), "the cover image"),
        (state.media.watermark_image_path(id), "the watermark image"),
    ] {
        if let Err(err) = tokio::fs::remove_file(&file).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(production.id = %id, error = %err, "cannot remove {what}");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a scan of the production at its priority → `202` with the job.
async fn scan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&state, Policy::Scan, id).await?;
    let production = find(&state, id).await?;
    if !production.active {
        return Err(ApiError::Conflict(format!(
            "production {id} is inactive; activate it before scanning"
        )));
    }
    // One scan per production at a time: a scan already queued or running is the answer
    // (200) rather than a second one behind it (202 for a new one).
    let mut tx = Tx::begin(&state.db).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(SCAN_REQUEST_LOCK)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    let pending: Option<JobRecord> = sqlx::query_as(concat!(
        "SELECT ",
        rushes_common::job_columns!(),
        " FROM jobs WHERE kind = $2 AND state IN ('queued', 'running', 'retrying') \
           AND payload->>'production_id' = $1 ORDER BY enqueued_at LIMIT 1"
    ))
    .bind(id.to_string())
    .bind(Scan::KIND)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(job) = pending {
        return Ok((StatusCode::OK, axum::Json(job)));
    }
    let job = NewJob {
        priority: u8::try_from(production.priority).ok(),
        ..NewJob::of(&Scan { production_id: id }).requested_by(&caller.name)
    };
    let job = tx.enqueue_one(job).await?;
    let job_id = job.id;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "production.scan",
            target_type: "production",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(json!({ "job_id": job_id })),
        },
    )
    .await?;
    let published = tx.commit(&state.publisher).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(published.into_iter().next().unwrap_or(job)),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSkipped {
    /// `broken` or `not_media`; both when absent.
    kind: Option<SkipKind>,
    limit: Option<i64>,
    /// The last path of the previous page.
    after: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct SkippedView {
    /// Relative to the production's folder.
    path: String,
    reason: String,
    kind: String,
}

/// The files scans skipped (broken ones and others that are not media), by path, a
/// page at a time → `{"skipped", "next_after"}`.
async fn skipped(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Query(q): Query<ListSkipped>,
) -> ApiResult<axum::Json<Value>> {
    caller.require(&state, Policy::View, id).await?;
    if q.after.as_deref().is_some_and(|a| a.contains('\0')) {
        return Err(ApiError::BadRequest("after: a path never holds a NUL character".into()));
    }
    let limit = super::limit(q.limit)?;
    let rows: Vec<SkippedView> = sqlx::query_as(
        "SELECT path, reason, kind FROM scan_skips \
         WHERE production_id = $1 AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR path > $3) \
         ORDER BY path LIMIT $4",
    )
    .bind(id)
    .bind(q.kind.map(SkipKind::as_str))
    .bind(q.after)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.path.clone()))
        .flatten();
    Ok(axum::Json(json!({ "skipped": rows, "next_after": next_after })))
}

/// Queues a transcode for every present clip not done, queued or running → `202`.
async fn transcode_pending(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    caller.require(&state, Policy::Transcode, id).await?;
    let production = find(&state, id).await?;
    let clips: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM clips WHERE production_id = $1 AND NOT missing \
            AND transcode_state IN ('pending', 'failed', 'cancelled')",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let priority = u8::try_from(production.priority).unwrap_or(DEFAULT_PRIORITY);
    let request = super::clips::TranscodeRequest {
        action: "production.transcode_pending",
        target_type: "production",
        target_id: Some(id.to_string()),
        asked: json!({ "pending": clips.len() }),
    };
    let jobs =
        super::clips::queue_transcodes(&state, &caller, clips.into_iter().map(|c| (c, priority)), request).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "transcodes": jobs.len(), "job_ids": jobs })),
    ))
}

async fn audit_production(
    state: &AppState,
    caller: &Caller,
    action: &str,
    before: Option<&ProductionView>,
    after: &ProductionView,
) -> ApiResult<()> {
    audit::record(
        &state.db,
        caller,
        Change {
            action,
            target_type: "production",
            target_id: Some(after.id.to_string()),
            before: before.map(|b| json!(b)),
            after: Some(json!(after)),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_and_series_are_range_checked() {
        assert!(matches!(check_priority(Some(90)), Ok(Some(90))));
        assert!(check_priority(Some(101)).is_err());
        assert!(check_priority(Some(-1)).is_err());
        assert!(matches!(check_series(Some(1)), Ok(Some(1))));
        assert!(check_series(Some(-2)).is_err());
        assert!(check_name(Some("  ".into())).is_err());
    }
}
