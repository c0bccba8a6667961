//! The console's pages: sign-in, the dashboard, lists with their filters, details with
//! their actions, and the forms that create things.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::api::Api;
use super::forms::{self, Failure, Field, Input, field};
use super::layout::{self, Notice, action, bare, fields, json_block, page, text, time};
use super::lists::{self, Cell, Column, Filter, Paging, col, filter};
use super::session::{self, COOKIE, PRIOR_COOKIE};
use super::{Signed, Visitor, checked, csrf_ok, csrf_refused, form_fields, local, signed, with_csp};
use crate::state::AppState;

type Params = Query<BTreeMap<String, String>>;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/jobs", get(jobs))
        .route("/jobs/new", get(new_job).post(create_job))
        .route("/jobs/{id}", get(job))
        .route("/queues", get(queues))
        .route(
            "/workers",
            get(|api, visitor, query| plain(api, visitor, query, &WORKERS)),
        )
        .route("/dead-letters", get(dead_letters))
        .route("/schedules", get(schedules))
        .route("/schedules/new", get(new_schedule).post(create_schedule))
        .route("/schedules/{id}", get(schedule))
        .route("/productions", get(productions))
        .route("/productions/{id}", get(production))
        .route("/clips", get(|api, visitor, query| plain(api, visitor, query, &CLIPS)))
        .route("/clips/{id}", get(clip))
        .route("/transcripts", get(transcripts))
        .route("/transcripts/{id}", get(transcript))
        .route("/users", get(|api, visitor, query| plain(api, visitor, query, &USERS)))
        .route("/users/{id}", get(user))
        .route("/users/{id}/impersonate", axum::routing::post(impersonate_submit))
        .route(
            "/groups",
            get(|api, visitor, query| plain(api, visitor, query, &GROUPS)),
        )
        .route("/groups/{id}", get(group))
        .route("/logs", get(logs))
        .route("/audit-log", get(audit_log))
        .route("/login-log", get(login_log))
        .route("/settings", get(settings))
        .route("/system", get(system))
        .route("/stats", get(stats))
        .route("/emails", get(emails))
        .route("/emails/new", get(new_email).post(create_email))
        .route("/share-links", get(share_links))
        .route("/uploads", get(uploads))
        .route("/uploads/{id}", get(upload_page))
        .route("/productions/new", get(new_production).post(create_production))
}

/// What to show above a page that read `answer`: its error, or what the last action did.
fn flash(answer: &super::api::Answer, query: &BTreeMap<String, String>) -> Option<Notice> {
    if answer.ok() {
        notice(query)
    } else {
        Some(Notice::Failed(answer.error()))
    }
}

/// What `?done=` / `?failed=` say after an action.
fn notice(query: &BTreeMap<String, String>) -> Option<Notice> {
    query
        .get("failed")
        .map(|m| Notice::Failed(m.clone()))
        .or_else(|| query.get("done").map(|m| Notice::Done(m.clone())))
}

/// The visitor signed in, or the response that sends them to sign in.
macro_rules! signed_or_return {
    ($api:expr, $visitor:expr) => {
        match signed(&$api, $visitor).await {
            Ok(signed) => signed,
            Err(response) => return response,
        }
    };
}

// ---------------------------------------------------------------- sign-in

pub async fn login_form(Query(query): Params) -> Response {
    let next = query.get("next").map_or("/", |n| local(n)).to_owned();
    login_page(&next, None)
}

fn login_page(next: &str, error: Option<&str>) -> Response {
    let body = html! {
        form.edit method="post" action="/login" {
            @if let Some(error) = error { p.alert role="alert" { (error) } }
            input type="hidden" name="next" value=(next);
            label for="username" { "Username" input id="username" name="username" autocomplete="username" required autofocus; }
            label for="password" { "Password" input id="password" type="password" name="password" autocomplete="current-password" required; }
            div { button type="submit" { "Sign in" } }
        }
    };
    with_csp(Html(bare("Sign in · Rushes", body)).into_response())
}

/// Signs in through `POST /api/v1/auth/login` (its checks, throttling and login log)
/// and keeps the session it opens in the cookie.
pub async fn login_submit(Extension(api): Extension<Api>, visitor: Visitor, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let next = local(&get("next")).to_owned();
    let mut anonymous = visitor.caller.clone();
    anonymous.token = None;
    let answer = api
        .send(
            &anonymous,
            axum::http::Method::POST,
            "/auth/login",
            Some(json!({ "username": get("username"), "password": get("password") })),
        )
        .await;
    match answer.body["token"].as_str() {
        Some(token) if answer.ok() => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(COOKIE, Some(token), visitor.secure),
            );
            response
        }
        _ => {
            let message = match answer.status {
                StatusCode::UNAUTHORIZED => "Wrong username or password.".to_owned(),
                _ => answer.error(),
            };
            // The form again, with why (a page, not an error document: the browser
            // shows it as it shows the form).
            login_page(&next, Some(&message))
        }
    }
}

/// Ends the session (the API revokes its token) and forgets the cookie.
pub async fn logout(Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    if checked(&visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    let _ = api
        .send(&visitor.caller, axum::http::Method::POST, "/auth/logout", None)
        .await;
    let mut response = Redirect::to("/login").into_response();
    for name in [COOKIE, PRIOR_COOKIE] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session::set_cookie(name, None, visitor.secure));
    }
    response
}

/// Ends an impersonation: its token is revoked and the admin's own session comes back.
pub async fn stop_impersonating(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if checked(&visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    let _ = api
        .send(&visitor.caller, axum::http::Method::POST, "/auth/logout", None)
        .await;
    let prior = session::cookie(&headers, PRIOR_COOKIE);
    let mut response = Redirect::to(if prior.is_some() { "/users" } else { "/login" }).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, prior.as_deref(), visitor.secure),
    );
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(PRIOR_COOKIE, None, visitor.secure),
    );
    response
}

/// `POST /users/{id}/impersonate` from the console: the admin's session is kept aside
/// and the impersonation's session takes its place until "stop impersonating".
async fn impersonate(api: &Api, signed: &Signed, id: &str) -> Response {
    let answer = api
        .send(
            signed.api(),
            axum::http::Method::POST,
            &format!("/users/{id}/impersonate"),
            Some(json!({})),
        )
        .await;
    match (
        answer.ok(),
        answer.body["token"].as_str(),
        signed.visitor.caller.token.as_deref(),
    ) {
        (true, Some(token), Some(own)) => {
            let mut response = Redirect::to("/").into_response();
            let secure = signed.visitor.secure;
            response
                .headers_mut()
                .append(header::SET_COOKIE, session::set_cookie(PRIOR_COOKIE, Some(own), secure));
            response
                .headers_mut()
                .append(header::SET_COOKIE, session::set_cookie(COOKIE, Some(token), secure));
            response
        }
        _ => Redirect::to(&format!("/users/{id}?failed={}", encode(&answer.error()))).into_response(),
    }
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `GET /console/api/{path}`: a read of the API as the signed-in user (the live parts
/// of pages, media players), passed through as the API answers it.
pub async fn read_through(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if visitor.caller.token.is_none() {
        return crate::error::ApiError::Unauthorized.into_response();
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    api.pass_through(
        &visitor.caller,
        &format!("/{path}{query}"),
        headers.get(header::RANGE).cloned(),
    )
    .await
}

// ---------------------------------------------------------------- dashboard

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

// ---------------------------------------------------------------- lists

/// A list page: its navigation entry, title, API list, filters and columns.
struct ListSpec {
    nav: &'static str,
    title: &'static str,
    path: &'static str,
    api: &'static str,
    filters: &'static [Filter],
    columns: &'static [Column],
    paging: Paging,
}

/// A list page with nothing beside the list.
async fn plain(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Query(query): Params,
    spec: &'static ListSpec,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, spec, &query, html! {}, None).await
}

async fn list(
    api: &Api,
    signed: &Signed,
    spec: &ListSpec,
    query: &BTreeMap<String, String>,
    extra: Markup,
    actions: Option<&(dyn Fn(&Value) -> Markup + Sync)>,
) -> Response {
    let api_query = lists::api_query(spec.filters, query, spec.paging);
    let answer = api.get(signed.api(), &format!("{}?{api_query}", spec.api)).await;
    let flash = flash(&answer, query);
    let rows = answer.rows();
    let shown = &rows[..rows.len().min(lists::PAGE)];
    let body = html! {
        (extra)
        (lists::filter_form(spec.path, spec.filters, query))
        (lists::table(spec.columns, shown, actions))
        (lists::pager(spec.path, query, &answer, rows.len(), spec.paging))
    };
    page(signed, spec.nav, spec.title, flash.as_ref(), body)
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
const QUEUES: &[&str] = &["transcode", "transcribe", "scan", "email", "maintenance"];

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

static QUEUE_COLUMNS: [Column; 7] = [
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

static WORKER_COLUMNS: [Column; 6] = [
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
    let extra =
        html! { p { a href="/productions/new" { "New production" } " · " a href="/share-links" { "Share links" } } };
    list(&api, &signed, &PRODUCTIONS, &query, extra, None).await
}

static CLIPS: ListSpec = ListSpec {
    nav: "Clips",
    title: "Clips",
    path: "/clips",
    api: "/clips",
    filters: &[
        filter("q", "Search", &[]),
        filter("production_id", "Production id", &[]),
        filter(
            "transcode_state",
            "Transcode",
            &["pending", "queued", "running", "done", "failed", "cancelled"],
        ),
        filter("missing", "Missing", &["true", "false"]),
    ],
    columns: &[
        col("Clip", "/name", Cell::Link("/clips/")),
        col("Production", "/production", Cell::Text),
        col("Duration (s)", "/duration_s", Cell::Text),
        col("Transcode", "/transcode_state", Cell::State),
        col("Transcript", "/transcript_state", Cell::State),
        col("Found", "/created_at", Cell::Time),
    ],
    paging: Paging::Offset,
};

static TRANSCRIPTS: ListSpec = ListSpec {
    nav: "Transcripts",
    title: "Transcripts",
    path: "/transcripts",
    api: "/transcripts",
    filters: &[
        filter("state", "State", &["queued", "running", "done", "failed", "cancelled"]),
        filter("production_id", "Production id", &[]),
    ],
    columns: &[
        col("Transcript", "/title", Cell::Link("/transcripts/")),
        col("State", "/state", Cell::State),
        col("Model", "/model", Cell::Text),
        col("Language", "/language", Cell::Text),
        col("Segments", "/segment_count", Cell::Text),
        col("Created", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

async fn transcripts(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = html! { p { a href="/uploads" { "Upload a file for transcription" } } };
    list(&api, &signed, &TRANSCRIPTS, &query, extra, None).await
}

static USERS: ListSpec = ListSpec {
    nav: "Users",
    title: "Users",
    path: "/users",
    api: "/users",
    filters: &[
        filter("active", "Active", &["true", "false"]),
        filter("include_deleted", "Include deleted", &["true"]),
    ],
    columns: &[
        col("Username", "/username", Cell::Link("/users/")),
        col("Email", "/email", Cell::Text),
        col("Admin", "/is_admin", Cell::Text),
        col("Active", "/active", Cell::Text),
        col("Last seen", "/last_seen_at", Cell::Time),
    ],
    paging: Paging::Cursor,
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
        col("Created", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

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

// ---------------------------------------------------------------- details

/// A detail page: the object's fields, then `extra`.
async fn detail(
    api: &Api,
    signed: &Signed,
    nav: &str,
    api_path: &str,
    title_key: &str,
    query: &BTreeMap<String, String>,
    extra: impl FnOnce(&Value) -> Markup,
) -> Response {
    let answer = api.get(signed.api(), api_path).await;
    if !answer.ok() {
        return page(signed, nav, nav, Some(&Notice::Failed(answer.error())), html! {});
    }
    let object = &answer.body;
    let title = object[title_key].as_str().unwrap_or(nav).to_owned();
    let body = html! {
        (extra(object))
        h2 { "Details" }
        (fields(object, &["segments", "history", "payload", "result", "next_fire_times", "next_fire_times_local"]))
    };
    page(signed, nav, &title, notice(query).as_ref(), body)
}

async fn job(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
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

async fn schedule(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
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
                    (action(&signed, &format!("/schedules/{id}/run"), "Run now", &back, None, ""))
                    " "
                    @if enabled {
                        (action(&signed, &format!("/schedules/{id}/disable"), "Disable", &back, None, "quiet"))
                    } @else {
                        (action(&signed, &format!("/schedules/{id}/enable"), "Enable", &back, None, "quiet"))
                    }
                    " "
                    form.inline method="post" action={ "/do/schedules/" (id) } data-confirm="Delete this schedule?" {
                        (layout::csrf(&signed))
                        input type="hidden" name="_method" value="DELETE";
                        input type="hidden" name="_back" value="/schedules";
                        button.danger type="submit" { "Delete" }
                    }
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

async fn production(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let back = format!("/productions/{id}");
    detail(&api, &signed, "Productions", &format!("/productions/{id}"), "name", &query, |_| {
        html! {
            p {
                (action(&signed, &format!("/productions/{id}/scan"), "Scan now", &back, None, ""))
                " "
                (action(&signed, &format!("/productions/{id}/transcode-pending"), "Transcode pending", &back, None, "quiet"))
                " "
                a href={ "/clips?production_id=" (id) } { "Clips" }
                " · "
                a href={ "/console/api/productions/" (id) "/export" } { "Export" }
            }
        }
    })
    .await
}

async fn clip(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let transcript = first_transcript(&api, &signed, "clip_id", &id).await;
    detail(&api, &signed, "Clips", &format!("/clips/{id}"), "name", &query, |c| {
        let proxy = c["outputs"]["proxy"].as_str().and_then(|u| u.strip_prefix("/api/v1"));
        let poster = c["outputs"]["poster"].as_str().and_then(|u| u.strip_prefix("/api/v1"));
        html! {
            @if let Some(proxy) = proxy {
                video data-clip=(id) controls preload="metadata" src={ "/console/api" (proxy) } poster=[poster.map(|p| format!("/console/api{p}"))] {}
            } @else {
                p { "No proxy yet (transcode: " (text(&c["transcode_state"])) ")." }
            }
            @if let Some(t) = &transcript {
                h2 { "Transcript" }
                (segments(t))
            }
        }
    })
    .await
}

/// The newest transcript of a clip or an upload (`of`: `clip_id` or `upload_id`), with
/// its segments.
async fn first_transcript(api: &Api, signed: &Signed, of: &str, id: &str) -> Option<Value> {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let listed = api
        .get(signed.api(), &format!("/transcripts?{of}={id}&limit=1"))
        .await
        .rows();
    let transcript = listed.first()?["id"].as_str()?.to_owned();
    Some(api.get(signed.api(), &format!("/transcripts/{transcript}")).await.body)
}

/// A transcript's segments; each seeks the clip's player to its start.
fn segments(transcript: &Value) -> Markup {
    html! {
        ol.segments {
            @for s in transcript["segments"].as_array().into_iter().flatten() {
                li data-start=(s["start_s"].as_f64().unwrap_or(0.0)) tabindex="0" {
                    small { (format!("{:.1} s", s["start_s"].as_f64().unwrap_or(0.0))) } " " (text(&s["text"]))
                }
            }
        }
    }
}

async fn transcript(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    detail(&api, &signed, "Transcripts", &format!("/transcripts/{id}"), "title", &query, |t| {
        html! {
            @if let Some(clip) = t["clip_id"].as_str() { p { a href={ "/clips/" (clip) } { "Open the clip with its player" } } }
            (segments(t))
        }
    })
    .await
}

async fn user(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let admin = signed.is_admin();
    detail(
        &api,
        &signed,
        "Users",
        &format!("/users/{id}"),
        "username",
        &query,
        |_| {
            html! {
                @if admin {
                    form.inline method="post" action={ "/users/" (id) "/impersonate" } {
                        (layout::csrf(&signed))
                        button.quiet type="submit" { "Impersonate" }
                    }
                }
            }
        },
    )
    .await
}

async fn impersonate_submit(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    if checked(&signed.visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    impersonate(&api, &signed, &id).await
}

async fn group(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    detail(
        &api,
        &signed,
        "Groups",
        &format!("/groups/{id}"),
        "name",
        &query,
        |_| html! {},
    )
    .await
}

// ---------------------------------------------------------------- forms

fn job_fields(kinds: Vec<String>) -> Vec<Field> {
    vec![
        field("kind", "Kind", Input::Choice(kinds)).required(),
        field("payload:json", "Payload (JSON)", Input::Json).help("For example {\"seconds\": 5} for sleep."),
        field("priority:int", "Priority (0–100)", Input::Number),
    ]
}

async fn kinds(api: &Api, signed: &Signed) -> Vec<String> {
    api.get(signed.api(), "/kinds")
        .await
        .rows()
        .iter()
        .filter_map(|k| k["kind"].as_str().or_else(|| k["name"].as_str()).map(str::to_owned))
        .collect()
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

/// A page whose form creates something with one API call, then shows it.
struct Creation {
    nav: &'static str,
    title: &'static str,
    /// The page: `GET` shows the form, `POST` submits it.
    path: &'static str,
    api: &'static str,
    submit: &'static str,
    /// Where the created object is shown (`{shown_at}{id}`); `None`: the list it joined.
    shown_at: Option<&'static str>,
    /// What the page says was done.
    done: &'static str,
}

impl Creation {
    fn form(
        &self,
        signed: &Signed,
        fields: &[Field],
        values: &[(String, String)],
        failure: Option<&Failure>,
    ) -> Response {
        let form = forms::render(signed, self.path, fields, values, failure, self.submit);
        page(signed, self.nav, self.title, None, form)
    }

    /// Sends `sent` (the form's `values`, perhaps adjusted); the created object's page,
    /// or the form again with the API's error next to its field (`fields` is only
    /// awaited then: building them may ask the API, e.g. for the kinds).
    async fn create(
        &self,
        api: &Api,
        signed: &Signed,
        fields: impl Future<Output = Vec<Field>>,
        values: &[(String, String)],
        sent: &[(String, String)],
    ) -> Response {
        match submit(api, signed, self.api, sent).await {
            Ok(created) => {
                let to = match self.shown_at {
                    Some(prefix) => format!("{prefix}{}?done={}", text(&created["id"]), self.done),
                    None => format!("{}?done={}", self.api, self.done),
                };
                Redirect::to(&to).into_response()
            }
            Err(failure) => self.form(signed, &fields.await, values, Some(&failure)),
        }
    }
}

/// The form's API call: the created object, or what to show next to the form.
async fn submit(api: &Api, signed: &Signed, api_path: &str, values: &[(String, String)]) -> Result<Value, Failure> {
    let body = forms::to_json(values).map_err(|(field, message)| Failure {
        field: Some(field),
        message,
    })?;
    let answer = api
        .send(signed.api(), axum::http::Method::POST, api_path, Some(body))
        .await;
    if answer.ok() {
        Ok(answer.body)
    } else {
        Err(Failure::of(&answer))
    }
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
    let mut values = match checked(&signed.visitor, &headers, &body) {
        Some(values) => values,
        None => return csrf_refused(),
    };
    // An unticked box sends nothing: say so, for the API and for the form shown again.
    if !values.iter().any(|(k, _)| k == "enabled:bool") {
        values.push(("enabled:bool".to_owned(), "off".to_owned()));
    }
    // A time zone alone is no timing: it goes with a cron expression only.
    let has_cron = values.iter().any(|(k, v)| k == "cron.expr" && !v.trim().is_empty());
    let sent: Vec<(String, String)> = values
        .iter()
        .filter(|(k, _)| has_cron || k != "cron.timezone")
        .cloned()
        .collect();
    let fields = async { schedule_fields(kinds(&api, &signed).await) };
    NEW_SCHEDULE.create(&api, &signed, fields, &values, &sent).await
}

// ---------------------------------------------------------------- more lists

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
fn settings_links() -> Markup {
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
            label for="from" { "From" input id="from" type="date" name="from" value=(text(&answer.body["from"])); }
            label for="to" { "To" input id="to" type="date" name="to" value=(text(&answer.body["to"])); }
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

async fn new_email(Extension(api): Extension<Api>, visitor: Visitor) -> Response {
    let signed = signed_or_return!(api, visitor);
    NEW_EMAIL.form(&signed, &email_fields(), &[], None)
}

async fn create_email(Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    let signed = signed_or_return!(api, visitor);
    match checked(&signed.visitor, &headers, &body) {
        Some(values) => {
            NEW_EMAIL
                .create(&api, &signed, async { email_fields() }, &values, &values)
                .await
        }
        None => csrf_refused(),
    }
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
                form.inline method="post" action={ "/do/share-links/" (id) } data-confirm="Revoke this share link?" {
                    (layout::csrf(&signed))
                    input type="hidden" name="_method" value="DELETE";
                    input type="hidden" name="_back" value="/share-links";
                    button.danger type="submit" { "Revoke" }
                }
            }
        }
    };
    list(&api, &signed, &SHARE_LINKS, &query, settings_links(), Some(&actions)).await
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

// ---------------------------------------------------------------- uploads

static UPLOADS: ListSpec = ListSpec {
    nav: "Transcripts",
    title: "Uploads for transcription",
    path: "/uploads",
    api: "/uploads",
    filters: &[],
    columns: &[
        col("Title", "/title", Cell::Link("/uploads/")),
        col("File", "/file_name", Cell::Text),
        col("Duration (s)", "/duration_s", Cell::Text),
        col("Prepared", "/transcode_state", Cell::State),
        col("By", "/uploaded_by", Cell::Text),
        col("Uploaded", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

/// Uploads, and the form that sends one (its bytes go to the API as they are sent, with
/// a progress bar; this one needs JavaScript, which carries the CSRF token as a header).
async fn uploads(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let extra = html! {
        form.edit id="upload-form" method="post" action="/console/upload" enctype="multipart/form-data" data-csrf=(signed.csrf) {
            label for="upload-file" { "Audio or video file" input id="upload-file" type="file" name="file" required; }
            label for="upload-title" { "Title" input id="upload-title" type="text" name="title" required; }
            label for="upload-language" { "Language (empty: detect)" input id="upload-language" type="text" name="language"; }
            label for="upload-progress" { "Progress" progress id="upload-progress" max="1" value="0" {} }
            span.error id="upload-error" role="alert" {}
            div { button type="submit" { "Upload and transcribe" } }
        }
    };
    list(&api, &signed, &UPLOADS, &query, extra, None).await
}

/// `POST /console/upload` (the upload form's script): the multipart body streamed to
/// `POST /api/v1/uploads` as the signed-in user; the CSRF token comes as a header.
pub async fn upload(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if !csrf_ok(&visitor, &[], &headers) {
        return csrf_refused();
    }
    api.stream_post(
        &visitor.caller,
        "/uploads",
        headers.get(header::CONTENT_TYPE).cloned(),
        body,
    )
    .await
}

async fn upload_page(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let transcript = first_transcript(&api, &signed, "upload_id", &id).await;
    let done = transcript
        .as_ref()
        .is_some_and(|t| matches!(t["state"].as_str(), Some("done" | "failed" | "cancelled")));
    detail(
        &api,
        &signed,
        "Transcripts",
        &format!("/uploads/{id}"),
        "title",
        &query,
        |_| {
            html! {
                div data-live-reload=[(!done).then_some("3")] {
                    h2 { "Transcript" }
                    @match &transcript {
                        Some(t) => {
                            p { "State: " strong data-transcript-state { (text(&t["state"])) } }
                            (segments(t))
                        }
                        None => p { "Waiting for the transcript to start…" },
                    }
                }
            }
        },
    )
    .await
}
