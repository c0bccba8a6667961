//! `GET /api/v1/prometheus/targets` (admins): Prometheus HTTP service discovery. The
//! running workers and schedulers, each at the metrics address it recorded (the actual
//! port when it bound `:0`), with labels `service`, `host`, and for workers `queues` and
//! `gpus`; `?service=worker` or `?service=scheduler` narrows the list to one scrape job.
//! A process silent for longer than [`SILENT_AFTER_S`] is left out (it is gone, or its
//! heartbeat is: the `RushesWorkerGone` alert says which).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

/// Seconds without a heartbeat after which a process is no longer a target.
pub const SILENT_AFTER_S: i32 = 600;

pub fn router() -> Router<AppState> {
    Router::new().route("/prometheus/targets", get(targets))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Targets {
    /// `worker` or `scheduler`; both when absent.
    service: Option<String>,
}

/// One target group of the HTTP SD document.
fn group(addr: String, labels: Value) -> Value {
    json!({ "targets": [addr], "labels": labels })
}

async fn targets(State(state): State<AppState>, Query(q): Query<Targets>) -> ApiResult<axum::Json<Vec<Value>>> {
    let (workers, schedulers) = match q.service.as_deref() {
        None => (true, true),
        Some("worker") => (true, false),
        Some("scheduler") => (false, true),
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "service: `{other}` is not one of worker, scheduler"
            )));
        }
    };
    let mut out = Vec::new();
    if workers {
        let rows: Vec<(String, String, Value, i64)> = sqlx::query_as(
            "SELECT metrics_addr, host, queues, jsonb_array_length(gpus)::bigint FROM workers \
             WHERE stopped_at IS NULL AND metrics_addr IS NOT NULL \
               AND last_seen_at > now() - make_interval(secs => $1) \
             ORDER BY host, metrics_addr",
        )
        .bind(f64::from(SILENT_AFTER_S))
        .fetch_all(&state.db)
        .await?;
        for (addr, host, queues, gpus) in rows {
            let mut names: Vec<&str> = queues
                .as_object()
                .map(|q| q.keys().map(String::as_str).collect())
                .unwrap_or_default();
            names.sort_unstable();
            out.push(group(
                addr,
                json!({ "service": "worker", "host": host, "queues": names.join(","), "gpus": gpus.to_string() }),
            ));
        }
    }
    if schedulers {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT metrics_addr, host FROM schedulers \
             WHERE stopped_at IS NULL AND metrics_addr IS NOT NULL \
               AND last_seen_at > now() - make_interval(secs => $1) \
             ORDER BY host, metrics_addr",
        )
        .bind(f64::from(SILENT_AFTER_S))
        .fetch_all(&state.db)
        .await?;
        for (addr, host) in rows {
            out.push(group(addr, json!({ "service": "scheduler", "host": host })));
        }
    }
    Ok(axum::Json(out))
}
