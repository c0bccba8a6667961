//! A transcript as files people take elsewhere: SubRip (`srt`), WebVTT (`vtt`), plain
//! text with a source timecode every N seconds (`txt`), Avid ScriptSync text
//! (`scriptsync`) and a Word document (`docx`). Pure functions of the segments, so each
//! format is tested on its own.

use std::fmt::Write as _;

use rushes_common::timecode::Timecode;

/// One timed line of a transcript (seconds from the start of the media).
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub start: f64,
    pub end: f64,
    pub text: &'a str,
}

/// What a transcript is exported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Srt,
    Vtt,
    Txt,
    ScriptSync,
    Docx,
    /// Segments with their word timings (the route writes it: it needs the words).
    Json,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "srt" => Some(Self::Srt),
            "vtt" | "webvtt" => Some(Self::Vtt),
            "txt" | "text" => Some(Self::Txt),
            "scriptsync" => Some(Self::ScriptSync),
            "docx" | "word" => Some(Self::Docx),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Srt => "application/x-subrip; charset=utf-8",
            Self::Vtt => "text/vtt; charset=utf-8",
            Self::Txt | Self::ScriptSync => "text/plain; charset=utf-8",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Json => "application/json",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Srt => "srt",
            Self::Vtt => "vtt",
            Self::Txt => "txt",
            Self::ScriptSync => "scriptsync.txt",
            Self::Docx => "docx",
            Self::Json => "words.json",
        }
    }
}

/// `HH:MM:SS<sep>mmm`, as SubRip (`,`) and WebVTT (`.`) write times.
fn clock(seconds: f64, separator: char) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{separator}{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// Cue text: no blank lines (they end a cue) and, for WebVTT, no `-->`.
fn cue_text(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .replace("-->", "→")
}

/// WebVTT cue text: `&`, `<` and `>` are markup there (tags, entities) and are escaped.
fn vtt_cue_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in cue_text(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

pub fn srt(lines: &[Line<'_>]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            clock(line.start, ','),
            clock(line.end, ','),
            cue_text(line.text)
        );
    }
    out
}

/// WebVTT; with a start timecode, each cue's identifier is the source timecode it
/// starts at (else its number).
pub fn vtt(lines: &[Line<'_>], start: Option<Timecode>) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (i, line) in lines.iter().enumerate() {
        let id = match start {
            Some(tc) => tc.add_seconds(line.start).to_string(),
            None => (i + 1).to_string(),
        };
        let _ = write!(
            out,
            "{id}\n{} --> {}\n{}\n\n",
            clock(line.start, '.'),
            clock(line.end, '.'),
            vtt_cue_text(line.text)
        );
    }
    out
}

/// Where each time is shown: the source timecode when known, else the media clock.
fn stamp(seconds: f64, start: Option<Timecode>) -> String {
    match start {
        Some(tc) => tc.add_seconds(seconds).to_string(),
        None => clock(seconds, '.'),
    }
}

/// Plain text: a `[timecode]` line before the first line at or after every `every`
/// seconds (0 = before every line), then the lines as running text.
pub fn txt(title: &str, lines: &[Line<'_>], start: Option<Timecode>, every: f64) -> String {
    let mut out = format!("{title}\n");
    let mut next_mark = f64::NEG_INFINITY;
    let mut paragraph = String::new();
    for line in lines {
        if every <= 0.0 || line.start >= next_mark {
            if !paragraph.is_empty() {
                let _ = writeln!(out, "{}", paragraph.trim_end());
                paragraph.clear();
            }
            let _ = write!(out, "\n[{}]\n", stamp(line.start, start));
            next_mark = if every > 0.0 {
                (line.start / every).floor() * every + every
            } else {
                f64::INFINITY
            };
        }
        paragraph.push_str(line.text.trim());
        paragraph.push(' ');
    }
    if !paragraph.is_empty() {
        let _ = writeln!(out, "{}", paragraph.trim_end());
    }
    out
}

/// Avid ScriptSync: a plain script (CRLF line ends, no markup) with one line per
/// segment, preceded by the title; ScriptSync lines it up with the clip by its sound,
/// and the timecode of each line is kept as a tab-separated trailing field that Avid's
/// script import shows as a comment.
pub fn scriptsync(title: &str, lines: &[Line<'_>], start: Option<Timecode>) -> String {
    let mut out = format!("{}\r\n\r\n", title.replace(['\r', '\n'], " "));
    for line in lines {
        let text = line.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            continue;
        }
        let _ = write!(out, "{text}\t{}\r\n", stamp(line.start, start));
    }
    out
}

/// A Word document: the title, then one paragraph per segment, its time (the source
/// timecode when known) in grey bold, a tab, and the text.
pub fn docx(title: &str, lines: &[Line<'_>], start: Option<Timecode>) -> std::io::Result<Vec<u8>> {
    use docx_rs::{Docx, Paragraph, Run};

    // XML has no place for control characters; a tab or line break becomes a space.
    let clean = |text: &str| -> String {
        text.split(|c: char| c.is_control())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut doc =
        Docx::new().add_paragraph(Paragraph::new().add_run(Run::new().add_text(clean(title)).bold().size(32)));
    for line in lines {
        let text = clean(line.text.trim());
        if text.is_empty() {
            continue;
        }
        let time = Run::new()
            .add_text(stamp(line.start, start))
            .bold()
            .color("666666")
            .add_tab();
        doc = doc.add_paragraph(Paragraph::new().add_run(time).add_run(Run::new().add_text(text)));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    doc.pack(&mut out).map_err(std::io::Error::other)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use rushes_common::timecode::FrameRate;

    use super::*;

    fn lines() -> Vec<Line<'static>> {
        vec![
            Line {
                start: 0.0,
                end: 2.5,
                text: " Go forward ten meters.",
            },
            Line {
                start: 3.04,
                end: 5.0,
                text: "Then --> turn left.",
            },
            Line {
                start: 31.2,
                end: 3725.125,
                text: "Stop.\n\nWait.",
            },
        ]
    }

    fn ten_oclock() -> Option<Timecode> {
        Timecode::parse("10:00:00:00", FrameRate::new(25, 1)?)
    }

    #[test]
    fn srt_numbers_cues_with_comma_millis() {
        let out = srt(&lines());
        assert!(
            out.starts_with("1\n00:00:00,000 --> 00:00:02,500\nGo forward ten meters.\n\n2\n"),
            "{out}"
        );
        assert!(
            out.contains("3\n00:00:31,200 --> 01:02:05,125\nStop.\nWait.\n\n"),
            "{out}"
        );
    }

    #[test]
    fn vtt_has_header_and_no_arrows_in_text() {
        let out = vtt(&lines(), ten_oclock());
        assert!(
            out.starts_with("WEBVTT\n\n10:00:00:00\n00:00:00.000 --> 00:00:02.500\nGo forward"),
            "{out}"
        );
        assert!(vtt(&lines(), None).contains("\n\n2\n00:00:03.040 --> "));
        assert!(out.contains("Then → turn left."), "{out}");
        assert_eq!(out.matches("-->").count(), 3);
    }

    #[test]
    fn docx_holds_the_title_and_each_timed_line() {
        let bytes = docx("A001 <take 2>", &lines(), ten_oclock()).unwrap_or_else(|e| panic!("{e}"));
        assert!(bytes.starts_with(b"PK"), "a ZIP package");
        let doc = docx_rs::read_docx(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let json = doc.json();
        for wanted in [
            "A001 <take 2>",
            "10:00:00:00",
            "Go forward ten meters.",
            "10:00:31:05",
            "Stop. Wait.",
        ] {
            let quoted = serde_json::to_string(wanted).unwrap_or_default();
            assert!(json.contains(&quoted), "{wanted} missing");
        }
    }

    #[test]
    fn vtt_escapes_markup_in_cue_text() {
        let text = [Line {
            start: 0.0,
            end: 1.0,
            text: "<c.red>Fish & chips</c> -> 3 > 2",
        }];
        let out = vtt(&text, None);
        assert!(
            out.ends_with("\n&lt;c.red&gt;Fish &amp; chips&lt;/c&gt; -&gt; 3 &gt; 2\n\n"),
            "{out}"
        );
    }

    #[test]
    fn txt_stamps_every_n_seconds_in_source_timecode() {
        let out = txt("A001C001", &lines(), ten_oclock(), 30.0);
        assert_eq!(
            out,
            "A001C001\n\n[10:00:00:00]\nGo forward ten meters. Then --> turn left.\n\n[10:00:31:05]\nStop.\n\nWait.\n"
        );
        let each = txt("t", &lines(), None, 0.0);
        assert_eq!(each.matches('[').count(), 3, "{each}");
        assert!(each.contains("[00:00:03.040]"), "{each}");
    }

    #[test]
    fn scriptsync_is_one_crlf_line_per_segment() {
        let out = scriptsync("Scene 1", &lines(), ten_oclock());
        assert_eq!(
            out,
            "Scene 1\r\n\r\nGo forward ten meters.\t10:00:00:00\r\nThen --> turn left.\t10:00:03:01\r\nStop. Wait.\t10:00:31:05\r\n"
        );
    }
}
