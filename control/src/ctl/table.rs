//! Human tables: chosen fields of the API's rows, in aligned columns.

use serde_json::Value;

/// A column: its heading and the JSON pointer of its value in a row.
pub type Column = (&'static str, &'static str);

/// A value as a cell: text as it is, nothing for null, lists joined, objects as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The rows under their headings, each column as wide as its widest cell.
pub fn render(columns: &[Column], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(_, pointer)| cell(row.pointer(pointer).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (heading, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([heading.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(columns.iter().map(|(h, _)| (*h).to_owned()).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

/// One object as `field: value` lines.
pub fn fields(object: &Value) -> String {
    object
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {}", cell(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = [
            json!({ "name": "transcode", "depth": 12 }),
            json!({ "name": "scan", "depth": null }),
        ];
        assert_eq!(
            render(&[("QUEUE", "/name"), ("DEPTH", "/depth")], &rows),
            "QUEUE      DEPTH\ntranscode  12\nscan"
        );
    }
}
