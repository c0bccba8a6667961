//! `/api/v1/clips`: list and search a production's clips, show one with its output
//! URLs, bulk-edit metadata, find related clips, retranscode, delete (our rows and
//! outputs only: originals are never touched), and serve outputs with range requests.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, NaiveDate, Utc};
use rushes_common::job::store::Tx;
use rushes_common::media::{is_output_name, transcodes};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use uuid::Uuid;

use crate::audit::{self, Change};
use crate::auth::{Caller, Policy};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::metadata::{self, COLOUR_LABELS, REVIEW_STATUSES};
use crate::state::AppState;

/// Most clips one bulk request may name.
const MAX_BULK: usize = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/clips", get(list).patch(bulk_edit))
        .route("/clips/retranscode", post(retranscode))
        .route("/clips/delete", post(delete_many))
        .route("/clips/{id}", get(show).delete(delete_one))
        .route("/clips/{id}/related", get(related))
        .route("/clips/{id}/media/{name}", get(media))
}

/// A clip as stored; serialised inside [`ClipView`].
#[derive(Debug, Serialize, sqlx::FromRow)]
struct ClipRow {
    id: Uuid,
    production_id: Uuid,
    path: String,
    name: String,
    card: String,
    shooter: Option<String>,
    shoot_date: Option<NaiveDate>,
    hidden: bool,
    missing: bool,
    size_bytes: i64,
    container: Option<String>,
    video_codec: Option<String>,
    audio_codec: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    duration_s: Option<f64>,
    #[serde(skip)]
    frame_rate_num: Option<i32>,
    #[serde(skip)]
    frame_rate_den: Option<i32>,
    start_timecode: Option<String>,
    audio_tracks: i32,
    audio_channels: Vec<i32>,
    created_on: Option<DateTime<Utc>>,
    transcode_state: String,
    transcode_job_id: Option<Uuid>,
    transcode_error: Option<String>,
    /// File names; the view shows URLs instead.
    #[serde(skip)]
    outputs: Value,
    transcoded_at: Option<DateTime<Utc>>,
    first_seen_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    tags: Vec<String>,
    transcript_id: Option<Uuid>,
    transcript_state: Option<String>,
    /// Values of the custom metadata fields (field name → value).
    metadata: Value,
    /// Review metadata: 0–5 stars, a colour label, a status, free labels.
    rating: i16,
    colour_label: Option<String>,
    review_status: String,
    labels: Vec<String>,
}

macro_rules! clip_columns {
    () => {
        "c.id, c.production_id, c.path, c.name, c.card, c.shooter, c.shoot_date, c.hidden, c.missing, c.size_bytes, \
         c.container, c.video_codec, c.audio_codec, c.width, c.height, c.duration_s, c.frame_rate_num, \
         c.frame_rate_den, c.start_timecode, c.audio_tracks, c.audio_channels, c.created_on, \
         c.transcode_state::text AS transcode_state, c.transcode_job_id, c.transcode_error, c.outputs, \
         c.transcoded_at, c.first_seen_at, c.updated_at, \
         ARRAY(SELECT t.name FROM clip_tags ct JOIN tags t ON t.id = ct.tag_id WHERE ct.clip_id = c.id \
               ORDER BY lower(t.name)) AS tags, \
         tr.id AS transcript_id, tr.state::text AS transcript_state, \
         c.metadata, c.rating, c.colour_label, c.review_status, c.labels"
    };
}

#[derive(Debug, Serialize)]
struct ClipView {
    #[serde(flatten)]
    row: ClipRow,
    /// Frames per second (e.g. 29.97); `frame_rate_rational` keeps the exact value.
    frame_rate: Option<f64>,
    frame_rate_rational: Option<String>,
    /// URLs of the outputs that exist: proxy, poster, wav, tracks, sprite, sprite_vtt, waveform.
    outputs: Value,
}

impl From<ClipRow> for ClipView {
    fn from(row: ClipRow) -> Self {
        let rate = row.frame_rate_num.zip(row.frame_rate_den).filter(|(_, d)| *d > 0);
        let url = |name: &str| format!("/api/v1/clips/{}/media/{name}", row.id);
        let mut outputs = serde_json::Map::new();
        if let Value::Object(files) = &row.outputs {
            for (key, value) in files {
                match value {
                    Value::String(name) if is_output_name(name) => {
                        outputs.insert(key.clone(), json!(url(name)));
                    }
                    Value::Array(names) => {
                        let urls: Vec<String> = names
                            .iter()
                            .filter_map(Value::as_str)
                            .filter(|n| is_output_name(n))
                            .map(url)
                            .collect();
                        outputs.insert(key.clone(), json!(urls));
                    }
                    _ => {}
                }
            }
        }
        Self {
            frame_rate: rate.map(|(n, d)| (f64::from(n) / f64::from(d) * 1000.0).round() / 1000.0),
            frame_rate_rational: rate.map(|(n, d)| format!("{n}/{d}")),
            outputs: Value::Object(outputs),
            row,
        }
    }
}

/// The clip, if the caller may view its production (otherwise it does not exist for them).
async fn find(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<ClipRow> {
    let clip: ClipRow = sqlx::query_as(concat!(
        "SELECT ",
        clip_columns!(),
        " FROM clips c LEFT JOIN transcripts tr ON tr.clip_id = c.id WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no clip {id}")))?;
    caller
        .require(state, Policy::View, clip.production_id)
        .await
        .map_err(|_| ApiError::NotFound(format!("no clip {id}")))?;
    // A hidden clip is there for admins only.
    if clip.hidden && !caller.is_admin {
        return Err(ApiError::NotFound(format!("no clip {id}")));
    }
    Ok(clip)
}

/// Requires `policy` on the production of every clip in `ids`.
pub(crate) async fn require_on_clips(state: &AppState, caller: &Caller, policy: Policy, ids: &[Uuid]) -> ApiResult<()> {
    if caller.is_admin {
        return Ok(());
    }
    // A hidden clip is not there for anyone else, whatever they may do to its production.
    let rows: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT production_id, (array_agg(id) FILTER (WHERE hidden))[1] FROM clips WHERE id = ANY($1) \
         GROUP BY production_id",
    )
    .bind(ids)
    .fetch_all(&state.db)
    .await?;
    if let Some(id) = rows.iter().find_map(|(_, hidden)| *hidden) {
        return Err(ApiError::NotFound(format!("no clip {id}")));
    }
    let productions = rows.into_iter().map(|(production, _)| production);
    for production in productions {
        caller.require(state, policy, production).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListClips {
    production_id: Option<Uuid>,
    card: Option<String>,
    shooter: Option<String>,
    date: Option<NaiveDate>,
    hidden: Option<bool>,
    missing: Option<bool>,
    transcode_state: Option<String>,
    /// Text in the clip's name (case-insensitive).
    q: Option<String>,
    /// A tag the clip carries (case-insensitive).
    tag: Option<String>,
    /// At least this many stars.
    rating_min: Option<i16>,
    review_status: Option<String>,
    colour_label: Option<String>,
    /// A free label the clip carries (exactly).
    label: Option<String>,
    /// Custom metadata the clip holds: a JSON object of field name → value (a list
    /// field matches when it holds every value given).
    metadata: Option<String>,
    limit: Option<i64>,
    #[serde(default)]
    offset: i64,
}

const STATES: [&str; 6] = ["pending", "queued", "running", "done", "failed", "cancelled"];

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListClips>,
) -> ApiResult<axum::Json<Value>> {
    if let Some(s) = q.transcode_state.as_deref().filter(|s| !STATES.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "transcode_state `{s}` is not one of {}",
            STATES.join(", ")
        )));
    }
    let limit = super::limit(q.limit)?;
    if let Some(r) = q.rating_min.filter(|r| !(0..=5).contains(r)) {
        return Err(ApiError::BadRequest(format!("rating_min: 0 to 5, got {r}")));
    }
    if let Some(s) = q.review_status.as_deref().filter(|s| !REVIEW_STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "review_status `{s}` is not one of {}",
            REVIEW_STATUSES.join(", ")
        )));
    }
    if let Some(c) = q.colour_label.as_deref().filter(|c| !COLOUR_LABELS.contains(c)) {
        return Err(ApiError::BadRequest(format!(
            "colour_label `{c}` is not one of {}",
            COLOUR_LABELS.join(", ")
        )));
    }
    let holding = q
        .metadata
        .as_deref()
        .map(|m| match serde_json::from_str::<Value>(m) {
            Ok(object @ Value::Object(_)) => Ok(object),
            _ => Err(ApiError::BadRequest(
                "metadata: a JSON object of field name → value, e.g. {\"scene\":\"12\"}".into(),
            )),
        })
        .transpose()?;
    let pattern =
        q.q.as_deref()
            .map(|t| format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
    let rows: Vec<ClipRow> = sqlx::query_as(concat!(
        "SELECT ",
        clip_columns!(),
        " FROM clips c LEFT JOIN transcripts tr ON tr.clip_id = c.id \
         WHERE ($1::uuid IS NULL OR c.production_id = $1) AND ($2::text IS NULL OR c.card = $2) \
           AND ($3::text IS NULL OR c.shooter = $3) AND ($4::date IS NULL OR c.shoot_date = $4) \
           AND ($5::bool IS NULL OR c.hidden = $5) AND ($6::bool IS NULL OR c.missing = $6) \
           AND ($7::text IS NULL OR c.transcode_state::text = $7) \
           AND ($8::text IS NULL OR c.name ILIKE $8 \
                OR EXISTS (SELECT 1 FROM jsonb_each(c.metadata) m \
                           WHERE jsonb_typeof(m.value) = 'string' AND m.value #>> '{}' ILIKE $8)) \
           AND ($13::smallint IS NULL OR c.rating >= $13) AND ($14::text IS NULL OR c.review_status = $14) \
           AND ($15::text IS NULL OR c.colour_label = $15) AND ($16::text IS NULL OR $16 = ANY(c.labels)) \
           AND ($17::jsonb IS NULL OR c.metadata @> $17) \
           AND ($11::uuid IS NULL OR (c.production_id IN (SELECT production_id FROM visible_productions($11)) \
                                      AND NOT c.hidden)) \
           AND ($12::text IS NULL OR c.id IN (SELECT ct.clip_id FROM clip_tags ct JOIN tags t ON t.id = ct.tag_id \
                                              WHERE lower(t.name) = lower($12))) \
         ORDER BY c.production_id, c.path LIMIT $9 OFFSET $10"
    ))
    .bind(q.production_id)
    .bind(q.card)
    .bind(q.shooter)
    .bind(q.date)
    .bind(q.hidden)
    .bind(q.missing)
    .bind(q.transcode_state)
    .bind(pattern)
    .bind(limit)
    .bind(q.offset.max(0))
    .bind(caller.scope())
    .bind(q.tag)
    .bind(q.rating_min)
    .bind(q.review_status)
    .bind(q.colour_label)
    .bind(q.label)
    .bind(holding)
    .fetch_all(&state.db)
    .await?;
    let next_offset = (rows.len() as i64 == limit).then_some(q.offset.max(0).saturating_add(limit));
    let clips: Vec<ClipView> = rows.into_iter().map(ClipView::from).collect();
    Ok(axum::Json(json!({ "clips": clips, "next_offset": next_offset })))
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<ClipView>> {
    Ok(axum::Json(find(&state, &caller, id).await?.into()))
}

/// Bulk edit: the named fields are set on every clip in `ids`; an absent, null or
/// empty field leaves that field unchanged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkEdit {
    ids: Vec<Uuid>,
    card: Option<String>,
    shoot_date: Option<String>,
    shooter: Option<String>,
    hidden: Option<bool>,
    /// Custom metadata: field name → value (`null` removes the clip's value).
    metadata: Option<serde_json::Map<String, Value>>,
    /// 0 to 5 stars.
    rating: Option<i16>,
    /// A colour, or `none` to remove it.
    colour_label: Option<String>,
    review_status: Option<String>,
    /// The clips' labels become these.
    labels: Option<Vec<String>>,
    add_labels: Option<Vec<String>>,
    remove_labels: Option<Vec<String>>,
}

/// What a bulk edit's custom metadata sets and removes: each value checked against the
/// field as it applies to every base production among the clips.
async fn metadata_changes(
    state: &AppState,
    ids: &[Uuid],
    asked: &serde_json::Map<String, Value>,
) -> ApiResult<(serde_json::Map<String, Value>, Vec<String>)> {
    let bases: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT p.base_production_id FROM clips c JOIN productions p ON p.id = c.production_id \
         WHERE c.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&state.db)
    .await?;
    let names: Vec<String> = asked.keys().cloned().collect();
    let fields = super::metadata_fields::fields_for(&state.db, &bases, &names).await?;
    let (mut set, mut remove) = (serde_json::Map::new(), Vec::new());
    for (name, value) in asked {
        if value.is_null() {
            remove.push(name.clone());
            continue;
        }
        for (_, field) in fields.iter().filter(|(_, f)| f.name == *name) {
            let stored = field
                .value(value)
                .map_err(|e| ApiError::Unprocessable(format!("metadata.{name}: {e}")))?;
            set.insert(name.clone(), stored);
        }
    }
    Ok((set, remove))
}

fn bulk_ids(ids: &[Uuid]) -> ApiResult<()> {
    if ids.is_empty() {
        return Err(ApiError::Unprocessable("ids: name at least one clip".into()));
    }
    if ids.len() > MAX_BULK {
        return Err(ApiError::Unprocessable(format!(
            "ids: at most {MAX_BULK} clips per request"
        )));
    }
    Ok(())
}

async fn bulk_edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<BulkEdit>,
) -> ApiResult<axum::Json<Value>> {
    bulk_ids(&body.ids)?;
    require_on_clips(&state, &caller, Policy::EditMetadata, &body.ids).await?;
    let given = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let shoot_date = given(body.shoot_date)
        .map(|d| {
            d.parse::<NaiveDate>()
                .map_err(|_| ApiError::Unprocessable(format!("shoot_date: `{d}` is not a date (YYYY-MM-DD)")))
        })
        .transpose()?;
    if let Some(r) = body.rating.filter(|r| !(0..=5).contains(r)) {
        return Err(ApiError::Unprocessable(format!("rating: 0 to 5 stars, got {r}")));
    }
    if let Some(c) = body
        .colour_label
        .as_deref()
        .filter(|c| *c != "none" && !COLOUR_LABELS.contains(c))
    {
        return Err(ApiError::Unprocessable(format!(
            "colour_label: one of {} or none, got `{c}`",
            COLOUR_LABELS.join(", ")
        )));
    }
    if let Some(s) = body.review_status.as_deref().filter(|s| !REVIEW_STATUSES.contains(s)) {
        return Err(ApiError::Unprocessable(format!(
            "review_status: one of {}, got `{s}`",
            REVIEW_STATUSES.join(", ")
        )));
    }
    let check_labels = |field: &str, labels: Option<Vec<String>>| {
        labels
            .map(|l| metadata::labels(&l).map_err(|e| ApiError::Unprocessable(format!("{field}: {e}"))))
            .transpose()
    };
    let labels = check_labels("labels", body.labels)?;
    let add_labels = check_labels("add_labels", body.add_labels)?;
    let remove_labels = check_labels("remove_labels", body.remove_labels)?;
    let (set, remove) = match &body.metadata {
        Some(asked) => metadata_changes(&state, &body.ids, asked).await?,
        None => Default::default(),
    };
    let (card, shooter) = (given(body.card), given(body.shooter));
    let mut tx = state.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE clips SET card = COALESCE($2, card), shoot_date = COALESCE($3, shoot_date), \
             shooter = COALESCE($4, shooter), hidden = COALESCE($5, hidden), \
             metadata = (metadata || $6) - $7::text[], rating = COALESCE($8, rating), \
             colour_label = CASE WHEN $9::text IS NULL THEN colour_label WHEN $9 = 'none' THEN NULL ELSE $9 END, \
             review_status = COALESCE($10, review_status), \
             labels = ARRAY(SELECT l FROM unnest(COALESCE($11, labels) || $12::text[]) WITH ORDINALITY AS x(l, n) \
                            WHERE NOT l = ANY($13::text[]) GROUP BY l ORDER BY min(n)), \
             updated_at = now() \
         WHERE id = ANY($1)",
    )
    .bind(&body.ids)
    .bind(&card)
    .bind(shoot_date)
    .bind(&shooter)
    .bind(body.hidden)
    .bind(Value::Object(set.clone()))
    .bind(&remove)
    .bind(body.rating)
    .bind(&body.colour_label)
    .bind(&body.review_status)
    .bind(&labels)
    .bind(add_labels.clone().unwrap_or_default())
    .bind(remove_labels.clone().unwrap_or_default())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let crowded: i64 = sqlx::query_scalar("SELECT count(*) FROM clips WHERE id = ANY($1) AND cardinality(labels) > $2")
        .bind(&body.ids)
        .bind(metadata::MAX_LABELS as i32)
        .fetch_one(&mut *tx)
        .await?;
    if crowded > 0 {
        return Err(ApiError::Unprocessable(format!(
            "add_labels: {crowded} clips would carry more than {} labels",
            metadata::MAX_LABELS
        )));
    }
    let mut changes = serde_json::Map::new();
    let mut note = |key: &str, value: Value| {
        if !value.is_null() {
            changes.insert(key.to_owned(), value);
        }
    };
    note("card", json!(card));
    note("shoot_date", json!(shoot_date));
    note("shooter", json!(shooter));
    note("hidden", json!(body.hidden));
    note("rating", json!(body.rating));
    note("colour_label", json!(body.colour_label));
    note("review_status", json!(body.review_status));
    note("labels", json!(labels));
    note("add_labels", json!(add_labels));
    note("remove_labels", json!(remove_labels));
    if !set.is_empty() || !remove.is_empty() {
        note("metadata", json!({ "set": set, "removed": remove }));
    }
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "clip.edit",
            target_type: "clip",
            target_id: match body.ids.as_slice() {
                [one] => Some(one.to_string()),
                _ => None,
            },
            before: None,
            after: Some(json!({
                "ids": &body.ids[..body.ids.len().min(AUDITED_IDS)],
                "updated": updated,
                "changes": changes,
            })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(axum::Json(json!({ "updated": updated })))
}

/// Clips that belong with this one: overlapping timecode on the same day, and the
/// same shooter's other cards that day.
async fn related(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Value>> {
    find(&state, &caller, id).await?;
    let overlapping: Vec<ClipRow> = sqlx::query_as(concat!(
        "SELECT ",
        clip_columns!(),
        " FROM clips c JOIN clips me ON me.id = $1 LEFT JOIN transcripts tr ON tr.clip_id = c.id \
         WHERE c.production_id = me.production_id AND c.id <> me.id AND c.shoot_date = me.shoot_date \
           AND c.tc_start_s < me.tc_end_s AND c.tc_end_s > me.tc_start_s AND NOT c.missing \
           AND ($2 OR NOT c.hidden) \
         ORDER BY c.tc_start_s LIMIT 200"
    ))
    .bind(id)
    .bind(caller.is_admin)
    .fetch_all(&state.db)
    .await?;
    let cards: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.card, count(*) FROM clips c JOIN clips me ON me.id = $1 \
         WHERE c.production_id = me.production_id AND c.shooter = me.shooter AND c.shoot_date = me.shoot_date \
           AND c.card <> me.card AND NOT c.missing AND ($2 OR NOT c.hidden) \
         GROUP BY c.card ORDER BY c.card",
    )
    .bind(id)
    .bind(caller.is_admin)
    .fetch_all(&state.db)
    .await?;
    let overlapping: Vec<ClipView> = overlapping.into_iter().map(ClipView::from).collect();
    let cards: Vec<Value> = cards
        .into_iter()
        .map(|(card, clips)| json!({ "card": card, "clips": clips }))
        .collect();
    Ok(axum::Json(json!({
        "clip_id": id,
        "overlapping": overlapping,
        "same_shooter_cards": cards,
    })))
}

/// Which clips to act on: explicit ids, or a production (optionally one card of it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selection {
    pub ids: Option<Vec<Uuid>>,
    pub production_id: Option<Uuid>,
    pub card: Option<String>,
}

/// The selected present clips with their production's priority.
pub(crate) async fn select(state: &AppState, selection: &Selection) -> ApiResult<Vec<(Uuid, u8)>> {
    match (&selection.ids, selection.production_id) {
        (Some(ids), None) => bulk_ids(ids)?,
        (None, Some(_)) => {}
        _ => {
            return Err(ApiError::Unprocessable(
                "name either ids or production_id (with an optional card)".into(),
            ));
        }
    }
    let rows: Vec<(Uuid, i16)> = sqlx::query_as(
        "SELECT c.id, p.priority FROM clips c JOIN productions p ON p.id = c.production_id \
         WHERE NOT c.missing AND (($1::uuid[] IS NOT NULL AND c.id = ANY($1)) \
            OR ($2::uuid IS NOT NULL AND c.production_id = $2 AND ($3::text IS NULL OR c.card = $3))) \
         ORDER BY c.path",
    )
    .bind(&selection.ids)
    .bind(selection.production_id)
    .bind(&selection.card)
    .fetch_all(&state.db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, p)| (id, u8::try_from(p).unwrap_or(rushes_common::job::DEFAULT_PRIORITY)))
        .collect())
}

/// How a batch of transcodes is audited: what was asked, on what.
pub(crate) struct TranscodeRequest<'a> {
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<String>,
    /// What was asked for (the selection), recorded with the jobs started.
    pub asked: Value,
}

/// Most job ids an audit entry lists (the count is always there).
const AUDITED_IDS: usize = 100;

/// Queues transcodes and audits the request (one transaction), then publishes them;
/// returns the jobs' ids.
pub(crate) async fn queue_transcodes(
    state: &AppState,
    caller: &Caller,
    clips: impl IntoIterator<Item = (Uuid, u8)>,
    request: TranscodeRequest<'_>,
) -> ApiResult<Vec<Uuid>> {
    let clips: Vec<(Uuid, u8)> = clips.into_iter().collect();
    let mut tx = Tx::begin(&state.db).await?;
    let jobs = transcodes::queue(&mut tx, &clips, None, &caller.name).await?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    audit::record(
        &mut *tx,
        caller,
        Change {
            action: request.action,
            target_type: request.target_type,
            target_id: request.target_id,
            before: None,
            after: Some(json!({
                "asked": request.asked,
                "transcodes": ids.len(),
                "job_ids": &ids[..ids.len().min(AUDITED_IDS)],
            })),
        },
    )
    .await?;
    tx.commit(&state.publisher).await?;
    Ok(ids)
}

async fn retranscode(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(selection): Json<Selection>,
) -> ApiResult<impl IntoResponse> {
    let clips = select(&state, &selection).await?;
    if clips.is_empty() {
        return Err(ApiError::NotFound("no present clips match".into()));
    }
    let ids: Vec<Uuid> = clips.iter().map(|(id, _)| *id).collect();
    require_on_clips(&state, &caller, Policy::Transcode, &ids).await?;
    let request = TranscodeRequest {
        action: "clip.retranscode",
        target_type: match selection.production_id {
            Some(_) => "production",
            None => "clip",
        },
        target_id: match (selection.production_id, ids.as_slice()) {
            (Some(production), _) => Some(production.to_string()),
            (None, [one]) => Some(one.to_string()),
            (None, _) => None,
        },
        asked: json!({ "ids": selection.ids, "production_id": selection.production_id, "card": selection.card }),
    };
    let jobs = queue_transcodes(&state, &caller, clips, request).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "transcodes": jobs.len(), "job_ids": jobs })),
    ))
}

/// Deletes clip rows and their output folders; the originals stay. The productions'
/// tree digests are reset so that a rescan finds the files again.
async fn delete_clips(state: &AppState, ids: &[Uuid]) -> ApiResult<Vec<Uuid>> {
    let mut tx = state.db.begin().await?;
    let deleted: Vec<(Uuid, Uuid)> = sqlx::query_as("DELETE FROM clips WHERE id = ANY($1) RETURNING id, production_id")
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
    let productions: Vec<Uuid> = deleted.iter().map(|(_, p)| *p).collect();
    sqlx::query("UPDATE productions SET tree_digest = NULL WHERE id = ANY($1)")
        .bind(&productions)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let ids: Vec<Uuid> = deleted.into_iter().map(|(id, _)| id).collect();
    remove_outputs(state, &ids).await;
    Ok(ids)
}

/// Removes the output folders of deleted clips (never anything under a media root).
pub(crate) async fn remove_outputs(state: &AppState, clips: &[Uuid]) {
    for id in clips {
        let dir = state.media.clip_dir(*id);
        if let Err(err) = tokio::fs::remove_dir_all(&dir).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(clip.id = %id, error = %err, "cannot remove the clip's outputs");
        }
    }
}

async fn delete_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if delete_clips(&state, &[id]).await?.is_empty() {
        return Err(ApiError::NotFound(format!("no clip {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteMany {
    ids: Vec<Uuid>,
}

async fn delete_many(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<DeleteMany>,
) -> ApiResult<axum::Json<Value>> {
    caller.require_admin()?;
    bulk_ids(&body.ids)?;
    let deleted = delete_clips(&state, &body.ids).await?;
    Ok(axum::Json(json!({ "deleted": deleted.len() })))
}

/// Serves one output file with range requests (players seek), from the clip's folder only.
async fn media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(Uuid, String)>,
    request: Request,
) -> ApiResult<Response> {
    if !is_output_name(&name) {
        return Err(ApiError::NotFound(format!("no output called `{name}`")));
    }
    find(&state, &caller, id).await?;
    serve_output(&state, id, &name, request).await
}

/// Streams one output file of a clip (range requests honoured); `name` is already vetted.
pub(crate) async fn serve_output(state: &AppState, id: Uuid, name: &str, request: Request) -> ApiResult<Response> {
    serve_file(state.media.clip_dir(id).join(name), request).await
}

/// Serves a file of ours (already known to be one the caller may see) with range requests.
pub(crate) async fn serve_file(path: std::path::PathBuf, request: Request) -> ApiResult<Response> {
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(ApiError::NotFound(format!("no {name} here (yet)")));
    }
    let (parts, _) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    let response = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("cannot serve the file")))?;
    Ok(response.map(Body::new).into_response())
}
