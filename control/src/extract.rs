//! Extractors whose rejections answer with [`ApiError`]'s JSON body instead of axum's
//! plain text, and which refuse NUL characters in any text they hand on: PostgreSQL
//! cannot store one in a `text` or `jsonb` value, so it is the caller's mistake (a 4xx),
//! not a failed query (a 500).

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::readable;

/// JSON body; malformed → 400, wrong shape or a NUL character in a string → 422,
/// wrong content type → 415, larger than the route's body limit → 413. No body at all
/// (or only whitespace), whatever the content type, reads as `{}`: body-less actions and
/// bodies whose fields all have defaults need none, and a body that does need fields
/// answers 422 naming the first one missing.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_json_type = json_content_type(req.headers());
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(from_json(b"{}")?));
        }
        if !has_json_type {
            return Err(ApiError::UnsupportedMediaType(
                "Expected request with `Content-Type: application/json`".into(),
            ));
        }
        let value = from_json(&bytes)?;
        if has_nul_escape(&bytes) {
            return Err(ApiError::Unprocessable(
                "text must not contain NUL characters (\\u0000)".into(),
            ));
        }
        Ok(Self(value))
    }
}

/// Parses a JSON body: not JSON → 400, the wrong shape → 422, both worded for the
/// caller (the field's path and what it expects, never a line and column).
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(&path, &inner)
    })?;
    de.end().map_err(|err| json_error("", &err))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    let message = readable::without_position(err);
    match err.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable(readable::field_error(path, &message)),
        serde_json::error::Category::Eof => {
            ApiError::BadRequest("the body is not valid JSON: it ends too early".into())
        }
        _ => ApiError::BadRequest(format!("the body is not valid JSON: {message}")),
    }
}

/// `application/json` or any `application/*+json`, parameters ignored (as axum's `Json`).
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some((kind, sub)) => kind == "application" && (sub == "json" || sub.ends_with("+json")),
        None => false,
    }
}

/// Whether a well-formed JSON text has a NUL character in a string. Outside strings a
/// backslash cannot appear, and a raw NUL byte is not well-formed, so the only way is
/// the escape `\u0000` that is not itself an escaped backslash followed by `u0000`.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1..i + 6) == Some(b"u0000".as_slice()) {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Query string; invalid or with a NUL character (`%00`) → 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(has_encoded_nul) {
            return Err(ApiError::BadRequest(
                "the query string must not contain NUL characters (%00)".into(),
            ));
        }
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        let value = serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            let path = err.path().to_string();
            ApiError::BadRequest(format!(
                "query string: {}",
                readable::field_error(&path, &err.into_inner().to_string())
            ))
        })?;
        Ok(Self(value))
    }
}

/// Path parameters; invalid (e.g. not a UUID) or with a NUL character (`%00`) → 400.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(ApiError::BadRequest(
                "the path must not contain NUL characters (%00)".into(),
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                let names = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map(|raw| raw.iter().map(|(name, _)| name.to_owned()).collect::<Vec<_>>())
                    .unwrap_or_default();
                Err(path_error(&rejection, &names))
            }
        }
    }
}

/// A path rejection in the caller's words, naming the parameter.
fn path_error(rejection: &PathRejection, names: &[String]) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(err) = rejection else {
        return ApiError::BadRequest("the path is not valid for this route".into());
    };
    let message = match err.kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => {
            format!(
                "`{key}` in the path: expected {}, got `{value}`",
                readable::expected_words(expected_type)
            )
        }
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => {
            let name = names.get(*index).map_or("a parameter", String::as_str);
            format!(
                "`{name}` in the path: expected {}, got `{value}`",
                readable::expected_words(expected_type)
            )
        }
        ErrorKind::ParseError { value, expected_type } => {
            let name = names.first().map_or("a parameter", String::as_str);
            format!(
                "`{name}` in the path: expected {}, got `{value}`",
                readable::expected_words(expected_type)
            )
        }
        ErrorKind::DeserializeError { key, message, .. } => {
            format!("`{key}` in the path: {}", readable::humanize(message))
        }
        ErrorKind::InvalidUtf8InPathParam { key } => format!("`{key}` in the path is not valid UTF-8"),
        ErrorKind::Message(message) => {
            let name = names.first().map_or("a parameter", String::as_str);
            format!("`{name}` in the path: {}", readable::humanize(message))
        }
        _ => "the path is not valid for this route".into(),
    };
    ApiError::BadRequest(message)
}

/// Whether percent-decoding `raw` (a URI's path or query) yields a NUL character.
fn has_encoded_nul(raw: &str) -> bool {
    raw.contains("%00")
}

/// A UTF-8 text body (a CSV, say); not UTF-8 or with a NUL character → 400, larger
/// than the route's body limit → 413.
#[derive(Debug)]
pub struct Text(pub String);

impl<S> FromRequest<S> for Text
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::BadRequest("the body must be UTF-8 text".into()))?;
        if text.contains('\0') {
            return Err(ApiError::BadRequest("the body must not contain NUL characters".into()));
        }
        Ok(Self(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_escaped_nul_only_in_strings() {
        assert!(has_nul_escape(br#"{"a":"x\u0000y"}"#));
        assert!(has_nul_escape(br#"{"\u0000":1}"#));
        assert!(has_nul_escape(br#"["\\\u0000"]"#));
        assert!(!has_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\u0001 u0000"}"#));
        assert!(!has_nul_escape(br#"{"a":"\\"}"#));
    }

    #[test]
    fn json_content_types() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(value));
            json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/json"));
        assert!(!with("application/jsonx"));
        assert!(!json_content_type(&HeaderMap::new()));
    }
}
