//! `/api/v1/auth`: log in (a session bearer token), log out (revoke it), who am I,
//! and password resets. Every login is logged with the client's address; failed logins
//! are limited per username and per address (see [`crate::throttle`]), and so are
//! reset requests.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::accounts;
use rushes_common::job::accounts::AccountLink;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, hash_password, new_token, token_digest};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;
use crate::throttle;

/// Longest username a login takes (new ones are at most 64 characters; this leaves room
/// for older ones).
const MAX_LOGIN_USERNAME: usize = 150;
/// Longest email address (RFC 5321).
const MAX_EMAIL: usize = 254;

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

/// The client's address (see [`crate::client_addr`]).
pub(crate) fn client(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> String {
    state.trusted_proxies.client(headers, peer.ip()).to_string()
}

/// A 429 that says when to try again.
fn limited(what: &str, limit: throttle::Limited) -> ApiError {
    let seconds = limit.seconds(Utc::now());
    ApiError::TooManyRequests(format!("too many {what}; try again in {seconds} s"))
}

pub(crate) async fn log_attempt(
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
    let username = body.username.trim();
    if username.is_empty() {
        return Err(ApiError::Unprocessable("username: must not be empty".into()));
    }
    if username.chars().count() > MAX_LOGIN_USERNAME {
        return Err(ApiError::Unprocessable(format!(
            "username: at most {} characters",
            MAX_LOGIN_USERNAME
        )));
    }
    if body.password.chars().count() > accounts::MAX_PASSWORD {
        return Err(ApiError::Unprocessable(format!(
            "password: at most {} characters",
            accounts::MAX_PASSWORD
        )));
    }
    let remote = client(&state, &headers, peer);
    let account_key = format!("login:account:{}", username.to_lowercase());
    let address_key = format!("login:address:{remote}");
    // Counted before the check, so concurrent guesses are counted one by one.
    let keys = [
        (account_key.clone(), throttle::LOGIN_ACCOUNT),
        (address_key.clone(), throttle::LOGIN_ADDRESS),
    ];
    if let Err(limit) = throttle::attempt(&state.db, &keys, Utc::now()).await? {
        log_attempt(&state, username, None, Some("rate limited"), &remote).await?;
        return Err(limited("failed logins for this account or from this address", limit));
    }
    let account: Option<Account> = sqlx::query_as(
        "SELECT id, password_hash, active FROM users WHERE lower(username) = lower($1) AND deleted_at IS NULL",
    )
    .bind(username)
    .fetch_optional(&state.db)
    .await?;
    // A missing account is checked against the dummy hash: timing does not tell names apart.
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let matches = match crate::passwords::verify_or_dummy(body.password, stored).await {
        Ok(matches) => matches,
        Err(err) => {
            // Not checked (too busy): the attempt does not count.
            throttle::refund(&state.db, &account_key).await?;
            throttle::refund(&state.db, &address_key).await?;
            return Err(err);
        }
    };
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
    // The password was right: the account's count starts again; the address gets this one back.
    throttle::clear(&state.db, &account_key).await?;
    throttle::refund(&state.db, &address_key).await?;
    if !account.active {
        log_attempt(&state, username, Some(account.id), Some("deactivated"), &remote).await?;
        return Err(ApiError::Forbidden("this account is deactivated".into()));
    }
    if state.sso.as_ref().is_some_and(|sso| sso.settings.disable_local_login)
        && super::oidc::is_linked(&state, account.id).await?
    {
        log_attempt(
            &state,
            username,
            Some(account.id),
            Some("password sign-in is off for single sign-on accounts"),
            &remote,
        )
        .await?;
        return Err(ApiError::Forbidden(
            "this account signs in through single sign-on (GET /api/v1/auth/oidc/login)".into(),
        ));
    }
    let (token, expires_at) = open_session(&state, account.id, username, &remote).await?;
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "token": token, "expires_at": expires_at, "user_id": account.id })),
    ))
}

/// Opens a login session for `user` (signed in as `username`): a new session token,
/// returned once and stored as its digest; the user's last login; the login log.
pub(crate) async fn open_session(
    state: &AppState,
    user: Uuid,
    username: &str,
    remote: &str,
) -> ApiResult<(String, DateTime<Utc>)> {
    let token = new_token();
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO tokens (id, user_id, kind, token_hash, expires_at) \
         VALUES ($1, $2, 'session', $3, now() + make_interval(hours => $4)) RETURNING expires_at",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(token_digest(&token))
    .bind(SESSION_HOURS)
    .fetch_one(&state.db)
    .await?;
    sqlx::query("UPDATE users SET last_login_at = now(), last_seen_at = now() WHERE id = $1")
        .bind(user)
        .execute(&state.db)
        .await?;
    log_attempt(state, username, Some(user), None, remote).await?;
    Ok((token, expires_at))
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

/// Mails a reset link if the account exists; the answer is the same either way. Requests
/// are limited per client address (429); mails per account are limited silently, so the
/// answer never tells whether an account exists.
async fn request_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<ResetRequest>,
) -> ApiResult<StatusCode> {
    let user = body.user.trim();
    if user.chars().count() > MAX_LOGIN_USERNAME.max(MAX_EMAIL) {
        return Err(ApiError::Unprocessable(format!(
            "user: at most {} characters",
            MAX_LOGIN_USERNAME.max(MAX_EMAIL)
        )));
    }
    let remote = client(&state, &headers, peer);
    let now = Utc::now();
    let address = [(format!("reset:address:{remote}"), throttle::RESET_ADDRESS)];
    if let Err(limit) = throttle::attempt(&state.db, &address, now).await? {
        return Err(limited("password-reset requests from this address", limit));
    }
    let account: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users \
         WHERE (lower(username) = lower($1) OR lower(email) = lower($1)) AND active AND deleted_at IS NULL LIMIT 1",
    )
    .bind(user)
    .fetch_optional(&state.db)
    .await?;
    if let Some(id) = account {
        let account = [(format!("reset:account:{id}"), throttle::RESET_ACCOUNT)];
        match throttle::attempt(&state.db, &account, now).await? {
            Ok(()) => crate::mail::send_link(&state, AccountLink::PasswordReset { user_id: id }).await?,
            Err(_) => tracing::info!(user_id = %id, "password reset not mailed: too many for this account"),
        }
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
    reset_password(&state, &body.token, body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a new password with a reset token, once (the API and the reset page).
pub(crate) async fn reset_password(state: &AppState, token: &str, password: String) -> ApiResult<()> {
    super::users::check_password(&password)?;
    let hash = hash_password(password).await?;
    let mut tx = state.db.begin().await?;
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE password_resets SET used_at = now() \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(token_digest(token))
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
    Ok(())
}

async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> ApiResult<axum::Json<Value>> {
    let policies = caller.policies(&state, None).await?;
    // The productions the caller can see, with what they may do on each (an admin
    // sees every one and may do everything).
    let productions: Vec<(Uuid, String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.id, b.name || ' Series ' || p.series, \
                CASE WHEN $1::uuid IS NULL THEN NULL ELSE user_policies($1, p.id) END \
         FROM productions p JOIN base_productions b ON b.id = p.base_production_id \
         WHERE $1::uuid IS NULL OR p.id IN (SELECT production_id FROM visible_productions($1)) \
         ORDER BY b.name, p.series LIMIT 1000",
    )
    .bind(caller.scope())
    .fetch_all(&state.db)
    .await?;
    let productions: Vec<Value> = productions
        .into_iter()
        .map(|(id, name, held)| json!({ "id": id, "name": name, "policies": held.unwrap_or_else(|| policies.clone()) }))
        .collect();
    Ok(axum::Json(json!({
        "name": caller.name,
        "user_id": caller.user_id,
        "is_admin": caller.is_admin,
        "impersonator_id": caller.impersonator_id,
        "global_policies": policies,
        "productions": productions,
    })))
}
