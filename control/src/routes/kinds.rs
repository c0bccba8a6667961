//! `/api/v1/kinds`: the job kinds this fleet knows.

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
                        "max_attempts": k.max_attempts,
                        "timeout_s": k.timeout.as_secs(),
                        "backoff_base_s": k.backoff_base.as_secs_f64(),
                    })
                })
                .collect();
            axum::Json(json!({ "kinds": kinds }))
        }),
    )
}
