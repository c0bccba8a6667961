//! Pages a person opens in a browser, without a token: `/` (Rushes is running, and how
//! to reach it) and `/productions/{id}`, `/transcripts/{id}` (what mails link to, never a
//! bearer-token API route). There is no web console yet: the pages look nothing up, so
//! they reveal nothing, and say how to get at the production or transcript through the
//! API once signed in. The links of account mails open forms here too:
//! `/reset-password?token=…` sets a new password, `/accept-invitation?token=…` creates
//! the invited account (plain HTML forms posting back to the same page; no script).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rushes_common::mail::escape_html;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/productions/{id}", get(production))
        .route("/transcripts/{id}", get(transcript))
        .route("/reset-password", get(reset_form).post(reset_submit))
        .route("/accept-invitation", get(invitation_form).post(invitation_submit))
}

/// The policy of the form pages: nothing loads or runs; forms post only back here.
const FORM_CSP: &str = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A page with a form, under [`FORM_CSP`].
fn form_page(title: &str, body: &str) -> Response {
    let mut response = page(title, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(FORM_CSP));
    response
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The fields of a submitted form (`application/x-www-form-urlencoded`).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// An error next to the form it came from, or nothing.
fn error_line(error: Option<&ApiError>) -> String {
    let shown = |e: &ApiError| match e {
        ApiError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "an account page failed");
            "Something went wrong on our side; try again in a minute.".to_owned()
        }
        other => other.to_string(),
    };
    error.map_or_else(String::new, |e| {
        format!("<p role=\"alert\"><strong>{}</strong></p>\n", escape_html(&shown(e)))
    })
}

fn reset_body(token: &str, error: Option<&ApiError>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/reset-password\">\n\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\n\
         <p><label>New password (at least 8 characters) \
         <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required minlength=\"8\"></label></p>\n\
         <p><button type=\"submit\">Set the new password</button></p>\n</form>",
        error_line(error),
        escape_html(token)
    )
}

async fn reset_form(Query(q): Query<TokenQuery>) -> Response {
    form_page("Rushes: choose a new password", &reset_body(&q.token, None))
}

async fn reset_submit(State(state): State<AppState>, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let token = fields.get("token").cloned().unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    match super::session::reset_password(&state, &token, password).await {
        Ok(()) => form_page(
            "Rushes: password changed",
            "<p>Your password is changed and every earlier session has ended. Sign in with the new one.</p>",
        ),
        Err(err) => form_page("Rushes: choose a new password", &reset_body(&token, Some(&err))),
    }
}

fn invitation_body(token: &str, username: &str, error: Option<&ApiError>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/accept-invitation\">\n\
         <input type=\"hidden\" name=\"token\" value=\"{}\">\n\
         <p><label>Username <input name=\"username\" value=\"{}\" autocomplete=\"username\" required></label></p>\n\
         <p><label>Password (at least 8 characters) \
         <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required minlength=\"8\"></label></p>\n\
         <p><button type=\"submit\">Create my account</button></p>\n</form>",
        error_line(error),
        escape_html(token),
        escape_html(username)
    )
}

async fn invitation_form(Query(q): Query<TokenQuery>) -> Response {
    form_page("Rushes: accept your invitation", &invitation_body(&q.token, "", None))
}

async fn invitation_submit(State(state): State<AppState>, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (token, username) = (field("token"), field("username"));
    match super::invitations::accept_invitation(&state, &token, &username, field("password")).await {
        Ok((_, username)) => form_page(
            "Rushes: welcome",
            &format!(
                "<p>Your account <strong>{}</strong> is ready. Sign in with it.</p>",
                escape_html(&username)
            ),
        ),
        Err(err) => form_page(
            "Rushes: accept your invitation",
            &invitation_body(&token, &username, Some(&err)),
        ),
    }
}

/// The common frame: a title and paragraphs of already escaped HTML.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape_html(title),
    ))
}

/// How to sign in and use a token, with the API routes `routes` (relative to the public URL).
fn how_to(public_url: &str, routes: &[String]) -> String {
    let base = escape_html(public_url);
    let calls: String = routes
        .iter()
        .map(|r| {
            format!(
                "curl -H \"Authorization: Bearer $TOKEN\" \"{base}{}\"\n",
                escape_html(r)
            )
        })
        .collect();
    format!(
        "<p>Rushes has no web console yet. Sign in to get a token \
         (<code>curl -H 'Content-Type: application/json' -d '{{\"username\": \"…\", \"password\": \"…\"}}' \
         {base}/api/v1/auth/login</code>), then ask the API:</p>\n<pre>{calls}</pre>\n\
         <p>The API is described at <a href=\"{base}/openapi.json\">{base}/openapi.json</a>. \
         If you are not shown what a mail told you about, ask a Rushes administrator for access.</p>"
    )
}

async fn index(State(state): State<AppState>) -> Html<String> {
    page(
        "Rushes is running",
        &how_to(
            &state.public_url,
            &["/api/v1/productions".to_owned(), "/api/v1/transcripts".to_owned()],
        ),
    )
}

async fn production(State(state): State<AppState>, Path(id): Path<Uuid>) -> Html<String> {
    let intro = format!("<p>This link is for the production <code>{id}</code>.</p>\n");
    let routes = [
        format!("/api/v1/productions/{id}"),
        format!("/api/v1/clips?production_id={id}"),
        format!("/api/v1/productions/{id}/skipped"),
    ];
    page("Rushes: a production", &(intro + &how_to(&state.public_url, &routes)))
}

async fn transcript(State(state): State<AppState>, Path(id): Path<Uuid>) -> Html<String> {
    let intro = format!("<p>This link is for the transcript <code>{id}</code>.</p>\n");
    let routes = [
        format!("/api/v1/transcripts/{id}"),
        format!("/api/v1/transcripts/{id}/export?format=txt"),
    ];
    page("Rushes: a transcript", &(intro + &how_to(&state.public_url, &routes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let Html(body) = page(
            "A & B",
            &how_to("http://rushes.example/<x>", &["/api/v1/x?a=1&b=2".to_owned()]),
        );
        assert!(body.contains("<title>A &amp; B</title>"), "{body}");
        assert!(
            body.contains("http://rushes.example/&lt;x&gt;/api/v1/x?a=1&amp;b=2"),
            "{body}"
        );
        assert!(!body.contains("<x>"), "{body}");
    }

    #[test]
    fn forms_escape_what_they_echo_and_read_url_encoding() {
        let error = ApiError::Unprocessable("token: <invalid>".into());
        let body = invitation_body("t\"><script>", "<b>", Some(&error));
        assert!(!body.contains("<script>") && !body.contains("<b>"), "{body}");
        assert!(body.contains("&lt;invalid&gt;"), "{body}");
        let fields = form_fields(b"token=abc&password=p%40ss+word");
        assert_eq!(fields.get("password").map(String::as_str), Some("p@ss word"));
    }
}
