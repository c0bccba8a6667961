//! The pages account mails link to, opened without a session: `/reset-password?token=…`
//! sets a new password, `/accept-invitation?token=…` creates the invited account (plain
//! HTML forms posting back to the same page; no script). What other mails link to
//! (`/productions/{id}`, `/transcripts/{id}`) are console pages (see `crate::console`).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use rushes_common::mail::escape_html;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::Query;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
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

#[cfg(test)]
mod tests {
    use super::*;

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
