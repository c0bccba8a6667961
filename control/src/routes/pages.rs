//! Pages a person opens in a browser, without a token: `/` (Rushes is running, and how
//! to reach it) and `/productions/{id}`, `/transcripts/{id}` (what mails link to, never a
//! bearer-token API route). There is no web console yet: the pages look nothing up, so
//! they reveal nothing, and say how to get at the production or transcript through the
//! API once signed in.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use rushes_common::mail::escape_html;
use uuid::Uuid;

use crate::extract::Path;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/productions/{id}", get(production))
        .route("/transcripts/{id}", get(transcript))
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
}
