//! Jobs, queues, workers and dead letters: the fleet at work.

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
use crate::console::layout::{action, csrf, json_block, page, text};
use crate::console::lists::{self, Cell, Column, Paging, col, filter};
use crate::console::{Visitor, checked, csrf_refused, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(jobs))
        .route("/jobs/new", get(new_job).post(create_job))
        .route("/jobs/{id}", get(job))
        .route("/queues", get(queues))
        .route("/workers", get(workers))
        .route("/dead-letters", get(dead_letters))
}

const JOB_STATES: &[&str] = &[
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "dead",
    "cancelled",
];

const QUEUES: &[&str] = &[
    "transcode",
    "transcode_long",
    "transcribe",
    "scan",
    "email",
    "maintenance",
];

static JOBS: ListSpec = ListSpec {
    nav: "Jobs",
    title: "Jobs",
    path: "/jobs",
    api: "/jobs",
    filters: &[
        filter("kind", "Kind", &[]),
        filter("state", "State", JOB_STATES),
        filter("queue", "Queue", QUEUES),
        filter("production_id", "Production id", &[]),
    ],
    columns: &[
        col("Kind", "/kind", Cell::Link("/jobs/")),
        col("State", "/state", Cell::State),
        col("Queue", "/queue", Cell::Text),
        col("Progress", "/progress", Cell::Progress),
        col("Attempts", "/attempts", Cell::Text),
        col("Enqueued", "/enqueued_at", Cell::Time),
        col("Finished", "/finished_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn jobs(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = html! { p { a href="/jobs/new" { "Enqueue a job" } " · " a href="/dead-letters" { "Dead letters" } } };
    let back = signed.visitor.path.clone();
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        let state = row["state"].as_str().unwrap_or("");
        html! {
            @if matches!(state, "queued" | "running" | "retrying") {
                (action(&signed, &format!("/jobs/{id}/cancel"), "Cancel", &back, None, "quiet"))
            }
            @if matches!(state, "failed" | "dead" | "cancelled") {
                (action(&signed, &format!("/jobs/{id}/retry"), "Retry", &back, None, "quiet"))
            }
        }
    };
    list(&api, &signed, &JOBS, &query, extra, Some(&actions)).await
}

pub(super) static QUEUE_COLUMNS: [Column; 7] = [
    col("Queue", "/name", Cell::Text),
    col("Depth", "/depth", Cell::Text),
    col("Consumers", "/consumers", Cell::Text),
    col("In flight", "/in_flight", Cell::Text),
    col("Queued", "/queued", Cell::Text),
    col("Retrying", "/retrying", Cell::Text),
    col("Paused", "/paused", Cell::Text),
];

async fn queues(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let answer = api.get(signed.api(), "/queues").await;
    let rows = answer.rows();
    let actions = |row: &Value| {
        let name = text(&row["name"]);
        if row["paused"].as_bool().unwrap_or(false) {
            action(
                &signed,
                &format!("/queues/{name}/resume"),
                "Resume",
                "/queues",
                None,
                "",
            )
        } else {
            action(
                &signed,
                &format!("/queues/{name}/pause"),
                "Pause",
                "/queues",
                None,
                "quiet",
            )
        }
    };
    let flash = flash(&answer, &query);
    let body = html! {
        p { "Pausing a queue stops every worker taking its jobs; running jobs finish." }
        (lists::table(&QUEUE_COLUMNS, &rows, Some(&actions)))
    };
    page(&signed, "Queues", "Queues", flash.as_ref(), body)
}

pub(super) static WORKER_COLUMNS: [Column; 6] = [
    col("Host", "/host", Cell::Text),
    col("Queues", "/queues", Cell::Text),
    col("Slots", "/slots", Cell::Text),
    col("GPUs", "/gpus", Cell::Text),
    col("Capabilities", "/capabilities", Cell::Text),
    col("Last heartbeat", "/last_seen_at", Cell::Time),
];

static WORKERS: ListSpec = ListSpec {
    nav: "Workers",
    title: "Workers",
    path: "/workers",
    api: "/workers",
    filters: &[filter("all", "Include stopped", &["true"])],
    columns: &WORKER_COLUMNS,
    paging: Paging::Cursor,
};

/// Workers, with what an admin may ask of an online one: its slots per queue (applied
/// without a restart), a drain, a restart.
async fn workers(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        let host = text(&row["host"]);
        html! {
            @if row["online"].as_bool().unwrap_or(false) && row["stop_requested"].is_null() {
                form.inline method="post" action={ "/do/workers/" (id) } {
                    (csrf(&signed))
                    input type="hidden" name="_method" value="PATCH";
                    input type="hidden" name="_back" value="/workers";
                    @for (queue, slots) in row["queues"].as_object().into_iter().flatten() {
                        label {
                            (queue) " "
                            input type="number" min="1" max="256" name={ "slots." (queue) ":int" }
                                value=(text(slots)) aria-label={ "Slots of " (queue) " on " (host) };
                        }
                    }
                    button type="submit" class="quiet" { "Set slots" }
                }
                (action(&signed, &format!("/workers/{id}/drain"), "Drain", "/workers",
                    Some("Drain this worker? It takes no more jobs, finishes those it runs, then exits for its supervisor to restart it."), "quiet"))
                (action(&signed, &format!("/workers/{id}/restart"), "Restart", "/workers",
                    Some("Restart this worker? Jobs it cannot finish within its grace period go back to their queues."), "quiet"))
            } @else if let Some(how) = row["stop_requested"].as_str() {
                span { "stopping (" (how) ")" }
            }
        }
    };
    let extra = html! {
        p { "Slots change on the running worker: added ones take jobs at once, removed ones as running jobs end. A drained or restarted worker exits 0; its supervisor starts a fresh one." }
    };
    list(&api, &signed, &WORKERS, &query, extra, Some(&actions)).await
}

static DEAD_LETTERS: ListSpec = ListSpec {
    nav: "Jobs",
    title: "Dead letters",
    path: "/dead-letters",
    api: "/dead-letters",
    filters: &[
        filter("queue", "Queue", QUEUES),
        filter("all", "Include resolved", &["true"]),
    ],
    columns: &[
        col("Queue", "/queue", Cell::Text),
        col("Kind", "/kind", Cell::Text),
        col("Reason", "/reason", Cell::Text),
        col("Attempt", "/attempt", Cell::Text),
        col("Parked", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn dead_letters(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let actions = |row: &Value| {
        let id = text(&row["id"]);
        action(
            &signed,
            &format!("/dead-letters/{id}/requeue"),
            "Requeue",
            "/dead-letters",
            None,
            "quiet",
        )
    };
    list(&api, &signed, &DEAD_LETTERS, &query, html! {}, Some(&actions)).await
}

async fn job(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let back = format!("/jobs/{id}");
    let lines = api
        .get(signed.api(), &format!("/logs?job_id={id}&limit=100"))
        .await
        .rows();
    let children = api
        .get(signed.api(), &format!("/jobs?parent_id={id}&limit=50"))
        .await
        .rows();
    detail(&api, &signed, "Jobs", &format!("/jobs/{id}"), "kind", &query, |job| {
        let state = job["state"].as_str().unwrap_or("");
        html! {
            div data-live-job=(id) {
                p {
                    "State: " strong data-job-field="state" { (state) }
                    " · progress " progress data-job-progress max="1" value=(job["progress"].as_f64().unwrap_or(0.0)) {}
                    " · attempts " span data-job-field="attempts" { (text(&job["attempts"])) }
                }
                p {
                    @if matches!(state, "queued" | "running" | "retrying") {
                        (action(&signed, &format!("/jobs/{id}/cancel"), "Cancel", &back, None, "danger"))
                    }
                    @if matches!(state, "failed" | "dead" | "cancelled") {
                        (action(&signed, &format!("/jobs/{id}/retry"), "Retry", &back, None, ""))
                    }
                    @if let Some(parent) = job["parent_id"].as_str() { " " a href={ "/jobs/" (parent) } { "Parent job" } }
                }
            }
            h2 { "Payload" } (json_block(&job["payload"]))
            @if !job["result"].is_null() { h2 { "Result" } (json_block(&job["result"])) }
            @if let Some(error) = job["error"].as_str() { h2 { "Error" } pre.error { (error) } }
            h2 { "Log lines" }
            (lists::table(&[col("At", "/at", Cell::Time), col("Level", "/level", Cell::State), col("Message", "/message", Cell::Text)], &lines, None))
            @if !children.is_empty() {
                h2 { "Children" }
                (lists::table(&JOBS.columns[..3], &children, None))
            }
            @if job["history"].as_array().is_some_and(|h| !h.is_empty()) { h2 { "History" } (json_block(&job["history"])) }
        }
    })
    .await
}

fn job_fields(kinds: Vec<String>) -> Vec<Field> {
    vec![
        field("kind", "Kind", Input::Choice(kinds)).required(),
        field("payload:json", "Payload (JSON)", Input::Json).help("For example {\"seconds\": 5} for sleep."),
        field("priority:int", "Priority (0–100)", Input::Number),
    ]
}

static NEW_JOB: Creation = Creation {
    nav: "Jobs",
    title: "Enqueue a job",
    path: "/jobs/new",
    api: "/jobs",
    submit: "Enqueue",
    shown_at: Some("/jobs/"),
    done: "enqueued",
};

async fn new_job(Extension(api): Extension<Api>, visitor: Visitor) -> Response {
    let signed = signed_or_return!(api, visitor);
    let fields = job_fields(kinds(&api, &signed).await);
    let defaults = [("payload:json".to_owned(), "{}".to_owned())];
    NEW_JOB.form(&signed, &fields, &defaults, None)
}

async fn create_job(Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    let signed = signed_or_return!(api, visitor);
    let values = match checked(&signed.visitor, &headers, &body) {
        Some(values) => values,
        None => return csrf_refused(),
    };
    let fields = async { job_fields(kinds(&api, &signed).await) };
    NEW_JOB.create(&api, &signed, fields, &values, &values).await
}
