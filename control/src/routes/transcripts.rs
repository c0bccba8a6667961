//! `/api/v1/transcripts`: what Whisper heard in a clip or an upload, as timed segments
//! with source timecodes. Transcribe clips, list and read transcripts, correct a
//! segment's text, re-transcribe, delete, search across every transcript one may see,
//! and export SRT, WebVTT, text, Avid ScriptSync, Word and word-timed JSON.
//!
//! A clip's transcript follows its production's policies (`view` to read, `transcribe`
//! to (re)transcribe, `edit_metadata` to correct or delete); an upload's belongs to its
//! uploader (and admins).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use rushes_common::job::store::Tx;
use rushes_common::timecode::{FrameRate, Timecode};
use rushes_common::transcripts::{self, Options, TimedWord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::clips::{Selection, require_on_clips, select};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use crate::transcript_export::{self as export, Format, Line};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/clips/transcribe", post(transcribe_clips))
        .route("/transcripts", get(list))
        .route("/transcripts/search", get(search))
        .route("/transcripts/{id}", get(show).delete(remove))
        .route("/transcripts/{id}/segments/{idx}", patch(edit_segment))
        .route("/transcripts/{id}/retranscribe", post(retranscribe))
        .route("/transcripts/{id}/export", get(export_file))
}

/// A transcript with what it belongs to.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TranscriptView {
    pub id: Uuid,
    pub clip_id: Option<Uuid>,
    pub upload_id: Option<Uuid>,
    pub production_id: Option<Uuid>,
    /// The clip's file name or the upload's title.
    pub name: String,
    pub state: String,
    pub job_id: Option<Uuid>,
    pub error: Option<String>,
    pub audio_track: i32,
    pub language: Option<String>,
    pub task: String,
    pub initial_prompt: Option<String>,
    pub model: Option<String>,
    pub detected_language: Option<String>,
    pub language_probability: Option<f32>,
    pub duration_s: Option<f64>,
    pub real_time_factor: Option<f32>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub transcribed_at: Option<DateTime<Utc>>,
    pub edited_at: Option<DateTime<Utc>>,
    pub segment_count: i64,
    /// The source's start timecode and frame rate: segment times become timecodes.
    pub start_timecode: Option<String>,
    #[serde(skip)]
    pub frame_rate_num: Option<i32>,
    #[serde(skip)]
    pub frame_rate_den: Option<i32>,
    #[serde(skip)]
    pub uploaded_by_user_id: Option<Uuid>,
    #[serde(skip)]
    pub upload_transcode_state: Option<String>,
    /// Its clip is hidden (so it is, but for admins).
    #[serde(skip)]
    pub clip_hidden: bool,
}

pub const TRANSCRIPT_SELECT: &str = "SELECT t.id, t.clip_id, t.upload_id, \
        coalesce(c.production_id, u.production_id) AS production_id, coalesce(c.name, u.title, '') AS name, \
        t.state::text AS state, t.job_id, t.error, t.audio_track, t.language, t.task, t.initial_prompt, t.model, \
        t.detected_language, t.language_probability, t.duration_s, t.real_time_factor, t.requested_by, \
        t.created_at, t.transcribed_at, t.edited_at, \
        (SELECT count(*) FROM transcript_segments s WHERE s.transcript_id = t.id) AS segment_count, \
        coalesce(c.start_timecode, u.start_timecode) AS start_timecode, \
        coalesce(c.frame_rate_num, u.frame_rate_num) AS frame_rate_num, \
        coalesce(c.frame_rate_den, u.frame_rate_den) AS frame_rate_den, u.uploaded_by_user_id, \
        u.transcode_state::text AS upload_transcode_state, coalesce(c.hidden, false) AS clip_hidden \
     FROM transcripts t LEFT JOIN clips c ON c.id = t.clip_id LEFT JOIN uploads u ON u.id = t.upload_id ";

impl TranscriptView {
    /// The source timecode of the media's first sample, when both it and the rate are known.
    pub fn start(&self) -> Option<Timecode> {
        let rate = FrameRate::new(self.frame_rate_num?, self.frame_rate_den?)?;
        Timecode::parse(self.start_timecode.as_deref()?, rate)
    }
}

/// The transcript `id` if the caller may act on it with `policy` (404 when it may not
/// even see it).
pub async fn authorised(state: &AppState, caller: &Caller, id: Uuid, policy: Policy) -> ApiResult<TranscriptView> {
    let not_found = || ApiError::NotFound(format!("no transcript {id}"));
    let transcript: TranscriptView =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{TRANSCRIPT_SELECT} WHERE t.id = $1")))
            .bind(id)
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(not_found)?;
    match transcript.production_id {
        Some(production) => caller
            .require(state, policy, production)
            .await
            .map_err(|err| match err {
                ApiError::NotFound(_) => not_found(),
                err => err,
            })?,
        None if caller.is_admin || (caller.user_id.is_some() && transcript.uploaded_by_user_id == caller.user_id) => {}
        None => return Err(not_found()),
    }
    // A hidden clip's transcript is hidden with it.
    if transcript.clip_hidden && !caller.is_admin {
        return Err(not_found());
    }
    Ok(transcript)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct SegmentView {
    idx: i32,
    #[sqlx(rename = "start_s")]
    start: f64,
    #[sqlx(rename = "end_s")]
    end: f64,
    text: String,
    avg_logprob: Option<f32>,
    no_speech_prob: Option<f32>,
    edited: bool,
    /// Each word and when it is spoken, when Whisper timed them (and the text has not
    /// been corrected since).
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<sqlx::types::Json<Vec<TimedWord>>>,
    #[sqlx(skip)]
    start_timecode: Option<String>,
    #[sqlx(skip)]
    end_timecode: Option<String>,
}

async fn segments(state: &AppState, transcript: &TranscriptView) -> ApiResult<Vec<SegmentView>> {
    let mut rows: Vec<SegmentView> = sqlx::query_as(
        "SELECT idx, start_s, end_s, text, avg_logprob, no_speech_prob, edited, words FROM transcript_segments \
         WHERE transcript_id = $1 ORDER BY idx",
    )
    .bind(transcript.id)
    .fetch_all(&state.db)
    .await?;
    if let Some(tc) = transcript.start() {
        for s in &mut rows {
            s.start_timecode = Some(tc.add_seconds(s.start).to_string());
            s.end_timecode = Some(tc.add_seconds(s.end).to_string());
        }
    }
    Ok(rows)
}

/// Which clips to transcribe, and optionally how (else each keeps its transcript's options).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscribeClips {
    ids: Option<Vec<Uuid>>,
    production_id: Option<Uuid>,
    card: Option<String>,
    audio_track: Option<i32>,
    language: Option<String>,
    translate: Option<bool>,
    initial_prompt: Option<String>,
    /// Mail the caller when each transcript is ready (default true).
    notify: Option<bool>,
}

impl TranscribeClips {
    fn options(&self) -> ApiResult<Option<Options>> {
        let given = self.audio_track.is_some()
            || self.language.is_some()
            || self.translate.is_some()
            || self.initial_prompt.is_some();
        if !given {
            return Ok(None);
        }
        let options = Options {
            audio_track: self.audio_track.unwrap_or(0),
            language: self.language.clone().filter(|l| !l.is_empty() && l != "auto"),
            translate: self.translate.unwrap_or(false),
            initial_prompt: self.initial_prompt.clone().filter(|p| !p.trim().is_empty()),
        };
        options.validate().map_err(ApiError::Unprocessable)?;
        Ok(Some(options))
    }
}

/// Queues a transcription of each selected clip → `202` with the transcripts and jobs.
async fn transcribe_clips(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<TranscribeClips>,
) -> ApiResult<impl IntoResponse> {
    let options = body.options()?;
    let selection = Selection {
        ids: body.ids.clone(),
        production_id: body.production_id,
        card: body.card.clone(),
    };
    let clips = select(&state, &selection).await?;
    if clips.is_empty() {
        return Err(ApiError::NotFound("no present clips match".into()));
    }
    let ids: Vec<Uuid> = clips.iter().map(|(id, _)| *id).collect();
    require_on_clips(&state, &caller, Policy::Transcribe, &ids).await?;
    let notify = if body.notify.unwrap_or(true) {
        caller.user_id
    } else {
        None
    };
    let mut tx = Tx::begin(&state.db).await?;
    let pairs = transcripts::upsert_for_clips(&mut tx, &ids, options.as_ref(), &caller.name, notify).await?;
    let queued: Vec<(Uuid, u8)> = pairs
        .iter()
        .map(|(clip, transcript)| {
            let priority = clips.iter().find(|(c, _)| c == clip).map_or(20, |(_, p)| *p);
            (*transcript, priority)
        })
        .collect();
    let jobs = transcripts::queue(&mut tx, &queued, None, &caller.name).await?;
    crate::audit::record(
        &mut *tx,
        &caller,
        crate::audit::Change {
            action: "clip.transcribe",
            target_type: if body.production_id.is_some() {
                "production"
            } else {
                "clip"
            },
            target_id: body.production_id.map(|p| p.to_string()),
            before: None,
            after: Some(json!({
                "asked": { "ids": body.ids, "production_id": body.production_id, "card": body.card },
                "transcriptions": jobs.len(),
                "job_ids": jobs.iter().take(100).map(|j| j.id).collect::<Vec<_>>(),
            })),
        },
    )
    .await?;
    let jobs = tx.commit(&state.publisher).await?;
    let made: Vec<Value> = pairs
        .iter()
        .zip(&jobs)
        .map(|((clip, transcript), job)| json!({ "clip_id": clip, "transcript_id": transcript, "job_id": job.id }))
        .collect();
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "transcriptions": made }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListTranscripts {
    production_id: Option<Uuid>,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    state: Option<String>,
    limit: Option<i64>,
    before: Option<Uuid>,
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListTranscripts>,
) -> ApiResult<axum::Json<Value>> {
    let limit = super::limit(q.limit)?;
    let rows: Vec<TranscriptView> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{TRANSCRIPT_SELECT} \
         WHERE ($1::uuid IS NULL OR coalesce(c.production_id, u.production_id) = $1) \
           AND ($2::uuid IS NULL OR t.clip_id = $2) AND ($3::uuid IS NULL OR t.upload_id = $3) \
           AND ($4::text IS NULL OR t.state::text = $4) AND ($5::uuid IS NULL OR t.id < $5) \
           AND ($7::uuid IS NULL \
                OR (coalesce(c.production_id, u.production_id) IN (SELECT production_id FROM visible_productions($7)) \
                    AND (c.id IS NULL OR NOT c.hidden)) \
                OR (coalesce(c.production_id, u.production_id) IS NULL AND u.uploaded_by_user_id = $8)) \
         ORDER BY t.id DESC LIMIT $6"
    )))
    .bind(q.production_id)
    .bind(q.clip_id)
    .bind(q.upload_id)
    .bind(&q.state)
    .bind(q.before)
    .bind(limit)
    .bind(caller.scope())
    .bind(caller.user_id)
    .fetch_all(&state.db)
    .await?;
    let next = super::next_before(&rows, limit, |t| t.id);
    Ok(axum::Json(json!({ "transcripts": rows, "next_before": next })))
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    let transcript = authorised(&state, &caller, id, Policy::View).await?;
    let segments = segments(&state, &transcript).await?;
    let mut body = serde_json::to_value(&transcript).map_err(|e| ApiError::Internal(e.into()))?;
    body["segments"] = json!(segments);
    Ok(axum::Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentEdit {
    text: String,
}

/// Corrects one segment's text (marked edited; a re-transcription replaces it).
async fn edit_segment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, idx)): Path<(Uuid, i32)>,
    Json(body): Json<SegmentEdit>,
) -> ApiResult<axum::Json<Value>> {
    authorised(&state, &caller, id, Policy::EditMetadata).await?;
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > 5000 {
        return Err(ApiError::Unprocessable("text: 1 to 5000 characters".into()));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "text: no control characters (line breaks included)".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    let before: Option<String> =
        sqlx::query_scalar("SELECT text FROM transcript_segments WHERE transcript_id = $1 AND idx = $2 FOR UPDATE")
            .bind(id)
            .bind(idx)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(before) = before else {
        return Err(ApiError::NotFound(format!("transcript {id} has no segment {idx}")));
    };
    // The word timings were of the old words.
    sqlx::query(
        "UPDATE transcript_segments SET text = $3, edited = true, words = NULL WHERE transcript_id = $1 AND idx = $2",
    )
    .bind(id)
    .bind(idx)
    .bind(text)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE transcripts SET edited_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::audit::record(
        &mut *tx,
        &caller,
        crate::audit::Change {
            action: "transcript.edit_segment",
            target_type: "transcript",
            target_id: Some(id.to_string()),
            before: Some(json!({ "idx": idx, "text": before })),
            after: Some(json!({ "idx": idx, "text": text })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(json!({ "idx": idx, "text": text, "edited": true })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retranscribe {
    audio_track: Option<i32>,
    language: Option<String>,
    translate: Option<bool>,
    initial_prompt: Option<String>,
}

/// Transcribes again, with new options where given → `202` with the job.
async fn retranscribe(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Json(body): Json<Retranscribe>,
) -> ApiResult<impl IntoResponse> {
    let transcript = authorised(&state, &caller, id, Policy::Transcribe).await?;
    match transcript.upload_transcode_state.as_deref() {
        None | Some("done") => {}
        Some("queued" | "running") => return Err(ApiError::Conflict("the upload is still being prepared".into())),
        Some(other) => {
            return Err(ApiError::Conflict(format!(
                "the upload has no audio to transcribe (its transcode is {other}): retranscode it first"
            )));
        }
    }
    let options = Options {
        audio_track: body.audio_track.unwrap_or(transcript.audio_track),
        language: match body.language {
            Some(l) if l.is_empty() || l == "auto" => None,
            Some(l) => Some(l),
            None => transcript.language.clone(),
        },
        translate: body.translate.unwrap_or(transcript.task == "translate"),
        initial_prompt: body.initial_prompt.or(transcript.initial_prompt.clone()),
    };
    options.validate().map_err(ApiError::Unprocessable)?;
    let mut tx = Tx::begin(&state.db).await?;
    sqlx::query(
        "UPDATE transcripts SET audio_track = $2, language = $3, task = $4, initial_prompt = $5, requested_by = $6, \
                notify_user_id = $7 WHERE id = $1",
    )
    .bind(id)
    .bind(options.audio_track)
    .bind(&options.language)
    .bind(options.task())
    .bind(&options.initial_prompt)
    .bind(&caller.name)
    .bind(caller.user_id)
    .execute(&mut *tx)
    .await?;
    let jobs = transcripts::queue(
        &mut tx,
        &[(id, rushes_common::job::DEFAULT_PRIORITY)],
        None,
        &caller.name,
    )
    .await?;
    crate::audit::record(
        &mut *tx,
        &caller,
        crate::audit::Change {
            action: "transcript.retranscribe",
            target_type: "transcript",
            target_id: Some(id.to_string()),
            before: None,
            after: Some(json!({ "job_id": jobs.first().map(|j| j.id) })),
        },
    )
    .await?;
    let jobs = tx.commit(&state.publisher).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({ "job": jobs.first() }))))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    authorised(&state, &caller, id, Policy::EditMetadata).await?;
    // Its job, queued or running, is cancelled with it (migration 0013's trigger).
    sqlx::query("DELETE FROM transcripts WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    q: String,
    production_id: Option<Uuid>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Hit {
    transcript_id: Uuid,
    clip_id: Option<Uuid>,
    upload_id: Option<Uuid>,
    production_id: Option<Uuid>,
    name: String,
    idx: i32,
    start: f64,
    end: f64,
    snippet: String,
    rank: f32,
    #[serde(skip)]
    start_tc: Option<String>,
    #[serde(skip)]
    frame_rate_num: Option<i32>,
    #[serde(skip)]
    frame_rate_den: Option<i32>,
    #[sqlx(skip)]
    timecode: Option<String>,
}

/// `ts_headline` marks the matched words with control characters that no text of ours
/// means, so that the snippet can be HTML-escaped before the marks become `<b>` tags.
const MARK_START: char = '\u{2}';
const MARK_END: char = '\u{3}';
const HEADLINE_OPTIONS: &str = "StartSel=\"\u{2}\", StopSel=\"\u{3}\", MaxWords=30, MinWords=10";

/// A headline as safe HTML: every character escaped, the matches (and only they) in
/// `<b>`…`</b>`, always balanced.
fn highlight(headline: &str) -> String {
    let mut html = String::with_capacity(headline.len() + 16);
    let mut open = false;
    for piece in headline.split_inclusive([MARK_START, MARK_END]) {
        let (text, mark) = match piece.chars().last() {
            Some(c @ (MARK_START | MARK_END)) => (&piece[..piece.len() - c.len_utf8()], Some(c)),
            _ => (piece, None),
        };
        html.push_str(&rushes_common::mail::escape_html(text));
        match mark {
            Some(MARK_START) if !open => {
                html.push_str("<b>");
                open = true;
            }
            Some(MARK_END) if open => {
                html.push_str("</b>");
                open = false;
            }
            _ => {}
        }
    }
    if open {
        html.push_str("</b>");
    }
    html
}

/// Full-text search over every segment the caller may see: each hit names the clip
/// (or upload), the time and timecode, and a snippet with the words in `<b>`.
async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<Search>,
) -> ApiResult<axum::Json<Value>> {
    let text = q.q.trim();
    if text.is_empty() {
        return Err(ApiError::Unprocessable("q: the words to look for".into()));
    }
    let limit = super::limit(q.limit)?;
    let mut hits: Vec<Hit> = sqlx::query_as(
        "SELECT t.id AS transcript_id, t.clip_id, t.upload_id, coalesce(c.production_id, u.production_id) AS production_id, \
                coalesce(c.name, u.title, '') AS name, s.idx, s.start_s AS start, s.end_s AS end, \
                ts_headline('simple', s.text, query, $6) AS snippet, \
                ts_rank(s.search, query) AS rank, coalesce(c.start_timecode, u.start_timecode) AS start_tc, \
                coalesce(c.frame_rate_num, u.frame_rate_num) AS frame_rate_num, \
                coalesce(c.frame_rate_den, u.frame_rate_den) AS frame_rate_den \
         FROM transcript_segments s, websearch_to_tsquery('simple', $1) AS query, transcripts t \
              LEFT JOIN clips c ON c.id = t.clip_id LEFT JOIN uploads u ON u.id = t.upload_id \
         WHERE s.search @@ query AND t.id = s.transcript_id \
           AND ($2::uuid IS NULL OR coalesce(c.production_id, u.production_id) = $2) \
           AND ($3::uuid IS NULL \
                OR (coalesce(c.production_id, u.production_id) IN (SELECT production_id FROM visible_productions($3)) \
                    AND (c.id IS NULL OR NOT c.hidden)) \
                OR (coalesce(c.production_id, u.production_id) IS NULL AND u.uploaded_by_user_id = $4)) \
         ORDER BY rank DESC, t.id, s.idx LIMIT $5",
    )
    .bind(text)
    .bind(q.production_id)
    .bind(caller.scope())
    .bind(caller.user_id)
    .bind(limit)
    .bind(HEADLINE_OPTIONS)
    .fetch_all(&state.db)
    .await?;
    for hit in &mut hits {
        hit.snippet = highlight(&hit.snippet);
        let rate = hit
            .frame_rate_num
            .zip(hit.frame_rate_den)
            .and_then(|(n, d)| FrameRate::new(n, d));
        hit.timecode = rate
            .and_then(|r| Timecode::parse(hit.start_tc.as_deref()?, r))
            .map(|tc| tc.add_seconds(hit.start).to_string());
    }
    Ok(axum::Json(json!({ "hits": hits })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    format: String,
    /// Text export: a timecode every this many seconds (0 = before every segment; default 30).
    every: Option<f64>,
}

async fn export_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = Format::parse(&q.format).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "format: one of srt, vtt, txt, scriptsync, docx, json; got `{}`",
            q.format
        ))
    })?;
    let every = q.every.unwrap_or(30.0);
    if !(0.0..=3600.0).contains(&every) {
        return Err(ApiError::Unprocessable("every: 0 to 3600 seconds".into()));
    }
    let transcript = authorised(&state, &caller, id, Policy::View).await?;
    if transcript.transcribed_at.is_none() {
        return Err(ApiError::Conflict(format!(
            "transcript {id} has no text yet (state {})",
            transcript.state
        )));
    }
    let segments = segments(&state, &transcript).await?;
    let lines: Vec<Line<'_>> = segments
        .iter()
        .map(|s| Line {
            start: s.start,
            end: s.end,
            text: &s.text,
        })
        .collect();
    let start = transcript.start();
    let body = match format {
        Format::Srt => export::srt(&lines).into_bytes(),
        Format::Vtt => export::vtt(&lines, start).into_bytes(),
        Format::Txt => export::txt(&transcript.name, &lines, start, every).into_bytes(),
        Format::ScriptSync => export::scriptsync(&transcript.name, &lines, start).into_bytes(),
        Format::Docx => export::docx(&transcript.name, &lines, start)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot write the Word document")))?,
        Format::Json => word_timed_json(&transcript, &segments)?,
    };
    let stem: String = transcript
        .name
        .rsplit_once('.')
        .map_or(transcript.name.as_str(), |(stem, _)| stem)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{stem}.{}\"", format.extension());
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The word-timed JSON export: the transcript's facts, then each segment with its
/// words (segments whose words are unknown carry none).
fn word_timed_json(transcript: &TranscriptView, segments: &[SegmentView]) -> ApiResult<Vec<u8>> {
    let document = json!({
        "name": transcript.name,
        "language": transcript.detected_language,
        "model": transcript.model,
        "duration_s": transcript.duration_s,
        "start_timecode": transcript.start().map(|tc| tc.to_string()),
        "segments": segments.iter().map(|s| json!({
            "start_s": s.start,
            "end_s": s.end,
            "text": s.text,
            "words": s.words.as_deref().map_or(&[][..], Vec::as_slice),
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec_pretty(&document)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot write the JSON export")))
}

#[cfg(test)]
mod tests {
    use super::highlight;

    #[test]
    fn snippets_escape_the_text_and_bold_only_the_matches() {
        assert_eq!(
            highlight("say <script>\u{2}hello\u{3}</script> & \u{2}bye\u{3}"),
            "say &lt;script&gt;<b>hello</b>&lt;/script&gt; &amp; <b>bye</b>"
        );
        assert_eq!(highlight("\u{3}stray\u{2}open"), "stray<b>open</b>");
        assert_eq!(highlight("plain"), "plain");
    }
}
