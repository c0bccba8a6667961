//! Transcripts, and uploads for transcription.

use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::clips::{first_transcript, segments};
use super::*;
use crate::console::api::Api;
use crate::console::layout::{self, page, text};
use crate::console::lists::{self, Cell, Column, Paging, col, filter};
use crate::console::{Visitor, signed};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/transcripts", get(transcripts))
        .route("/transcripts/search", get(search))
        .route("/transcripts/{id}", get(transcript))
        .route("/uploads", get(uploads))
        .route("/uploads/{id}", get(upload_page))
}

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
        col("Transcript", "/name", Cell::Link("/transcripts/")),
        col("State", "/state", Cell::State),
        col("Model", "/model", Cell::Text),
        col("Language", "/detected_language", Cell::Text),
        col("Segments", "/segment_count", Cell::Text),
        col("Created", "/created_at", Cell::Time),
    ],
    paging: Paging::Cursor,
};

/// The transcripts' own links: search, upload.
fn transcript_links() -> Markup {
    html! {
        form.filters method="get" action="/transcripts/search" role="search" {
            label for="search-q" { "Search the words of every transcript" input id="search-q" type="search" name="q" required; }
            button type="submit" { "Search" }
        }
        p { a href="/uploads" { "Upload a file for transcription" } }
    }
}

async fn transcripts(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, &TRANSCRIPTS, &query, transcript_links(), None).await
}

static HITS: [Column; 4] = [
    col("Transcript", "/name", Cell::Text),
    col("At (s)", "/start", Cell::Text),
    col("Words", "/snippet", Cell::Text),
    col("Segment", "/idx", Cell::Text),
];

/// `GET /transcripts/search?q=`: the segments whose words match, best first, each
/// linking to its clip (at the segment) or its transcript.
async fn search(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let q = query.get("q").map(|q| q.trim()).unwrap_or("");
    let answer = if q.is_empty() {
        None
    } else {
        Some(
            api.get(signed.api(), &format!("/transcripts/search?q={}&limit=100", encode(q)))
                .await,
        )
    };
    let hits = answer
        .as_ref()
        .map(crate::console::api::Answer::rows)
        .unwrap_or_default();
    let open = |hit: &Value| {
        let at = hit["start"].as_f64().unwrap_or(0.0);
        html! {
            @if let Some(clip) = hit["clip_id"].as_str() {
                a href={ "/clips/" (clip) "#t=" (at) } { "Play from here" }
            } @else {
                a href={ "/transcripts/" (text(&hit["transcript_id"])) } { "Open" }
            }
        }
    };
    let body = html! {
        (transcript_links())
        @if !q.is_empty() { p { (hits.len()) " segments match “" (q) "”." } }
        (lists::table(&HITS, &hits, Some(&open)))
    };
    let flash = answer.as_ref().and_then(|a| flash(a, &query));
    page(&signed, "Transcripts", "Search transcripts", flash.as_ref(), body)
}

/// What a transcript exports to, and the names the export takes.
const EXPORTS: [(&str, &str); 5] = [
    ("srt", "SubRip (.srt)"),
    ("vtt", "WebVTT (.vtt)"),
    ("txt", "Text with timecodes (.txt)"),
    ("scriptsync", "Avid ScriptSync (.txt)"),
    ("docx", "Word (.docx)"),
];

/// A transcript: its segments (`?edit=1`: each a form that corrects its text), its
/// exports, and its clip.
async fn transcript(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let editing = query.get("edit").is_some_and(|e| e == "1");
    let back = format!("/transcripts/{id}?edit=1");
    detail(&api, &signed, "Transcripts", &format!("/transcripts/{id}"), "name", &query, |t| {
        html! {
            p {
                @if let Some(clip) = t["clip_id"].as_str() { a href={ "/clips/" (clip) } { "Open the clip with its player" } " · " }
                @if editing { a href={ "/transcripts/" (id) } { "Done correcting" } } @else { a href={ "/transcripts/" (id) "?edit=1" } { "Correct the text" } }
            }
            p {
                "Export: "
                @for (format, label) in EXPORTS {
                    a href={ "/console/api/transcripts/" (id) "/export?format=" (format) } download { (label) } " "
                }
            }
            @if editing {
                ol.segments {
                    @for s in t["segments"].as_array().into_iter().flatten() {
                        @let idx = text(&s["idx"]);
                        li {
                            form.filters method="post" action={ "/do/transcripts/" (id) "/segments/" (idx) } {
                                (layout::csrf(&signed))
                                input type="hidden" name="_method" value="PATCH";
                                input type="hidden" name="_back" value=(back);
                                label for={ "seg-" (idx) } {
                                    (format!("{:.1} s", s["start"].as_f64().unwrap_or(0.0)))
                                    @if s["edited"].as_bool().unwrap_or(false) { " (corrected)" }
                                    input id={ "seg-" (idx) } type="text" name="text" value=(text(&s["text"])) size="80";
                                }
                                button.quiet type="submit" { "Save" }
                            }
                        }
                    }
                }
            } @else {
                (segments(t))
            }
        }
    })
    .await
}

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
        form.edit data-send="multipart" data-then="/uploads/{id}" method="post" action="/console/send/uploads" enctype="multipart/form-data" data-csrf=(signed.csrf) {
            label for="upload-file" { "Audio or video file" input id="upload-file" type="file" name="file" required; }
            label for="upload-title" { "Title" input id="upload-title" type="text" name="title" required; }
            label for="upload-language" { "Language (empty: detect)" input id="upload-language" type="text" name="language"; }
            (send_progress("upload"))
            div { button type="submit" { "Upload and transcribe" } }
        }
    };
    list(&api, &signed, &UPLOADS, &query, extra, None).await
}

async fn upload_page(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
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
