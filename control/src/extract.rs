//! Extractors whose rejections answer with [`ApiError`]'s JSON body instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// JSON body; malformed → 400, wrong shape → 422, wrong content type → 415.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Query string; invalid → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; invalid (e.g. not a UUID) → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
