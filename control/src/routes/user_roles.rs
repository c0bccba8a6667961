//! Roles given to a user directly, what a user may do where (their effective policies
//! and why), and a production's members as its administrators manage them.
//!
//! Admins give any role in any scope. A production administrator (the `administer`
//! policy on a production) gives and takes roles on that production only, and only
//! roles whose policies they hold there themselves.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::roles::{self, Role, Scope};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/roles", get(user_roles).post(add_user_role))
        .route("/users/{id}/roles/{role_id}", delete(remove_user_role))
        .route("/users/{id}/policies", get(effective_policies))
        .route("/productions/{id}/members", get(members).post(add_member))
        .route("/productions/{id}/members/{user_id}", delete(remove_member))
}

/// Allows giving or taking `roles` in `scope` (none: the right to manage the scope at
/// all): admins anywhere; a production's administrator on that production, and only
/// roles whose policies they hold there.
async fn may_assign(state: &AppState, caller: &Caller, roles: &[Role], scope: &Scope) -> ApiResult<()> {
    if caller.is_admin {
        return Ok(());
    }
    let Some(production) = scope.production_id() else {
        return Err(ApiError::Forbidden(
            "only an admin may give or take a role globally or on a base production".into(),
        ));
    };
    let held = caller.require_held(state, Policy::Administer, production).await?;
    for role in roles {
        let lacking: Vec<&str> = role
            .policies
            .iter()
            .filter(|p| !held.contains(p))
            .map(String::as_str)
            .collect();
        if !lacking.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "role `{}` carries {} that you do not hold on this production",
                role.name,
                lacking.join(", ")
            )));
        }
    }
    Ok(())
}

/// Allows managing production `id`'s members: `administer` there (admins hold it on
/// every production); `404` for a production there is not. The caller's policies there.
async fn administered(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Vec<String>> {
    let held = caller.require_held(state, Policy::Administer, id).await?;
    super::productions::exists(state, id).await?;
    Ok(held)
}

/// Another user's roles and rights name productions (archived ones too): for admins;
/// anyone may read their own.
fn oneself_or_admin(caller: &Caller, id: Uuid) -> ApiResult<()> {
    if caller.is_admin || caller.user_id == Some(id) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only an admin may read another user's roles and rights".into(),
        ))
    }
}

/// The user's name, if the account exists and is not deleted.
async fn username(state: &AppState, id: Uuid) -> ApiResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT username FROM users WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&state.db)
            .await?,
    )
}

/// Gives `role_id` to `user` in `scope` (already there: nothing changes) → whether it
/// was new. The caller's right to manage `scope` at all is checked first, by the route,
/// so that a scope they may not manage tells them nothing.
async fn grant(state: &AppState, caller: &Caller, user: Uuid, role_id: Uuid, scope: &Scope) -> ApiResult<bool> {
    scope.validate(state).await?;
    let role = roles::find(state, role_id, "role_id").await?;
    may_assign(state, caller, std::slice::from_ref(&role), scope).await?;
    let mut tx = state.db.begin().await?;
    let added = sqlx::query(
        "INSERT INTO user_roles (user_id, role_id, scope_type, scope_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(user)
    .bind(role.id)
    .bind(&scope.scope_type)
    .bind(scope.scope_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if added {
        audit::record(
            &mut *tx,
            caller,
            Change {
                action: "user.add_role",
                target_type: "user",
                target_id: Some(user.to_string()),
                before: None,
                after: Some(json!({ "role_id": role.id, "role": role.name, "scope_type": scope.scope_type, "scope_id": scope.scope_id })),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(added)
}

/// Takes from `user` their own roles in `scope` (`role`: only that one) → how many. A
/// production's administrator takes only roles whose policies they hold there.
async fn take(state: &AppState, caller: &Caller, user: Uuid, role: Option<Uuid>, scope: &Scope) -> ApiResult<u64> {
    let mut tx = state.db.begin().await?;
    let held: Vec<Role> = sqlx::query_as(
        "SELECT r.id, r.name, r.policies, r.builtin FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
         WHERE ur.user_id = $1 AND ($2::uuid IS NULL OR ur.role_id = $2) \
           AND ur.scope_type = $3 AND ur.scope_id IS NOT DISTINCT FROM $4 \
         FOR UPDATE OF ur",
    )
    .bind(user)
    .bind(role)
    .bind(&scope.scope_type)
    .bind(scope.scope_id)
    .fetch_all(&mut *tx)
    .await?;
    may_assign(state, caller, &held, scope).await?;
    let ids: Vec<Uuid> = held.iter().map(|r| r.id).collect();
    sqlx::query(
        "DELETE FROM user_roles WHERE user_id = $1 AND role_id = ANY($2) \
           AND scope_type = $3 AND scope_id IS NOT DISTINCT FROM $4",
    )
    .bind(user)
    .bind(&ids)
    .bind(&scope.scope_type)
    .bind(scope.scope_id)
    .execute(&mut *tx)
    .await?;
    for role in &held {
        audit::record(
            &mut *tx,
            caller,
            Change {
                action: "user.remove_role",
                target_type: "user",
                target_id: Some(user.to_string()),
                before: Some(json!({ "role_id": role.id, "role": role.name, "scope_type": scope.scope_type, "scope_id": scope.scope_id })),
                after: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(held.len() as u64)
}

/// Every role the user carries, where, and through what (`group` null: their own).
async fn assignments(state: &AppState, user: Uuid) -> ApiResult<Vec<Assignment>> {
    Ok(sqlx::query_as(
        "SELECT a.role_id, r.name AS role, a.policies, a.scope_type, a.scope_id, \
                CASE a.scope_type WHEN 'production' THEN (SELECT b.name || ' Series ' || p.series \
                        FROM productions p JOIN base_productions b ON b.id = p.base_production_id WHERE p.id = a.scope_id) \
                     WHEN 'base_production' THEN (SELECT b.name FROM base_productions b WHERE b.id = a.scope_id) \
                END AS scope_name, \
                a.group_id, g.name AS group_name \
         FROM user_role_assignments($1) a JOIN roles r ON r.id = a.role_id LEFT JOIN groups g ON g.id = a.group_id \
         ORDER BY a.group_id IS NOT NULL, r.name, a.scope_type, scope_name",
    )
    .bind(user)
    .fetch_all(&state.db)
    .await?)
}

#[derive(Debug, serde::Serialize, sqlx::FromRow)]
struct Assignment {
    role_id: Uuid,
    role: String,
    policies: Vec<String>,
    scope_type: String,
    scope_id: Option<Uuid>,
    /// The production's or base production's name.
    scope_name: Option<String>,
    /// The group that carries the role; null when the user carries it directly.
    group_id: Option<Uuid>,
    #[serde(rename = "group")]
    group_name: Option<String>,
}

/// The roles a user carries, directly and through their groups (oneself, or an admin).
async fn user_roles(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    oneself_or_admin(&caller, id)?;
    username(&state, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))?;
    Ok(axum::Json(json!({ "roles": assignments(&state, id).await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRole {
    role_id: Uuid,
    #[serde(default = "roles::global")]
    scope_type: String,
    scope_id: Option<Uuid>,
}

/// Gives a user a role of their own → `204` (already there: `204`, nothing changes).
async fn add_user_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<UserRole>,
) -> ApiResult<StatusCode> {
    let scope = Scope {
        scope_type: body.scope_type,
        scope_id: body.scope_id,
    };
    // Whether the account exists is not told to someone who may not give roles here.
    may_assign(&state, &caller, &[], &scope).await?;
    username(&state, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))?;
    grant(&state, &caller, id, body.role_id, &scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a role of their own from a user, in the scope named in the query string
/// (`?scope_type=production&scope_id=…`; global when absent) → `204`, `404` when they
/// do not carry it there.
async fn remove_user_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, role_id)): Path<(Uuid, Uuid)>,
    Query(scope): Query<Scope>,
) -> ApiResult<StatusCode> {
    if take(&state, &caller, id, Some(role_id), &scope).await? == 0 {
        return Err(ApiError::NotFound(format!(
            "user {id} does not carry role {role_id} of their own in scope {scope}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// What a user may do: their global policies, and on each production they see, their
/// policies there and every reason for them (admin, owner, a group's grant, a role
/// through a group or their own, a per-user flag).
async fn effective_policies(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    oneself_or_admin(&caller, id)?;
    let (name, is_admin, may_scan, may_transcode): (String, bool, bool, bool) = sqlx::query_as(
        "SELECT username, user_is_admin(id), may_scan, may_transcode FROM users WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))?;
    let all: Vec<String> = Policy::ALL.iter().map(|p| p.as_str().to_owned()).collect();
    // Admins see every production, archived too, and may do everything on each.
    let productions: Vec<(Uuid, String, Uuid, bool, Vec<String>)> = sqlx::query_as(
        "SELECT p.id, b.name || ' Series ' || p.series, p.base_production_id, p.owner_id IS NOT DISTINCT FROM $1, \
                CASE WHEN $2 THEN '{}'::text[] ELSE user_policies($1, p.id) END \
         FROM productions p JOIN base_productions b ON b.id = p.base_production_id \
         WHERE $2 OR p.id IN (SELECT production_id FROM visible_productions($1)) \
         ORDER BY b.name, p.series LIMIT 1000",
    )
    .bind(id)
    .bind(is_admin)
    .fetch_all(&state.db)
    .await?;
    let global: Vec<String> = if is_admin {
        all.clone()
    } else {
        sqlx::query_scalar("SELECT user_policies($1, NULL)")
            .bind(id)
            .fetch_one(&state.db)
            .await?
    };
    let roles = assignments(&state, id).await?;
    let grants: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT gp.production_id, g.id, g.name FROM group_members gm \
         JOIN group_productions gp ON gp.group_id = gm.group_id JOIN groups g ON g.id = gm.group_id \
         WHERE gm.user_id = $1 ORDER BY g.name",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let mut granted: HashMap<Uuid, Vec<Value>> = HashMap::new();
    for (production, group_id, group) in grants {
        granted
            .entry(production)
            .or_default()
            .push(json!({ "source": "group_grant", "group_id": group_id, "group": group }));
    }
    let productions: Vec<Value> = productions
        .into_iter()
        .map(|(pid, production_name, base, owner, held)| {
            let mut via: Vec<Value> = Vec::new();
            if is_admin {
                via.push(json!({ "source": "admin" }));
            }
            if owner {
                via.push(json!({ "source": "owner" }));
            }
            via.extend(granted.remove(&pid).unwrap_or_default());
            for role in roles.iter().filter(|r| match r.scope_type.as_str() {
                "production" => r.scope_id == Some(pid),
                "base_production" => r.scope_id == Some(base),
                _ => true,
            }) {
                via.push(json!({ "source": "role", "role_id": role.role_id, "role": role.role,
                    "policies": role.policies, "scope_type": role.scope_type, "scope_id": role.scope_id,
                    "group_id": role.group_id, "group": role.group_name }));
            }
            for (flag, set, policy) in [
                ("may_scan", may_scan, "scan"),
                ("may_transcode", may_transcode, "transcode"),
            ] {
                if set && !is_admin {
                    via.push(json!({ "source": "flag", "flag": flag, "policies": [policy] }));
                }
            }
            let policies = if is_admin { all.clone() } else { held };
            json!({ "id": pid, "name": production_name, "policies": policies, "via": via })
        })
        .collect();
    Ok(axum::Json(json!({
        "user_id": id,
        "username": name,
        "is_admin": is_admin,
        "global_policies": global,
        "productions": productions,
    })))
}

/// Everyone who sees a production, with their policies there, the roles of their own
/// on it and the groups that grant it, and the roles the caller may give there (its
/// administrators and admins).
async fn members(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    let held = administered(&state, &caller, id).await?;
    let members: Vec<Member> = sqlx::query_as(
        "SELECT u.id AS user_id, u.username, u.active, p.owner_id IS NOT DISTINCT FROM u.id AS owner, \
                user_policies(u.id, p.id) AS policies, \
                ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
                      WHERE ur.user_id = u.id AND ur.scope_type = 'production' AND ur.scope_id = p.id ORDER BY r.name) AS roles, \
                ARRAY(SELECT g.name FROM group_members gm JOIN group_productions gp ON gp.group_id = gm.group_id \
                      JOIN groups g ON g.id = gm.group_id \
                      WHERE gm.user_id = u.id AND gp.production_id = p.id ORDER BY g.name) AS groups \
         FROM users u, productions p \
         WHERE p.id = $1 AND u.deleted_at IS NULL AND p.id IN (SELECT production_id FROM visible_productions(u.id)) \
         ORDER BY lower(u.username)",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    // The roles the caller may give here: those whose policies they hold on it.
    let assignable: Vec<Role> =
        sqlx::query_as("SELECT id, name, policies, builtin FROM roles WHERE policies <@ $1 ORDER BY name")
            .bind(&held)
            .fetch_all(&state.db)
            .await?;
    Ok(axum::Json(
        json!({ "members": members, "assignable_roles": assignable }),
    ))
}

/// Someone who sees a production, as its members list shows them.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
struct Member {
    user_id: Uuid,
    username: String,
    active: bool,
    owner: bool,
    /// Their policies on the production.
    policies: Vec<String>,
    /// The roles of their own on it.
    roles: Vec<String>,
    /// The groups that grant it to them.
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    /// The member, by id or by username (one of the two).
    user_id: Option<Uuid>,
    username: Option<String>,
    role_id: Uuid,
}

/// Makes a user a member of the production with a role of their own there → `204`.
async fn add_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewMember>,
) -> ApiResult<StatusCode> {
    administered(&state, &caller, id).await?;
    let user: Uuid = match (body.user_id, body.username.as_deref().map(str::trim)) {
        (Some(user), None) => username(&state, user)
            .await?
            .map(|_| user)
            .ok_or_else(|| ApiError::Unprocessable(format!("user_id: there is no user {user}")))?,
        (None, Some(name)) if !name.is_empty() => {
            sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL")
                .bind(name)
                .fetch_optional(&state.db)
                .await?
                .ok_or_else(|| ApiError::Unprocessable(format!("username: there is no user `{name}`")))?
        }
        _ => {
            return Err(ApiError::Unprocessable(
                "name the member by `user_id` or by `username` (one of the two)".into(),
            ));
        }
    };
    grant(&state, &caller, user, body.role_id, &Scope::production(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRemoval {
    /// Only this role (default: every role of their own on the production).
    role_id: Option<Uuid>,
}

/// Takes from a member the roles of their own on the production → `204`; `404` when they
/// have none (access through a group or ownership is an admin's to change).
async fn remove_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Query(removal): Query<MemberRemoval>,
) -> ApiResult<StatusCode> {
    administered(&state, &caller, id).await?;
    if take(&state, &caller, user_id, removal.role_id, &Scope::production(id)).await? == 0 {
        return Err(ApiError::NotFound(format!(
            "user {user_id} has no role of their own on production {id} (access through a group or ownership is \
             changed by an admin)"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}
