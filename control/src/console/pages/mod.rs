//! The console's pages, one module per area: sign-in, the dashboard, the fleet (jobs,
//! queues, workers), schedules, productions, clips, transcripts and uploads, people,
//! and the admin pages. Shared here: the list page, the detail page and the form pages.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::api::Api;
use super::forms::{self, Failure, Field};
use super::layout::{Notice, fields, page, text};
use super::lists::{self, Column, Filter, Paging};
use super::{Signed, Visitor, checked, csrf_ok, csrf_refused, signed};
use crate::state::AppState;

type Params = Query<BTreeMap<String, String>>;

/// The visitor signed in, or the response that sends them to sign in.
macro_rules! signed_or_return {
    ($api:expr, $visitor:expr) => {
        match signed(&$api, $visitor).await {
            Ok(signed) => signed,
            Err(response) => return response,
        }
    };
}

mod admin;
mod clips;
mod dashboard;
mod fleet;
mod people;
mod productions;
mod schedules;
mod sign_in;
mod transcripts;

pub use sign_in::{login_form, login_submit, logout, stop_impersonating};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(admin::routes())
        .merge(clips::routes())
        .merge(dashboard::routes())
        .merge(fleet::routes())
        .merge(people::routes())
        .merge(productions::routes())
        .merge(schedules::routes())
        .merge(sign_in::routes())
        .merge(transcripts::routes())
}

/// What to show above a page that read `answer`: its error, or what the last action did.
fn flash(answer: &super::api::Answer, query: &BTreeMap<String, String>) -> Option<Notice> {
    if answer.ok() {
        notice(query)
    } else {
        Some(Notice::Failed(answer.error()))
    }
}

/// What `?done=` / `?failed=` say after an action.
fn notice(query: &BTreeMap<String, String>) -> Option<Notice> {
    query
        .get("failed")
        .map(|m| Notice::Failed(m.clone()))
        .or_else(|| query.get("done").map(|m| Notice::Done(m.clone())))
}

/// `text` made safe in a query or as one path segment (form encoding).
fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `GET /console/api/{path}`: a read of the API as the signed-in user (the live parts
/// of pages, media players), passed through as the API answers it.
pub async fn read_through(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if visitor.caller.token.is_none() {
        return crate::error::ApiError::Unauthorized.into_response();
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    api.pass_through(
        &visitor.caller,
        &format!("/{path}{query}"),
        headers.get(header::RANGE).cloned(),
    )
    .await
}

/// `POST` or `PUT /console/send/{api path}` (a form with `data-send`, by the console's
/// script): the body streamed to the API as the signed-in user, with the request's
/// method and content type; the CSRF token comes as a header.
pub async fn send(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Body,
) -> Response {
    if !csrf_ok(&visitor, &[], &headers) {
        return csrf_refused();
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    api.stream(
        &visitor.caller,
        method,
        &format!("/{path}{query}"),
        headers.get(header::CONTENT_TYPE).cloned(),
        body,
    )
    .await
}

/// The progress bar and error line of a form that sends a file (`data-send`); `name`
/// tells one such form on a page from another.
fn send_progress(name: &str) -> Markup {
    html! {
        label for={ (name) "-progress" } { "Progress" progress id={ (name) "-progress" } data-send-progress max="1" value="0" {} }
        span.error data-send-error role="alert" {}
    }
}

/// A list page: its navigation entry, title, API list, filters and columns.
struct ListSpec {
    nav: &'static str,
    title: &'static str,
    path: &'static str,
    api: &'static str,
    filters: &'static [Filter],
    columns: &'static [Column],
    paging: Paging,
}

/// A list page with nothing beside the list.
async fn plain(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Query(query): Params,
    spec: &'static ListSpec,
) -> Response {
    let signed = signed_or_return!(api, visitor);
    list(&api, &signed, spec, &query, html! {}, None).await
}

async fn list(
    api: &Api,
    signed: &Signed,
    spec: &ListSpec,
    query: &BTreeMap<String, String>,
    extra: Markup,
    actions: Option<&(dyn Fn(&Value) -> Markup + Sync)>,
) -> Response {
    let api_query = lists::api_query(spec.filters, query, spec.paging);
    let answer = api.get(signed.api(), &format!("{}?{api_query}", spec.api)).await;
    let flash = flash(&answer, query);
    let rows = answer.rows();
    let shown = &rows[..rows.len().min(lists::PAGE)];
    let body = html! {
        (extra)
        (lists::filter_form(spec.path, spec.filters, query))
        (lists::table(spec.columns, shown, actions))
        (lists::pager(spec.path, query, &answer, rows.len(), spec.paging))
    };
    page(signed, spec.nav, spec.title, flash.as_ref(), body)
}

/// A detail page: the object's fields, then `extra`.
async fn detail(
    api: &Api,
    signed: &Signed,
    nav: &str,
    api_path: &str,
    title_key: &str,
    query: &BTreeMap<String, String>,
    extra: impl FnOnce(&Value) -> Markup,
) -> Response {
    let answer = api.get(signed.api(), api_path).await;
    if !answer.ok() {
        return page(signed, nav, nav, Some(&Notice::Failed(answer.error())), html! {});
    }
    let object = &answer.body;
    let title = object[title_key].as_str().unwrap_or(nav).to_owned();
    let body = html! {
        (extra(object))
        h2 { "Details" }
        (fields(object, &["segments", "history", "payload", "result", "next_fire_times", "next_fire_times_local"]))
    };
    page(signed, nav, &title, notice(query).as_ref(), body)
}

async fn kinds(api: &Api, signed: &Signed) -> Vec<String> {
    api.get(signed.api(), "/kinds")
        .await
        .rows()
        .iter()
        .filter_map(|k| k["kind"].as_str().or_else(|| k["name"].as_str()).map(str::to_owned))
        .collect()
}

/// A page whose form creates something with one API call, then shows it.
struct Creation {
    nav: &'static str,
    title: &'static str,
    /// The page: `GET` shows the form, `POST` submits it.
    path: &'static str,
    api: &'static str,
    submit: &'static str,
    /// Where the created object is shown (`{shown_at}{id}`); `None`: the list it joined.
    shown_at: Option<&'static str>,
    /// What the page says was done.
    done: &'static str,
}

impl Creation {
    fn form(
        &self,
        signed: &Signed,
        fields: &[Field],
        values: &[(String, String)],
        failure: Option<&Failure>,
    ) -> Response {
        let form = forms::render(signed, self.path, fields, values, failure, self.submit);
        page(signed, self.nav, self.title, None, form)
    }

    /// Sends `sent` (the form's `values`, perhaps adjusted); the created object's page,
    /// or the form again with the API's error next to its field (`fields` is only
    /// awaited then: building them may ask the API, e.g. for the kinds).
    async fn create(
        &self,
        api: &Api,
        signed: &Signed,
        fields: impl Future<Output = Vec<Field>>,
        values: &[(String, String)],
        sent: &[(String, String)],
    ) -> Response {
        match submit(api, signed, Method::POST, self.api, sent).await {
            Ok(created) => {
                let to = match self.shown_at {
                    Some(prefix) => format!("{prefix}{}?done={}", text(&created["id"]), self.done),
                    None => format!("{}?done={}", self.api, self.done),
                };
                Redirect::to(&to).into_response()
            }
            Err(failure) => self.form(signed, &fields.await, values, Some(&failure)),
        }
    }
}

/// The routes of a creation page whose fields are fixed: `GET` shows the form (filled
/// from the query's parameters that name a field: `?like_user_id=…`), `POST` submits it.
fn creation(page: &'static Creation, fields: fn() -> Vec<Field>) -> MethodRouter<AppState> {
    get(
        move |Extension(api): Extension<Api>, visitor: Visitor, Query(query): Params| async move {
            let signed = signed_or_return!(api, visitor);
            let fields = fields();
            let given: Vec<(String, String)> = fields
                .iter()
                .filter_map(|f| query.get(f.name).map(|v| (f.name.to_owned(), v.clone())))
                .collect();
            page.form(&signed, &fields, &given, None)
        },
    )
    .post(
        move |Extension(api): Extension<Api>, visitor: Visitor, headers: HeaderMap, body: Bytes| async move {
            let signed = signed_or_return!(api, visitor);
            let Some(values) = checked(&signed.visitor, &headers, &body) else {
                return csrf_refused();
            };
            page.create(&api, &signed, async { fields() }, &values, &values).await
        },
    )
}

/// The routes of an edit page whose fields are fixed: `GET` shows the form filled with
/// the stored object, `POST` saves it.
fn editing(page: &'static Editing, fields: fn() -> Vec<Field>) -> MethodRouter<AppState> {
    get(
        move |Extension(api): Extension<Api>, visitor: Visitor, Path(id): Path<String>| async move {
            let signed = signed_or_return!(api, visitor);
            page.show(&api, &signed, &id, &fields()).await
        },
    )
    .post(
        move |Extension(api): Extension<Api>,
              visitor: Visitor,
              Path(id): Path<String>,
              headers: HeaderMap,
              body: Bytes| async move {
            let signed = signed_or_return!(api, visitor);
            let Some(values) = checked(&signed.visitor, &headers, &body) else {
                return csrf_refused();
            };
            page.save(&api, &signed, &id, async { fields() }, &values, &values)
                .await
        },
    )
}

/// A page whose form edits one stored object with `PATCH`: shown filled with what is
/// stored; saved, it goes back to the object's page (or shows the API's error next to
/// its field). The object is `{api}{id}` in the API, its page `{page}{id}`, the form
/// `{page}{id}/edit`.
struct Editing {
    nav: &'static str,
    title: &'static str,
    api: &'static str,
    page: &'static str,
}

impl Editing {
    /// `GET`: the form, filled with the stored object.
    async fn show(&self, api: &Api, signed: &Signed, id: &str, fields: &[Field]) -> Response {
        let answer = api.get(signed.api(), &format!("{}{}", self.api, encode(id))).await;
        if !answer.ok() {
            return page(
                signed,
                self.nav,
                self.title,
                Some(&Notice::Failed(answer.error())),
                html! {},
            );
        }
        self.form(signed, id, fields, &forms::values_of(fields, &answer.body), None)
    }

    fn form(
        &self,
        signed: &Signed,
        id: &str,
        fields: &[Field],
        values: &[(String, String)],
        failure: Option<&Failure>,
    ) -> Response {
        let shown = format!("{}{}", self.page, encode(id));
        let body = html! {
            p { a href=(shown) { "Back without saving" } }
            (forms::render(signed, &format!("{shown}/edit"), fields, values, failure, "Save"))
        };
        page(signed, self.nav, self.title, None, body)
    }

    /// `POST`: sends what of `sent` (the form's `values`, perhaps adjusted) differs from
    /// the stored object as the `PATCH`.
    async fn save(
        &self,
        api: &Api,
        signed: &Signed,
        id: &str,
        fields: impl Future<Output = Vec<Field>>,
        values: &[(String, String)],
        sent: &[(String, String)],
    ) -> Response {
        let object = format!("{}{}", self.api, encode(id));
        let fields = fields.await;
        let stored = api.get(signed.api(), &object).await;
        let stored = if stored.ok() {
            forms::values_of(&fields, &stored.body)
        } else {
            Vec::new()
        };
        match submit(api, signed, Method::PATCH, &object, &forms::changed(sent, &stored)).await {
            Ok(_) => Redirect::to(&format!("{}{}?done=saved", self.page, encode(id))).into_response(),
            Err(failure) => self.form(signed, id, &fields, values, Some(&failure)),
        }
    }
}

/// The form's API call: the object it made or changed, or what to show next to the form.
async fn submit(
    api: &Api,
    signed: &Signed,
    method: Method,
    api_path: &str,
    values: &[(String, String)],
) -> Result<Value, Failure> {
    let body = forms::to_json(values).map_err(|(field, message)| Failure {
        field: Some(field),
        message,
    })?;
    let answer = api.send(signed.api(), method, api_path, Some(body)).await;
    if answer.ok() {
        Ok(answer.body)
    } else {
        Err(Failure::of(&answer))
    }
}
