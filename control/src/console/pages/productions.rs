//! Productions and their share links.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use serde_json::Value;

use super::admin::settings_links;
use super::people;
use super::*;
use crate::console::api::Api;
use crate::console::forms::{Field, Input, field};
use crate::console::layout::{action, removal, text};
use crate::console::lists::{self, Cell, Paging, col, filter};
use crate::console::{Signed, Visitor, checked, csrf_refused, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/productions", get(productions))
        .route("/productions/new", get(new_production).post(create_production))
        .route("/productions/{id}", get(production))
        .route(
            "/productions/{id}/edit",
            editing(&EDIT_PRODUCTION, production_edit_fields),
        )
        .route("/share-links", get(share_links))
}

static PRODUCTIONS: ListSpec = ListSpec {
    nav: "Productions",
    title: "Productions",
    path: "/productions",
    api: "/productions",
    filters: &[
        filter("include_archived", "Show archived", &["true"]),
        filter("active", "Active", &["true", "false"]),
    ],
    columns: &[
        col("Production", "/name", Cell::Link("/productions/")),
        col("Path", "/path", Cell::Text),
        col("Clips", "/clips", Cell::Text),
        col("Priority", "/priority", Cell::Text),
        col("Active", "/active", Cell::Text),
        col("Last scan", "/last_scan_at", Cell::Time),
    ],
    paging: Paging::Whole,
};

async fn productions(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = html! {
        p { a href="/productions/new" { "New production" } " · " a href="/share-links" { "Share links" } }
        @if signed.is_admin() {
            details {
                summary { "Import a production (an exported document)" }
                form.edit data-send="file" data-type="application/json" data-then="/productions/{id}" data-what="the production" method="post" action="/console/send/productions/import" data-csrf=(signed.csrf) {
                    label for="import-file" { "Production document (JSON, from Export)" input id="import-file" type="file" name="file" accept="application/json,.json" required; }
                    (send_progress("import"))
                    div { button type="submit" { "Import" } }
                }
            }
        }
    };
    list(&api, &signed, &PRODUCTIONS, &query, extra, None).await
}

async fn production(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let back = format!("/productions/{id}");
    // Its administrators (and admins) manage its members here.
    let members = api.get(signed.api(), &format!("/productions/{id}/members")).await;
    detail(&api, &signed, "Productions", &back, "name", &query, |p| {
        let cover = p["cover_image"].as_str().and_then(|u| u.strip_prefix("/api/v1"));
        let roles: Vec<(String, String)> = members.body["assignable_roles"]
            .as_array()
            .map(|all| all.iter().map(|r| (text(&r["id"]), text(&r["name"]))).collect())
            .unwrap_or_default();
        let take = |m: &Value| {
            if m["roles"].as_array().is_some_and(|r| !r.is_empty()) {
                removal(&signed, &format!("/productions/{id}/members/{}", encode(&text(&m["user_id"]))), "Remove", &back, "Take this member's own roles on the production?")
            } else {
                html! {}
            }
        };
        html! {
            p {
                a.button href={ "/productions/" (id) "/edit" } { "Edit" }
                " "
                (action(&signed, &format!("/productions/{id}/scan"), "Scan now", &back, None, ""))
                " "
                (action(&signed, &format!("/productions/{id}/transcode-pending"), "Transcode pending", &back, None, "quiet"))
                " "
                a href={ "/clips?production_id=" (id) } { "Clips" }
                " · "
                a href={ "/console/api/productions/" (id) "/export" } download { "Export" }
                " "
                (removal(&signed, &format!("/productions/{id}"), "Delete", "/productions", "Delete this production with its clips, proxies and transcripts? The rushes themselves stay."))
            }
            @if members.ok() {
                h2 { "Members" }
                (lists::table(&[col("User", "/username", Cell::Text), col("Own roles", "/roles", Cell::Text), col("Through groups", "/groups", Cell::Text), col("Policies", "/policies", Cell::Text)], &members.body["members"].as_array().cloned().unwrap_or_default(), Some(&take)))
                (people::adder(&signed, &format!("/productions/{id}/members"), &back, "Add the member", html! {
                    label for="add-member-name" { "Username" input id="add-member-name" type="text" name="username" required; }
                    (people::select("add-member-role", "role_id", "Role", &roles))
                }))
            }
            h2 { "Cover image" }
            @if let Some(cover) = cover {
                p { img.cover src={ "/console/api" (cover) } alt="The production's cover image"; }
                (removal(&signed, &format!("/productions/{id}/cover"), "Remove the cover", &back, "Remove the cover image?"))
            }
            form.edit data-send="file" data-method="PUT" data-what="the cover image" method="post" action={ "/console/send/productions/" (id) "/cover" } data-csrf=(signed.csrf) {
                label for="cover-file" { "Image (JPEG, PNG, WebP…)" input id="cover-file" type="file" name="file" accept="image/*" required; }
                (send_progress("cover"))
                div { button type="submit" { "Upload the cover" } }
            }
            @if signed.is_admin() {
                h2 { "Watermark image" }
                p { "A logo the watermark can draw (set its position in the edit form)." }
                form.edit data-send="file" data-method="PUT" data-what="the watermark image" method="post" action={ "/console/send/productions/" (id) "/watermark-image" } data-csrf=(signed.csrf) {
                    label for="watermark-file" { "Image (PNG with transparency, JPEG, WebP)" input id="watermark-file" type="file" name="file" accept="image/*" required; }
                    (send_progress("watermark"))
                    div { button type="submit" { "Upload the watermark image" } }
                }
                (removal(&signed, &format!("/productions/{id}/watermark-image"), "Remove the watermark image", &back, "Remove the watermark image? Refused while the watermark draws it."))
            }
        }
    })
    .await
}

async fn production_fields(api: &Api, signed: &Signed) -> Vec<Field> {
    let bases: Vec<String> = api
        .get(signed.api(), "/base-productions")
        .await
        .rows()
        .iter()
        .filter_map(|b| b["id"].as_str().map(str::to_owned))
        .collect();
    vec![
        field("base_production_id", "Base production (id)", Input::Suggest(bases)).required(),
        field("series:int", "Series", Input::Number).required(),
        field("friendly_name", "Friendly name", Input::Text),
        field("path", "Rushes folder", Input::Text)
            .required()
            .help("Under one of the media roots."),
        field("priority:int", "Priority (0–100)", Input::Number),
        field("owner_id", "Owner (user id)", Input::Text),
        field(
            "auto_transcribe:bool",
            "Transcribe after the first transcode",
            Input::Check,
        ),
    ]
}

/// What an admin may change of a production (its base production stays).
fn production_edit_fields() -> Vec<Field> {
    vec![
        field("series:int", "Series", Input::Number),
        field("friendly_name", "Friendly name", Input::Text),
        field("path", "Rushes folder", Input::Text).help("Under one of the media roots."),
        field("priority:int", "Priority (0–100)", Input::Number),
        field("owner_id", "Owner (user id)", Input::Text),
        field("active:bool", "Active (scanned and processed)", Input::Check),
        field("archived:bool", "Archived (hidden from lists)", Input::Check),
        field(
            "auto_transcribe:bool",
            "Transcribe after the first transcode",
            Input::Check,
        ),
        field("watermark.text", "Watermark text", Input::Text).help(
            "Burned into the proxies made from now on (the clips are transcoded again); {production}, \
             {base_production}, {series}, {friendly_name}, {clip} and {date} are filled in.",
        ),
        field(
            "watermark.position",
            "Watermark position",
            Input::Choice(POSITIONS.map(String::from).to_vec()),
        ),
        field("watermark.opacity:json", "Watermark opacity (0 to 1)", Input::Number),
        field(
            "watermark.size:json",
            "Watermark height (fraction of the picture's)",
            Input::Number,
        ),
        field(
            "watermark.image.position",
            "Watermark image position",
            Input::Choice(POSITIONS.map(String::from).to_vec()),
        )
        .help("Draws the production's watermark image (sent on the production's page) too."),
        field(
            "watermark.image.opacity:json",
            "Watermark image opacity (0 to 1)",
            Input::Number,
        ),
        field(
            "watermark.image.size:json",
            "Watermark image height (fraction of the picture's)",
            Input::Number,
        ),
    ]
}

/// Where a watermark may sit.
const POSITIONS: [&str; 7] = [
    "center",
    "top",
    "bottom",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
];

static EDIT_PRODUCTION: Editing = Editing {
    nav: "Productions",
    title: "Edit the production",
    api: "/productions/",
    page: "/productions/",
};

static NEW_PRODUCTION: Creation = Creation {
    nav: "Productions",
    title: "New production",
    path: "/productions/new",
    api: "/productions",
    submit: "Create",
    shown_at: Some("/productions/"),
    done: "created",
};

async fn new_production(Extension(api): Extension<Api>, visitor: Visitor) -> Response {
    let signed = signed_or_return!(api, visitor);
    let fields = production_fields(&api, &signed).await;
    NEW_PRODUCTION.form(&signed, &fields, &[], None)
}

async fn create_production(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let values = match checked(&signed.visitor, &headers, &body) {
        Some(values) => values,
        None => return csrf_refused(),
    };
    NEW_PRODUCTION
        .create(&api, &signed, production_fields(&api, &signed), &values, &values)
        .await
}

static SHARE_LINKS: ListSpec = ListSpec {
    nav: "Productions",
    title: "Share links",
    path: "/share-links",
    api: "/share-links",
    filters: &[
        filter("production_id", "Production id", &[]),
        filter("created_by", "Made by", &[]),
    ],
    columns: &[
        col("Clip", "/clip_id", Cell::Text),
        col("Made by", "/created_by", Cell::Text),
        col("Active", "/active", Cell::Text),
        col("Views", "/views", Cell::Text),
        col("Expires", "/expires_at", Cell::Time),
        col("Made", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn share_links(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        html! {
            @if row["active"].as_bool().unwrap_or(false) {
                (removal(&signed, &format!("/share-links/{id}"), "Revoke", "/share-links", "Revoke this share link?"))
            }
        }
    };
    list(&api, &signed, &SHARE_LINKS, &query, settings_links(), Some(&actions)).await
}
