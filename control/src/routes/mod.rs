//! The HTTP API: one module per resource, each exposing `router()`.

pub mod audit_log;
pub mod clips;
pub mod covers;
pub mod dashboard;
pub mod dead_letters;
pub mod emails;
pub mod groups;
pub mod invitations;
pub mod jobs;
pub mod jobs_batch;
pub mod kinds;
pub mod logs;
pub mod metadata_fields;
pub mod oidc;
pub mod pages;
pub mod productions;
pub mod prometheus;
pub mod queues;
pub mod review_files;
pub mod roles;
pub mod schedules;
pub mod session;
pub mod settings;
pub mod shares;
pub mod stats;
pub mod system;
pub mod system_info;
pub mod tags;
pub mod transcripts;
pub mod transfer;
pub mod uploads;
pub mod user_roles;
pub mod users;
pub mod watermark_image;
pub mod workers;

use axum::Router;
use axum::middleware;

use crate::state::AppState;

/// Most rows a list returns at once.
pub const MAX_LIMIT: i64 = 1000;
/// Rows a list returns when the caller does not say.
pub const DEFAULT_LIMIT: i64 = 50;

/// A field that may be absent (keep), `null` (clear) or a value (set): with
/// `#[serde(default, deserialize_with = "present")]` on an `Option<Option<T>>`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    de: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

/// A caller's `limit`: [`DEFAULT_LIMIT`] when absent, refused (422) outside
/// 1..=[`MAX_LIMIT`] rather than silently changed.
pub fn limit(requested: Option<i64>) -> crate::error::ApiResult<i64> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(crate::error::ApiError::Unprocessable(format!(
            "limit: must be between 1 and {MAX_LIMIT}, got {n}"
        ))),
    }
}

/// The cursor of the next page: the last row's id when the page is full.
pub fn next_before<T>(rows: &[T], limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> Option<uuid::Uuid> {
    if rows.len() as i64 == limit {
        rows.last().map(id)
    } else {
        None
    }
}

/// The whole application: public probes and login, the operator console (`/`), and the
/// authenticated `/api/v1`
/// (fleet operations, groups and logs for admins only; productions, clips and users
/// check the caller's grants and policies themselves). `/metrics` is served here unless
/// `metrics_apart` (then [`metrics_app`] serves it on its own listener).
pub fn app(state: AppState, metrics_apart: bool) -> Router {
    let admin_only = Router::new()
        .merge(jobs::router())
        .merge(jobs_batch::router())
        .merge(queues::router())
        .merge(workers::router())
        .merge(dead_letters::router())
        .merge(kinds::router())
        .merge(schedules::router())
        .merge(groups::router())
        .merge(roles::router())
        .merge(audit_log::router())
        .merge(settings::router())
        .merge(emails::router())
        .merge(dashboard::router())
        .merge(stats::router())
        .merge(logs::router())
        .merge(system_info::router())
        .merge(prometheus::router())
        .route_layer(middleware::from_fn(crate::auth::require_admin));
    let api = Router::new()
        .merge(admin_only)
        .merge(productions::router())
        .merge(transfer::router())
        .merge(clips::router())
        .merge(metadata_fields::router())
        .merge(covers::router())
        .merge(watermark_image::router())
        .merge(review_files::router())
        .merge(transcripts::router())
        .merge(uploads::router())
        .merge(tags::router())
        .merge(shares::router())
        .merge(users::router())
        .merge(user_roles::router())
        .merge(invitations::router())
        .merge(session::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::auth::authenticate))
        .merge(session::public_router())
        .merge(oidc::public_router())
        .fallback(|| async { crate::error::ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async { crate::error::ApiError::MethodNotAllowed });
    // The console calls the API in-process, as the signed-in user.
    let internal = crate::console::api::Api::new(
        Router::new()
            .nest("/api/v1", api.clone())
            .layer(middleware::from_fn(crate::headers::security_headers))
            .with_state(state.clone()),
    );
    Router::new()
        .nest("/api/v1", api)
        .merge(shares::public_router())
        .merge(pages::router())
        .merge(crate::console::router(internal))
        .merge(system::router(!metrics_apart))
        .layer(middleware::from_fn(crate::headers::security_headers))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track_http,
        ))
        .with_state(state)
}

/// `/metrics` alone, for a listener of its own (`RUSHES_METRICS_ADDR`).
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(crate::metrics::scrape))
        .with_state(state)
}
