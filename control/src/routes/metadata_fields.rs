//! `/api/v1/metadata-fields`: the custom metadata fields of clips (Globaledit's metadata
//! schemas). Admins define a field for every production or for one base production's;
//! a name is one field wherever it applies (a base production's field may not shadow a
//! global one, nor the other way round). Everyone signed in may read them: editing a
//! clip's values needs them. Changes are audited; a field deleted takes its values off
//! the clips it applied to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::metadata::{self, Field, FieldKind, MAX_NAME};
use crate::state::AppState;

/// Key of the transaction lock that serialises field definitions (a name is checked
/// free across scopes, then taken).
const FIELDS_LOCK: i64 = 0x4d45_5441_4649_454c;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metadata-fields", get(list).post(create))
        .route("/metadata-fields/{id}", get(show).patch(update).delete(remove))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct FieldView {
    pub id: Uuid,
    pub name: String,
    pub display_name: String,
    pub kind: String,
    pub choices: Vec<String>,
    /// `null`: the field applies to every production.
    pub base_production_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl FieldView {
    pub fn field(&self) -> Field {
        Field {
            name: self.name.clone(),
            kind: FieldKind::parse(&self.kind).unwrap_or(FieldKind::Text),
            choices: self.choices.clone(),
        }
    }
}

const COLUMNS: &str = "id, name, display_name, kind, choices, base_production_id, created_at";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFields {
    /// The fields that apply to this base production's clips (global ones included).
    base_production_id: Option<Uuid>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListFields>) -> ApiResult<axum::Json<Value>> {
    let fields: Vec<FieldView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM metadata_fields \
         WHERE $1::uuid IS NULL OR base_production_id IS NULL OR base_production_id = $1 \
         ORDER BY base_production_id NULLS FIRST, name"
    )))
    .bind(q.base_production_id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "metadata_fields": fields })))
}

async fn find(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> ApiResult<FieldView> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM metadata_fields WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no metadata field {id}")))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<FieldView>> {
    Ok(axum::Json(find(&state.db, id).await?))
}

fn check_display_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "display_name: 1 to {MAX_NAME} characters without control characters"
        )));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewField {
    name: String,
    display_name: String,
    kind: String,
    #[serde(default)]
    choices: Vec<String>,
    base_production_id: Option<Uuid>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewField>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    if let Some(problem) = metadata::name_problem(&body.name) {
        return Err(ApiError::Unprocessable(problem));
    }
    let display_name = check_display_name(&body.display_name)?;
    let kind = FieldKind::parse(&body.kind).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "kind: one of text, number, date, choice, multi_choice, boolean; got `{}`",
            body.kind
        ))
    })?;
    if let Some(problem) = metadata::choices_problem(kind, &body.choices) {
        return Err(ApiError::Unprocessable(problem));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FIELDS_LOCK)
        .execute(&mut *tx)
        .await?;
    if let Some(base) = body.base_production_id {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM base_productions WHERE id = $1)")
            .bind(base)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(ApiError::Unprocessable(format!(
                "base_production_id: no base production {base}"
            )));
        }
    }
    // A name is one field wherever it applies.
    let clash: Option<Option<Uuid>> = sqlx::query_scalar(
        "SELECT base_production_id FROM metadata_fields WHERE name = $1 \
           AND ($2::uuid IS NULL OR base_production_id IS NULL OR base_production_id = $2) LIMIT 1",
    )
    .bind(&body.name)
    .bind(body.base_production_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(scope) = clash {
        let where_ = scope.map_or_else(
            || "for every production".to_owned(),
            |b| format!("for base production {b}"),
        );
        return Err(ApiError::Conflict(format!(
            "a metadata field `{}` exists {where_}",
            body.name
        )));
    }
    let field: FieldView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO metadata_fields (id, name, display_name, kind, choices, base_production_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&body.name)
    .bind(&display_name)
    .bind(kind.as_str())
    .bind(&body.choices)
    .bind(body.base_production_id)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "metadata_field.create",
            target_type: "metadata_field",
            target_id: Some(field.id.to_string()),
            before: None,
            after: Some(json!(field)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, axum::Json(field)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldUpdate {
    display_name: Option<String>,
    /// The whole list: choices may be added, and removed while no clip holds them.
    choices: Option<Vec<String>>,
}

/// Renames a field's display name or changes its choices (its name and kind stay: the
/// clips' values are of them).
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<FieldUpdate>,
) -> ApiResult<axum::Json<FieldView>> {
    caller.require_admin()?;
    let display_name = body.display_name.as_deref().map(check_display_name).transpose()?;
    let mut tx = state.db.begin().await?;
    let before = find(&mut *tx, id).await?;
    let kind = FieldKind::parse(&before.kind).unwrap_or(FieldKind::Text);
    if let Some(choices) = &body.choices {
        if let Some(problem) = metadata::choices_problem(kind, choices) {
            return Err(ApiError::Unprocessable(problem));
        }
        let dropped: Vec<&String> = before.choices.iter().filter(|c| !choices.contains(c)).collect();
        // One scan of the field's clips for every choice removed, not one per choice.
        let held: Option<(String, i64)> = sqlx::query_as(
            "SELECT dropped.choice, count(*) FROM unnest($3::text[]) AS dropped(choice) \
             JOIN clips c ON c.metadata -> $2 = to_jsonb(dropped.choice) \
                          OR c.metadata -> $2 @> jsonb_build_array(dropped.choice) \
             JOIN productions p ON p.id = c.production_id \
             WHERE $1::uuid IS NULL OR p.base_production_id = $1 \
             GROUP BY dropped.choice ORDER BY dropped.choice LIMIT 1",
        )
        .bind(before.base_production_id)
        .bind(&before.name)
        .bind(&dropped)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((choice, holding)) = held {
            return Err(ApiError::Conflict(format!(
                "choices: {holding} clips hold `{choice}`; change their value before removing it"
            )));
        }
    }
    let after: FieldView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE metadata_fields SET display_name = COALESCE($2, display_name), choices = COALESCE($3, choices) \
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(display_name)
    .bind(&body.choices)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "metadata_field.update",
            target_type: "metadata_field",
            target_id: Some(id.to_string()),
            before: Some(json!(before)),
            after: Some(json!(after)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// Deletes a field and its values from the clips it applied to.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let mut tx = state.db.begin().await?;
    let before = find(&mut *tx, id).await?;
    let cleared = sqlx::query(
        "UPDATE clips c SET metadata = c.metadata - $2, updated_at = now() FROM productions p \
         WHERE p.id = c.production_id AND ($1::uuid IS NULL OR p.base_production_id = $1) AND c.metadata ? $2",
    )
    .bind(before.base_production_id)
    .bind(&before.name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM metadata_fields WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "metadata_field.delete",
            target_type: "metadata_field",
            target_id: Some(id.to_string()),
            before: Some(json!(before)),
            after: Some(json!({ "clips_cleared": cleared })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The fields named in `names` as they apply to each of `bases`: `(base, field)` pairs;
/// a name that does not apply to a base → 422 naming both.
pub(crate) async fn fields_for(
    db: impl sqlx::PgExecutor<'_>,
    bases: &[Uuid],
    names: &[String],
) -> ApiResult<Vec<(Uuid, Field)>> {
    let defined: Vec<FieldView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM metadata_fields WHERE name = ANY($1) \
           AND (base_production_id IS NULL OR base_production_id = ANY($2))"
    )))
    .bind(names)
    .bind(bases)
    .fetch_all(db)
    .await?;
    let mut out = Vec::new();
    for base in bases {
        for name in names {
            let field = defined
                .iter()
                .find(|f| f.name == *name && f.base_production_id.is_none_or(|b| b == *base))
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!(
                        "metadata.{name}: no such field for base production {base} (GET /api/v1/metadata-fields)"
                    ))
                })?;
            out.push((*base, field.field()));
        }
    }
    Ok(out)
}
