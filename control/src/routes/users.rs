//! `/api/v1/users`: local accounts (argon2id passwords), flags, deactivation and soft
//! deletion (both revoke every token), personal API tokens, "create like another", and
//! impersonation by an admin.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::JobPayload;
use rushes_common::job::accounts::{AccountLink, ImportUsers, PurgeUsers, USER_CSV_COLUMNS, split_passwords};
use rushes_common::job::store::{self, NewJob};
use rushes_common::mail;
use rushes_common::settings;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy, hash_password, new_token, token_digest};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, Text};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create).get(list))
        .route("/users/{id}", get(show).patch(update).delete(remove))
        .route("/users/{id}/tokens", post(create_token).get(list_tokens))
        .route("/users/{id}/tokens/{token_id}", axum::routing::delete(revoke_token))
        .route("/users/{id}/impersonate", post(impersonate))
        .route("/users/{id}/password-reset", post(send_reset))
        .route("/users/import/template", get(import_template))
        .route("/users/import", post(import))
        .route("/users/purge-deleted", post(purge_deleted))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub(crate) struct UserView {
    id: Uuid,
    username: String,
    email: String,
    is_admin: bool,
    active: bool,
    may_scan: bool,
    may_transcode: bool,
    deleted_at: Option<DateTime<Utc>>,
    last_login_at: Option<DateTime<Utc>>,
    last_seen_at: Option<DateTime<Utc>>,
    /// The names of the groups the user is a member of.
    groups: Vec<String>,
    /// Seen within the `online_window_minutes` setting.
    #[sqlx(default)]
    online: bool,
    created_at: DateTime<Utc>,
}

/// Sets `online` from each user's last request and the online-window setting; returns the window.
async fn mark_online(state: &AppState, users: &mut [UserView]) -> ApiResult<i64> {
    let window = settings::integer(&state.db, settings::ONLINE_WINDOW_MINUTES).await?;
    let since = Utc::now() - chrono::Duration::minutes(window);
    for user in users {
        user.online = user.last_seen_at.is_some_and(|seen| seen > since);
    }
    Ok(window)
}

macro_rules! user_select {
    () => {
        "SELECT id, username, email, is_admin, active, may_scan, may_transcode, deleted_at, last_login_at, \
                last_seen_at, created_at, \
                ARRAY(SELECT g.name FROM group_members m JOIN groups g ON g.id = m.group_id \
                      WHERE m.user_id = users.id ORDER BY g.name) AS groups \
         FROM users "
    };
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<UserView> {
    let mut user: UserView = sqlx::query_as(concat!(user_select!(), "WHERE id = $1"))
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))?;
    mark_online(state, std::slice::from_mut(&mut user)).await?;
    Ok(user)
}

fn snapshot(user: &UserView) -> Value {
    serde_json::to_value(user).unwrap_or(Value::Null)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    may_scan: bool,
    #[serde(default)]
    may_transcode: bool,
    /// Copy this user's groups and flags ("create a user like another").
    like_user_id: Option<Uuid>,
}

/// A username as stored: trimmed, 1 to 64 of letters, digits, `.`, `_`, `-` and `@`
/// (an email address works), starting with a letter or digit, and not a reserved name
/// (`admin`, in any case: the bootstrap token's).
pub(crate) fn check_username(username: &str) -> ApiResult<String> {
    let username = username.trim();
    let problem = rushes_common::accounts::username_problem(username)
        .or_else(|| rushes_common::accounts::reserved_problem(username));
    match problem {
        Some(problem) => Err(ApiError::Unprocessable(problem)),
        None => Ok(username.to_owned()),
    }
}

/// A new password: 8 to 1024 characters.
pub(crate) fn check_password(password: &str) -> ApiResult<()> {
    match rushes_common::accounts::password_problem(password) {
        Some(problem) => Err(ApiError::Unprocessable(problem)),
        None => Ok(()),
    }
}

pub(crate) fn check_email(email: &str) -> ApiResult<()> {
    if mail::looks_like_address(email) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "email: `{email}` is not an email address"
        )))
    }
}

/// A unique-violation as a 409 that names what is taken.
pub(crate) fn taken(err: sqlx::Error) -> ApiError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            ApiError::Conflict("that username or email is already in use".into())
        }
        _ => err.into(),
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewUser>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    if body.is_admin {
        caller.require_admin()?;
    }
    let username = check_username(&body.username)?;
    if let Some(like) = body.like_user_id {
        let groups: Vec<Uuid> = sqlx::query_scalar("SELECT group_id FROM group_members WHERE user_id = $1")
            .bind(like)
            .fetch_all(&state.db)
            .await?;
        caller.require_may_grant(&state, &groups).await?;
    }
    let email = body.email.trim().to_owned();
    check_email(&email)?;
    check_password(&body.password)?;
    let hash = hash_password(body.password).await?;
    let mut tx = state.db.begin().await?;
    let like: Option<(bool, bool)> = match body.like_user_id {
        Some(like) => Some(
            sqlx::query_as("SELECT may_scan, may_transcode FROM users WHERE id = $1")
                .bind(like)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| ApiError::Unprocessable(format!("like_user_id: no user {like}")))?,
        ),
        None => None,
    };
    let (may_scan, may_transcode) = like.unwrap_or((body.may_scan, body.may_transcode));
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO users (id, username, email, password_hash, is_admin, may_scan, may_transcode) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&username)
    .bind(&email)
    .bind(hash)
    .bind(body.is_admin)
    .bind(may_scan)
    .bind(may_transcode)
    .execute(&mut *tx)
    .await
    .map_err(taken)?;
    if let Some(like) = body.like_user_id {
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) SELECT group_id, $2 FROM group_members WHERE user_id = $1",
        )
        .bind(like)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let user: UserView = sqlx::query_as(concat!(user_select!(), "WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "user.create",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(snapshot(&user)),
        },
    )
    .await?;
    tx.commit().await?;
    crate::mail::send(
        &state,
        &email,
        mail::account_created(&username, &email, &state.public_url),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListUsers {
    #[serde(default)]
    include_deleted: bool,
    active: Option<bool>,
    /// Only users seen within the `online_window_minutes` setting: who is online.
    #[serde(default)]
    online: bool,
    /// Users whose username or email contains this text, in any case.
    q: Option<String>,
    limit: Option<i64>,
    /// The `next_before` of the previous page: users after that one, by username.
    before: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListUsers>,
) -> ApiResult<axum::Json<Value>> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let limit = super::limit(q.limit)?;
    let window = settings::integer(&state.db, settings::ONLINE_WINDOW_MINUTES).await?;
    let search = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let mut users: Vec<UserView> = sqlx::query_as(concat!(
        user_select!(),
        "WHERE ($1 OR deleted_at IS NULL) AND ($2::bool IS NULL OR active = $2) \
           AND ($3::uuid IS NULL OR (username, id) > (SELECT c.username, c.id FROM users c WHERE c.id = $3)) \
           AND (NOT $5 OR last_seen_at > now() - make_interval(mins => $6::int)) \
           AND ($7::text IS NULL OR strpos(lower(username), lower($7)) > 0 OR strpos(lower(email), lower($7)) > 0) \
         ORDER BY username, id LIMIT $4"
    ))
    .bind(q.include_deleted)
    .bind(q.active)
    .bind(q.before)
    .bind(limit)
    .bind(q.online)
    .bind(i32::try_from(window).unwrap_or(i32::MAX))
    .bind(search)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&users, limit, |u| u.id);
    let window = mark_online(&state, &mut users).await?;
    Ok(axum::Json(
        json!({ "users": users, "online_window_minutes": window, "next_before": next_before }),
    ))
}

/// Seeing an account: oneself, or anyone with `manage_users`.
async fn may_view(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    if caller.user_id == Some(id) {
        return Ok(());
    }
    caller.require_global(state, Policy::ManageUsers).await
}

/// Changing an account: oneself, or a user manager (an admin for an admin's account).
async fn may_change(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    if caller.user_id == Some(id) {
        return Ok(());
    }
    caller.require_may_change_user(state, id).await
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<UserView>> {
    may_view(&state, &caller, id).await?;
    Ok(axum::Json(find(&state, id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    email: Option<String>,
    password: Option<String>,
    /// Required to change one's own password or email.
    current_password: Option<String>,
    is_admin: Option<bool>,
    active: Option<bool>,
    may_scan: Option<bool>,
    may_transcode: Option<bool>,
}

/// Revokes every token of `user` (sessions and API tokens) but `keep`.
pub(crate) async fn revoke_tokens<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    user: Uuid,
    keep: Option<Uuid>,
) -> ApiResult<()> {
    sqlx::query(
        "UPDATE tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL \
            AND id IS DISTINCT FROM $2",
    )
    .bind(user)
    .bind(keep)
    .execute(executor)
    .await?;
    Ok(())
}

/// Checks the caller's current password before they change their own credentials.
async fn require_current_password(state: &AppState, user: Uuid, current: Option<String>) -> ApiResult<()> {
    let Some(current) = current else {
        return Err(ApiError::Unprocessable(
            "current_password: required to change your own password or email".into(),
        ));
    };
    let hash: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(&state.db)
        .await?
        .flatten();
    let matches = match hash {
        Some(hash) => crate::auth::verify_password(current, hash).await?,
        None => false,
    };
    if matches {
        Ok(())
    } else {
        Err(ApiError::Forbidden("current_password: does not match".into()))
    }
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<UserUpdate>,
) -> ApiResult<axum::Json<UserView>> {
    may_change(&state, &caller, id).await?;
    let self_service =
        body.is_admin.is_none() && body.active.is_none() && body.may_scan.is_none() && body.may_transcode.is_none();
    if !self_service {
        caller.require_may_change_user(&state, id).await?;
    }
    if body.is_admin.is_some() {
        caller.require_admin()?;
    }
    let credentials = body.email.is_some() || body.password.is_some();
    if credentials {
        caller.require_not_impersonating("changing a password or email")?;
        if caller.user_id == Some(id) {
            require_current_password(&state, id, body.current_password.clone()).await?;
        }
    }
    if let Some(email) = &body.email {
        check_email(email.trim())?;
    }
    let hash = match body.password {
        Some(password) => {
            check_password(&password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let before = find(&state, id).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE users SET email = COALESCE($2, email), password_hash = COALESCE($3, password_hash), \
             is_admin = COALESCE($4, is_admin), active = COALESCE($5, active), \
             may_scan = COALESCE($6, may_scan), may_transcode = COALESCE($7, may_transcode) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(body.email.map(|e| e.trim().to_owned()))
    .bind(hash.as_ref())
    .bind(body.is_admin)
    .bind(body.active)
    .bind(body.may_scan)
    .bind(body.may_transcode)
    .execute(&mut *tx)
    .await
    .map_err(taken)?;
    if body.active == Some(false) {
        revoke_tokens(&mut *tx, id, None).await?;
        super::shares::revoke_all_of(&mut *tx, id).await?;
    } else if hash.is_some() {
        // A new password ends every other session and API token of the account.
        let keep = caller.token_id.filter(|_| caller.user_id == Some(id));
        revoke_tokens(&mut *tx, id, keep).await?;
    }
    let after: UserView = sqlx::query_as(concat!(user_select!(), "WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let mut changed = snapshot(&after);
    if hash.is_some() {
        changed["password"] = json!("changed");
    }
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "user.update",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: Some(snapshot(&before)),
            after: Some(changed),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(after))
}

/// Soft delete: the account can no longer log in and its tokens and share links are
/// revoked; its history stays.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_may_change_user(&state, id).await?;
    let before = find(&state, id).await?;
    if before.deleted_at.is_some() {
        return Err(ApiError::NotFound(format!("user {id} is already deleted")));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET deleted_at = now(), active = false WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    revoke_tokens(&mut *tx, id, None).await?;
    super::shares::revoke_all_of(&mut *tx, id).await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "user.delete",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: Some(snapshot(&before)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// Days until it expires (1 to 3650; default 90).
    expires_in_days: Option<i32>,
}

/// Days a personal API token lives unless asked otherwise.
const DEFAULT_TOKEN_DAYS: i32 = 90;

/// A personal API token for scripts; shown once. Only for oneself, or by an admin; never
/// while impersonating.
async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewToken>,
) -> ApiResult<impl IntoResponse> {
    caller.require_not_impersonating("creating an API token")?;
    if caller.user_id != Some(id) {
        caller
            .require_admin()
            .map_err(|_| ApiError::Forbidden("only an admin may create tokens for someone else".into()))?;
    }
    let user = find(&state, id).await?;
    if !user.active || user.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("user {id} is not active")));
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=3650).contains(&days) {
        return Err(ApiError::Unprocessable("expires_in_days: between 1 and 3650".into()));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::Unprocessable("name: 1 to 100 characters".into()));
    }
    let token = new_token();
    let mut tx = state.db.begin().await?;
    let view: TokenView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tokens (id, user_id, kind, name, token_hash, expires_at) \
         VALUES ($1, $2, 'api', $3, $4, now() + make_interval(days => $5)) RETURNING {TOKEN_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(id)
    .bind(name)
    .bind(token_digest(&token))
    .bind(days)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "token.create",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(json!(view)),
        },
    )
    .await?;
    tx.commit().await?;
    let mut shown = json!(view);
    shown["token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(shown)))
}

/// A token as lists show it: never its secret.
#[derive(Debug, Serialize, sqlx::FromRow)]
struct TokenView {
    id: Uuid,
    kind: String,
    name: Option<String>,
    impersonator_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str = "id, kind, name, impersonator_id, created_at, expires_at, last_used_at, revoked_at";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTokens {
    /// Also revoked and expired tokens.
    #[serde(default)]
    all: bool,
}

/// The user's tokens (sessions and API tokens), newest first.
async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Query(q): Query<ListTokens>,
) -> ApiResult<axum::Json<Value>> {
    may_change(&state, &caller, id).await?;
    find(&state, id).await?;
    let tokens: Vec<TokenView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 \
           AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))) \
         ORDER BY created_at DESC LIMIT 1000"
    )))
    .bind(id)
    .bind(q.all)
    .fetch_all(&state.db)
    .await?;
    let current = caller.token_id;
    let tokens: Vec<Value> = tokens
        .into_iter()
        .map(|t| {
            let is_current = current == Some(t.id);
            let mut v = json!(t);
            v["current"] = json!(is_current);
            v
        })
        .collect();
    Ok(axum::Json(json!({ "tokens": tokens })))
}

/// Revokes one of the user's tokens.
async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, token_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    may_change(&state, &caller, id).await?;
    let mut tx = state.db.begin().await?;
    let revoked: Option<TokenView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL \
         RETURNING {TOKEN_COLUMNS}"
    )))
    .bind(token_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(revoked) = revoked else {
        return Err(ApiError::NotFound(format!("user {id} has no active token {token_id}")));
    };
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "token.revoke",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: Some(json!(revoked)),
            after: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(sqlx::FromRow)]
struct TemplateRow {
    username: String,
    email: String,
    is_admin: bool,
    active: bool,
    may_scan: bool,
    may_transcode: bool,
    groups: Option<String>,
}

/// The users CSV with every current user: edit it and import it back.
async fn import_template(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let users: Vec<TemplateRow> = sqlx::query_as(
        "SELECT u.username, u.email, u.is_admin, u.active, u.may_scan, u.may_transcode, \
                (SELECT string_agg(g.name, ';' ORDER BY g.name) FROM group_members m JOIN groups g ON g.id = m.group_id \
                 WHERE m.user_id = u.id) AS groups \
         FROM users u WHERE u.deleted_at IS NULL ORDER BY u.username",
    )
    .fetch_all(&state.db)
    .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: &[String]| {
        out.write_record(record)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot write CSV")))
    };
    write(&mut out, &USER_CSV_COLUMNS.map(str::to_owned))?;
    for user in users {
        let flags = [user.is_admin, user.active, user.may_scan, user.may_transcode].map(|f| f.to_string());
        let mut record = vec![user.username, user.email];
        record.extend(flags);
        record.push(user.groups.unwrap_or_default());
        record.push(String::new());
        let record: Vec<String> = record.iter().map(|cell| spreadsheet_safe(cell)).collect();
        write(&mut out, &record)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot write CSV: {e}")))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"users.csv\"",
            ),
        ],
        body,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Queues an import of the CSV body (all or nothing; `?dry_run=true` only reports) → `202`.
async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ImportQuery>,
    Text(body): Text,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let (csv, passwords) = split_passwords(&body).map_err(|errors| ApiError::Unprocessable(errors.join("; ")))?;
    let mut password_hashes = std::collections::BTreeMap::new();
    if !q.dry_run {
        for row in passwords {
            password_hashes.insert(row.username, hash_password(row.password).await?);
        }
    }
    let payload = ImportUsers {
        csv,
        dry_run: q.dry_run,
        requester: caller.requester(),
        password_hashes,
    };
    queue_job(&state, &caller, &payload).await
}

/// Oldest deletion a purge may look back to (a hundred years), within PostgreSQL's intervals.
const MAX_PURGE_DAYS: u32 = 36_500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    #[serde(default)]
    deleted_days_ago: u32,
}

/// Queues the purge of soft-deleted users → `202`.
async fn purge_deleted(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<PurgeBody>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    if body.deleted_days_ago > MAX_PURGE_DAYS {
        return Err(ApiError::Unprocessable(format!(
            "deleted_days_ago: 0 to {MAX_PURGE_DAYS}"
        )));
    }
    let payload = PurgeUsers {
        deleted_days_ago: body.deleted_days_ago,
    };
    queue_job(&state, &caller, &payload).await
}

/// Queues a bulk account job in the caller's name → `202` with the job.
pub(crate) async fn queue_job<P: JobPayload>(
    state: &AppState,
    caller: &Caller,
    payload: &P,
) -> ApiResult<(StatusCode, axum::Json<rushes_common::job::JobRecord>)> {
    let job = NewJob::of(payload).requested_by(&caller.name);
    let job = store::enqueue_one(&state.db, &state.publisher, job).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)))
}

/// An admin (or user manager) sends a user a reset link.
async fn send_reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_may_change_user(&state, id).await?;
    let user = find(&state, id).await?;
    if !user.active || user.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("user {id} is not active")));
    }
    crate::mail::send_link(&state, AccountLink::PasswordReset { user_id: id }).await?;
    audit::record(
        &state.db,
        &caller,
        Change {
            action: "user.password_reset_sent",
            target_type: "user",
            target_id: Some(id.to_string()),
            before: None,
            after: None,
        },
    )
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Records an impersonation start or stop.
pub(crate) async fn impersonation_event(
    state: &AppState,
    impersonator: Uuid,
    user: Uuid,
    event: &str,
) -> ApiResult<()> {
    sqlx::query("INSERT INTO impersonation_log (id, impersonator_id, user_id, event) VALUES ($1, $2, $3, $4)")
        .bind(Uuid::now_v7())
        .bind(impersonator)
        .bind(user)
        .bind(event)
        .execute(&state.db)
        .await?;
    Ok(())
}

/// An admin (a user, not the bootstrap token) gets a session acting as `id`: it can do
/// exactly what that user can, and every request is logged.
async fn impersonate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let Some(admin) = caller.user_id else {
        return Err(ApiError::Forbidden(
            "the bootstrap token cannot impersonate: log in as an admin user to impersonate".into(),
        ));
    };
    if caller.impersonator_id.is_some() {
        return Err(ApiError::Conflict(
            "you are already impersonating: stop that session before impersonating someone else".into(),
        ));
    }
    let user = find(&state, id).await?;
    if !user.active || user.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("user {id} is not active")));
    }
    let token = new_token();
    sqlx::query(
        "INSERT INTO tokens (id, user_id, kind, name, token_hash, impersonator_id, expires_at) \
         VALUES ($1, $2, 'session', 'impersonation', $3, $4, now() + interval '1 hour')",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .bind(token_digest(&token))
    .bind(admin)
    .execute(&state.db)
    .await?;
    impersonation_event(&state, admin, id, "start").await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "token": token, "user_id": id })),
    ))
}

/// A CSV cell a spreadsheet will not run as a formula: cells starting with `=`, `+`, `-`,
/// `@` (or a tab or carriage return) get a leading `'`.
pub(crate) fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_trimmed_shaped_and_not_reserved() {
        assert_eq!(
            check_username("  ana@example.com ").ok().as_deref(),
            Some("ana@example.com")
        );
        assert!(check_username("two words").is_err());
        assert!(check_username("Admin").is_err());
    }

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+1"), "'+1");
        assert_eq!(spreadsheet_safe("@SUM"), "'@SUM");
        assert_eq!(spreadsheet_safe("-2"), "'-2");
        assert_eq!(spreadsheet_safe("ana"), "ana");
        assert_eq!(spreadsheet_safe(""), "");
    }
}
