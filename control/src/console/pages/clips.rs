//! Clips: search, and a clip with its player and transcript.

use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::*;
use crate::console::api::Api;
use crate::console::layout::{self, removal, text};
use crate::console::lists::{self, Cell, Paging, col, filter};
use crate::console::{Signed, Visitor, signed};
use crate::metadata::{COLOUR_LABELS, REVIEW_STATUSES};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/clips", get(clips))
        .route("/clips/{id}", get(clip))
}

static CLIPS: ListSpec = ListSpec {
    nav: "Clips",
    title: "Clips",
    path: "/clips",
    api: "/clips",
    filters: &[
        filter("q", "Search", &[]),
        filter("production_id", "Production id", &[]),
        filter("card", "Card", &[]),
        filter("shooter", "Shooter", &[]),
        filter("date", "Shoot date (YYYY-MM-DD)", &[]),
        filter("tag", "Tag", &[]),
        filter(
            "transcode_state",
            "Transcode",
            &["pending", "queued", "running", "done", "failed", "cancelled"],
        ),
        filter("hidden", "Hidden", &["false", "true"]),
        filter("missing", "Missing", &["true", "false"]),
    ],
    columns: &[
        col("Clip", "/name", Cell::Link("/clips/")),
        col("Card", "/card", Cell::Text),
        col("Shoot date", "/shoot_date", Cell::Text),
        col("Shooter", "/shooter", Cell::Text),
        col("Duration (s)", "/duration_s", Cell::Text),
        col("Transcode", "/transcode_state", Cell::State),
        col("Transcript", "/transcript_state", Cell::State),
        col("Tags", "/tags", Cell::Text),
        col("Found", "/first_seen_at", Cell::Time),
    ],
    paging: Paging::Offset,
};

/// Clips, each with a box that chooses it for the bulk form under the list.
async fn clips(Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params) -> Response {
    let signed = signed_or_return!(api, visitor);
    let back = signed.visitor.path.clone();
    let choose = |row: &Value| {
        html! {
            input type="checkbox" form="bulk" name="ids:many" value=(text(&row["id"])) aria-label={ "Choose " (text(&row["name"])) };
        }
    };
    let bulk = html! {
        details {
            summary { "Change the chosen clips (tick them in the list)" }
            form.filters id="bulk" method="post" action="/do/clips" {
                (layout::csrf(&signed))
                input type="hidden" name="_back" value=(back);
                label for="bulk-card" { "Card" input id="bulk-card" type="text" name="card"; }
                label for="bulk-date" { "Shoot date" input id="bulk-date" type="date" name="shoot_date"; }
                label for="bulk-shooter" { "Shooter" input id="bulk-shooter" type="text" name="shooter"; }
                label for="bulk-hidden" { "Hidden" select id="bulk-hidden" name="hidden:bool" {
                    option value="" { "unchanged" } option value="on" { "hide" } option value="off" { "show" }
                } }
                label for="bulk-rating" { "Rating" select id="bulk-rating" name="rating:int" {
                    option value="" { "unchanged" }
                    @for n in 0..=5 { option value=(n) { (stars(n)) } }
                } }
                label for="bulk-status" { "Review status" select id="bulk-status" name="review_status" {
                    option value="" { "unchanged" }
                    @for s in REVIEW_STATUSES { option value=(s) { (s) } }
                } }
                label for="bulk-label" { "Add labels" input id="bulk-label" type="text" name="add_labels:list" placeholder="hero, b-roll"; }
                button type="submit" name="_method" value="PATCH" { "Apply to the chosen" }
            }
            p {
                "With the chosen clips: "
                button.quiet type="submit" form="bulk" formaction="/do/clips/retranscode" { "Transcode again" }
                " "
                button.quiet type="submit" form="bulk" formaction="/do/clips/transcribe" { "Transcribe" }
                " "
                button.danger type="submit" form="bulk" formaction="/do/clips/delete" data-confirm="Delete the chosen clips' records and outputs? The rushes stay." { "Delete" }
            }
        }
    };
    list(&api, &signed, &CLIPS, &query, bulk, Some(&choose)).await
}

/// A clip's player: the proxy with its poster, the scrub sprite over a bar under it
/// (when made), a choice among the clip's audio tracks, and its transcript beside it.
async fn clip(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Params,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    let id = encode(&id);
    let transcript = first_transcript(&api, &signed, "clip_id", &id).await;
    let related = api.get(signed.api(), &format!("/clips/{id}/related")).await.body;
    let tags = api.get(signed.api(), "/tags").await.rows();
    let back = format!("/clips/{id}");
    detail(&api, &signed, "Clips", &back, "name", &query, |c| {
        let output = |name: &str| c["outputs"][name].as_str().and_then(|u| u.strip_prefix("/api/v1")).map(|u| format!("/console/api{u}"));
        let tracks: Vec<String> = c["outputs"]["tracks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str()?.strip_prefix("/api/v1").map(|u| format!("/console/api{u}")))
            .collect();
        let tagged: Vec<&str> = c["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let hidden = c["hidden"].as_bool().unwrap_or(false);
        let overlapping = related["overlapping"].as_array().cloned().unwrap_or_default();
        html! {
            div.player {
                div.media {
                    @if let Some(proxy) = output("proxy") {
                        video data-clip=(id) controls preload="metadata" src=(proxy) poster=[output("poster")] {}
                        @if let Some(index) = output("sprite_vtt") {
                            div.scrub data-sprite-index=(index) data-sprite=[output("sprite")] role="slider" tabindex="0" aria-label="Scrub through the clip" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0" {
                                div.thumb {}
                            }
                        }
                        @if !tracks.is_empty() {
                            label for="audio-track" {
                                "Audio"
                                select id="audio-track" data-audio-tracks {
                                    option value="" { "The proxy's own" }
                                    @for track in &tracks {
                                        option value=(track) { (track_name(track)) }
                                    }
                                }
                            }
                            audio data-track-player preload="none" {}
                        }
                    } @else {
                        p { "No proxy yet (transcode: " (text(&c["transcode_state"])) ")." }
                    }
                }
                div.beside {
                    h2 { "Transcript" }
                    @match &transcript {
                        Some(t) => {
                            p { a href={ "/transcripts/" (encode(&text(&t["id"]))) } { "Open the transcript (edit, export)" } }
                            (segments(t))
                        }
                        None => p { "Not transcribed yet." },
                    }
                }
            }
            p {
                (on_clip(&signed, &id, "/clips/retranscode", "Transcode again"))
                " "
                (on_clip(&signed, &id, "/clips/transcribe", "Transcribe again"))
            }
            h2 { "Tags" }
            ul.tags {
                @for name in &tagged {
                    li {
                        (name) " "
                        @if let Some(tag) = tags.iter().find(|t| t["name"].as_str() == Some(*name)) {
                            (removal(&signed, &format!("/clips/{id}/tags/{}", encode(&text(&tag["id"]))), "×", &back, "Take this tag off the clip?"))
                        }
                    }
                }
            }
            form.filters method="post" action={ "/do/clips/" (id) "/tags" } {
                (layout::csrf(&signed))
                input type="hidden" name="_back" value=(back);
                label for="tag-add" { "Add a tag" select id="tag-add" name="tag_id" required {
                    option value="" { "–" }
                    @for t in &tags { @if !tagged.contains(&t["name"].as_str().unwrap_or("")) { option value=(text(&t["id"])) { (text(&t["name"])) } } }
                } }
                button type="submit" { "Add" }
            }
            h2 { "Metadata" }
            form.filters method="post" action="/do/clips" {
                (layout::csrf(&signed))
                input type="hidden" name="_back" value=(back);
                input type="hidden" name="_method" value="PATCH";
                input type="hidden" name="ids:many" value=(id);
                label for="clip-card" { "Card" input id="clip-card" type="text" name="card" value=(layout::input_value(&c["card"])); }
                label for="clip-date" { "Shoot date" input id="clip-date" type="date" name="shoot_date" value=(layout::input_value(&c["shoot_date"])); }
                label for="clip-shooter" { "Shooter" input id="clip-shooter" type="text" name="shooter" value=(layout::input_value(&c["shooter"])); }
                input type="hidden" name="hidden:bool" value="off";
                label.check for="clip-hidden" { input type="checkbox" id="clip-hidden" name="hidden:bool" value="on" checked[hidden]; "Hidden from lists" }
                label for="clip-rating" { "Rating" select id="clip-rating" name="rating:int" {
                    @for n in 0..=5 { option value=(n) selected[c["rating"] == n] { (stars(n)) } }
                } }
                label for="clip-status" { "Review status" select id="clip-status" name="review_status" {
                    @for s in REVIEW_STATUSES { option value=(s) selected[c["review_status"] == s] { (s) } }
                } }
                label for="clip-colour" { "Colour label" select id="clip-colour" name="colour_label" {
                    option value="none" { "none" }
                    @for colour in COLOUR_LABELS { option value=(colour) selected[c["colour_label"] == colour] { (colour) } }
                } }
                button type="submit" { "Save" }
            }
            @if let Some(values) = c["metadata"].as_object().filter(|m| !m.is_empty()) {
                dl.metadata {
                    @for (name, value) in values {
                        dt { (name) }
                        dd { (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) }
                    }
                }
            }
            @if let Some(labels) = c["labels"].as_array().filter(|l| !l.is_empty()) {
                p { "Labels: " (labels.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
            }
            h2 { "Related clips" }
            (lists::table(&CLIPS.columns[..6], &overlapping, None))
            @for card in related["same_shooter_cards"].as_array().into_iter().flatten() {
                p {
                    "The same shooter's card "
                    a href={ "/clips?production_id=" (encode(&text(&c["production_id"]))) "&card=" (encode(&text(&card["card"]))) } { (text(&card["card"])) }
                    " that day (" (text(&card["clips"])) " clips)"
                }
            }
        }
    })
    .await
}

/// `…/media/track_2.m4a` → "Track 2" (the camera's track number; the proxy carries track 1).
fn track_name(url: &str) -> String {
    let number = url
        .rsplit_once("track_")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .filter(|n| !n.is_empty());
    match number {
        Some(n) => format!("Track {n}"),
        None => url.rsplit('/').next().unwrap_or(url).to_owned(),
    }
}

/// A button that performs `POST /api/v1{api_path}` for this one clip (`{"ids": [id]}`).
fn on_clip(signed: &Signed, id: &str, api_path: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/do" (api_path) } {
            (layout::csrf(signed))
            input type="hidden" name="_back" value={ "/clips/" (id) };
            input type="hidden" name="ids:many" value=(id);
            button.quiet type="submit" { (label) }
        }
    }
}

/// The newest transcript of a clip or an upload (`of`: `clip_id` or `upload_id`), with
/// its segments.
pub(super) async fn first_transcript(api: &Api, signed: &Signed, of: &str, id: &str) -> Option<Value> {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let listed = api
        .get(signed.api(), &format!("/transcripts?{of}={id}&limit=1"))
        .await
        .rows();
    let transcript = listed.first()?["id"].as_str()?.to_owned();
    Some(api.get(signed.api(), &format!("/transcripts/{transcript}")).await.body)
}

/// A transcript's segments; each seeks the clip's player to its start. Timed words are
/// their own elements: the one being spoken is marked, a click seeks to it.
pub(super) fn segments(transcript: &Value) -> Markup {
    html! {
        ol.segments {
            @for s in transcript["segments"].as_array().into_iter().flatten() {
                li data-start=(s["start"].as_f64().unwrap_or(0.0)) data-end=(s["end"].as_f64().unwrap_or(0.0)) tabindex="0" {
                    small { (format!("{:.1} s", s["start"].as_f64().unwrap_or(0.0))) } " "
                    @match s["words"].as_array().filter(|w| !w.is_empty()) {
                        Some(words) => {
                            @for w in words {
                                // Each word as written, with its leading space.
                                span.word data-word-start=(w["start_s"].as_f64().unwrap_or(0.0))
                                    data-word-end=(w["end_s"].as_f64().unwrap_or(0.0)) { (text(&w["text"])) }
                            }
                        }
                        None => (text(&s["text"])),
                    }
                }
            }
        }
    }
}

/// A rating as stars.
fn stars(n: i64) -> String {
    let n = usize::try_from(n.clamp(0, 5)).unwrap_or(0);
    if n == 0 { "no stars".to_owned() } else { "★".repeat(n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_named_by_their_number_on_the_camera() {
        assert_eq!(track_name("/console/api/clips/x/media/track_2.m4a"), "Track 2");
        assert_eq!(track_name("/console/api/clips/x/media/track_12.m4a"), "Track 12");
        assert_eq!(track_name("/console/api/clips/x/media/other.m4a"), "other.m4a");
    }
}
