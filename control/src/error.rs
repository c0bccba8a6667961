//! The one HTTP error type: a stable JSON body `{"error": {"code", "message"}}` with
//! the right status. Internal errors are logged once, with their cause chain, and
//! answered as an opaque 500.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rushes_common::job::store::EnqueueError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("wrong username or password")]
    WrongCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Unprocessable(String),
    /// Items of a batch are invalid: 422 whose body also lists each by its index.
    #[error("{message}")]
    InvalidItems { message: String, items: Vec<ItemError> },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What is wrong with one item of a batch, by its index in the request's list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemError {
    pub index: usize,
    pub error: String,
}

impl ApiError {
    /// A batch of `count` items refused because of `items` (each by its index): the
    /// message names the first few.
    pub fn invalid_items(noun: &str, count: usize, items: Vec<ItemError>) -> Self {
        const NAMED: usize = 3;
        let mut named: Vec<String> = items
            .iter()
            .take(NAMED)
            .map(|item| format!("{noun}[{}]: {}", item.index, item.error))
            .collect();
        if items.len() > NAMED {
            named.push(format!("and {} more (see `items`)", items.len() - NAMED));
        }
        Self::InvalidItems {
            message: format!(
                "{} of the {count} {noun} are invalid, so none was accepted: {}",
                items.len(),
                named.join("; ")
            ),
            items,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized | Self::WrongCredentials => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::Unprocessable(_) | Self::InvalidItems { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code, "message": message });
        if let Self::InvalidItems { items, .. } = &self {
            error["items"] = json!(items);
        }
        let body = Json(json!({ "error": error }));
        if matches!(self, Self::Unauthorized) {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Self::Unavailable("database unavailable".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() || db.is_check_violation() => {
                Self::Unprocessable(db.message().to_owned())
            }
            // Class 22, data exception: a value PostgreSQL cannot take (a date before
            // 4713 BC, a number out of range, a NUL character) came from the request.
            sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("22")) => {
                Self::Unprocessable(format!("a value cannot be stored or compared: {}", db.message()))
            }
            _ => Self::Internal(anyhow::Error::new(err).context("database query failed")),
        }
    }
}

impl From<EnqueueError> for ApiError {
    fn from(err: EnqueueError) -> Self {
        match err {
            EnqueueError::Database(db) => db.into(),
            EnqueueError::NotInserted => Self::Conflict(err.to_string()),
            other => Self::Unprocessable(other.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(e) => Self::UnsupportedMediaType(e.body_text()),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge(e.body_text())
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge(rejection.body_text())
        } else {
            Self::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
