//! Moving a production between instances: `GET /productions/{id}/export` writes a
//! versioned JSON document of every database row of the production (clips, skipped
//! files, transcripts with their segments, tags and markers), and `POST /productions/import`
//! reads one back with new ids and the rushes folder re-rooted. Outputs are not part of
//! the document: imported clips are pending, ready for "transcode pending".

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use rushes_common::media::skips::SkipKind;
use rushes_common::transcripts::{NewSegment, TimedWord, insert_segments};

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// `format` of the document.
pub const FORMAT: &str = "rushes.production";
/// Highest document version this build reads.
pub const VERSION: u32 = 1;

/// Largest production document an import takes (a production's every clip,
/// transcript and segment: far beyond the API's default body limit).
pub const IMPORT_MAX_BYTES: usize = 512 << 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/productions/{id}/export", get(export)).route(
        "/productions/import",
        post(import).layer(axum::extract::DefaultBodyLimit::max(IMPORT_MAX_BYTES)),
    )
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct ProductionRow {
    series: i32,
    friendly_name: String,
    path: String,
    priority: i16,
    active: bool,
    archived: bool,
    /// Absent in documents exported before transcription existed: on, as for a new production.
    #[serde(default = "transcribe_by_default")]
    auto_transcribe: bool,
    cover_image: Option<String>,
    /// Absent in documents exported before watermarks existed: none.
    #[serde(default)]
    watermark: Option<serde_json::Value>,
}

fn transcribe_by_default() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct ClipRow {
    id: Uuid,
    path: String,
    name: String,
    card: String,
    shooter: Option<String>,
    shoot_date: Option<NaiveDate>,
    hidden: bool,
    size_bytes: i64,
    mtime_ns: i64,
    missing: bool,
    container: Option<String>,
    video_codec: Option<String>,
    audio_codec: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    duration_s: Option<f64>,
    frame_rate_num: Option<i32>,
    frame_rate_den: Option<i32>,
    start_timecode: Option<String>,
    tc_start_s: Option<f64>,
    tc_end_s: Option<f64>,
    audio_tracks: i32,
    audio_channels: Vec<i32>,
    created_on: Option<DateTime<Utc>>,
    first_seen_at: DateTime<Utc>,
    /// Custom metadata and review metadata; absent in documents exported before them.
    #[serde(default = "no_metadata")]
    metadata: serde_json::Value,
    #[serde(default)]
    rating: i16,
    #[serde(default)]
    colour_label: Option<String>,
    #[serde(default = "unreviewed")]
    review_status: String,
    #[serde(default)]
    labels: Vec<String>,
}

fn no_metadata() -> serde_json::Value {
    json!({})
}

fn unreviewed() -> String {
    "none".to_owned()
}

/// A custom metadata field the production's clips may hold, as a document carries it.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct FieldRow {
    name: String,
    display_name: String,
    kind: String,
    #[serde(default)]
    choices: Vec<String>,
}

/// A tag on a clip, the clip named by its path.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct TagRow {
    clip_path: String,
    tag: String,
    tagged_by: String,
}

/// A marker, the clip named by its path.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct MarkerRow {
    clip_path: String,
    at_s: f64,
    label: String,
    created_by: String,
}

/// A clip's transcript with its segments, the clip named by its path.
#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct TranscriptRow {
    #[serde(skip)]
    id: Uuid,
    clip_path: String,
    state: String,
    audio_track: i32,
    language: Option<String>,
    task: String,
    initial_prompt: Option<String>,
    model: Option<String>,
    detected_language: Option<String>,
    language_probability: Option<f32>,
    duration_s: Option<f64>,
    requested_by: String,
    created_at: DateTime<Utc>,
    transcribed_at: Option<DateTime<Utc>>,
    edited_at: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    segments: Vec<SegmentRow>,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct SegmentRow {
    #[serde(skip)]
    transcript_id: Uuid,
    idx: i32,
    start_s: f64,
    end_s: f64,
    text: String,
    avg_logprob: Option<f32>,
    no_speech_prob: Option<f32>,
    edited: bool,
    /// Word timings (documents made before they existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    words: Option<sqlx::types::Json<Vec<TimedWord>>>,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow)]
struct SkipRow {
    path: String,
    size_bytes: i64,
    mtime_ns: i64,
    reason: String,
    /// `broken` or `not_media`; documents made before kinds existed have none (it is
    /// told from the reason).
    #[serde(default)]
    kind: Option<SkipKind>,
}

/// Stores an imported transcript and its segments. Without a job here, one that was
/// not done arrives cancelled (re-transcribe it).
async fn insert_transcript(
    tx: &mut sqlx::PgConnection,
    clip: Uuid,
    t: &TranscriptRow,
    caller: &Caller,
) -> ApiResult<()> {
    if !rushes_common::transcripts::TASKS.contains(&t.task.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "transcripts: unknown task `{}`",
            t.task
        )));
    }
    let id = Uuid::now_v7();
    let done = t.state == "done" && t.transcribed_at.is_some();
    sqlx::query(
        "INSERT INTO transcripts (id, clip_id, state, audio_track, language, task, initial_prompt, model, \
                                  detected_language, language_probability, duration_s, requested_by, created_at, \
                                  transcribed_at, edited_at) \
         VALUES ($1, $2, $3::transcode_state, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(id)
    .bind(clip)
    .bind(if done { "done" } else { "cancelled" })
    .bind(t.audio_track)
    .bind(&t.language)
    .bind(&t.task)
    .bind(&t.initial_prompt)
    .bind(&t.model)
    .bind(&t.detected_language)
    .bind(t.language_probability)
    .bind(t.duration_s)
    .bind(if t.requested_by.is_empty() {
        caller.name.as_str()
    } else {
        t.requested_by.as_str()
    })
    .bind(t.created_at)
    .bind(t.transcribed_at)
    .bind(t.edited_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Unprocessable(format!("transcripts: `{}` has two", t.clip_path)),
        other => other,
    })?;
    for s in &t.segments {
        if !(s.start_s.is_finite() && s.end_s.is_finite() && s.end_s >= s.start_s) {
            return Err(ApiError::Unprocessable(format!(
                "transcripts: segment {} of `{}` ends before it starts",
                s.idx, t.clip_path
            )));
        }
        if let Some(words) = &s.words
            && !TimedWord::all_within(words, s.start_s, s.end_s)
        {
            return Err(ApiError::Unprocessable(format!(
                "transcripts: the words of segment {} of `{}` are out of order or outside it",
                s.idx, t.clip_path
            )));
        }
    }
    let segments: Vec<NewSegment<'_>> = t
        .segments
        .iter()
        .map(|s| NewSegment {
            idx: s.idx,
            start_s: s.start_s,
            end_s: s.end_s,
            text: &s.text,
            avg_logprob: s.avg_logprob,
            no_speech_prob: s.no_speech_prob,
            edited: s.edited,
            words: s.words.as_deref().map(Vec::as_slice),
        })
        .collect();
    insert_segments(&mut *tx, id, &segments)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => {
                ApiError::Unprocessable(format!("transcripts: `{}` repeats a segment", t.clip_path))
            }
            other => other,
        })?;
    Ok(())
}

/// The document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    version: u32,
    #[serde(default)]
    exported_at: Option<DateTime<Utc>>,
    base_production: String,
    production: ProductionRow,
    clips: Vec<ClipRow>,
    #[serde(default)]
    scan_skips: Vec<SkipRow>,
    #[serde(default)]
    transcripts: Vec<TranscriptRow>,
    #[serde(default)]
    tags: Vec<TagRow>,
    #[serde(default)]
    markers: Vec<MarkerRow>,
    /// The custom metadata fields that apply to the production (its base production's
    /// and the global ones).
    #[serde(default)]
    metadata_fields: Vec<FieldRow>,
    /// Import only: the rushes folder on this instance (default: the exported path).
    #[serde(default, skip_serializing)]
    path: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let production: ProductionRow = sqlx::query_as(
        "SELECT series, friendly_name, path, priority, active, archived, auto_transcribe, cover_image, watermark \
         FROM productions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no production {id}")))?;
    let base: String = sqlx::query_scalar(
        "SELECT b.name FROM base_productions b JOIN productions p ON p.base_production_id = b.id WHERE p.id = $1",
    )
    .bind(id)
    .fetch_one(&state.db)
    .await?;
    let clips: Vec<ClipRow> = sqlx::query_as(
        "SELECT id, path, name, card, shooter, shoot_date, hidden, size_bytes, mtime_ns, missing, container, \
                video_codec, audio_codec, width, height, duration_s, frame_rate_num, frame_rate_den, start_timecode, \
                tc_start_s, tc_end_s, audio_tracks, audio_channels, created_on, first_seen_at, metadata, rating, \
                colour_label, review_status, labels \
         FROM clips WHERE production_id = $1 ORDER BY path",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let metadata_fields: Vec<FieldRow> = sqlx::query_as(
        "SELECT f.name, f.display_name, f.kind, f.choices FROM metadata_fields f JOIN productions p ON p.id = $1 \
         WHERE f.base_production_id IS NULL OR f.base_production_id = p.base_production_id ORDER BY f.name",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let scan_skips: Vec<SkipRow> = sqlx::query_as(
        "SELECT path, size_bytes, mtime_ns, reason, kind FROM scan_skips WHERE production_id = $1 ORDER BY path",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let tags: Vec<TagRow> = sqlx::query_as(
        "SELECT c.path AS clip_path, t.name AS tag, ct.tagged_by FROM clip_tags ct \
         JOIN clips c ON c.id = ct.clip_id JOIN tags t ON t.id = ct.tag_id \
         WHERE c.production_id = $1 ORDER BY c.path, t.name",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let markers: Vec<MarkerRow> = sqlx::query_as(
        "SELECT c.path AS clip_path, m.at_s, m.label, m.created_by FROM markers m JOIN clips c ON c.id = m.clip_id \
         WHERE c.production_id = $1 ORDER BY c.path, m.at_s",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let mut transcripts: Vec<TranscriptRow> = sqlx::query_as(
        "SELECT t.id, c.path AS clip_path, t.state::text AS state, t.audio_track, t.language, t.task, t.initial_prompt, \
                t.model, t.detected_language, t.language_probability, t.duration_s, t.requested_by, t.created_at, \
                t.transcribed_at, t.edited_at \
         FROM transcripts t JOIN clips c ON c.id = t.clip_id WHERE c.production_id = $1 ORDER BY c.path",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let segments: Vec<SegmentRow> = sqlx::query_as(
        "SELECT s.transcript_id, s.idx, s.start_s, s.end_s, s.text, s.avg_logprob, s.no_speech_prob, s.edited, \
                s.words \
         FROM transcript_segments s JOIN transcripts t ON t.id = s.transcript_id JOIN clips c ON c.id = t.clip_id \
         WHERE c.production_id = $1 ORDER BY s.transcript_id, s.idx",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await?;
    let mut by_transcript: std::collections::HashMap<Uuid, Vec<SegmentRow>> = std::collections::HashMap::new();
    for segment in segments {
        by_transcript.entry(segment.transcript_id).or_default().push(segment);
    }
    for transcript in &mut transcripts {
        transcript.segments = by_transcript.remove(&transcript.id).unwrap_or_default();
    }
    let document = Document {
        format: FORMAT.to_owned(),
        version: VERSION,
        exported_at: Some(Utc::now()),
        base_production: base,
        production,
        clips,
        scan_skips,
        transcripts,
        tags,
        markers,
        metadata_fields,
        path: None,
    };
    Ok(axum::Json(document))
}

async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut document): Json<Document>,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    if document.format != FORMAT {
        return Err(ApiError::Unprocessable(format!(
            "format: expected `{FORMAT}`, got `{}`",
            document.format
        )));
    }
    if document.version == 0 || document.version > VERSION {
        return Err(ApiError::Unprocessable(format!(
            "version: this build reads versions 1 to {VERSION}, got {}",
            document.version
        )));
    }
    // A watermark is checked as a PATCH would check it. Its image file does not travel
    // in the document: the new production draws none until one is sent to it.
    document.production.watermark = super::productions::without_image(document.production.watermark.take());
    super::productions::check_watermark(document.production.watermark.clone().map(Some), None)?;
    let requested = document
        .path
        .clone()
        .unwrap_or_else(|| document.production.path.clone());
    let path = state
        .roots
        .resolve_dir(&requested)
        .map_err(|e| ApiError::Unprocessable(format!("path: {e}")))?
        .to_string_lossy()
        .into_owned();
    let mut tx = state.db.begin().await?;
    super::productions::lock_paths(&mut tx).await?;
    let group_id: Uuid = sqlx::query_scalar(
        "INSERT INTO groups (id, name) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name \
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(&document.base_production)
    .fetch_one(&mut *tx)
    .await?;
    let base_id: Uuid = sqlx::query_scalar(
        "INSERT INTO base_productions (id, name, group_id) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(&document.base_production)
    .bind(group_id)
    .fetch_one(&mut *tx)
    .await?;
    let production_id = Uuid::now_v7();
    let p = &document.production;
    sqlx::query(
        // The cover thumbnail is a file of the exporting instance, not a row: the
        // imported production starts without one.
        "INSERT INTO productions (id, base_production_id, series, friendly_name, path, priority, active, archived, \
                                  auto_transcribe, watermark) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(production_id)
    .bind(base_id)
    .bind(p.series)
    .bind(&p.friendly_name)
    .bind(&path)
    .bind(p.priority)
    .bind(p.active)
    .bind(p.archived)
    .bind(p.auto_transcribe)
    .bind(&p.watermark)
    .execute(&mut *tx)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict(format!(
            "`{}` already has a series {}",
            document.base_production, p.series
        )),
        other => other,
    })?;
    super::productions::refuse_overlap(&mut tx, production_id).await?;
    sqlx::query(
        "INSERT INTO group_productions (group_id, production_id) SELECT b.group_id, $1 FROM base_productions b \
         WHERE b.id = $2 AND b.group_id IS NOT NULL ON CONFLICT DO NOTHING",
    )
    .bind(production_id)
    .bind(base_id)
    .execute(&mut *tx)
    .await?;
    let fields = import_fields(&mut tx, &caller, base_id, &document.metadata_fields).await?;
    for clip in &document.clips {
        check_clip_metadata(clip, &fields)?;
    }
    let mut remapped = serde_json::Map::new();
    let mut by_path: std::collections::HashMap<&str, Uuid> =
        std::collections::HashMap::with_capacity(document.clips.len());
    for clip in &document.clips {
        let new_id = Uuid::now_v7();
        remapped.insert(clip.id.to_string(), json!(new_id));
        by_path.insert(clip.path.as_str(), new_id);
        sqlx::query(
            "INSERT INTO clips (id, production_id, path, name, card, shooter, shoot_date, hidden, size_bytes, \
                                mtime_ns, missing, container, video_codec, audio_codec, width, height, duration_s, \
                                frame_rate_num, frame_rate_den, start_timecode, tc_start_s, tc_end_s, audio_tracks, \
                                audio_channels, created_on, first_seen_at, metadata, rating, colour_label, \
                                review_status, labels) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
                     $22, $23, $24, $25, $26, $27, $28, $29, $30, $31)",
        )
        .bind(new_id)
        .bind(production_id)
        .bind(&clip.path)
        .bind(&clip.name)
        .bind(&clip.card)
        .bind(&clip.shooter)
        .bind(clip.shoot_date)
        .bind(clip.hidden)
        .bind(clip.size_bytes)
        .bind(clip.mtime_ns)
        .bind(clip.missing)
        .bind(&clip.container)
        .bind(&clip.video_codec)
        .bind(&clip.audio_codec)
        .bind(clip.width)
        .bind(clip.height)
        .bind(clip.duration_s)
        .bind(clip.frame_rate_num)
        .bind(clip.frame_rate_den)
        .bind(&clip.start_timecode)
        .bind(clip.tc_start_s)
        .bind(clip.tc_end_s)
        .bind(clip.audio_tracks)
        .bind(&clip.audio_channels)
        .bind(clip.created_on)
        .bind(clip.first_seen_at)
        .bind(&clip.metadata)
        .bind(clip.rating)
        .bind(&clip.colour_label)
        .bind(&clip.review_status)
        .bind(&clip.labels)
        .execute(&mut *tx)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Unprocessable(format!("clips: `{}` appears twice", clip.path)),
            other => other,
        })?;
    }
    for skip in &document.scan_skips {
        sqlx::query(
            "INSERT INTO scan_skips (production_id, path, size_bytes, mtime_ns, reason, kind) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(production_id)
        .bind(&skip.path)
        .bind(skip.size_bytes)
        .bind(skip.mtime_ns)
        .bind(&skip.reason)
        .bind(skip.kind.unwrap_or_else(|| SkipKind::of_reason(&skip.reason)).as_str())
        .execute(&mut *tx)
        .await?;
    }
    let new_clip = |path: &str, field: &str| -> ApiResult<Uuid> {
        by_path
            .get(path)
            .copied()
            .ok_or_else(|| ApiError::Unprocessable(format!("{field}: no clip `{path}` in the document")))
    };
    for tag in &document.tags {
        let clip = new_clip(&tag.clip_path, "tags")?;
        let tag_id: Uuid = sqlx::query_scalar(
            "WITH found AS (SELECT id FROM tags WHERE lower(name) = lower($2)), \
                  made AS (INSERT INTO tags (id, name) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM found) RETURNING id) \
             SELECT id FROM found UNION ALL SELECT id FROM made",
        )
        .bind(Uuid::now_v7())
        .bind(&tag.tag)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO clip_tags (clip_id, tag_id, tagged_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(clip)
            .bind(tag_id)
            .bind(&tag.tagged_by)
            .execute(&mut *tx)
            .await?;
    }
    for marker in &document.markers {
        let clip = new_clip(&marker.clip_path, "markers")?;
        sqlx::query("INSERT INTO markers (id, clip_id, at_s, label, created_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(Uuid::now_v7())
            .bind(clip)
            .bind(marker.at_s)
            .bind(&marker.label)
            .bind(&marker.created_by)
            .execute(&mut *tx)
            .await?;
    }
    for transcript in &document.transcripts {
        insert_transcript(
            &mut tx,
            new_clip(&transcript.clip_path, "transcripts")?,
            transcript,
            &caller,
        )
        .await?;
    }
    let change = Change {
        action: "production.import",
        target_type: "production",
        target_id: Some(production_id.to_string()),
        before: None,
        after: Some(
            json!({ "base_production": document.base_production, "series": p.series, "path": path,
                            "clips": document.clips.len() }),
        ),
    };
    audit::record(&mut *tx, &caller, change).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": production_id,
            "base_production_id": base_id,
            "path": path,
            "clips": document.clips.len(),
            "clip_ids": remapped,
        })),
    ))
}

/// The document's metadata fields on this instance: a field of that name that applies to
/// the base production already must be of the same kind (else 422); a missing one is
/// created for the base production (audited).
async fn import_fields(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    caller: &Caller,
    base: Uuid,
    wanted: &[FieldRow],
) -> ApiResult<Vec<crate::metadata::Field>> {
    use crate::metadata::{self, Field, FieldKind};
    let mut fields = Vec::with_capacity(wanted.len());
    for row in wanted {
        let problem = metadata::name_problem(&row.name).or_else(|| match FieldKind::parse(&row.kind) {
            Some(kind) => metadata::choices_problem(kind, &row.choices),
            None => Some(format!("kind `{}` is unknown", row.kind)),
        });
        if let Some(problem) = problem {
            return Err(ApiError::Unprocessable(format!(
                "metadata_fields.{}: {problem}",
                row.name
            )));
        }
        let kind = FieldKind::parse(&row.kind).unwrap_or(FieldKind::Text);
        let existing: Option<(String, Vec<String>)> = sqlx::query_as(
            "SELECT kind, choices FROM metadata_fields WHERE name = $1 \
               AND (base_production_id IS NULL OR base_production_id = $2)",
        )
        .bind(&row.name)
        .bind(base)
        .fetch_optional(&mut **tx)
        .await?;
        let choices = match existing {
            Some((kind_here, _)) if kind_here != row.kind => {
                return Err(ApiError::Unprocessable(format!(
                    "metadata_fields.{}: a {kind_here} field here, a {} field in the document",
                    row.name, row.kind
                )));
            }
            Some((_, choices)) => choices,
            None => {
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO metadata_fields (id, name, display_name, kind, choices, base_production_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(&row.name)
                .bind(row.display_name.trim())
                .bind(&row.kind)
                .bind(&row.choices)
                .bind(base)
                .execute(&mut **tx)
                .await?;
                audit::record(
                    &mut **tx,
                    caller,
                    Change {
                        action: "metadata_field.create",
                        target_type: "metadata_field",
                        target_id: Some(id.to_string()),
                        before: None,
                        after: Some(json!({ "name": row.name, "kind": row.kind, "base_production_id": base,
                                            "via": "production import" })),
                    },
                )
                .await?;
                row.choices.clone()
            }
        };
        fields.push(Field {
            name: row.name.clone(),
            kind,
            choices,
        });
    }
    Ok(fields)
}

/// A clip's metadata as an import takes it: every value of a field the document
/// carries (and this instance accepts), the review metadata within its bounds.
fn check_clip_metadata(clip: &ClipRow, fields: &[crate::metadata::Field]) -> ApiResult<()> {
    use crate::metadata::{self, COLOUR_LABELS, REVIEW_STATUSES};
    let at = |what: String| ApiError::Unprocessable(format!("clips: `{}`: {what}", clip.path));
    let serde_json::Value::Object(values) = &clip.metadata else {
        return Err(at("metadata: an object of field name → value".into()));
    };
    for (name, value) in values {
        let field = fields.iter().find(|f| f.name == *name).ok_or_else(|| {
            at(format!(
                "metadata.{name}: no such field in the document's metadata_fields"
            ))
        })?;
        if field.value(value).as_ref() != Ok(value) {
            return Err(at(format!(
                "metadata.{name}: not a value of this {} field",
                field.kind.as_str()
            )));
        }
    }
    if !(0..=5).contains(&clip.rating) {
        return Err(at(format!("rating: 0 to 5, got {}", clip.rating)));
    }
    if clip
        .colour_label
        .as_deref()
        .is_some_and(|c| !COLOUR_LABELS.contains(&c))
    {
        return Err(at("colour_label: not a colour label".into()));
    }
    if !REVIEW_STATUSES.contains(&clip.review_status.as_str()) {
        return Err(at(format!("review_status: `{}` is not one", clip.review_status)));
    }
    if metadata::labels(&clip.labels).as_ref() != Ok(&clip.labels) {
        return Err(at("labels: each once, 1 to 100 characters, at most 50".into()));
    }
    Ok(())
}
