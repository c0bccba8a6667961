//! `/api/v1/groups` (admins only): groups, their members, the productions they grant,
//! and the roles they carry (global or scoped to a base production or production).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use rushes_common::job::accounts::{GroupAction, GroupUsers};

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::roles::Scope;
use crate::state::AppState;

/// The group whose members are admins.
const HUB: &str = "hub";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/groups", post(create).get(list))
        .route("/groups/{id}", get(show).delete(remove))
        .route("/groups/{id}/members", post(add_member))
        .route("/groups/{id}/members/{user_id}", delete(remove_member))
        .route("/groups/{id}/productions", post(grant))
        .route("/groups/{id}/productions/{production_id}", delete(revoke))
        .route("/groups/{id}/roles", post(add_role))
        .route("/groups/{id}/roles/{role_id}", delete(remove_role))
        .route("/groups/{id}/users/{action}", post(bulk_users))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct GroupView {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    member_count: i64,
    production_count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
}

/// Records one change in its own statement (the change itself is already committed).
async fn log(state: &AppState, caller: &Caller, action: &str, target: Uuid, after: Value) -> ApiResult<()> {
    audit::record(
        &state.db,
        caller,
        Change {
            action,
            target_type: "group",
            target_id: Some(target.to_string()),
            before: None,
            after: Some(after),
        },
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewGroup>,
) -> ApiResult<impl IntoResponse> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::Unprocessable("name: must not be empty".into()));
    }
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO groups (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(&state.db)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(format!("a group called `{name}` exists")),
            other => other,
        })?;
    log(&state, &caller, "group.create", id, json!({ "name": name })).await?;
    Ok((StatusCode::CREATED, axum::Json(group_object(&state, id).await?)))
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<GroupView> {
    sqlx::query_as(
        "SELECT g.id, g.name, g.created_at, \
                (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count, \
                (SELECT count(*) FROM group_productions p WHERE p.group_id = g.id) AS production_count \
         FROM groups g WHERE g.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no group {id}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListGroups {
    limit: Option<i64>,
    /// The `next_before` of the previous page: groups after that one, by name.
    before: Option<Uuid>,
}

/// Groups by name, a page at a time (each with its member and production counts).
async fn list(State(state): State<AppState>, Query(q): Query<ListGroups>) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let groups: Vec<GroupView> = sqlx::query_as(
        "SELECT g.id, g.name, g.created_at, \
                (SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count, \
                (SELECT count(*) FROM group_productions p WHERE p.group_id = g.id) AS production_count \
         FROM groups g \
         WHERE $1::uuid IS NULL OR (g.name, g.id) > (SELECT c.name, c.id FROM groups c WHERE c.id = $1) \
         ORDER BY g.name, g.id LIMIT $2",
    )
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&groups, limit, |g| g.id);
    Ok(axum::Json(json!({ "groups": groups, "next_before": next_before })))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(group_object(&state, id).await?))
}

/// A group as `POST /groups` and `GET /groups/{id}` both show it: the group, its
/// members and productions (as objects) and its roles.
async fn group_object(state: &AppState, id: Uuid) -> ApiResult<Value> {
    let group = find(state, id).await?;
    let members: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT u.id, u.username FROM group_members m JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 ORDER BY u.username",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let productions: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT p.id, b.name || ' Series ' || p.series FROM group_productions gp \
         JOIN productions p ON p.id = gp.production_id JOIN base_productions b ON b.id = p.base_production_id \
         WHERE gp.group_id = $1 ORDER BY b.name, p.series",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let roles: Vec<(Uuid, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT r.id, r.name, gr.scope_type, gr.scope_id FROM group_roles gr JOIN roles r ON r.id = gr.role_id \
         WHERE gr.group_id = $1 ORDER BY r.name",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    Ok(json!({
        "id": group.id,
        "name": group.name,
        "created_at": group.created_at,
        "member_count": group.member_count,
        "production_count": group.production_count,
        "members": members.into_iter().map(|(id, name)| json!({ "id": id, "username": name })).collect::<Vec<_>>(),
        "productions": productions.into_iter().map(|(id, name)| json!({ "id": id, "name": name })).collect::<Vec<_>>(),
        "roles": roles.into_iter().map(|(id, name, scope, scope_id)| json!({
            "role_id": id, "name": name, "scope_type": scope, "scope_id": scope_id })).collect::<Vec<_>>(),
    }))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let group = find(&state, id).await?;
    if group.name == HUB {
        return Err(ApiError::Conflict("the hub group cannot be deleted".into()));
    }
    let base: Option<String> = sqlx::query_scalar("SELECT name FROM base_productions WHERE group_id = $1 LIMIT 1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    if let Some(base) = base {
        return Err(ApiError::Conflict(format!(
            "group `{}` is the namesake group of base production `{base}`: delete the base production first",
            group.name
        )));
    }
    sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await?;
    log(&state, &caller, "group.delete", id, json!({ "name": group.name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A foreign key that points nowhere: the named field is unknown.
fn unknown(field: &'static str) -> impl Fn(sqlx::Error) -> ApiError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            ApiError::Unprocessable(format!("{field}: no such record"))
        }
        _ => err.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    user_id: Uuid,
}

async fn add_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<Member>,
) -> ApiResult<StatusCode> {
    find(&state, id).await?;
    sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(body.user_id)
        .execute(&state.db)
        .await
        .map_err(unknown("user_id"))?;
    log(
        &state,
        &caller,
        "group.add_member",
        id,
        json!({ "user_id": body.user_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let removed = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(&state.db)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("user {user_id} is not in group {id}")));
    }
    log(
        &state,
        &caller,
        "group.remove_member",
        id,
        json!({ "user_id": user_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    production_id: Uuid,
}

async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<Grant>,
) -> ApiResult<StatusCode> {
    find(&state, id).await?;
    sqlx::query("INSERT INTO group_productions (group_id, production_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(body.production_id)
        .execute(&state.db)
        .await
        .map_err(unknown("production_id"))?;
    log(
        &state,
        &caller,
        "group.grant_production",
        id,
        json!({ "production_id": body.production_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, production_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let removed = sqlx::query("DELETE FROM group_productions WHERE group_id = $1 AND production_id = $2")
        .bind(id)
        .bind(production_id)
        .execute(&state.db)
        .await?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!(
            "group {id} does not grant production {production_id}"
        )));
    }
    log(
        &state,
        &caller,
        "group.revoke_production",
        id,
        json!({ "production_id": production_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRole {
    role_id: Uuid,
    #[serde(default = "crate::roles::global")]
    scope_type: String,
    scope_id: Option<Uuid>,
}

async fn add_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<GroupRole>,
) -> ApiResult<StatusCode> {
    find(&state, id).await?;
    let scope = Scope {
        scope_type: body.scope_type,
        scope_id: body.scope_id,
    };
    scope.validate(&state).await?;
    sqlx::query(
        "INSERT INTO group_roles (group_id, role_id, scope_type, scope_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(body.role_id)
    .bind(&scope.scope_type)
    .bind(scope.scope_id)
    .execute(&state.db)
    .await
    .map_err(unknown("role_id"))?;
    log(
        &state,
        &caller,
        "group.add_role",
        id,
        json!({ "role_id": body.role_id, "scope_type": scope.scope_type, "scope_id": scope.scope_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a role (in one scope, named in the query string: `?scope_type=production&scope_id=…`,
/// global when absent) away from a group → `204`; `404` when the group does not carry
/// it in that scope.
async fn remove_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, role_id)): Path<(Uuid, Uuid)>,
    Query(scope): Query<Scope>,
) -> ApiResult<StatusCode> {
    find(&state, id).await?;
    let removed = sqlx::query(
        "DELETE FROM group_roles WHERE group_id = $1 AND role_id = $2 AND scope_type = $3 \
           AND scope_id IS NOT DISTINCT FROM $4",
    )
    .bind(id)
    .bind(role_id)
    .bind(&scope.scope_type)
    .bind(scope.scope_id)
    .execute(&state.db)
    .await?
    .rows_affected();
    if removed == 0 {
        return Err(ApiError::NotFound(format!(
            "group {id} does not carry role {role_id} in scope {scope}"
        )));
    }
    log(
        &state,
        &caller,
        "group.remove_role",
        id,
        json!({ "role_id": role_id, "scope_type": scope.scope_type, "scope_id": scope.scope_id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues enabling, disabling or removing every user of the group → `202` with the job.
async fn bulk_users(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(Uuid, String)>,
) -> ApiResult<impl IntoResponse> {
    let action = match action.as_str() {
        "enable" => GroupAction::Enable,
        "disable" => GroupAction::Disable,
        "remove" => GroupAction::Remove,
        other => {
            return Err(ApiError::NotFound(format!(
                "no bulk action `{other}` (enable, disable, remove)"
            )));
        }
    };
    find(&state, id).await?;
    super::users::queue_job(&state, &caller, &GroupUsers { group_id: id, action }).await
}
