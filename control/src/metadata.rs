//! Clip metadata beyond what the scan reads: the custom fields admins define (text,
//! number, date, single or multiple choice, yes/no; for every production or for one
//! base production) and the review metadata every clip has (rating, colour label,
//! status, free labels). What each takes, as checks that name the field at fault.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest text value, in characters.
pub const MAX_TEXT: usize = 1000;
/// Longest display name, choice or label, in characters.
pub const MAX_NAME: usize = 100;
/// Most choices a field may offer.
pub const MAX_CHOICES: usize = 200;
/// Most free labels a clip may carry.
pub const MAX_LABELS: usize = 50;
/// Colour labels, as editing software names them.
pub const COLOUR_LABELS: [&str; 7] = ["red", "orange", "yellow", "green", "blue", "purple", "grey"];
/// Review statuses; `none` is a clip nobody has reviewed.
pub const REVIEW_STATUSES: [&str; 4] = ["none", "selected", "rejected", "approved"];

/// What values a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Number,
    Date,
    Choice,
    MultiChoice,
    Boolean,
}

impl FieldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Date => "date",
            Self::Choice => "choice",
            Self::MultiChoice => "multi_choice",
            Self::Boolean => "boolean",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        [
            Self::Text,
            Self::Number,
            Self::Date,
            Self::Choice,
            Self::MultiChoice,
            Self::Boolean,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
    }

    pub fn has_choices(self) -> bool {
        matches!(self, Self::Choice | Self::MultiChoice)
    }
}

/// What is wrong with a field name, if anything: how clips and filters name it.
pub fn name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (!starts || !rest || name.len() > 63)
        .then(|| "name: 1 to 63 lower-case letters, digits or `_`, starting with a letter".to_owned())
}

/// What is wrong with a list of choices for a field of `kind`, if anything.
pub fn choices_problem(kind: FieldKind, choices: &[String]) -> Option<String> {
    if !kind.has_choices() {
        return (!choices.is_empty()).then(|| format!("choices: a {} field has none", kind.as_str()));
    }
    if choices.is_empty() || choices.len() > MAX_CHOICES {
        return Some(format!("choices: 1 to {MAX_CHOICES} for a {} field", kind.as_str()));
    }
    if let Some(bad) = choices
        .iter()
        .find(|c| c.trim().is_empty() || c.trim() != c.as_str() || c.chars().count() > MAX_NAME)
    {
        return Some(format!(
            "choices: `{bad}`: 1 to {MAX_NAME} characters without spaces at either end"
        ));
    }
    let mut seen = std::collections::HashSet::new();
    choices
        .iter()
        .find(|c| !seen.insert(c.as_str()))
        .map(|twice| format!("choices: `{twice}` is there twice"))
}

/// A field as the clips' checks need it.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub kind: FieldKind,
    pub choices: Vec<String>,
}

impl Field {
    /// The value as stored, or why it is not one this field takes.
    pub fn value(&self, value: &Value) -> Result<Value, String> {
        let choice = |v: &Value| -> Result<String, String> {
            let text = v.as_str().ok_or_else(|| format!("one of {:?}", self.choices))?;
            if self.choices.iter().any(|c| c == text) {
                Ok(text.to_owned())
            } else {
                Err(format!("`{text}` is not one of {:?}", self.choices))
            }
        };
        match self.kind {
            FieldKind::Text => match value.as_str().map(str::trim) {
                Some(text) if text.chars().count() <= MAX_TEXT => Ok(Value::String(text.to_owned())),
                Some(_) => Err(format!("at most {MAX_TEXT} characters")),
                None => Err("text".into()),
            },
            FieldKind::Number => match value.as_f64() {
                Some(n) if n.is_finite() => Ok(value.clone()),
                _ => Err("a number".into()),
            },
            FieldKind::Date => value
                .as_str()
                .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .ok_or_else(|| "a date (YYYY-MM-DD)".into()),
            FieldKind::Boolean => value.as_bool().map(Value::Bool).ok_or_else(|| "true or false".into()),
            FieldKind::Choice => choice(value).map(Value::String),
            FieldKind::MultiChoice => {
                let items = value
                    .as_array()
                    .ok_or_else(|| format!("a list of {:?}", self.choices))?;
                let mut picked: Vec<String> = Vec::new();
                for item in items {
                    let item = choice(item)?;
                    if !picked.contains(&item) {
                        picked.push(item);
                    }
                }
                Ok(Value::from(picked))
            }
        }
    }
}

/// The free labels as stored (trimmed, each once, in the order given), or why not.
pub fn labels(labels: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > MAX_NAME || label.chars().any(char::is_control) {
            return Err(format!(
                "a label is 1 to {MAX_NAME} characters without control characters"
            ));
        }
        if !out.iter().any(|l| l == label) {
            out.push(label.to_owned());
        }
    }
    if out.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(kind: FieldKind, choices: &[&str]) -> Field {
        Field {
            name: "f".into(),
            kind,
            choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn each_kind_takes_its_values_and_refuses_the_rest() {
        let text = field(FieldKind::Text, &[]);
        assert_eq!(text.value(&json!(" Scene 12 ")), Ok(json!("Scene 12")));
        assert!(text.value(&json!(12)).is_err());
        assert!(text.value(&json!("x".repeat(MAX_TEXT + 1))).is_err());
        let number = field(FieldKind::Number, &[]);
        assert_eq!(number.value(&json!(3.5)), Ok(json!(3.5)));
        assert!(number.value(&json!("3")).is_err());
        let date = field(FieldKind::Date, &[]);
        assert_eq!(date.value(&json!("2026-12-03")), Ok(json!("2026-12-03")));
        assert!(date.value(&json!("03/12/2026")).is_err());
        let yes = field(FieldKind::Boolean, &[]);
        assert_eq!(yes.value(&json!(true)), Ok(json!(true)));
        assert!(yes.value(&json!("yes")).is_err());
        let one = field(FieldKind::Choice, &["day", "night"]);
        assert_eq!(one.value(&json!("night")), Ok(json!("night")));
        assert!(one.value(&json!("dusk")).is_err());
        let many = field(FieldKind::MultiChoice, &["a", "b", "c"]);
        assert_eq!(many.value(&json!(["b", "a", "b"])), Ok(json!(["b", "a"])));
        assert!(many.value(&json!(["a", "z"])).is_err());
        assert!(many.value(&json!("a")).is_err());
    }

    #[test]
    fn names_choices_and_labels_are_checked() {
        assert!(name_problem("scene_no").is_none());
        for bad in ["", "Scene", "1scene", "scene no", "scène", &"a".repeat(64)] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        let owned = |c: &[&str]| c.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        assert!(choices_problem(FieldKind::Choice, &owned(&["a", "b"])).is_none());
        assert!(choices_problem(FieldKind::Choice, &[]).is_some());
        assert!(choices_problem(FieldKind::Choice, &owned(&["a", "a"])).is_some());
        assert!(choices_problem(FieldKind::Choice, &owned(&[" a"])).is_some());
        assert!(choices_problem(FieldKind::Text, &owned(&["a"])).is_some());
        assert_eq!(
            labels(&owned(&[" hero ", "hero", "b-roll"])),
            Ok(owned(&["hero", "b-roll"]))
        );
        assert!(labels(&owned(&[""])).is_err());
        assert!(labels(&(0..=MAX_LABELS).map(|i| i.to_string()).collect::<Vec<_>>()).is_err());
    }
}
