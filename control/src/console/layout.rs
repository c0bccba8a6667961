//! The frame of every console page (navigation with the current page marked, who is
//! signed in, the impersonation banner) and the pieces pages are made of.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::session::CSRF_FIELD;
use super::{Signed, with_csp};

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The navigation: text and address, in order.
pub const NAV: [(&str, &str); 12] = [
    ("Dashboard", "/"),
    ("Jobs", "/jobs"),
    ("Queues", "/queues"),
    ("Workers", "/workers"),
    ("Schedules", "/schedules"),
    ("Productions", "/productions"),
    ("Clips", "/clips"),
    ("Transcripts", "/transcripts"),
    ("Users", "/users"),
    ("Groups", "/groups"),
    ("Logs", "/logs"),
    ("Settings", "/settings"),
];

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/console.css";
            script src="/console.js" defer {}
        }
    }
}

/// A page outside the signed-in frame (login, errors).
pub fn bare(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main class="login" { h1 { "Rushes" } (body) } }
        }
    }
    .into_string()
}

/// An error page for a failure the visitor cannot act on here.
pub fn problem(message: &str) -> Response {
    with_csp(
        (
            StatusCode::BAD_GATEWAY,
            Html(bare(
                "Rushes: something went wrong",
                html! { p role="alert" class="alert" { (message) } },
            )),
        )
            .into_response(),
    )
}

/// The CSRF field of a form.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(signed.csrf); }
}

/// A one-button form that performs `POST /api/v1{api_path}` and comes back to `back`.
pub fn action(signed: &Signed, api_path: &str, label: &str, back: &str, confirm: Option<&str>, class: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/do" (api_path) } data-confirm=[confirm] {
            (csrf(signed))
            input type="hidden" name="_back" value=(back);
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A one-button form that deletes `/api/v1{api_path}` after the browser asks
/// `confirm`, then goes to `back`.
pub fn removal(signed: &Signed, api_path: &str, label: &str, back: &str, confirm: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/do" (api_path) } data-confirm=(confirm) {
            (csrf(signed))
            input type="hidden" name="_method" value="DELETE";
            input type="hidden" name="_back" value=(back);
            button.danger type="submit" { (label) }
        }
    }
}

/// A full console page; `current` is the navigation entry it belongs to.
pub fn page(signed: &Signed, current: &str, title: &str, flash: Option<&Notice>, body: Markup) -> Response {
    let name = signed.me["name"].as_str().unwrap_or("");
    let impersonating = !signed.me["impersonator_id"].is_null();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · Rushes")))
            body {
                a href="#content" class="skip" { "Skip to content" }
                @if impersonating {
                    div.banner role="status" {
                        strong { "You are impersonating " (name) "." }
                        form.inline method="post" action="/stop-impersonating" {
                            (csrf(signed))
                            button type="submit" { "Stop impersonating" }
                        }
                    }
                }
                header.top {
                    a.brand href="/" { "Rushes" }
                    nav.main aria-label="Main" {
                        ul {
                            @for (text, href) in NAV {
                                li {
                                    @if text == current {
                                        a href=(href) aria-current="page" { (text) }
                                    } @else {
                                        a href=(href) { (text) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in as " strong { (name) } }
                        form.inline method="post" action="/logout" {
                            (csrf(signed))
                            button.quiet type="submit" { "Sign out" }
                        }
                    }
                }
                main id="content" {
                    h1 { (title) }
                    @if let Some(notice) = flash {
                        @match notice {
                            Notice::Done(text) => p.flash role="status" { (text) },
                            Notice::Failed(text) => p.alert role="alert" { (text) },
                        }
                    }
                    (body)
                }
            }
        }
    };
    with_csp(Html(markup.into_string()).into_response())
}

/// What the last action did, shown above the page.
pub enum Notice {
    Done(String),
    Failed(String),
}

/// A time in the browser's zone (the script rewrites it), with the UTC value on hover.
pub fn time(value: &Value) -> Markup {
    match value.as_str() {
        Some(at) => html! { time datetime=(at) title=(at) { (at) } },
        None => html! { "–" },
    }
}

/// A JSON value as a cell shows it.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

/// A stored value as an input shows it for editing: nothing for null (never the "–"
/// that [`text`] shows, which would be saved back).
pub fn input_value(value: &Value) -> String {
    if value.is_null() { String::new() } else { text(value) }
}

/// Pretty JSON in a block.
pub fn json_block(value: &Value) -> Markup {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre { (pretty) } }
}

/// Every field of an object as a definition list (times as times, nested values as JSON).
pub fn fields(object: &Value, skip: &[&str]) -> Markup {
    let empty = serde_json::Map::new();
    let map = object.as_object().unwrap_or(&empty);
    html! {
        dl.fields {
            @for (key, value) in map {
                @if !skip.contains(&key.as_str()) {
                    dt { (key.replace('_', " ")) }
                    dd {
                        @if key.ends_with("_at") || key == "next_fire" {
                            (time(value))
                        } @else if value.is_object() || (value.is_array() && value.as_array().is_some_and(|a| a.iter().any(Value::is_object))) {
                            (json_block(value))
                        } @else {
                            (text(value))
                        }
                    }
                }
            }
        }
    }
}
