//! Schedules: the list with next fire times, a schedule, and the forms that make and edit them.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use serde_json::Value;

use super::*;
use crate::console::api::Api;
use crate::console::forms::{Field, Input, field};
use crate::console::layout::{action, json_block, removal, text, time};
use crate::console::lists::{Cell, Paging, col, filter};
use crate::console::{Visitor, checked, csrf_refused, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/schedules", get(schedules))
        .route("/schedules/new", get(new_schedule).post(create_schedule))
        .route("/schedules/{id}", get(schedule))
        .route("/schedules/{id}/edit", get(edit_schedule).post(save_schedule))
}

static SCHEDULES: ListSpec = ListSpec {
    nav: "Schedules",
    title: "Schedules",
    path: "/schedules",
    api: "/schedules",
    filters: &[
        filter("enabled", "Enabled", &["true", "false"]),
        filter("kind", "Kind", &[]),
    ],
    columns: &[
        col("Name", "/name", Cell::Link("/schedules/")),
        col("Kind", "/kind", Cell::Text),
        col("Cron", "/cron/expr", Cell::Text),
        col("Every", "/interval", Cell::Text),
        col("Enabled", "/enabled", Cell::Text),
        col("Next run", "/next_run_at", Cell::Time),
        col("Last run", "/last_run_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn schedules(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let back = signed.visitor.path.clone();
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        let enabled = row["enabled"].as_bool().unwrap_or(false);
        html! {
            (action(&signed, &format!("/schedules/{id}/run"), "Run now", &back, None, "quiet"))
            " "
            @if enabled {
                (action(&signed, &format!("/schedules/{id}/disable"), "Disable", &back, None, "quiet"))
            } @else {
                (action(&signed, &format!("/schedules/{id}/enable"), "Enable", &back, None, "quiet"))
            }
        }
    };
    let extra = html! { p { a href="/schedules/new" { "New schedule" } } };
    list(&api, &signed, &SCHEDULES, &query, extra, Some(&actions)).await
}

async fn schedule(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let back = format!("/schedules/{id}");
    detail(
        &api,
        &signed,
        "Schedules",
        &format!("/schedules/{id}"),
        "name",
        &query,
        |s| {
            let enabled = s["enabled"].as_bool().unwrap_or(false);
            html! {
                p {
                    a.button href={ "/schedules/" (encode(&id)) "/edit" } { "Edit" }
                    " "
                    (action(&signed, &format!("/schedules/{id}/run"), "Run now", &back, None, ""))
                    " "
                    @if enabled {
                        (action(&signed, &format!("/schedules/{id}/disable"), "Disable", &back, None, "quiet"))
                    } @else {
                        (action(&signed, &format!("/schedules/{id}/enable"), "Enable", &back, None, "quiet"))
                    }
                    " "
                    (removal(&signed, &format!("/schedules/{id}"), "Delete", "/schedules", "Delete this schedule?"))
                }
                @if let Some(upcoming) = s["next_fire_times"].as_array() {
                    h2 { "Next fire times" }
                    ul { @for at in upcoming { li { (time(at)) } } }
                }
                h2 { "Payload" } (json_block(&s["payload"]))
            }
        },
    )
    .await
}

fn schedule_fields(kinds: Vec<String>) -> Vec<Field> {
    let zones: Vec<String> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name().to_owned()).collect();
    vec![
        field("name", "Name", Input::Text).required(),
        field("kind", "Kind", Input::Choice(kinds)).required(),
        field("payload:json", "Payload (JSON)", Input::Json),
        field("priority:int", "Priority (0–100)", Input::Number),
        field("cron.expr", "Cron expression", Input::Text)
            .help("minute hour day month weekday, e.g. 30 1 * * *; leave empty for an interval or a clocked time"),
        field("cron.timezone", "Time zone", Input::Suggest(zones)),
        field("interval.every:int", "Every", Input::Number),
        field(
            "interval.period",
            "Period",
            Input::Choice(["seconds", "minutes", "hours", "days"].map(String::from).to_vec()),
        ),
        field("clocked.at", "Once at (RFC 3339)", Input::Text),
        field("enabled:bool", "Enabled", Input::Check),
    ]
}

static NEW_SCHEDULE: Creation = Creation {
    nav: "Schedules",
    title: "New schedule",
    path: "/schedules/new",
    api: "/schedules",
    submit: "Create",
    shown_at: Some("/schedules/"),
    done: "created",
};

async fn new_schedule(Extension(api): Extension<Api>, visitor: Visitor) -> Response {
    let signed = signed_or_return!(api, visitor);
    let fields = schedule_fields(kinds(&api, &signed).await);
    let defaults = [
        ("payload:json".to_owned(), "{}".to_owned()),
        ("cron.timezone".to_owned(), "UTC".to_owned()),
        ("enabled:bool".to_owned(), "on".to_owned()),
    ];
    NEW_SCHEDULE.form(&signed, &fields, &defaults, None)
}

async fn create_schedule(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let Some(values) = checked(&signed.visitor, &headers, &body) else {
        return csrf_refused();
    };
    let fields = async { schedule_fields(kinds(&api, &signed).await) };
    NEW_SCHEDULE
        .create(&api, &signed, fields, &values, &timing_only(&values))
        .await
}

/// The form's values as sent: a time zone alone is no timing, it goes with a cron
/// expression only.
fn timing_only(values: &[(String, String)]) -> Vec<(String, String)> {
    let has_cron = values.iter().any(|(k, v)| k == "cron.expr" && !v.trim().is_empty());
    values
        .iter()
        .filter(|(k, _)| has_cron || k != "cron.timezone")
        .cloned()
        .collect()
}

static EDIT_SCHEDULE: Editing = Editing {
    nav: "Schedules",
    title: "Edit the schedule",
    api: "/schedules/",
    page: "/schedules/",
};

async fn edit_schedule(Extension(api): Extension<Api>, visitor: Visitor, Path(id): Path<String>) -> Response {
    let signed = signed_or_return!(api, visitor);
    let fields = schedule_fields(kinds(&api, &signed).await);
    EDIT_SCHEDULE.show(&api, &signed, &id, &fields).await
}

async fn save_schedule(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let Some(values) = checked(&signed.visitor, &headers, &body) else {
        return csrf_refused();
    };
    let fields = async { schedule_fields(kinds(&api, &signed).await) };
    EDIT_SCHEDULE
        .save(&api, &signed, &id, fields, &values, &timing_only(&values))
        .await
}
