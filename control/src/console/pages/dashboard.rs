//! The dashboard (live counts, running jobs, queues, workers) and the stats charts.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::admin::settings_links;
use super::fleet::{QUEUE_COLUMNS, WORKER_COLUMNS};
use super::*;
use crate::console::api::Api;
use crate::console::layout::{self, Notice, page, text, time};
use crate::console::lists::{self, Cell, col};
use crate::console::{Signed, Visitor, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/", get(dashboard)).route("/stats", get(stats))
}

/// The clip counts of `GET /api/v1/dashboard`, as the page shows them.
const COUNTS: [(&str, &str); 7] = [
    ("clips_waiting_transcode", "Waiting to transcode"),
    ("clips_transcoded", "Transcoded"),
    ("clips_waiting_transcribe", "Waiting to transcribe"),
    ("clips_transcribed", "Transcribed"),
    ("clips_failed", "Failed"),
    ("clips_transcribe_failed", "Transcription failed"),
    ("clips_missing", "Missing"),
];

async fn dashboard(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    if !signed.is_admin() {
        return mine(&signed, &query);
    }
    let answer = api.get(signed.api(), "/dashboard").await;
    if !answer.ok() {
        return page(
            &signed,
            "Dashboard",
            "Dashboard",
            Some(&Notice::Failed(answer.error())),
            html! {},
        );
    }
    let online = api.get(signed.api(), "/users?online=true&limit=50").await.rows();
    let d = &answer.body;
    let body = html! {
        div data-live="dashboard" {
            section aria-labelledby="clips-h" {
                h2 id="clips-h" { "Clips" }
                div.cards {
                    @for (name, label) in COUNTS {
                        div.card { span.n data-metric=(name) { (text(&d[name])) } span.label { (label) } }
                    }
                    div.card { span.n data-metric="users_online" { (text(&d["users_online"])) } span.label { "Users online" } }
                }
                p { small { "Updated " span data-live="updated" { "when the page loaded" } " · counted " (time(&d["counted_at"])) } }
            }
            section aria-labelledby="running-h" {
                h2 id="running-h" { "Running jobs" }
                div.table-wrap {
                    table {
                        thead { tr { th { "Kind" } th { "Queue" } th { "Progress" } th { "Worker" } } }
                        tbody data-live="running" {
                            @for job in d["running_jobs"].as_array().into_iter().flatten() {
                                tr {
                                    td { a href={ "/jobs/" (text(&job["id"])) } { (text(&job["kind"])) } }
                                    td { (text(&job["queue"])) }
                                    td {
                                        progress max="1" value=(job["progress"].as_f64().unwrap_or(0.0)) {}
                                        " " (format!("{:.0} %", job["progress"].as_f64().unwrap_or(0.0) * 100.0))
                                    }
                                    td { (text(&job["worker_host"])) }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="queues-h" {
                h2 id="queues-h" { "Queues" }
                (lists::table(&QUEUE_COLUMNS, d["queues"].as_array().map_or(&[][..], Vec::as_slice), None))
            }
            section aria-labelledby="online-h" {
                h2 id="online-h" { "Who is online" }
                @if online.is_empty() {
                    p { "No one seen recently." }
                } @else {
                    ul.tags {
                        @for user in &online {
                            li { a href={ "/users/" (text(&user["id"])) } { (text(&user["username"])) } }
                        }
                    }
                    p { a href="/users?online=true" { "Everyone online" } }
                }
            }
            section aria-labelledby="workers-h" {
                h2 id="workers-h" { "Workers online" }
                (lists::table(&WORKER_COLUMNS, d["workers_online"].as_array().map_or(&[][..], Vec::as_slice), None))
            }
        }
    };
    page(&signed, "Dashboard", "Dashboard", notice(&query).as_ref(), body)
}

/// A user who is not an admin: the productions they can see, and what they may do.
fn mine(signed: &Signed, query: &BTreeMap<String, String>) -> Response {
    let rows: Vec<Value> = signed.me["productions"].as_array().cloned().unwrap_or_default();
    let body = html! {
        p { "The productions you can see." }
        (lists::table(&[col("Production", "/name", Cell::Link("/productions/")), col("You may", "/policies", Cell::Text)], &rows, None))
    };
    page(signed, "Dashboard", "Dashboard", notice(query).as_ref(), body)
}

/// The series of `GET /api/v1/stats` the page draws, with their names.
const STATS: [(&str, &str); 6] = [
    ("users_total", "Users"),
    ("clips_found", "Clips found"),
    ("hours_transcoded", "Hours transcoded"),
    ("hours_transcribed", "Hours transcribed"),
    ("jobs_succeeded", "Jobs succeeded"),
    ("jobs_failed", "Jobs failed"),
];

async fn stats(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let range = {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for key in ["from", "to"] {
            if let Some(value) = query.get(key).filter(|v| !v.is_empty()) {
                pairs.append_pair(key, value);
            }
        }
        pairs.finish()
    };
    let answer = api.get(signed.api(), &format!("/stats?{range}")).await;
    let flash = flash(&answer, &query);
    let days = answer.body["days"].as_array().cloned().unwrap_or_default();
    let body = html! {
        (settings_links())
        form.filters method="get" action="/stats" {
            label for="from" { "From" input id="from" type="date" name="from" value=(layout::input_value(&answer.body["from"])); }
            label for="to" { "To" input id="to" type="date" name="to" value=(layout::input_value(&answer.body["to"])); }
            button type="submit" { "Show" }
        }
        div.cards {
            @for (key, label) in STATS {
                div.card { (chart(label, &days, key)) }
            }
        }
    };
    page(&signed, "Dashboard", "Stats", flash.as_ref(), body)
}

/// A bar chart of one series over the days, drawn on the server (SVG, no script).
fn chart(label: &str, days: &[Value], key: &str) -> Markup {
    const W: f64 = 300.0;
    const H: f64 = 120.0;
    let values: Vec<f64> = days.iter().map(|d| d[key].as_f64().unwrap_or(0.0)).collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let step = W / values.len().max(1) as f64;
    let last = values.last().copied().unwrap_or(0.0);
    html! {
        span.label { (label) }
        span.n { (format!("{}", (last * 100.0).round() / 100.0)) }
        svg viewBox={ "0 0 " (W) " " (H) } width="100%" role="img" aria-label={ (label) " per day" } {
            @for (i, v) in values.iter().enumerate() {
                @let h = if max > 0.0 { v / max * (H - 4.0) } else { 0.0 };
                rect x=(i as f64 * step) y=(H - h) width=((step - 1.0).max(1.0)) height=(h) fill="#2357c5" {
                    title { (text(&days[i]["date"])) ": " (v) }
                }
            }
        }
    }
}
