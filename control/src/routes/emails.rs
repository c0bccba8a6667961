//! `/api/v1/emails` (admins): mail-out drafts — subject, HTML body (sanitised: images
//! and links allowed, scripts and handlers never), recipients (users, groups,
//! everyone), an optional send time. Preview renders what recipients get; send queues
//! the `send_email_draft` job now, or at `send_at` through a one-off clocked schedule.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::JobPayload as _;
use rushes_common::job::email::SendEmailDraft;
use rushes_common::job::store::{self, NewJob};
use rushes_common::mail;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/emails", post(create).get(list))
        .route("/emails/{id}", get(show).patch(update).delete(remove))
        .route("/emails/{id}/preview", get(preview))
        .route("/emails/{id}/send", post(send))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipients {
    #[serde(default)]
    user_ids: Vec<Uuid>,
    #[serde(default)]
    group_ids: Vec<Uuid>,
    #[serde(default)]
    everyone: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDraft {
    subject: String,
    html: String,
    recipients: Recipients,
    /// Empty: send when asked; otherwise the time `send` schedules it for.
    send_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct DraftView {
    id: Uuid,
    subject: String,
    html: String,
    user_ids: Vec<Uuid>,
    group_ids: Vec<Uuid>,
    everyone: bool,
    send_at: Option<DateTime<Utc>>,
    schedule_id: Option<Uuid>,
    state: String,
    sent_at: Option<DateTime<Utc>>,
    recipients: Option<i32>,
    created_by: String,
    created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, subject, html, user_ids, group_ids, everyone, send_at, schedule_id, state, sent_at, \
                       recipients, created_by, created_at";

/// Keeps formatting, links and images (http, https, data, cid); drops scripts, styles
/// that run, event handlers and anything else.
pub fn sanitise(html: &str) -> String {
    ammonia::Builder::default()
        .add_tags(["img", "span", "div", "table", "thead", "tbody", "tr", "td", "th", "hr"])
        .add_tag_attributes("img", ["src", "alt", "width", "height"])
        .add_generic_attributes(["align"])
        .url_schemes(["http", "https", "mailto", "data", "cid"].into_iter().collect())
        .clean(html)
        .to_string()
}

async fn find(state: &AppState, id: Uuid) -> ApiResult<DraftView> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM email_drafts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no email draft {id}")))
}

/// A draft's subject, trimmed; an empty one is refused.
fn checked_subject(subject: &str) -> ApiResult<&str> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(ApiError::Unprocessable("subject: must not be empty".into()));
    }
    Ok(subject)
}

/// Refuses recipients that name no one, or a user or group that does not exist.
async fn check_recipients(state: &AppState, r: &Recipients) -> ApiResult<()> {
    if !r.everyone && r.user_ids.is_empty() && r.group_ids.is_empty() {
        return Err(ApiError::Unprocessable(
            "recipients: name user_ids, group_ids or everyone".into(),
        ));
    }
    let (users, groups): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE id = ANY($1)), (SELECT count(*) FROM groups WHERE id = ANY($2))",
    )
    .bind(&r.user_ids)
    .bind(&r.group_ids)
    .fetch_one(&state.db)
    .await?;
    if usize::try_from(users).unwrap_or(0) != r.user_ids.len() {
        return Err(ApiError::Unprocessable("recipients.user_ids: unknown user".into()));
    }
    if usize::try_from(groups).unwrap_or(0) != r.group_ids.len() {
        return Err(ApiError::Unprocessable("recipients.group_ids: unknown group".into()));
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<NewDraft>,
) -> ApiResult<impl IntoResponse> {
    let subject = checked_subject(&body.subject)?;
    check_recipients(&state, &body.recipients).await?;
    let r = &body.recipients;
    let draft: DraftView = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO email_drafts (id, subject, html, user_ids, group_ids, everyone, send_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(subject)
    .bind(sanitise(&body.html))
    .bind(&r.user_ids)
    .bind(&r.group_ids)
    .bind(r.everyone)
    .bind(body.send_at)
    .bind(&caller.name)
    .fetch_one(&state.db)
    .await?;
    Ok((StatusCode::CREATED, axum::Json(draft)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListEmails {
    limit: Option<i64>,
    before: Option<Uuid>,
}

/// Drafts newest first, a page at a time.
async fn list(State(state): State<AppState>, Query(q): Query<ListEmails>) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let drafts: Vec<DraftView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM email_drafts WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    )))
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let next_before = super::next_before(&drafts, limit, |d| d.id);
    Ok(axum::Json(json!({ "emails": drafts, "next_before": next_before })))
}

async fn show(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<DraftView>> {
    Ok(axum::Json(find(&state, id).await?))
}

/// What recipients receive, and who they are.
async fn preview(State(state): State<AppState>, Path(id): Path<Uuid>) -> ApiResult<axum::Json<Value>> {
    let draft = find(&state, id).await?;
    let rendered = mail::announcement(&draft.subject, &draft.html);
    let recipients: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT u.email FROM users u WHERE u.active AND u.deleted_at IS NULL \
           AND ($3 OR u.id = ANY($1) OR u.id IN (SELECT m.user_id FROM group_members m WHERE m.group_id = ANY($2))) \
         ORDER BY u.email",
    )
    .bind(&draft.user_ids)
    .bind(&draft.group_ids)
    .bind(draft.everyone)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(json!({
        "subject": rendered.subject,
        "html": rendered.html,
        "text": rendered.text,
        "recipients": recipients,
    })))
}

/// Now (`202` with the job), or at `send_at` (`202` with the clocked schedule).
async fn send(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let draft = find(&state, id).await?;
    if draft.state != "draft" {
        return Err(ApiError::Conflict(format!("email {id} is already {}", draft.state)));
    }
    let payload = SendEmailDraft { draft_id: id };
    let change = |action: &'static str, after: Value| Change {
        action,
        target_type: "email",
        target_id: Some(id.to_string()),
        before: None,
        after: Some(after),
    };
    match draft.send_at.filter(|at| *at > Utc::now()) {
        Some(at) => {
            let schedule = Uuid::now_v7();
            let mut tx = state.db.begin().await?;
            sqlx::query(
                "INSERT INTO schedules (id, name, description, kind, payload, clocked_at, one_off, missed, next_run_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, true, 'run_once', $6)",
            )
            .bind(schedule)
            .bind(format!("email-{id}"))
            .bind(format!("Mail-out \"{}\"", draft.subject))
            .bind(SendEmailDraft::KIND)
            .bind(sqlx::types::Json(&payload))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE email_drafts SET state = 'scheduled', schedule_id = $2, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(schedule)
            .execute(&mut *tx)
            .await?;
            audit::record(&mut *tx, &caller, change("email.schedule", json!({ "send_at": at }))).await?;
            tx.commit().await?;
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "state": "scheduled", "schedule_id": schedule, "send_at": at })),
            ))
        }
        None => {
            let job = NewJob::of(&payload).requested_by(&caller.name);
            let job = store::enqueue_one(&state.db, &state.publisher, job).await?;
            audit::record(&state.db, &caller, change("email.send", json!({ "job_id": job.id }))).await?;
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "state": "sending", "job": job })),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DraftUpdate {
    subject: Option<String>,
    html: Option<String>,
    recipients: Option<Recipients>,
    /// A new time to send at (`null`: send when asked); only before `send` scheduled it.
    #[serde(default, deserialize_with = "super::present")]
    send_at: Option<Option<DateTime<Utc>>>,
}

/// Edits a draft until it is sent: its subject, text and recipients while it is a draft
/// or scheduled (the mail-out reads them when it runs), its `send_at` while it is a
/// draft. Audited with what changed.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<DraftUpdate>,
) -> ApiResult<axum::Json<DraftView>> {
    let before = find(&state, id).await?;
    if body.subject.is_none() && body.html.is_none() && body.recipients.is_none() && body.send_at.is_none() {
        return Err(ApiError::Unprocessable(
            "name at least one of subject, html, recipients, send_at".into(),
        ));
    }
    let subject = body.subject.as_deref().map(checked_subject).transpose()?;
    if let Some(recipients) = &body.recipients {
        check_recipients(&state, recipients).await?;
    }
    let html = body.html.as_deref().map(sanitise);
    let editable: &[&str] = if body.send_at.is_some() {
        &["draft"]
    } else {
        &["draft", "scheduled"]
    };
    if !editable.contains(&before.state.as_str()) {
        let why = if before.state == "scheduled" {
            "its send time is set in its schedule: delete the draft's schedule by deleting and recreating the draft"
        } else {
            "it is on record as it went out"
        };
        return Err(ApiError::Conflict(format!("email {id} is {}: {why}", before.state)));
    }
    let r = body.recipients.as_ref();
    let mut tx = state.db.begin().await?;
    // The state is checked again under the row's lock: a mail-out that ran meanwhile
    // wins, and the edit is refused.
    let edited: Option<DraftView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE email_drafts SET subject = COALESCE($2, subject), html = COALESCE($3, html), \
                user_ids = COALESCE($4, user_ids), group_ids = COALESCE($5, group_ids), \
                everyone = COALESCE($6, everyone), \
                send_at = CASE WHEN $7 THEN $8 ELSE send_at END, updated_at = now() \
         WHERE id = $1 AND state = ANY($9) RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(subject)
    .bind(html.as_deref())
    .bind(r.map(|r| r.user_ids.clone()))
    .bind(r.map(|r| r.group_ids.clone()))
    .bind(r.map(|r| r.everyone))
    .bind(body.send_at.is_some())
    .bind(body.send_at.flatten())
    .bind(editable)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(edited) = edited else {
        return Err(ApiError::Conflict(format!("email {id} went out meanwhile")));
    };
    let mut changed = serde_json::Map::new();
    if subject.is_some() {
        changed.insert("subject".into(), json!(edited.subject));
    }
    if html.is_some() {
        changed.insert("html".into(), json!("(changed)"));
    }
    if r.is_some() {
        changed.insert(
            "recipients".into(),
            json!({ "user_ids": edited.user_ids, "group_ids": edited.group_ids, "everyone": edited.everyone }),
        );
    }
    if body.send_at.is_some() {
        changed.insert("send_at".into(), json!(edited.send_at));
    }
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "email.edit",
            target_type: "email",
            target_id: Some(id.to_string()),
            before: Some(json!({ "subject": before.subject })),
            after: Some(Value::Object(changed)),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(edited))
}

/// Deletes a draft that has not gone out (and its schedule).
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let draft = find(&state, id).await?;
    if draft.state == "sent" {
        return Err(ApiError::Conflict(format!("email {id} was sent; it stays on record")));
    }
    let mut tx = state.db.begin().await?;
    if let Some(schedule) = draft.schedule_id {
        sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(schedule)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM email_drafts WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let change = Change {
        action: "email.delete",
        target_type: "email",
        target_id: Some(id.to_string()),
        before: Some(json!({ "subject": draft.subject })),
        after: None,
    };
    audit::record(&mut *tx, &caller, change).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_images_and_loses_scripts() {
        let clean = sanitise(
            "<p onclick=\"steal()\">Hi <img src=\"https://cdn/x.png\" onerror=\"x()\"></p><script>alert(1)</script>\
             <a href=\"javascript:bad()\">no</a>",
        );
        assert!(clean.contains("<img src=\"https://cdn/x.png\">"), "{clean}");
        assert!(
            !clean.contains("script") && !clean.contains("onclick") && !clean.contains("onerror"),
            "{clean}"
        );
        assert!(!clean.contains("javascript"), "{clean}");
    }
}
