//! Unauthenticated probes and documents: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

/// The API description, maintained beside the routes it describes.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The probes and documents; `/metrics` too unless it has a listener of its own.
pub fn router(with_metrics: bool) -> Router<AppState> {
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok", "version": rushes_common::VERSION })) }),
        )
        .route("/readyz", get(ready))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        );
    if with_metrics {
        router.route("/metrics", get(crate::metrics::scrape))
    } else {
        router
    }
}

/// Ready when both PostgreSQL and RabbitMQ answer.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(3), sqlx::query("SELECT 1").execute(&state.db)).await;
    let db = match db {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    let broker = state.broker().ping().await.map_err(|e| e.to_string());
    let status = if db.is_ok() && broker.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // The probe is unauthenticated: the cause goes to the log, the answer says only which.
    let show = |what: &str, r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: {what} unreachable");
            json!("unreachable")
        }
    };
    (
        status,
        axum::Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "unready" },
            "database": show("database", &db),
            "broker": show("broker", &broker),
        })),
    )
}
