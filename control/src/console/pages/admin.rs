//! Logs, settings, system info and email drafts.

use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::*;
use crate::console::api::Api;
use crate::console::forms::{Field, Input, field};
use crate::console::layout::{action, fields, page, text};
use crate::console::lists::{Cell, Paging, col, filter};
use crate::console::{Visitor, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/logs", get(logs))
        .route("/audit-log", get(audit_log))
        .route("/login-log", get(login_log))
        .route("/settings", get(settings))
        .route("/system", get(system))
        .route("/emails", get(emails))
        .route("/emails/new", creation(&NEW_EMAIL, email_fields))
}

static LOGS: ListSpec = ListSpec {
    nav: "Logs",
    title: "Logs",
    path: "/logs",
    api: "/logs",
    filters: &[
        filter("level", "Level", &["debug", "info", "warn", "error"]),
        filter("service", "Service", &["control", "worker", "scheduler"]),
        filter("job_id", "Job id", &[]),
    ],
    columns: &[
        col("At", "/at", Cell::Time),
        col("Level", "/level", Cell::State),
        col("Service", "/service", Cell::Text),
        col("Message", "/message", Cell::Text),
        col("Job", "/job_id", Cell::Text),
    ],
    paging: Paging::Cursor,
};

async fn logs(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = log_links();
    list(&api, &signed, &LOGS, &query, extra, None).await
}

async fn settings(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let answer = api.get(signed.api(), "/settings").await;
    let flash = flash(&answer, &query);
    let body = html! {
        (settings_links())
        p { "Settings stored in the database; each takes effect without a restart." }
        (fields(&answer.body, &[]))
    };
    page(&signed, "Settings", "Settings", flash.as_ref(), body)
}

static AUDIT_LOG: ListSpec = ListSpec {
    nav: "Logs",
    title: "Audit log",
    path: "/audit-log",
    api: "/audit-log",
    filters: &[
        filter("actor", "Actor", &[]),
        filter("action", "Action", &[]),
        filter("target_type", "Target type", &[]),
    ],
    columns: &[
        col("At", "/at", Cell::Time),
        col("Actor", "/actor", Cell::Text),
        col("Action", "/action", Cell::Text),
        col("Target", "/target_type", Cell::Text),
        col("Target id", "/target_id", Cell::Text),
    ],
    paging: Paging::Cursor,
};

async fn audit_log(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, &AUDIT_LOG, &query, log_links(), None).await
}

static LOGIN_LOG: ListSpec = ListSpec {
    nav: "Logs",
    title: "Login log",
    path: "/login-log",
    api: "/login-log",
    filters: &[
        filter("username", "Username", &[]),
        filter("success", "Succeeded", &["true", "false"]),
    ],
    columns: &[
        col("At", "/at", Cell::Time),
        col("Username", "/username", Cell::Text),
        col("Succeeded", "/success", Cell::Text),
        col("Reason", "/reason", Cell::Text),
        col("From", "/remote", Cell::Text),
    ],
    paging: Paging::Cursor,
};

async fn login_log(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, &LOGIN_LOG, &query, log_links(), None).await
}

/// The logs there are, linked from each log page.
fn log_links() -> Markup {
    html! {
        p { a href="/logs" { "System and job lines" } " · " a href="/audit-log" { "Audit log" } " · " a href="/login-log" { "Login log" } }
    }
}

/// The admin pages reached from Settings.
pub(super) fn settings_links() -> Markup {
    html! {
        p { a href="/settings" { "Settings" } " · " a href="/system" { "System info" } " · " a href="/stats" { "Stats" } " · " a href="/emails" { "Email drafts" } " · " a href="/share-links" { "Share links" } }
    }
}

async fn system(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let answer = api.get(signed.api(), "/system").await;
    let flash = flash(&answer, &query);
    let body = html! { (settings_links()) (fields(&answer.body, &[])) };
    page(&signed, "Settings", "System info", flash.as_ref(), body)
}

static EMAILS: ListSpec = ListSpec {
    nav: "Settings",
    title: "Email drafts",
    path: "/emails",
    api: "/emails",
    filters: &[],
    columns: &[
        col("Subject", "/subject", Cell::Text),
        col("State", "/state", Cell::State),
        col("Everyone", "/everyone", Cell::Text),
        col("Send at", "/send_at", Cell::Time),
        col("Sent", "/sent_at", Cell::Time),
        col("Recipients", "/recipients", Cell::Text),
    ],
    paging: Paging::Cursor,
};

async fn emails(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        html! {
            a href={ "/console/api/emails/" (id) "/preview" } { "Preview" }
            @if row["state"] == "draft" {
                " " (action(&signed, &format!("/emails/{id}/send"), "Send", "/emails", Some("Send this mail now (or at its time)?"), "quiet"))
            }
        }
    };
    let extra = html! { (settings_links()) p { a href="/emails/new" { "Compose" } } };
    list(&api, &signed, &EMAILS, &query, extra, Some(&actions)).await
}

fn email_fields() -> Vec<Field> {
    vec![
        field("subject", "Subject", Input::Text).required(),
        field("html", "Body (HTML)", Input::Area).required(),
        field("recipients.everyone:bool", "Everyone", Input::Check),
        field("recipients.group_ids:list", "Group ids (comma separated)", Input::Text),
        field("recipients.user_ids:list", "User ids (comma separated)", Input::Text),
        field("send_at", "Send at (RFC 3339; empty: when sent)", Input::Text),
    ]
}

static NEW_EMAIL: Creation = Creation {
    nav: "Settings",
    title: "Compose a mail",
    path: "/emails/new",
    api: "/emails",
    submit: "Save the draft",
    shown_at: None,
    done: "saved",
};
