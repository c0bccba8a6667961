//! `/api/v1/kinds`: the job kinds this fleet knows, with their payloads' JSON Schemas.

use axum::Router;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/kinds",
        get(|| async {
            let kinds: Vec<_> = rushes_common::job::catalogue()
                .iter()
                .map(|k| {
                    json!({
                        "name": k.name,
                        "queue": k.queue,
                        "any_queue": k.any_queue,
                        "housekeeping": k.housekeeping,
                        "max_attempts": k.max_attempts,
                        "timeout_s": k.timeout.as_secs(),
                        "backoff_base_s": k.backoff_base.as_secs_f64(),
                        "target": k.target.map(|t| json!({ "field": t.field, "names": t.noun })),
                        "payload_schema": k.schema(),
                    })
                })
                .collect();
            axum::Json(json!({ "kinds": kinds }))
        }),
    )
}
