//! `/api/v1/auth`: log in (a session bearer token), log out (revoke it), who am I.
//! Failed logins are logged and rate limited per username.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use rushes_common::job::accounts::AccountLink;

use crate::auth::{Caller, hash_password, new_token, token_digest, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

/// Failed logins of one username within [`FAILURE_WINDOW_MIN`] minutes before it is refused.
const MAX_FAILURES: i64 = 5;
const FAILURE_WINDOW_MIN: i32 = 15;
/// Hours a login session lasts.
const SESSION_HOURS: i32 = 12;

/// Routes that need no token.
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/password-reset", post(request_reset))
        .route("/auth/password-reset/confirm", post(confirm_reset))
        .route("/invitations/accept", post(super::invitations::accept))
}

/// Routes of an authenticated caller.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

#[derive(sqlx::FromRow)]
struct Account {
    id: Uuid,
    password_hash: Option<String>,
    active: bool,
}

/// The client's address: the first `X-Forwarded-For` hop behind a proxy, else the peer.
fn remote(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| peer.ip().to_string())
}

async fn log_attempt(
    state: &AppState,
    username: &str,
    user: Option<Uuid>,
    failure: Option<&str>,
    remote: &str,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO login_log (id, username, user_id, success, reason, remote) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(username)
    .bind(user)
    .bind(failure.is_none())
    .bind(failure)
    .bind(remote)
    .execute(&state.db)
    .await?;
    Ok(())
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Login>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let remote = remote(&headers, peer);
    let username = body.username.trim();
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM login_log WHERE lower(username) = lower($1) AND NOT success \
            AND at > now() - make_interval(mins => $2)",
    )
    .bind(username)
    .bind(FAILURE_WINDOW_MIN)
    .fetch_one(&state.db)
    .await?;
    if failures >= MAX_FAILURES {
        log_attempt(&state, username, None, Some("rate limited"), &remote).await?;
        return Err(ApiError::TooManyRequests(format!(
            "too many failed logins for `{username}`; try again in {FAILURE_WINDOW_MIN} minutes"
        )));
    }
    let account: Option<Account> = sqlx::query_as(
        "SELECT id, password_hash, active FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL",
    )
    .bind(username)
    .fetch_optional(&state.db)
    .await?;
    // A missing account still costs a hash check, so timing does not tell names apart.
    let hash = match account.as_ref().and_then(|a| a.password_hash.clone()) {
        Some(hash) => hash,
        None => hash_password("not a password".into()).await?,
    };
    let matches = verify_password(body.password, hash).await;
    let account = match account {
        Some(account) if matches => account,
        other => {
            log_attempt(
                &state,
                username,
                other.map(|a| a.id),
                Some("wrong username or password"),
                &remote,
            )
            .await?;
            return Err(ApiError::WrongCredentials);
        }
    };
    if !account.active {
        log_attempt(&state, username, Some(account.id), Some("deactivated"), &remote).await?;
        return Err(ApiError::Forbidden("this account is deactivated".into()));
    }
    let token = new_token();
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO tokens (id, user_id, kind, token_hash, expires_at) \
         VALUES ($1, $2, 'session', $3, now() + make_interval(hours => $4)) RETURNING expires_at",
    )
    .bind(Uuid::now_v7())
    .bind(account.id)
    .bind(token_digest(&token))
    .bind(SESSION_HOURS)
    .fetch_one(&state.db)
    .await?;
    sqlx::query("UPDATE users SET last_login_at = now(), last_seen_at = now() WHERE id = $1")
        .bind(account.id)
        .execute(&state.db)
        .await?;
    log_attempt(&state, username, Some(account.id), None, &remote).await?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "token": token, "expires_at": expires_at, "user_id": account.id })),
    ))
}

/// Revokes the token of this request (ends an impersonation, too).
async fn logout(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<StatusCode> {
    let Some(token) = caller.token_id else {
        return Err(ApiError::Conflict("the bootstrap admin token cannot be revoked".into()));
    };
    sqlx::query("UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
        .bind(token)
        .execute(&state.db)
        .await?;
    if let (Some(impersonator), Some(user)) = (caller.impersonator_id, caller.user_id) {
        super::users::impersonation_event(&state, impersonator, user, "stop").await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    /// A username or an email address.
    user: String,
}

/// Mails a reset link if the account exists; the answer is the same either way.
async fn request_reset(State(state): State<AppState>, Json(body): Json<ResetRequest>) -> ApiResult<StatusCode> {
    let account: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users \
         WHERE (lower(username) = lower($1) OR lower(email) = lower($1)) AND active AND deleted_at IS NULL LIMIT 1",
    )
    .bind(body.user.trim())
    .fetch_optional(&state.db)
    .await?;
    if let Some(id) = account {
        crate::mail::send_link(&state, AccountLink::PasswordReset { user_id: id }).await?;
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirm {
    token: String,
    password: String,
}

/// Sets the new password with a reset token (once), and revokes the user's sessions.
async fn confirm_reset(State(state): State<AppState>, Json(body): Json<ResetConfirm>) -> ApiResult<StatusCode> {
    super::users::check_password(&body.password)?;
    let hash = hash_password(body.password).await?;
    let mut tx = state.db.begin().await?;
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE password_resets SET used_at = now() \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(token_digest(&body.token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user) = user else {
        return Err(ApiError::Unprocessable("token: invalid, used or expired".into()));
    };
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    // Whoever held the old password may hold tokens too: every one of them ends.
    super::users::revoke_tokens(&mut *tx, user, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<axum::Json<Value>> {
    let policies = caller.policies(&state, None).await?;
    Ok(axum::Json(json!({
        "name": caller.name,
        "user_id": caller.user_id,
        "is_admin": caller.is_admin,
        "impersonator_id": caller.impersonator_id,
        "global_policies": policies,
    })))
}
