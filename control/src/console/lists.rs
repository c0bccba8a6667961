//! Lists: one API list, its filters and columns, paged with the API's own cursor
//! (`before` / `next_before`) or offset, never more than a page on screen.

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::Value;

use super::api::Answer;
use super::layout::{text, time};

/// How a column shows its value.
#[derive(Clone, Copy)]
pub enum Cell {
    Text,
    /// A time, in the browser's zone.
    Time,
    /// A state, coloured by what it means.
    State,
    /// A link to `{prefix}{row id}` showing the value.
    Link(&'static str),
    /// A number in 0..=1 as a progress bar.
    Progress,
}

pub struct Column {
    pub label: &'static str,
    /// A JSON pointer into the row (`/kind`, `/target/name`).
    pub pointer: &'static str,
    pub cell: Cell,
}

pub const fn col(label: &'static str, pointer: &'static str, cell: Cell) -> Column {
    Column { label, pointer, cell }
}

/// A filter the list page takes and passes on to the API.
pub struct Filter {
    pub name: &'static str,
    pub label: &'static str,
    /// Choices (a select), or free text when empty.
    pub choices: &'static [&'static str],
}

pub const fn filter(name: &'static str, label: &'static str, choices: &'static [&'static str]) -> Filter {
    Filter { name, label, choices }
}

/// Rows per page.
pub const PAGE: usize = 50;

/// How an API list pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `before` (a row id) and `next_before` in the answer.
    Cursor,
    /// `offset`.
    Offset,
    /// One answer holds every row (at most the API's own cap): the page shows the first
    /// [`PAGE`] and says how to narrow the list.
    Whole,
}

/// The API query for a page: the filters given (non-empty), the cursor or offset, and
/// the page size.
pub fn api_query(filters: &[Filter], query: &BTreeMap<String, String>, paging: Paging) -> String {
    let mut pairs = url::form_urlencoded::Serializer::new(String::new());
    for f in filters {
        if let Some(value) = query.get(f.name).filter(|v| !v.is_empty()) {
            pairs.append_pair(f.name, value);
        }
    }
    let cursor = match paging {
        Paging::Cursor => "before",
        Paging::Offset => "offset",
        Paging::Whole => return pairs.finish(),
    };
    if let Some(value) = query.get(cursor).filter(|v| !v.is_empty()) {
        pairs.append_pair(cursor, value);
    }
    pairs.append_pair("limit", &PAGE.to_string());
    pairs.finish()
}

/// The filter form, keeping what was chosen.
pub fn filter_form(action: &str, filters: &[Filter], query: &BTreeMap<String, String>) -> Markup {
    if filters.is_empty() {
        return html! {};
    }
    html! {
        form.filters method="get" action=(action) role="search" {
            @for f in filters {
                @let current = query.get(f.name).map(String::as_str).unwrap_or("");
                label {
                    (f.label)
                    @if f.choices.is_empty() {
                        input type="text" name=(f.name) value=(current);
                    } @else {
                        select name=(f.name) {
                            option value="" selected[current.is_empty()] { "any" }
                            @for choice in f.choices {
                                option value=(choice) selected[current == *choice] { (choice) }
                            }
                        }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

/// A table of rows; `actions` adds a last column per row.
pub fn table(columns: &[Column], rows: &[Value], actions: Option<&(dyn Fn(&Value) -> Markup + Sync)>) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead {
                    tr {
                        @for c in columns { th scope="col" { (c.label) } }
                        @if actions.is_some() { th scope="col" { "Actions" } }
                    }
                }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan=(columns.len() + usize::from(actions.is_some())) { "Nothing here." } }
                    }
                    @for row in rows {
                        tr {
                            @for c in columns {
                                @let value = row.pointer(c.pointer).unwrap_or(&Value::Null);
                                td.wrap { (cell(c.cell, value, row)) }
                            }
                            @if let Some(actions) = actions { td { (actions(row)) } }
                        }
                    }
                }
            }
        }
    }
}

fn cell(kind: Cell, value: &Value, row: &Value) -> Markup {
    match kind {
        Cell::Text => html! { (text(value)) },
        Cell::Time => time(value),
        Cell::State => {
            let state = text(value);
            html! { span class={ "state-" (state) } { (state) } }
        }
        Cell::Link(prefix) => {
            let id = row["id"].as_str().unwrap_or("");
            html! { a href={ (prefix) (id) } { (text(value)) } }
        }
        Cell::Progress => {
            let p = value.as_f64().unwrap_or(0.0);
            html! { progress max="1" value=(p) { (format!("{:.0} %", p * 100.0)) } }
        }
    }
}

/// Links to the newest page and the next one.
pub fn pager(action: &str, query: &BTreeMap<String, String>, answer: &Answer, rows: usize, paging: Paging) -> Markup {
    let next = match paging {
        Paging::Offset => {
            let offset: usize = query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
            (rows == PAGE).then(|| ("offset", (offset + PAGE).to_string()))
        }
        Paging::Cursor => answer.body["next_before"].as_str().map(|c| ("before", c.to_owned())),
        Paging::Whole if rows > PAGE => {
            return html! { p { "Showing the first " (PAGE) " of " (rows) "; filter to narrow the list." } };
        }
        Paging::Whole => None,
    };
    let link = |cursor: Option<(&str, String)>| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            if k != "before" && k != "offset" && !v.is_empty() {
                pairs.append_pair(k, v);
            }
        }
        if let Some((k, v)) = cursor {
            pairs.append_pair(k, &v);
        }
        format!("{action}?{}", pairs.finish())
    };
    let paged = query.contains_key("before") || query.contains_key("offset");
    html! {
        nav.pager aria-label="Pages" {
            @if paged { a href=(link(None)) { "← First page" } }
            @if let Some(cursor) = next { a href=(link(Some(cursor))) { "Next page →" } }
        }
    }
}
