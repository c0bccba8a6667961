//! `/api/v1/invitations`: invite people by email into groups. An invitation is pending
//! until accepted (which creates the account), and can be resent (a new link) or revoked.
//! The invited list is kept apart from the members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::accounts::{AccountLink, INVITATION_DAYS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy, hash_password, new_token, token_digest};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Days an invitation link stays valid.
const VALID_DAYS: i64 = INVITATION_DAYS;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/invitations", post(create).get(list))
        .route("/invitations/{id}", axum::routing::delete(revoke))
        .route("/invitations/{id}/resend", post(resend))
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct InvitationView {
    id: Uuid,
    email: String,
    group_ids: Vec<Uuid>,
    invited_by: String,
    created_at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    accepted_user_id: Option<Uuid>,
    revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, email, group_ids, invited_by, created_at, sent_at, expires_at, accepted_at, \
                       accepted_user_id, revoked_at";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvitation {
    email: String,
    #[serde(default)]
    group_ids: Vec<Uuid>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewInvitation>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let email = body.email.trim().to_owned();
    super::users::check_email(&email)?;
    let member: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL)")
            .bind(&email)
            .fetch_one(&state.db)
            .await?;
    if member {
        return Err(ApiError::Conflict(format!("{email} already has an account")));
    }
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE id = ANY($1)")
        .bind(&body.group_ids)
        .fetch_one(&state.db)
        .await?;
    if usize::try_from(known).unwrap_or(0) != body.group_ids.len() {
        return Err(ApiError::Unprocessable("group_ids: unknown group".into()));
    }
    caller.require_may_grant(&state, &body.group_ids).await?;
    // A placeholder digest of a token nobody holds: the worker mints the link it mails.
    let token = new_token();
    let invitation: InvitationView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO invitations (id, email, group_ids, token_hash, invited_by, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6)) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&email)
    .bind(&body.group_ids)
    .bind(token_digest(&token))
    .bind(&caller.name)
    .bind(i32::try_from(VALID_DAYS).unwrap_or(14))
    .fetch_one(&state.db)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!("{email} already has a pending invitation")),
        other => other,
    })?;
    audit::record(
        &state.db,
        &caller,
        Change {
            action: "invitation.create",
            target_type: "invitation",
            target_id: Some(invitation.id.to_string()),
            before: None,
            after: Some(json!(invitation)),
        },
    )
    .await?;
    crate::mail::send_link(
        &state,
        AccountLink::Invitation {
            invitation_id: invitation.id,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(invitation)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListInvitations {
    /// `pending` (default), `accepted`, `revoked` or `all`.
    state: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListInvitations>,
) -> ApiResult<axum::Json<Value>> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let filter = match q.state.as_deref().unwrap_or("pending") {
        "pending" => "accepted_at IS NULL AND revoked_at IS NULL",
        "accepted" => "accepted_at IS NOT NULL",
        "revoked" => "revoked_at IS NOT NULL",
        "all" => "true",
        other => {
            return Err(ApiError::BadRequest(format!(
                "state `{other}` is not one of pending, accepted, revoked, all"
            )));
        }
    };
    let invitations: Vec<InvitationView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM invitations WHERE {filter} ORDER BY id DESC LIMIT 5000"
    )))
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({ "invitations": invitations })))
}

/// A new link (the old one stops working), valid for another [`VALID_DAYS`] days.
async fn resend(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<InvitationView>> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    // The old link stops working now; the worker mints and mails the new one.
    let token = new_token();
    let invitation: InvitationView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE invitations SET token_hash = $2, sent_at = now(), expires_at = now() + make_interval(days => $3) \
         WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(token_digest(&token))
    .bind(i32::try_from(VALID_DAYS).unwrap_or(14))
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no pending invitation {id}")))?;
    caller.require_may_grant(&state, &invitation.group_ids).await?;
    crate::mail::send_link(&state, AccountLink::Invitation { invitation_id: id }).await?;
    Ok(axum::Json(invitation))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let revoked: Option<Uuid> = sqlx::query_scalar(
        "UPDATE invitations SET revoked_at = now() WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL \
         RETURNING id",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    if revoked.is_none() {
        return Err(ApiError::NotFound(format!("no pending invitation {id}")));
    }
    audit::record(
        &state.db,
        &caller,
        Change {
            action: "invitation.revoke",
            target_type: "invitation",
            target_id: Some(id.to_string()),
            before: None,
            after: None,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Accept {
    token: String,
    username: String,
    password: String,
}

/// Public: the invited person picks a username and password; the account is created
/// with the invitation's email and groups.
pub(crate) async fn accept(State(state): State<AppState>, Json(body): Json<Accept>) -> ApiResult<impl IntoResponse> {
    let (user, username) = accept_invitation(&state, &body.token, &body.username, body.password).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "user_id": user, "username": username })),
    ))
}

/// Creates the invited account with the invitation's email and groups (the API and
/// the invitation page); its id and username.
pub(crate) async fn accept_invitation(
    state: &AppState,
    token: &str,
    username: &str,
    password: String,
) -> ApiResult<(Uuid, String)> {
    super::users::check_password(&password)?;
    let username = super::users::check_username(username)?;
    let hash = hash_password(password).await?;
    let mut tx = state.db.begin().await?;
    let invitation: Option<(Uuid, String, Vec<Uuid>)> = sqlx::query_as(
        "SELECT id, email, group_ids FROM invitations \
         WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now() FOR UPDATE",
    )
    .bind(token_digest(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((invitation, email, groups)) = invitation else {
        return Err(ApiError::Unprocessable(
            "token: invalid, used, revoked or expired".into(),
        ));
    };
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $3, $4)")
        .bind(user)
        .bind(&username)
        .bind(&email)
        .bind(hash)
        .execute(&mut *tx)
        .await
        .map_err(super::users::taken)?;
    sqlx::query("INSERT INTO group_members (group_id, user_id) SELECT g, $2 FROM unnest($1::uuid[]) AS g")
        .bind(&groups)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE invitations SET accepted_at = now(), accepted_user_id = $2 WHERE id = $1")
        .bind(invitation)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((user, username))
}
