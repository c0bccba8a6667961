//! `/api/v1/jobs/batch`: many jobs in one request, all or none, with the rights and
//! checks of `POST /jobs`; committed in one statement, answered at once, published
//! after the answer (the relay publishes whatever that leaves behind).

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Router};
use rushes_common::job::store::{self, CheckedJob, Tx};
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::CreateJob;
use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ItemError};
use crate::extract::Json;
use crate::readable;
use crate::state::AppState;

/// Most jobs one batch may hold.
pub const MAX_JOBS: usize = 10_000;
/// Largest batch body: room for [`MAX_JOBS`] jobs with sizeable payloads.
const MAX_BODY_BYTES: usize = 64 << 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/jobs/batch", post(create).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJobs {
    /// Each item as `POST /jobs` takes it; read one by one, so that every bad item is
    /// named by its index.
    jobs: Vec<Value>,
}

/// Enqueues every job of the batch or none: an invalid item (shape, kind, payload,
/// priority, queue, attempts, a row that does not exist) refuses the whole batch with
/// a 422 naming each bad item by its index. One audit entry for the batch.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateJobs>,
) -> ApiResult<impl IntoResponse> {
    let count = body.jobs.len();
    if count == 0 {
        return Err(ApiError::Unprocessable("jobs: give at least one job".into()));
    }
    if count > MAX_JOBS {
        return Err(ApiError::Unprocessable(format!(
            "jobs: at most {MAX_JOBS} in one batch, got {count}"
        )));
    }
    let mut jobs = Vec::with_capacity(count);
    let mut problems = Vec::new();
    for (index, item) in body.jobs.into_iter().enumerate() {
        match item_job(item, &caller) {
            Ok(job) => jobs.push(job),
            Err(error) => problems.push(ItemError { index, error }),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_items("jobs", count, problems));
    }

    let mut tx = Tx::begin(&state.db).await?;
    let missing = store::check_targets(&mut tx, &jobs).await?;
    if !missing.is_empty() {
        let items = missing
            .into_iter()
            .map(|(index, err)| ItemError {
                index,
                error: err.to_string(),
            })
            .collect();
        return Err(ApiError::invalid_items("jobs", count, items));
    }
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    for job in &jobs {
        *kinds.entry(job.kind().name).or_default() += 1;
    }
    let ids = tx.enqueue_checked(jobs).await?;
    audit::record(
        &mut *tx,
        &caller,
        Change {
            action: "job.enqueue_batch",
            target_type: "job",
            target_id: None,
            before: None,
            after: Some(json!({
                "count": ids.len(),
                "kinds": kinds,
                "first_id": ids.first(),
                "last_id": ids.last(),
            })),
        },
    )
    .await?;
    let mut records = tx.commit_unpublished(&state.publisher).await?;

    let (db, publisher) = (state.db.clone(), state.publisher.clone());
    tokio::spawn(async move {
        if let Err(err) = store::publish_chunks(&db, &publisher, &mut records).await {
            tracing::warn!(error = %err, jobs = records.len(), "batch committed but not all published; the relay will publish the rest");
        }
    });
    Ok((StatusCode::CREATED, axum::Json(json!({ "ids": ids }))))
}

/// One item of a batch as a checked job, or what is wrong with it.
fn item_job(item: Value, caller: &Caller) -> Result<CheckedJob, String> {
    let body: CreateJob = serde_path_to_error::deserialize(item).map_err(|err| {
        let path = err.path().to_string();
        readable::field_error(&path, &err.into_inner().to_string())
    })?;
    let job = body.into_job(caller).map_err(|err| err.to_string())?;
    job.check().map_err(|err| err.to_string())
}
