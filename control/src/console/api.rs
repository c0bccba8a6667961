//! The console's one way to read and change anything: a request to the API router
//! itself, in-process, with the signed-in user's token as its bearer. Every page shows
//! and does exactly what the API lets that user see and do — the same checks, not a
//! second copy of them.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;
use tower::ServiceExt as _;

/// Largest API answer the console reads (a page of a list is far smaller).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// The API router, with its state, as the console calls it.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// Who a console request comes from: the token from its session cookie, and the
/// client's address and forwarding headers (the API logs and throttles by them).
#[derive(Clone)]
pub struct Caller {
    pub token: Option<String>,
    pub peer: SocketAddr,
    pub forwarded_for: Option<HeaderValue>,
}

impl Caller {
    pub fn new(token: Option<String>, peer: SocketAddr, headers: &HeaderMap) -> Self {
        Self {
            token,
            peer,
            forwarded_for: headers.get("x-forwarded-for").cloned(),
        }
    }
}

/// An API answer: its status and its JSON body (`Null` when it had none).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The API's error message (`{"error": {"message": …}}`), or the status when it has none.
    pub fn error(&self) -> String {
        self.body
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.to_string())
    }

    /// The field an error names (`"cron: …"` names `cron`), when it names one.
    pub fn field(&self) -> Option<String> {
        let message = self.body.pointer("/error/message")?.as_str()?;
        let (field, _) = message.split_once(": ")?;
        let plain = !field.is_empty() && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        plain.then(|| field.to_owned())
    }

    /// The rows of a list answer: the array itself, or the first array field of an object.
    pub fn rows(&self) -> Vec<Value> {
        match &self.body {
            Value::Array(rows) => rows.clone(),
            Value::Object(map) => map.values().find_map(|v| v.as_array().cloned()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Api {
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    pub async fn get(&self, caller: &Caller, path: &str) -> Answer {
        self.call(caller, Method::GET, path, None).await
    }

    pub async fn send(&self, caller: &Caller, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call(caller, method, path, body).await
    }

    /// A read passed through as the API answers it (streamed, with its headers): the
    /// console's live parts and media players read this way. `path_and_query` is below
    /// `/api/v1`; a `Range` header is passed on.
    pub async fn pass_through(&self, caller: &Caller, path_and_query: &str, range: Option<HeaderValue>) -> Response {
        let headers = range.map(|r| (header::RANGE, r));
        self.forward(caller, Method::GET, path_and_query, headers, Body::empty())
            .await
    }

    /// A request whose body (an upload: multipart, an image, a document) is streamed to
    /// the API as it arrives, answered as the API answers.
    pub async fn stream(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        content_type: Option<HeaderValue>,
        body: Body,
    ) -> Response {
        let headers = content_type.map(|t| (header::CONTENT_TYPE, t));
        self.forward(caller, method, path, headers, body).await
    }

    /// One request to the API router as `caller` (its token, address and forwarding
    /// header), with `extra` header; the API's response as it is.
    async fn forward(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        extra: Option<(header::HeaderName, HeaderValue)>,
        body: Body,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(format!("/api/v1{path}"));
        if let Some(token) = &caller.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(forwarded) = &caller.forwarded_for {
            request = request.header("x-forwarded-for", forwarded.clone());
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        let mut request = match request.body(body) {
            Ok(request) => request,
            Err(err) => {
                return failed(StatusCode::BAD_REQUEST, format!("not a valid request: {err}")).into_response();
            }
        };
        request.extensions_mut().insert(ConnectInfo(caller.peer));
        match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A `POST` of a text body of `content_type` (a CSV file), read as an [`Answer`].
    pub async fn post_text(&self, caller: &Caller, path: &str, content_type: &'static str, text: String) -> Answer {
        let extra = Some((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
        self.answer(caller, Method::POST, path, extra, Body::from(text)).await
    }

    /// `path` is below `/api/v1` (it starts with `/`).
    async fn call(&self, caller: &Caller, method: Method, path: &str, body: Option<Value>) -> Answer {
        let (extra, body) = match body {
            Some(body) => (
                Some((header::CONTENT_TYPE, HeaderValue::from_static("application/json"))),
                Body::from(body.to_string()),
            ),
            None => (None, Body::empty()),
        };
        self.answer(caller, method, path, extra, body).await
    }

    async fn answer(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        extra: Option<(header::HeaderName, HeaderValue)>,
        body: Body,
    ) -> Answer {
        let response = self.forward(caller, method, path, extra, body).await;
        let status = response.status();
        match axum::body::to_bytes(response.into_body(), MAX_ANSWER).await {
            Ok(bytes) if bytes.is_empty() => Answer {
                status,
                body: Value::Null,
            },
            Ok(bytes) => Answer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            },
            Err(err) => failed(StatusCode::BAD_GATEWAY, format!("cannot read the API's answer: {err}")),
        }
    }
}

impl axum::response::IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

fn failed(status: StatusCode, message: String) -> Answer {
    Answer {
        status,
        body: serde_json::json!({ "error": { "code": "console", "message": message } }),
    }
}
