//! Forms: a submitted form becomes the JSON body of one API call. Field names are the
//! API's (`cron.expr` nests), with a type suffix where the value is not text
//! (`priority:int`, `payload:json`, `enabled:bool`, `ids:many` for boxes ticked in a
//! list); empty fields are left out. An
//! error the API gives is shown next to the field it names.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::api::{Answer, Api};
use super::layout::csrf;
use super::{Signed, Visitor, checked, csrf_refused, local};

/// Fields that are never sent on: the form's own.
const OWN: [&str; 3] = [super::session::CSRF_FIELD, "_back", "_method"];

/// A form's fields as the JSON body of its API call; `Err((field, message))` when a
/// value cannot be read as its type.
pub fn to_json(fields: &[(String, String)]) -> Result<Value, (String, String)> {
    let mut body = Map::new();
    for (name, raw) in fields {
        if OWN.contains(&name.as_str()) || raw.trim().is_empty() {
            continue;
        }
        let (path, kind) = name.split_once(':').unwrap_or((name.as_str(), "text"));
        let value = match kind {
            "int" => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| (path.to_owned(), format!("{path}: a whole number, got `{raw}`")))?,
            "json" => {
                serde_json::from_str(raw).map_err(|e| (path.to_owned(), format!("{path}: not valid JSON ({e})")))?
            }
            "bool" => Value::Bool(matches!(raw.as_str(), "on" | "true" | "1" | "yes")),
            "list" => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            // Each ticked box of the name adds its value (clips chosen in a list).
            "many" => {
                let mut items = match lookup(&body, path) {
                    Some(Value::Array(items)) => items.clone(),
                    _ => Vec::new(),
                };
                items.push(Value::String(raw.clone()));
                Value::Array(items)
            }
            _ => Value::String(raw.clone()),
        };
        insert(&mut body, path, value);
    }
    Ok(Value::Object(body))
}

/// The value at a dotted `path` of `map`, if there is one.
fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        Some((head, rest)) => lookup(map.get(head)?.as_object()?, rest),
        None => map.get(path),
    }
}

/// The values an edit form sends: the last value of each name (a ticked box's `on`
/// after its hidden `off`), left out where it is what `stored` (the object's values,
/// [`values_of`]) already holds — a `PATCH` of what changed, so an unchanged field the
/// API would check again (a folder no longer mounted, a time now past) does not fail it.
pub fn changed(sent: &[(String, String)], stored: &[(String, String)]) -> Vec<(String, String)> {
    let mut last: Vec<(String, String)> = Vec::new();
    for (name, value) in sent {
        match last.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => last.push((name.clone(), value.clone())),
        }
    }
    last.retain(|pair| OWN.contains(&pair.0.as_str()) || !stored.contains(pair));
    last
}

fn insert(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        Some((head, rest)) => {
            let entry = map.entry(head.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                insert(inner, rest, value);
            }
        }
        None => {
            map.insert(path.to_owned(), value);
        }
    }
}

/// `POST /do/{api path}`: one button's action (pause a queue, cancel a job, scan a
/// production…) — the API call with the form's fields, then back to the page it came
/// from with what happened. `_method=DELETE` deletes.
pub async fn act(
    Extension(api): Extension<Api>,
    visitor: Visitor,
    Path(path): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fields) = checked(&visitor, &headers, &body) else {
        return csrf_refused();
    };
    let back = fields
        .iter()
        .find(|(k, _)| k == "_back")
        .map_or("/", |(_, v)| local(v))
        .to_owned();
    let method = match fields.iter().find(|(k, _)| k == "_method").map(|(_, v)| v.as_str()) {
        Some("DELETE") => Method::DELETE,
        Some("PATCH") => Method::PATCH,
        _ => Method::POST,
    };
    let outcome = match to_json(&fields) {
        Ok(json) => {
            let body = (method != Method::DELETE).then_some(json);
            // The action's own query goes on to the API (a role's scope when taking it away).
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            let answer = api
                .send(&visitor.caller, method, &format!("/{path}{query}"), body)
                .await;
            if answer.ok() {
                Ok(format!("Done: {}", describe(&path)))
            } else {
                Err(answer.error())
            }
        }
        Err((_, message)) => Err(message),
    };
    let (key, message) = match outcome {
        Ok(done) => ("done", done),
        Err(failed) => ("failed", failed),
    };
    let separator = if back.contains('?') { '&' } else { '?' };
    let message: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    Redirect::to(&format!("{back}{separator}{key}={message}")).into_response()
}

/// `queues/transcode/pause` → `pause queues/transcode`.
fn describe(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((what, verb)) if verb.chars().all(|c| c.is_ascii_lowercase() || c == '-') => {
            format!("{} {what}", verb.replace('-', " "))
        }
        _ => path.to_owned(),
    }
}

/// A control of a form.
pub enum Input {
    Text,
    Number,
    /// JSON text.
    Json,
    /// Longer free text.
    Area,
    Check,
    /// A secret: typed, sent, never shown again.
    Password,
    /// A choice among fixed values.
    Choice(Vec<String>),
    /// Free text with suggestions.
    Suggest(Vec<String>),
}

pub struct Field {
    /// The API field (with its type suffix: `priority:int`).
    pub name: &'static str,
    pub label: &'static str,
    pub input: Input,
    pub help: Option<&'static str>,
    pub required: bool,
}

pub fn field(name: &'static str, label: &'static str, input: Input) -> Field {
    Field {
        name,
        label,
        input,
        help: None,
        required: false,
    }
}

impl Field {
    pub fn help(mut self, help: &'static str) -> Self {
        self.help = Some(help);
        self
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The API's name for it (`cron.expr`), without the type suffix.
    fn api_name(&self) -> &'static str {
        self.name.split_once(':').map_or(self.name, |(n, _)| n)
    }

    fn id(&self) -> String {
        format!("f-{}", self.api_name().replace('.', "-"))
    }
}

/// The form values that show `object` in `fields` (an edit form filled with what is stored).
pub fn values_of(fields: &[Field], object: &Value) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|f| {
            let value = object.pointer(&format!("/{}", f.api_name().replace('.', "/")))?;
            let shown = match (f.name.split_once(':').map(|(_, kind)| kind), value) {
                (_, Value::Null) => return None,
                (Some("bool"), v) => if v.as_bool() == Some(true) { "on" } else { "off" }.to_owned(),
                (Some("json"), v) => serde_json::to_string_pretty(v).unwrap_or_default(),
                (Some("list"), Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(", "),
                (_, Value::String(s)) => s.clone(),
                (_, v) => v.to_string(),
            };
            Some((f.name.to_owned(), shown))
        })
        .collect()
}

/// What a failed submit brings back to the form.
pub struct Failure {
    /// The field the error names, when the form has it.
    pub field: Option<String>,
    pub message: String,
}

impl Failure {
    pub fn of(answer: &Answer) -> Self {
        Self {
            field: answer.field(),
            message: answer.error(),
        }
    }
}

/// A form posting back to `action`, filled with `values`, with the error next to its
/// field (or above the form when it names none of them).
pub fn render(
    signed: &Signed,
    action: &str,
    fields: &[Field],
    values: &[(String, String)],
    failure: Option<&Failure>,
    submit: &str,
) -> Markup {
    // The last value of a name counts (a ticked box's `on` follows its hidden `off`).
    let value_of = |name: &str| {
        values
            .iter()
            .rfind(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let names_field = |f: &Field| {
        failure.and_then(|fail| fail.field.as_deref()).is_some_and(|named| {
            named == f.api_name()
                || named.split('.').next() == Some(f.api_name())
                || f.api_name().starts_with(&format!("{named}."))
        })
    };
    let placed = fields.iter().any(&names_field);
    html! {
        form.edit method="post" action=(action) novalidate {
            (csrf(signed))
            @if let Some(fail) = failure.filter(|_| !placed) {
                p.alert role="alert" { (fail.message) }
            }
            @for f in fields {
                @let id = f.id();
                @let value = value_of(f.name);
                @let error_id = format!("{id}-error");
                @let has_error = names_field(f);
                @match &f.input {
                    Input::Check => {
                        // Unticked, a box sends nothing: the hidden `off` before it says so.
                        input type="hidden" name=(f.name) value="off";
                        label.check for=(id) {
                            input type="checkbox" id=(id) name=(f.name) checked[value == "on" || value == "true"];
                            (f.label)
                        }
                    }
                    _ => {
                        label for=(id) {
                            (f.label)
                            @match &f.input {
                                Input::Text => {
                                    input type="text" id=(id) name=(f.name) value=(value) required[f.required] aria-invalid=[has_error.then_some("true")] aria-describedby=[has_error.then_some(error_id.as_str())];
                                }
                                Input::Number => {
                                    input type="number" step="any" id=(id) name=(f.name) value=(value) required[f.required] aria-invalid=[has_error.then_some("true")] aria-describedby=[has_error.then_some(error_id.as_str())];
                                }
                                Input::Password => {
                                    input type="password" id=(id) name=(f.name) autocomplete="new-password" required[f.required] aria-invalid=[has_error.then_some("true")] aria-describedby=[has_error.then_some(error_id.as_str())];
                                }
                                Input::Json | Input::Area => {
                                    textarea id=(id) name=(f.name) aria-invalid=[has_error.then_some("true")] aria-describedby=[has_error.then_some(error_id.as_str())] { (value) }
                                }
                                Input::Choice(choices) => {
                                    select id=(id) name=(f.name) {
                                        @if !f.required { option value="" { "–" } }
                                        @for c in choices { option value=(c) selected[*c == value] { (c) } }
                                    }
                                }
                                Input::Suggest(choices) => {
                                    @let list = format!("{id}-list");
                                    input type="text" id=(id) name=(f.name) value=(value) list=(list) aria-invalid=[has_error.then_some("true")] aria-describedby=[has_error.then_some(error_id.as_str())];
                                    datalist id=(list) { @for c in choices { option value=(c) {} } }
                                }
                                Input::Check => {}
                            }
                        }
                    }
                }
                @if let Some(help) = f.help { small { (help) } }
                @if has_error {
                    @if let Some(fail) = failure {
                        span.error id=(error_id) role="alert" { (fail.message) }
                    }
                }
            }
            div { button type="submit" { (submit) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn forms_become_the_api_body() {
        let body = to_json(&pairs(&[
            ("_csrf", "x"),
            ("name", "nightly"),
            ("cron.expr", "0 3 * * *"),
            ("cron.timezone", "Europe/London"),
            ("priority:int", "40"),
            ("payload:json", "{\"seconds\": 1}"),
            ("enabled:bool", "on"),
            ("description", ""),
        ]))
        .unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({
                "name": "nightly",
                "cron": { "expr": "0 3 * * *", "timezone": "Europe/London" },
                "priority": 40,
                "payload": { "seconds": 1 },
                "enabled": true,
            })
        );
    }

    #[test]
    fn stored_objects_fill_their_edit_forms() {
        let fields = [
            field("name", "Name", Input::Text),
            field("cron.expr", "Cron", Input::Text),
            field("priority:int", "Priority", Input::Number),
            field("payload:json", "Payload", Input::Json),
            field("enabled:bool", "Enabled", Input::Check),
            field("tags:list", "Tags", Input::Text),
            field("clocked.at", "At", Input::Text),
        ];
        let stored = serde_json::json!({
            "name": "nightly",
            "cron": { "expr": "0 3 * * *" },
            "priority": 40,
            "payload": { "seconds": 1 },
            "enabled": false,
            "tags": ["a", "b"],
            "clocked": null,
        });
        let values = values_of(&fields, &stored);
        assert_eq!(
            values,
            pairs(&[
                ("name", "nightly"),
                ("cron.expr", "0 3 * * *"),
                ("priority:int", "40"),
                ("payload:json", "{\n  \"seconds\": 1\n}"),
                ("enabled:bool", "off"),
                ("tags:list", "a, b"),
            ])
        );
        // …and sent back unchanged, they are the same object.
        let sent = to_json(&values).unwrap_or_default();
        assert_eq!(sent["payload"], stored["payload"]);
        assert_eq!(sent["enabled"], false);
        assert_eq!(sent["tags"], stored["tags"]);
    }

    #[test]
    fn boxes_ticked_in_a_list_become_one_array() {
        let body = to_json(&pairs(&[("ids:many", "a"), ("card", "A001"), ("ids:many", "b")])).unwrap_or_default();
        assert_eq!(body, serde_json::json!({ "ids": ["a", "b"], "card": "A001" }));
        let nested = to_json(&pairs(&[("to.ids:many", "a"), ("to.ids:many", "b")])).unwrap_or_default();
        assert_eq!(nested, serde_json::json!({ "to": { "ids": ["a", "b"] } }));
    }

    #[test]
    fn an_edit_sends_only_what_changed() {
        let stored = pairs(&[
            ("path", "/srv/a"),
            ("priority:int", "50"),
            ("active:bool", "on"),
            ("archived:bool", "off"),
        ]);
        let sent = pairs(&[
            ("_csrf", "t"),
            ("path", "/srv/a"),
            ("priority:int", "70"),
            ("active:bool", "off"),
            ("active:bool", "on"),
            ("archived:bool", "off"),
            ("archived:bool", "on"),
        ]);
        assert_eq!(
            changed(&sent, &stored),
            pairs(&[("_csrf", "t"), ("priority:int", "70"), ("archived:bool", "on")])
        );
    }

    #[test]
    fn an_unticked_box_says_off_and_a_ticked_one_on() {
        // The hidden `off` comes first; a ticked box's `on` after it wins.
        let unticked = to_json(&pairs(&[("enabled:bool", "off")])).unwrap_or_default();
        let ticked = to_json(&pairs(&[("enabled:bool", "off"), ("enabled:bool", "on")])).unwrap_or_default();
        assert_eq!(unticked["enabled"], false);
        assert_eq!(ticked["enabled"], true);
    }

    #[test]
    fn unreadable_values_name_their_field() {
        assert_eq!(
            to_json(&pairs(&[("priority:int", "high")])).err().map(|(f, _)| f),
            Some("priority".to_owned())
        );
        assert_eq!(
            to_json(&pairs(&[("payload:json", "{")])).err().map(|(f, _)| f),
            Some("payload".to_owned())
        );
    }

    #[test]
    fn actions_are_described_by_their_verb() {
        assert_eq!(describe("queues/transcode/pause"), "pause queues/transcode");
    }
}
