//! `/api/v1/roles` (admins only): named bundles of policies. Built-in roles are fixed;
//! custom ones can be renamed, given other policies and deleted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::roles::{self, Role};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/roles", post(create).get(list))
        .route("/roles/{id}", get(show).patch(update).delete(remove))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    name: String,
    policies: Vec<String>,
}

/// A role's name, trimmed and not empty.
fn name_of(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.is_empty() {
        Err(ApiError::Unprocessable("name: must not be empty".into()))
    } else {
        Ok(name)
    }
}

/// Known policies, at least one, each once (in the order given).
fn policies_of(policies: &[String]) -> ApiResult<Vec<String>> {
    let known: Vec<&str> = Policy::ALL.iter().map(|p| p.as_str()).collect();
    if let Some(bad) = policies.iter().find(|p| !known.contains(&p.as_str())) {
        return Err(ApiError::Unprocessable(format!(
            "policies: `{bad}` is not one of {}",
            known.join(", ")
        )));
    }
    if policies.is_empty() {
        return Err(ApiError::Unprocessable("policies: at least one is required".into()));
    }
    let mut unique: Vec<String> = Vec::with_capacity(policies.len());
    for policy in policies {
        if !unique.contains(policy) {
            unique.push(policy.clone());
        }
    }
    Ok(unique)
}

fn name_taken(name: &str) -> impl Fn(sqlx::Error) -> ApiError + '_ {
    move |err| match ApiError::from(err) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("a role called `{name}` exists")),
        other => other,
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewRole>,
) -> ApiResult<impl IntoResponse> {
    let name = name_of(&body.name)?;
    let policies = policies_of(&body.policies)?;
    let role: Role = sqlx::query_as(
        "INSERT INTO roles (id, name, policies) VALUES ($1, $2, $3) RETURNING id, name, policies, builtin",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(&policies)
    .fetch_one(&state.db)
    .await
    .map_err(name_taken(name))?;
    audit::record(
        &state.db,
        &caller,
        Change {
            action: "role.create",
            target_type: "role",
            target_id: Some(role.id.to_string()),
            before: None,
            after: Some(json!({ "name": role.name, "policies": role.policies })),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(role)))
}

async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let roles: Vec<Role> = sqlx::query_as("SELECT id, name, policies, builtin FROM roles ORDER BY name")
        .fetch_all(&state.db)
        .await?;
    Ok(axum::Json(json!({ "roles": roles })))
}

fn missing(id: Uuid) -> impl FnOnce() -> ApiError {
    move || ApiError::NotFound(format!("no role {id}"))
}

/// Who carries the role, and where: groups and users (directly).
async fn assignments(executor: impl sqlx::PgExecutor<'_>, id: Uuid) -> ApiResult<Vec<Value>> {
    let rows: Vec<(String, Uuid, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT 'group', g.id, g.name, gr.scope_type, gr.scope_id \
         FROM group_roles gr JOIN groups g ON g.id = gr.group_id WHERE gr.role_id = $1 \
         UNION ALL \
         SELECT 'user', u.id, u.username, ur.scope_type, ur.scope_id \
         FROM user_roles ur JOIN users u ON u.id = ur.user_id WHERE ur.role_id = $1 \
         ORDER BY 1, 3, 4, 5",
    )
    .bind(id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(holder, holder_id, name, scope_type, scope_id)| {
            json!({ "holder": holder, "id": holder_id, "name": name, "scope_type": scope_type, "scope_id": scope_id })
        })
        .collect())
}

/// A role with everyone who carries it.
async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<Value>> {
    let role = roles::lookup(&state.db, id).await?.ok_or_else(missing(id))?;
    let assignments = assignments(&state.db, id).await?;
    let mut shown = json!(role);
    shown["assignments"] = json!(assignments);
    Ok(axum::Json(shown))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    name: Option<String>,
    policies: Option<Vec<String>>,
}

/// Refuses changing a built-in role: code and migrations rely on what they hold.
fn custom(role: &Role, what: &str) -> ApiResult<()> {
    if role.builtin {
        Err(ApiError::Conflict(format!(
            "`{}` is a built-in role and cannot be {what}; make a custom role instead",
            role.name
        )))
    } else {
        Ok(())
    }
}

/// Renames a custom role or replaces its policies; whoever carries it holds the new
/// policies at once.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<RoleChange>,
) -> ApiResult<axum::Json<Role>> {
    let name = body.name.as_deref().map(name_of).transpose()?;
    let policies = body.policies.as_deref().map(policies_of).transpose()?;
    let mut tx = state.db.begin().await?;
    let before: Role = roles::lookup(&mut *tx, id).await?.ok_or_else(missing(id))?;
    custom(&before, "changed")?;
    let after: Role = sqlx::query_as(
        "UPDATE roles SET name = COALESCE($2, name), policies = COALESCE($3, policies) WHERE id = $1 \
         RETURNING id, name, policies, builtin",
    )
    .bind(id)
    .bind(name)
    .bind(&policies)
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken(name.unwrap_or_default()))?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "role.update",
            target_type: "role",
            target_id: Some(id.to_string()),
            before: Some(json!({ "name": before.name, "policies": before.policies })),
            after: Some(json!({ "name": after.name, "policies": after.policies })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Removal {
    /// Delete even though groups or users carry it (their assignments go with it).
    #[serde(default)]
    force: bool,
}

/// Deletes a custom role → `204`. A role someone carries is kept (`409` naming who)
/// unless `?force=true`, which takes it from them too; the audit entry lists them.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Query(removal): Query<Removal>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let role: Role = roles::lookup(&mut *tx, id).await?.ok_or_else(missing(id))?;
    custom(&role, "deleted")?;
    let held = assignments(&mut *tx, id).await?;
    if !held.is_empty() && !removal.force {
        let names: Vec<String> = held
            .iter()
            .take(5)
            .map(|a| {
                format!(
                    "{} `{}`",
                    a["holder"].as_str().unwrap_or_default(),
                    a["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        return Err(ApiError::Conflict(format!(
            "role `{}` is carried {} time(s) ({}{}): take it away first, or delete with ?force=true",
            role.name,
            held.len(),
            names.join(", "),
            if held.len() > names.len() { ", …" } else { "" }
        )));
    }
    sqlx::query("DELETE FROM roles WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "role.delete",
            target_type: "role",
            target_id: Some(id.to_string()),
            before: Some(json!({ "name": role.name, "policies": role.policies, "assignments": held })),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
