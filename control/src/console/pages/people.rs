//! Users (and making them: by hand, like another, by invitation, from a CSV file), groups and roles.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::*;
use crate::console::api::Api;
use crate::console::forms::{Field, Input, field};
use crate::console::layout::{self, action, page, removal, text};
use crate::console::lists::{self, Cell, Paging, col, filter};
use crate::console::{Signed, Visitor, checked, csrf_refused, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(users))
        .route("/users/new", creation(&NEW_USER, user_fields))
        .route("/users/import", get(import_form).post(import_users))
        .route("/users/{id}", get(user))
        .route("/users/{id}/edit", editing(&EDIT_USER, user_edit_fields))
        .route("/invitations", get(invitations))
        .route("/invitations/new", creation(&NEW_INVITATION, invitation_fields))
        .route(
            "/groups",
            get(|api, visitor, query| plain(api, visitor, query, &GROUPS)),
        )
        .route("/groups/new", creation(&NEW_GROUP, group_fields))
        .route("/groups/{id}", get(group))
        .route("/roles", get(roles))
        .route("/roles/new", creation(&NEW_ROLE, role_fields))
        .route("/roles/{id}", get(role))
        .route("/roles/{id}/edit", editing(&EDIT_ROLE, role_fields))
}

/// The pages about people, linked from each of them.
fn people_links() -> Markup {
    html! {
        p {
            a href="/users" { "Users" } " · " a href="/users/new" { "New user" } " · "
            a href="/invitations" { "Invitations" } " · " a href="/users/import" { "Import from CSV" } " · "
            a href="/groups" { "Groups" } " · " a href="/roles" { "Roles" }
        }
    }
}

static USERS: ListSpec = ListSpec {
    nav: "Users",
    title: "Users",
    path: "/users",
    api: "/users",
    filters: &[
        filter("q", "Search", &[]),
        filter("online", "Online now", &["true"]),
        filter("active", "Active", &["true", "false"]),
        filter("include_deleted", "Include deleted", &["true"]),
    ],
    columns: &[
        col("Username", "/username", Cell::Link("/users/")),
        col("Email", "/email", Cell::Text),
        col("Groups", "/groups", Cell::Text),
        col("Admin", "/is_admin", Cell::Text),
        col("Active", "/active", Cell::Text),
        col("Online", "/online", Cell::Text),
        col("Last seen", "/last_seen_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn users(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, &USERS, &query, people_links(), None).await
}

async fn user(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let admin = signed.is_admin();
    let id = encode(&id);
    let back = format!("/users/{id}");
    let held = api.get(signed.api(), &format!("/users/{id}/roles")).await;
    let effective = api.get(signed.api(), &format!("/users/{id}/policies")).await;
    let roles = if admin {
        choices(&api, &signed, "/roles", "name").await
    } else {
        Vec::new()
    };
    detail(&api, &signed, "Users", &back, "username", &query, |_| {
        let own = format!("/users/{id}/roles");
        let productions: Vec<Value> = effective.body["productions"]
            .as_array()
            .map(|all| all.iter().map(with_reasons).collect())
            .unwrap_or_default();
        // Only a role of their own comes off here; a group's is the group's.
        let take_own = |r: &Value| {
            if r["group_id"].is_null() {
                removal(&signed, &role_removal(&own, r), "Remove", &back, "Take this role from the user?")
            } else {
                html! {}
            }
        };
        html! {
            @if admin {
                p {
                    a.button href={ "/users/" (id) "/edit" } { "Edit" }
                    " "
                    a.button href={ "/users/new?like_user_id=" (id) } { "Create a user like this one" }
                    " "
                    form.inline method="post" action={ "/users/" (id) "/impersonate" } {
                        (layout::csrf(&signed))
                        button.quiet type="submit" { "Impersonate" }
                    }
                    " "
                    (action(&signed, &format!("/users/{id}/password-reset"), "Send a password reset", &back, Some("Mail this user a link to set a new password?"), "quiet"))
                    " "
                    (removal(&signed, &format!("/users/{id}"), "Delete", "/users", "Delete this user? They can no longer sign in; their history stays."))
                }
            }
            @if held.ok() {
                h2 { "Roles" }
                (lists::table(&[col("Role", "/role", Cell::Text), col("Scope", "/scope_type", Cell::Text), col("Where", "/scope_name", Cell::Text), col("Through group", "/group", Cell::Text)], &held.rows(), if admin { Some(&take_own) } else { None }))
                @if admin {
                    (adder(&signed, &own, &back, "Give the role", role_controls(&roles)))
                }
            }
            @if effective.ok() {
                h2 { "What they may do" }
                p { "Everywhere: " (text(&effective.body["global_policies"])) }
                (lists::table(&[col("Production", "/name", Cell::Link("/productions/")), col("Policies", "/policies", Cell::Text), col("Why", "/why", Cell::Text)], &productions, None))
            }
        }
    })
    .await
}

/// A production of a user's effective policies with `why`: its reasons in words.
fn with_reasons(production: &Value) -> Value {
    let reasons: Vec<String> = production["via"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|v| match v["source"].as_str().unwrap_or_default() {
                    "admin" => "an admin".to_owned(),
                    "owner" => "owns it".to_owned(),
                    "group_grant" => format!("group {} is granted it", text(&v["group"])),
                    "flag" => format!("the {} flag", text(&v["flag"])),
                    _ => match v["group"].as_str() {
                        Some(group) => format!("role {} through group {group}", text(&v["role"])),
                        None => format!("role {} of their own", text(&v["role"])),
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let mut row = production.clone();
    row["why"] = Value::String(reasons.join("; "));
    row
}

fn user_fields() -> Vec<Field> {
    vec![
        field("username", "Username", Input::Text).required(),
        field("email", "Email", Input::Text).required(),
        field("password", "Password", Input::Password).required(),
        field("is_admin:bool", "Administrator", Input::Check),
        field("may_scan:bool", "May scan productions", Input::Check),
        field("may_transcode:bool", "May transcode", Input::Check),
        field(
            "like_user_id",
            "Like user (id): copy their groups and flags",
            Input::Text,
        ),
    ]
}

static NEW_USER: Creation = Creation {
    nav: "Users",
    title: "New user",
    path: "/users/new",
    api: "/users",
    submit: "Create",
    shown_at: Some("/users/"),
    done: "created",
};

fn user_edit_fields() -> Vec<Field> {
    vec![
        field("email", "Email", Input::Text),
        field("active:bool", "Active (may sign in)", Input::Check),
        field("is_admin:bool", "Administrator", Input::Check),
        field("may_scan:bool", "May scan productions", Input::Check),
        field("may_transcode:bool", "May transcode", Input::Check),
        field("password", "New password (empty: unchanged)", Input::Password),
    ]
}

static EDIT_USER: Editing = Editing {
    nav: "Users",
    title: "Edit the user",
    api: "/users/",
    page: "/users/",
};

/// `GET /users/import`: paste a CSV (the template's columns) and try it first.
async fn import_form(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let body = html! {
        (people_links())
        p {
            "One row per user, with the template's columns. "
            a href="/console/api/users/import/template" download { "Download the template (today's users)" }
            ". A dry run reports what the import would do and changes nothing; the report is the job's result."
        }
        form.edit method="post" action="/users/import" {
            (layout::csrf(&signed))
            label for="import-csv" { "CSV" textarea id="import-csv" name="csv" required {} }
            input type="hidden" name="dry_run" value="off";
            label.check for="import-dry-run" { input type="checkbox" id="import-dry-run" name="dry_run" value="on" checked; "Dry run (report only)" }
            div { button type="submit" { "Import" } }
        }
    };
    page(&signed, "Users", "Import users", notice(&query).as_ref(), body)
}

/// Queues the import (or its dry run) and shows its job, whose result is the report.
async fn import_users(Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    let signed = signed_or_return!(api, visitor);
    let Some(values) = checked(&signed.visitor, &headers, &body) else {
        return csrf_refused();
    };
    let last = |name: &str| values.iter().rfind(|(k, _)| k == name).map(|(_, v)| v.clone());
    let dry_run = last("dry_run").as_deref() == Some("on");
    let csv = last("csv").unwrap_or_default();
    let answer = api
        .post_text(
            signed.api(),
            &format!("/users/import?dry_run={dry_run}"),
            "text/csv",
            csv,
        )
        .await;
    if answer.ok() {
        let what = if dry_run { "dry run queued" } else { "import queued" };
        Redirect::to(&format!(
            "/jobs/{}?done={}",
            encode(&text(&answer.body["id"])),
            encode(what)
        ))
        .into_response()
    } else {
        Redirect::to(&format!("/users/import?failed={}", encode(&answer.error()))).into_response()
    }
}

static INVITATIONS: ListSpec = ListSpec {
    nav: "Users",
    title: "Invitations",
    path: "/invitations",
    api: "/invitations",
    filters: &[filter("state", "State", &["pending", "accepted", "revoked", "all"])],
    columns: &[
        col("Email", "/email", Cell::Text),
        col("Invited by", "/invited_by", Cell::Text),
        col("Sent", "/sent_at", Cell::Time),
        col("Expires", "/expires_at", Cell::Time),
        col("Accepted", "/accepted_at", Cell::Time),
        col("Revoked", "/revoked_at", Cell::Time),
    ],
    paging: Paging::Whole,
};

async fn invitations(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let back = signed.visitor.path.clone();
    let actions = |row: &Value| {
        let id = encode(&text(&row["id"]));
        html! {
            @if row["accepted_at"].is_null() && row["revoked_at"].is_null() {
                (action(&signed, &format!("/invitations/{id}/resend"), "Resend", &back, None, "quiet"))
                " "
                (removal(&signed, &format!("/invitations/{id}"), "Revoke", &back, "Revoke this invitation? Its link stops working."))
            }
        }
    };
    let extra = html! { (people_links()) p { a href="/invitations/new" { "Invite someone" } } };
    list(&api, &signed, &INVITATIONS, &query, extra, Some(&actions)).await
}

fn invitation_fields() -> Vec<Field> {
    vec![
        field("email", "Email", Input::Text).required(),
        field("group_ids:list", "Groups (ids, comma separated)", Input::Text),
    ]
}

static NEW_INVITATION: Creation = Creation {
    nav: "Users",
    title: "Invite someone",
    path: "/invitations/new",
    api: "/invitations",
    submit: "Send the invitation",
    shown_at: None,
    done: "sent",
};

static GROUPS: ListSpec = ListSpec {
    nav: "Groups",
    title: "Groups",
    path: "/groups",
    api: "/groups",
    filters: &[],
    columns: &[
        col("Group", "/name", Cell::Link("/groups/")),
        col("Members", "/member_count", Cell::Text),
        col("Productions", "/production_count", Cell::Text),
        col("Created", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

static NEW_GROUP: Creation = Creation {
    nav: "Groups",
    title: "New group",
    path: "/groups/new",
    api: "/groups",
    submit: "Create",
    shown_at: Some("/groups/"),
    done: "created",
};

fn group_fields() -> Vec<Field> {
    vec![field("name", "Name", Input::Text).required()]
}

/// `(value, label)` choices from a list of the API: each row's `id` and `label_key`.
async fn choices(api: &Api, signed: &Signed, api_path: &str, label_key: &str) -> Vec<(String, String)> {
    api.get(signed.api(), api_path)
        .await
        .rows()
        .iter()
        .map(|row| (text(&row["id"]), text(&row[label_key])))
        .collect()
}

/// A one-line form that adds something with `POST /api/v1{api_path}`, then comes back to `back`.
pub(super) fn adder(signed: &Signed, api_path: &str, back: &str, submit: &str, controls: Markup) -> Markup {
    html! {
        form.filters method="post" action={ "/do" (api_path) } {
            (layout::csrf(signed))
            input type="hidden" name="_back" value=(back);
            (controls)
            button type="submit" { (submit) }
        }
    }
}

pub(super) fn select(id: &str, name: &str, label: &str, options: &[(String, String)]) -> Markup {
    html! {
        label for=(id) {
            (label)
            select id=(id) name=(name) required {
                option value="" { "–" }
                @for (value, shown) in options { option value=(value) { (shown) } }
            }
        }
    }
}

/// The fields of a role given in a scope: the role, where, and the scope's id.
fn role_controls(roles: &[(String, String)]) -> Markup {
    html! {
        (select("add-role", "role_id", "Role", roles))
        label for="add-role-scope" { "Scope" select id="add-role-scope" name="scope_type" {
            option value="global" { "Everywhere" }
            option value="base_production" { "A base production" }
            option value="production" { "A production" }
        } }
        label for="add-role-scope-id" { "Scope id (base production or production)" input id="add-role-scope-id" type="text" name="scope_id"; }
    }
}

/// The API path that takes role assignment `row` away from its holder at `holder`
/// (`/groups/{id}/roles` or `/users/{id}/roles`), in the assignment's scope.
fn role_removal(holder: &str, row: &Value) -> String {
    // The API takes the global one without a scope.
    let mut scope = format!("scope_type={}", encode(&text(&row["scope_type"])));
    if let Some(scope_id) = row["scope_id"].as_str() {
        scope.push_str(&format!("&scope_id={}", encode(scope_id)));
    }
    format!("{holder}/{}?{scope}", encode(&text(&row["role_id"])))
}

async fn group(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let back = format!("/groups/{id}");
    let users = choices(&api, &signed, "/users?limit=500", "username").await;
    let productions = choices(&api, &signed, "/productions", "name").await;
    let roles = choices(&api, &signed, "/roles", "name").await;
    detail(&api, &signed, "Groups", &back, "name", &query, |g| {
        let rows = |key: &str| g[key].as_array().cloned().unwrap_or_default();
        let remove = |path: String, label: &str, confirm: &str| removal(&signed, &path, label, &back, confirm);
        html! {
            p { (removal(&signed, &format!("/groups/{id}"), "Delete the group", "/groups", "Delete this group? Its members lose what it grants.")) }
            h2 { "Members" }
            (lists::table(&[col("User", "/username", Cell::Link("/users/"))], &rows("members"), Some(&|m: &Value| {
                remove(format!("/groups/{id}/members/{}", encode(&text(&m["id"]))), "Remove", "Remove this member from the group?")
            })))
            (adder(&signed, &format!("/groups/{id}/members"), &back, "Add the member", select("add-member", "user_id", "User", &users)))
            h2 { "Productions" }
            (lists::table(&[col("Production", "/name", Cell::Link("/productions/"))], &rows("productions"), Some(&|p: &Value| {
                remove(format!("/groups/{id}/productions/{}", encode(&text(&p["id"]))), "Revoke", "Revoke the group's access to this production?")
            })))
            (adder(&signed, &format!("/groups/{id}/productions"), &back, "Grant", select("add-production", "production_id", "Production", &productions)))
            h2 { "Roles" }
            (lists::table(&[col("Role", "/name", Cell::Text), col("Scope", "/scope_type", Cell::Text), col("Scope id", "/scope_id", Cell::Text)], &rows("roles"), Some(&|r: &Value| {
                remove(role_removal(&format!("/groups/{id}/roles"), r), "Remove", "Remove this role from the group?")
            })))
            (adder(&signed, &format!("/groups/{id}/roles"), &back, "Give the role", role_controls(&roles)))
        }
    })
    .await
}

static ROLES: ListSpec = ListSpec {
    nav: "Groups",
    title: "Roles",
    path: "/roles",
    api: "/roles",
    filters: &[],
    columns: &[
        col("Role", "/name", Cell::Link("/roles/")),
        col("Policies", "/policies", Cell::Text),
        col("Built in", "/builtin", Cell::Text),
    ],
    paging: Paging::Whole,
};

async fn roles(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = html! { (people_links()) p { a href="/roles/new" { "New role" } } };
    list(&api, &signed, &ROLES, &query, extra, None).await
}

/// A role and who carries it; a custom one can be edited or deleted.
async fn role(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let back = format!("/roles/{id}");
    detail(&api, &signed, "Groups", &back, "name", &query, |r| {
        let assignments = r["assignments"].as_array().cloned().unwrap_or_default();
        html! {
            (people_links())
            @if r["builtin"].as_bool() == Some(true) {
                p { "A built-in role: its policies are fixed. Make a custom role for others." }
            } @else {
                p {
                    a.button href={ "/roles/" (id) "/edit" } { "Edit" }
                    " "
                    (removal(&signed, &back, "Delete", "/roles", "Delete this role? Refused while someone carries it."))
                    " "
                    (removal(&signed, &format!("{back}?force=true"), "Delete, taking it from everyone", "/roles", "Delete this role and take it from every group and user that carries it?"))
                }
            }
            h2 { "Carried by" }
            (lists::table(&[col("Holder", "/holder", Cell::Text), col("Name", "/name", Cell::Text), col("Scope", "/scope_type", Cell::Text), col("Scope id", "/scope_id", Cell::Text)], &assignments, None))
        }
    })
    .await
}

static EDIT_ROLE: Editing = Editing {
    nav: "Groups",
    title: "Edit the role",
    api: "/roles/",
    page: "/roles/",
};

fn role_fields() -> Vec<Field> {
    vec![
        field("name", "Name", Input::Text).required(),
        field("policies:list", "Policies (comma separated)", Input::Text)
            .required()
            .help("The API names the policies there are when one is wrong."),
    ]
}

static NEW_ROLE: Creation = Creation {
    nav: "Groups",
    title: "New role",
    path: "/roles/new",
    api: "/roles",
    submit: "Create",
    shown_at: None,
    done: "created",
};
