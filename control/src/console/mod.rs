//! The operator console: server-rendered pages served by the control plane at `/`
//! (the API stays under `/api/v1`). Pages read and act only through the API itself
//! ([`api::Api`]) with the signed-in user's session token, so a user sees and does in
//! a browser exactly what the API lets them. Signing in opens the same session as
//! `POST /api/v1/auth/login`, kept in an `HttpOnly; SameSite=Strict` cookie; every
//! state-changing form carries a CSRF token ([`session`]). Assets (one stylesheet, one
//! script of our own) are embedded in the binary; lists and details read without
//! JavaScript, which only adds live updates, local times and confirmations.

pub mod api;
mod forms;
mod layout;
mod lists;
mod pages;
pub mod session;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use self::api::{Api, Caller};
use crate::state::AppState;

/// The console's routes; `api` is the API router it reads and acts through.
pub fn router(api: Api) -> Router<AppState> {
    Router::new()
        .route("/console.css", get(layout::stylesheet))
        .route("/console.js", get(layout::script))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/stop-impersonating", post(pages::stop_impersonating))
        .route("/console/api/{*path}", get(pages::read_through))
        .route("/do/{*path}", post(forms::act))
        .route(
            "/console/send/{*path}",
            post(pages::send)
                .put(pages::send)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .merge(pages::router())
        .layer(axum::Extension(api))
}

/// A console request: the session token from its cookie (if any) and how to call the
/// API as its sender.
pub struct Visitor {
    pub caller: Caller,
    pub secure: bool,
    /// The page asked for, for the redirect back after signing in.
    pub path: String,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |info| info.0);
        let token = session::cookie(&parts.headers, session::COOKIE);
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            caller: Caller::new(token, peer, &parts.headers),
            secure: state.public_url.starts_with("https://"),
            path,
        })
    }
}

/// A signed-in visitor: who they are (`GET /api/v1/auth/me`) and the page's CSRF token.
pub struct Signed {
    pub visitor: Visitor,
    pub me: Value,
    pub csrf: String,
}

impl Signed {
    pub fn is_admin(&self) -> bool {
        self.me["is_admin"].as_bool().unwrap_or(false)
    }

    pub fn api(&self) -> &Caller {
        &self.visitor.caller
    }
}

/// Where a signed-out visitor goes: the login page, then back here.
pub fn to_login(path: &str) -> Response {
    let next = url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// The visitor as signed in, or the redirect to the login page (clearing a stale cookie).
pub async fn signed(api: &Api, visitor: Visitor) -> Result<Signed, Response> {
    let Some(token) = visitor.caller.token.clone() else {
        return Err(to_login(&visitor.path));
    };
    let me = api.get(&visitor.caller, "/auth/me").await;
    if me.status == StatusCode::UNAUTHORIZED {
        let mut response = to_login(&visitor.path);
        response.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(session::COOKIE, None, visitor.secure),
        );
        return Err(response);
    }
    if !me.ok() {
        return Err(layout::problem(&me.error()));
    }
    Ok(Signed {
        csrf: session::csrf_for(&token),
        visitor,
        me: me.body,
    })
}

/// A local path to go back to (never another site).
pub fn local(path: &str) -> &str {
    // No backslash or control character anywhere: browsers drop tabs and newlines from
    // a `Location` (`/\t/evil.example` becomes `//evil.example`), and treat `\` as `/`.
    let plain = !path.chars().any(|c| c == '\\' || c.is_control());
    if plain && path.starts_with('/') && !path.starts_with("//") {
        path
    } else {
        "/"
    }
}

/// The console's own content security policy: its own script, style, media and API.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn with_csp(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The form fields of a submitted body.
pub fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Whether the form carries the session's CSRF token.
pub fn csrf_ok(visitor: &Visitor, fields: &[(String, String)], headers: &HeaderMap) -> bool {
    let Some(token) = visitor.caller.token.as_deref() else {
        return false;
    };
    let presented = fields
        .iter()
        .find(|(k, _)| k == session::CSRF_FIELD)
        .map(|(_, v)| v.as_str())
        .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    presented.is_some_and(|p| session::csrf_matches(token, p))
}

/// A submitted form's fields, when it carries the session's CSRF token.
pub fn checked(visitor: &Visitor, headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    let fields = form_fields(body);
    csrf_ok(visitor, &fields, headers).then_some(fields)
}

/// A refused form post (no or a wrong CSRF token).
pub fn csrf_refused() -> Response {
    with_csp(
        (
            StatusCode::FORBIDDEN,
            axum::response::Html(layout::bare(
                "Rushes: refused",
                maud::html! { p role="alert" { "This form was refused: it did not carry this session's security token. Reload the page and try again." } },
            )),
        )
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_gone_back_to() {
        assert_eq!(local("/jobs?state=failed"), "/jobs?state=failed");
        for elsewhere in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/jobs\\..\\evil",
            "",
            "jobs",
        ] {
            assert_eq!(local(elsewhere), "/", "{elsewhere}");
        }
    }
}
