//! Bearer-token authentication of `/api/v1`. For now the one identity is the bootstrap
//! admin (`RUSHES_ADMIN_TOKEN`); users, groups and sessions plug in here later.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Recorded as `requested_by` on what the caller creates.
    pub name: String,
}

/// Rejects requests without the right bearer token; adds the [`Caller`] to the others.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let expected = state.admin_token.expose().as_bytes();
    if !bool::from(presented.as_bytes().ct_eq(expected)) {
        return Err(ApiError::Unauthorized);
    }
    request.extensions_mut().insert(Caller {
        name: "admin".to_owned(),
    });
    Ok(next.run(request).await)
}
