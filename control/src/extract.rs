//! Extractors whose rejections answer with [`ApiError`]'s JSON body instead of axum's plain text.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body; malformed → 400, wrong shape → 422, wrong content type → 415. No body at
/// all (or only whitespace), whatever the content type, reads as `{}`: body-less
/// actions and bodies whose fields all have defaults need none, and a body that does
/// need fields answers 422 naming the first one missing.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(axum::extract::rejection::JsonRejection::from)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            let axum::Json(value) = axum::Json::<T>::from_bytes(b"{}")?;
            return Ok(Self(value));
        }
        let req = Request::from_parts(parts, Body::from(bytes));
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// Query string; invalid → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters; invalid (e.g. not a UUID) → 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
