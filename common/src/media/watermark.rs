//! A production's watermark: text and/or an image (the production's uploaded logo)
//! burned into the picture of every proxy made while it is set (Globaledit's visible
//! watermark). Control checks what admins ask; the worker fills the placeholders and
//! draws it.

use serde::{Deserialize, Serialize};

/// Longest watermark text, in characters, before placeholders are filled.
pub const MAX_TEXT: usize = 200;
/// Most lines a watermark may have.
pub const MAX_LINES: usize = 3;

/// Where the mark sits in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    Center,
    Top,
    Bottom,
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
}

/// The watermark as stored (`productions.watermark`) and as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// The text, with placeholders (see [`PLACEHOLDERS`]); `{{` and `}}` are braces.
    /// Empty (or absent): no text, when there is an image.
    #[serde(default)]
    pub text: String,
    #[serde(default = "Watermark::default_position")]
    pub position: Position,
    /// 0 (invisible) to 1 (opaque).
    #[serde(default = "Watermark::default_opacity")]
    pub opacity: f64,
    /// The text's height as a fraction of the picture's (0.02 to 0.25).
    #[serde(default = "Watermark::default_size")]
    pub size: f64,
    /// The production's watermark image drawn too (uploaded with
    /// `PUT /productions/{id}/watermark-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageMark>,
}

/// Where and how the production's watermark image is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageMark {
    #[serde(default = "ImageMark::default_position")]
    pub position: Position,
    /// 0 (invisible) to 1 (as the image is).
    #[serde(default = "Watermark::default_opacity")]
    pub opacity: f64,
    /// The image's height as a fraction of the picture's (0.02 to 0.5).
    #[serde(default = "ImageMark::default_size")]
    pub size: f64,
}

impl ImageMark {
    fn default_position() -> Position {
        Position::BottomRight
    }

    fn default_size() -> f64 {
        0.15
    }

    fn problem(&self) -> Option<String> {
        if !(0.0..=1.0).contains(&self.opacity) {
            return Some(format!("image.opacity: between 0 and 1, got {}", self.opacity));
        }
        if !(0.02..=0.5).contains(&self.size) {
            return Some(format!(
                "image.size: between 0.02 and 0.5 of the picture's height, got {}",
                self.size
            ));
        }
        None
    }
}

/// The placeholders a watermark's text may use, and what each becomes.
pub const PLACEHOLDERS: [(&str, &str); 6] = [
    ("production", "the production's name (\"Show Series 1\")"),
    ("base_production", "the base production's name"),
    ("series", "the series number"),
    ("friendly_name", "the production's friendly name"),
    ("clip", "the clip's file name"),
    ("date", "the day the proxy is made (YYYY-MM-DD)"),
];

/// What the placeholders stand for when a proxy is made.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub production: &'a str,
    pub base_production: &'a str,
    pub series: i32,
    pub friendly_name: &'a str,
    pub clip: &'a str,
    pub date: &'a str,
}

/// One piece of a watermark's text.
enum Piece<'a> {
    Literal(&'a str),
    Brace(char),
    Placeholder(&'a str),
}

/// Splits `text` into literals and placeholders; what is wrong with it, if anything.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        out.push(Piece::Literal(&rest[..at]));
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Brace('}'));
            rest = after;
        } else if tail.starts_with('}') {
            return Err("text: a lone `}` (write `}}` for a brace)".into());
        } else {
            let end = tail
                .find('}')
                .ok_or("text: a `{` without its `}` (write `{{` for a brace)")?;
            let name = &tail[1..end];
            if !PLACEHOLDERS.iter().any(|(known, _)| *known == name) {
                let known: Vec<String> = PLACEHOLDERS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                return Err(format!(
                    "text: unknown placeholder {{{name}}}; known: {}",
                    known.join(", ")
                ));
            }
            out.push(Piece::Placeholder(name));
            rest = &tail[end + 1..];
        }
    }
    out.push(Piece::Literal(rest));
    Ok(out)
}

impl Watermark {
    fn default_position() -> Position {
        Position::Center
    }

    fn default_opacity() -> f64 {
        0.5
    }

    fn default_size() -> f64 {
        0.06
    }

    /// What is wrong with this watermark, if anything (the API answers it as a 422).
    pub fn problem(&self) -> Option<String> {
        let text = self.text.trim();
        if let Some(problem) = self.image.as_ref().and_then(ImageMark::problem) {
            return Some(problem);
        }
        if text.is_empty() {
            return if self.image.is_some() {
                None
            } else {
                Some("text: must not be empty (or draw an image: `image`)".into())
            };
        }
        if text.chars().count() > MAX_TEXT {
            return Some(format!("text: at most {MAX_TEXT} characters"));
        }
        if text.lines().count() > MAX_LINES {
            return Some(format!("text: at most {MAX_LINES} lines"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Some("text: no control characters other than line breaks".into());
        }
        if let Err(problem) = pieces(text) {
            return Some(problem);
        }
        if !(0.0..=1.0).contains(&self.opacity) {
            return Some(format!("opacity: between 0 and 1, got {}", self.opacity));
        }
        if !(0.02..=0.25).contains(&self.size) {
            return Some(format!(
                "size: between 0.02 and 0.25 of the picture's height, got {}",
                self.size
            ));
        }
        None
    }

    /// The text with its placeholders filled (for a checked watermark).
    pub fn render(&self, values: &Values<'_>) -> String {
        let Ok(pieces) = pieces(self.text.trim()) else {
            return self.text.trim().to_owned();
        };
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Brace(brace) => out.push(brace),
                Piece::Placeholder(name) => match name {
                    "production" => out.push_str(values.production),
                    "base_production" => out.push_str(values.base_production),
                    "series" => out.push_str(&values.series.to_string()),
                    "friendly_name" => out.push_str(values.friendly_name),
                    "clip" => out.push_str(values.clip),
                    _ => out.push_str(values.date),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(text: &str) -> Watermark {
        Watermark {
            text: text.into(),
            position: Position::Center,
            opacity: 0.5,
            size: 0.06,
            image: None,
        }
    }

    #[test]
    fn placeholders_are_filled_and_braces_kept() {
        let values = Values {
            production: "Show Series 1",
            base_production: "Show",
            series: 1,
            friendly_name: "S1",
            clip: "A001.mov",
            date: "2026-12-03",
        };
        assert_eq!(
            mark("{production} · {clip} · {date} {{draft}}").render(&values),
            "Show Series 1 · A001.mov · 2026-12-03 {draft}"
        );
        assert_eq!(
            mark("{base_production} {series} {friendly_name}").render(&values),
            "Show 1 S1"
        );
    }

    #[test]
    fn bad_watermarks_say_what_is_wrong() {
        assert!(mark("CONFIDENTIAL").problem().is_none());
        for (text, says) in [
            ("", "empty"),
            ("{viewer}", "unknown placeholder {viewer}"),
            ("{production", "without its"),
            ("a } b", "lone"),
            ("a\tb", "control"),
            ("1\n2\n3\n4", "lines"),
        ] {
            let problem = mark(text).problem().unwrap_or_default();
            assert!(problem.contains(says), "{text:?}: {problem}");
        }
        assert!(mark(&"x".repeat(MAX_TEXT + 1)).problem().is_some());
        let mut faint = mark("x");
        faint.opacity = 1.5;
        assert!(faint.problem().unwrap_or_default().contains("opacity"));
        faint.opacity = 0.5;
        faint.size = 0.5;
        assert!(faint.problem().unwrap_or_default().contains("size"));

        // An image alone is a watermark; its own bounds are checked.
        let mut logo = mark("");
        logo.image = Some(ImageMark {
            position: Position::BottomRight,
            opacity: 0.8,
            size: 0.2,
        });
        assert!(logo.problem().is_none(), "{:?}", logo.problem());
        logo.image = Some(ImageMark {
            position: Position::BottomRight,
            opacity: 0.8,
            size: 0.9,
        });
        assert!(logo.problem().unwrap_or_default().contains("image.size"));
    }

    #[test]
    fn the_api_shape_reads_with_defaults_and_refuses_unknown_fields() {
        let read: Result<Watermark, _> = serde_json::from_str(r#"{"text": "BARS", "position": "top-right"}"#);
        let Ok(read) = read else { panic!("{read:?}") };
        assert_eq!(read.position, Position::TopRight);
        assert!((read.opacity - 0.5).abs() < 1e-9);
        assert!(serde_json::from_str::<Watermark>(r#"{"text": "x", "colour": "red"}"#).is_err());
        assert!(serde_json::from_str::<Watermark>(r#"{"text": "x", "position": "middle"}"#).is_err());
        let read: Result<Watermark, _> = serde_json::from_str(r#"{"image": {}}"#);
        let Ok(read) = read else { panic!("{read:?}") };
        assert_eq!(read.text, "");
        assert_eq!(read.image.as_ref().map(|i| i.position), Some(Position::BottomRight));
        assert!(serde_json::from_str::<Watermark>(r#"{"image": {"angle": 3}}"#).is_err());
    }
}
