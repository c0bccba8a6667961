//! Signing in and out, and acting as another user.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Extension, Router};
use maud::html;
use serde_json::json;

use super::*;
use crate::console::api::Api;
use crate::console::layout::bare;
use crate::console::session::{self, COOKIE, PRIOR_COOKIE};
use crate::console::{Signed, Visitor, checked, csrf_refused, form_fields, local, signed, with_csp};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/users/{id}/impersonate", post(impersonate_submit))
}

pub async fn login_form(State(state): State<AppState>, Query(query): Params) -> Response {
    let next = query.get("next").map_or("/", |n| local(n)).to_owned();
    login_page(&next, None, state.sso.is_some())
}

/// The sign-in form; with single sign-on configured, also the way to the provider.
fn login_page(next: &str, error: Option<&str>, sso: bool) -> Response {
    let sso_href = format!(
        "/api/v1/auth/oidc/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    let body = html! {
        form.edit method="post" action="/login" {
            @if let Some(error) = error { p.alert role="alert" { (error) } }
            input type="hidden" name="next" value=(next);
            label for="username" { "Username" input id="username" name="username" autocomplete="username" required autofocus; }
            label for="password" { "Password" input id="password" type="password" name="password" autocomplete="current-password" required; }
            div { button type="submit" { "Sign in" } }
        }
        @if sso {
            p { a.button href=(sso_href) { "Sign in with single sign-on" } }
        }
    };
    with_csp(Html(bare("Sign in · Rushes", body)).into_response())
}

/// Signs in through `POST /api/v1/auth/login` (its checks, throttling and login log)
/// and keeps the session it opens in the cookie.
pub async fn login_submit(
    State(state): State<AppState>,
    Extension(api): Extension<Api>,
    visitor: Visitor,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let next = local(&get("next")).to_owned();
    let mut anonymous = visitor.caller.clone();
    anonymous.token = None;
    let answer = api
        .send(
            &anonymous,
            Method::POST,
            "/auth/login",
            Some(json!({ "username": get("username"), "password": get("password") })),
        )
        .await;
    match answer.body["token"].as_str() {
        Some(token) if answer.ok() => {
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().append(
                header::SET_COOKIE,
                session::set_cookie(COOKIE, Some(token), visitor.secure),
            );
            response
        }
        _ => {
            let message = match answer.status {
                StatusCode::UNAUTHORIZED => "Wrong username or password.".to_owned(),
                _ => answer.error(),
            };
            // The form again, with why (a page, not an error document: the browser
            // shows it as it shows the form).
            login_page(&next, Some(&message), state.sso.is_some())
        }
    }
}

/// Ends the session (the API revokes its token) and forgets the cookie.
pub async fn logout(Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes) -> Response {
    if checked(&visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    let _ = api.send(&visitor.caller, Method::POST, "/auth/logout", None).await;
    let mut response = Redirect::to("/login").into_response();
    for name in [COOKIE, PRIOR_COOKIE] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session::set_cookie(name, None, visitor.secure));
    }
    response
}

/// Ends an impersonation: its token is revoked and the admin's own session comes back.
pub async fn stop_impersonating(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if checked(&visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    let _ = api.send(&visitor.caller, Method::POST, "/auth/logout", None).await;
    let prior = session::cookie(&headers, PRIOR_COOKIE);
    let mut response = Redirect::to(if prior.is_some() { "/users" } else { "/login" }).into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, prior.as_deref(), visitor.secure),
    );
    headers.append(
        header::SET_COOKIE,
        session::set_cookie(PRIOR_COOKIE, None, visitor.secure),
    );
    response
}

/// `POST /users/{id}/impersonate` from the console: the admin's session is kept aside
/// and the impersonation's session takes its place until "stop impersonating".
async fn impersonate(api: &Api, signed: &Signed, id: &str) -> Response {
    let answer = api
        .send(
            signed.api(),
            Method::POST,
            &format!("/users/{id}/impersonate"),
            Some(json!({})),
        )
        .await;
    match (
        answer.ok(),
        answer.body["token"].as_str(),
        signed.visitor.caller.token.as_deref(),
    ) {
        (true, Some(token), Some(own)) => {
            let mut response = Redirect::to("/").into_response();
            let secure = signed.visitor.secure;
            response
                .headers_mut()
                .append(header::SET_COOKIE, session::set_cookie(PRIOR_COOKIE, Some(own), secure));
            response
                .headers_mut()
                .append(header::SET_COOKIE, session::set_cookie(COOKIE, Some(token), secure));
            response
        }
        _ => Redirect::to(&format!("/users/{id}?failed={}", encode(&answer.error()))).into_response(),
    }
}

async fn impersonate_submit(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    if checked(&signed.visitor, &headers, &body).is_none() {
        return csrf_refused();
    }
    impersonate(&api, &signed, &id).await
}
