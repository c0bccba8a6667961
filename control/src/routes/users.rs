//! `/api/v1/users`: local accounts (argon2id passwords), flags, deactivation and soft
//! deletion (both revoke every token), personal API tokens, "create like another", and
//! impersonation by an admin.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::enqueue::NewJob;
use rushes_common::job::JobPayload as _;
use rushes_common::job::accounts::{ImportUsers, PurgeUsers, USER_CSV_COLUMNS};
use rushes_common::mail;
use rushes_common::settings;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy, hash_password, new_token, token_digest};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

const MIN_PASSWORD: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create).get(list))
        .route("/users/{id}", get(show).patch(update).delete(remove))
        .route("/users/{id}/tokens", post(create_token))
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
                last_seen_at, created_at \
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

pub(crate) fn check_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::Unprocessable(format!(
            "password: at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
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
    let username = body.username.trim().to_owned();
    if username.is_empty() || username.chars().any(char::is_whitespace) {
        return Err(ApiError::Unprocessable(
            "username: must be non-empty, without spaces".into(),
        ));
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
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListUsers>,
) -> ApiResult<axum::Json<Value>> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let mut users: Vec<UserView> = sqlx::query_as(concat!(
        user_select!(),
        "WHERE ($1 OR deleted_at IS NULL) AND ($2::bool IS NULL OR active = $2) ORDER BY username LIMIT 5000"
    ))
    .bind(q.include_deleted)
    .bind(q.active)
    .fetch_all(&state.db)
    .await?;
    let window = mark_online(&state, &mut users).await?;
    Ok(axum::Json(json!({ "users": users, "online_window_minutes": window })))
}

/// Oneself, or anyone with `manage_users`.
async fn may_manage(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<()> {
    if caller.user_id == Some(id) {
        return Ok(());
    }
    caller.require_global(state, Policy::ManageUsers).await
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<UserView>> {
    may_manage(&state, &caller, id).await?;
    Ok(axum::Json(find(&state, id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    email: Option<String>,
    password: Option<String>,
    is_admin: Option<bool>,
    active: Option<bool>,
    may_scan: Option<bool>,
    may_transcode: Option<bool>,
}

async fn revoke_tokens<'e>(executor: impl sqlx::PgExecutor<'e>, user: Uuid) -> ApiResult<()> {
    sqlx::query("UPDATE tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .execute(executor)
        .await?;
    Ok(())
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<UserUpdate>,
) -> ApiResult<axum::Json<UserView>> {
    may_manage(&state, &caller, id).await?;
    let self_service =
        body.is_admin.is_none() && body.active.is_none() && body.may_scan.is_none() && body.may_transcode.is_none();
    if !self_service {
        caller.require_global(&state, Policy::ManageUsers).await?;
    }
    if body.is_admin.is_some() {
        caller.require_admin()?;
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
        revoke_tokens(&mut *tx, id).await?;
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

/// Soft delete: the account can no longer log in and its tokens are revoked; its
/// history stays.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let before = find(&state, id).await?;
    if before.deleted_at.is_some() {
        return Err(ApiError::NotFound(format!("user {id} is already deleted")));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET deleted_at = now(), active = false WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    revoke_tokens(&mut *tx, id).await?;
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
    expires_in_days: Option<i32>,
}

/// A personal API token for scripts; shown once.
async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<NewToken>,
) -> ApiResult<impl IntoResponse> {
    may_manage(&state, &caller, id).await?;
    let user = find(&state, id).await?;
    if !user.active || user.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("user {id} is not active")));
    }
    if body.expires_in_days.is_some_and(|d| !(1..=3650).contains(&d)) {
        return Err(ApiError::Unprocessable("expires_in_days: between 1 and 3650".into()));
    }
    let token = new_token();
    let token_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tokens (id, user_id, kind, name, token_hash, expires_at) \
         VALUES ($1, $2, 'api', $3, $4, now() + make_interval(days => $5))",
    )
    .bind(token_id)
    .bind(id)
    .bind(body.name.trim())
    .bind(token_digest(&token))
    .bind(body.expires_in_days)
    .execute(&state.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "id": token_id, "token": token })),
    ))
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
    body: String,
) -> ApiResult<impl IntoResponse> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let payload = ImportUsers {
        csv: body,
        dry_run: q.dry_run,
    };
    queue_job(&state, &caller, ImportUsers::KIND, json!(payload)).await
}

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
    let payload = PurgeUsers {
        deleted_days_ago: body.deleted_days_ago,
    };
    queue_job(&state, &caller, PurgeUsers::KIND, json!(payload)).await
}

/// Queues a bulk account job in the caller's name → `202` with the job.
pub(crate) async fn queue_job(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    payload: Value,
) -> ApiResult<(StatusCode, axum::Json<rushes_common::job::JobRecord>)> {
    let mut job = NewJob::new(kind, payload);
    job.requested_by = Some(caller.name.clone());
    let job = super::jobs::enqueue_one(state, job).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job)))
}

/// Minutes a password reset link stays valid.
pub(crate) const RESET_MINUTES: i64 = 60;

/// Creates a single-use reset token for the user and mails them the link.
pub(crate) async fn mail_reset_link(state: &AppState, user: Uuid, username: &str, email: &str) -> ApiResult<()> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO password_resets (id, user_id, token_hash, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(mins => $4))",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(token_digest(&token))
    .bind(i32::try_from(RESET_MINUTES).unwrap_or(60))
    .execute(&state.db)
    .await?;
    let link = format!("{}/reset-password?token={token}", state.public_url);
    crate::mail::send(state, email, mail::password_reset(username, &link, RESET_MINUTES)).await;
    Ok(())
}

/// An admin (or user manager) sends a user a reset link.
async fn send_reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_global(&state, Policy::ManageUsers).await?;
    let user = find(&state, id).await?;
    if !user.active || user.deleted_at.is_some() {
        return Err(ApiError::Conflict(format!("user {id} is not active")));
    }
    mail_reset_link(&state, id, &user.username, &user.email).await?;
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
    let (Some(admin), None) = (caller.user_id, caller.impersonator_id) else {
        return Err(ApiError::Conflict(
            "impersonate as a logged-in admin user, not with the bootstrap token or while impersonating".into(),
        ));
    };
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
