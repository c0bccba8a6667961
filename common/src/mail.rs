//! The mails Rushes sends, rendered from templates into a subject, a plain-text body
//! and an HTML body. Every sender enqueues an `email` job with one of these.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A cheap shape check (one `@`, something either side, no spaces); SMTP has the last word.
pub fn looks_like_address(address: &str) -> bool {
    let address = address.trim();
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What a scan found, for the production owner.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary<'a> {
    pub production: &'a str,
    pub new_clips: u64,
    pub changed_clips: u64,
    pub missing_clips: u64,
    /// Some of the new clips' paths (the mail lists at most these).
    pub examples: &'a [String],
    /// Files that look like media but cannot be read, found by this scan.
    pub broken_files: u64,
    /// Some of them: path and reason (the mail lists at most these).
    pub broken: &'a [(String, String)],
    /// The production's page (see [`production_page`]): opens in a browser, no token.
    pub link: &'a str,
}

/// Lists at most this many clip names in a scan summary.
pub const SCAN_SUMMARY_EXAMPLES: usize = 20;
/// Lists at most this many broken files in a scan summary.
pub const SCAN_SUMMARY_BROKEN: usize = 20;

/// The page of a production the control plane serves at `public_url`, opened in a browser
/// without a token (mails link here, never to a bearer-token API route).
pub fn production_page(public_url: &str, production_id: uuid::Uuid) -> String {
    format!("{}/productions/{production_id}", public_url.trim_end_matches('/'))
}

/// The page of a transcript, as [`production_page`].
pub fn transcript_page(public_url: &str, transcript_id: uuid::Uuid) -> String {
    format!("{}/transcripts/{transcript_id}", public_url.trim_end_matches('/'))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn scan_summary(summary: &ScanSummary<'_>) -> Mail {
    let mut found = Vec::new();
    if summary.new_clips > 0 || summary.broken_files == 0 {
        found.push(plural(summary.new_clips, "new clip", "new clips"));
    }
    if summary.broken_files > 0 {
        found.push(plural(summary.broken_files, "broken file", "broken files"));
    }
    let subject = format!("{}: {}", summary.production, found.join(", "));
    let mut text = format!(
        "A scan of {} found {} new, {} changed and {} missing clips.\n",
        summary.production, summary.new_clips, summary.changed_clips, summary.missing_clips
    );
    let mut html = format!(
        "<p>A scan of <b>{}</b> found {} new, {} changed and {} missing clips.</p>",
        escape_html(summary.production),
        summary.new_clips,
        summary.changed_clips,
        summary.missing_clips
    );
    if summary.new_clips > 0 {
        text.push('\n');
        let mut items = String::new();
        for path in summary.examples.iter().take(SCAN_SUMMARY_EXAMPLES) {
            let _ = writeln!(text, "  {path}");
            let _ = write!(items, "<li>{}</li>", escape_html(path));
        }
        let more = summary.new_clips.saturating_sub(summary.examples.len() as u64);
        if more > 0 {
            let _ = writeln!(text, "  … and {more} more");
            let _ = write!(items, "<li>… and {more} more</li>");
        }
        text.push_str("\nThey are being transcoded now.\n");
        let _ = write!(html, "<ul>{items}</ul><p>They are being transcoded now.</p>");
    }
    if summary.broken_files > 0 {
        let intro = format!(
            "{} like media but cannot be read (skipped until {} change):",
            plural(summary.broken_files, "file looks", "files look"),
            if summary.broken_files == 1 { "it" } else { "they" }
        );
        let _ = write!(text, "\n{intro}\n");
        let mut items = String::new();
        for (path, reason) in summary.broken.iter().take(SCAN_SUMMARY_BROKEN) {
            let _ = writeln!(text, "  {path}: {reason}");
            let _ = write!(items, "<li>{}: {}</li>", escape_html(path), escape_html(reason));
        }
        let more = summary.broken_files.saturating_sub(summary.broken.len() as u64);
        if more > 0 {
            let _ = writeln!(text, "  … and {more} more");
            let _ = write!(items, "<li>… and {more} more</li>");
        }
        let _ = write!(html, "<p>{}</p><ul>{items}</ul>", escape_html(&intro));
    }
    let _ = write!(text, "\nThe production: {}\n", summary.link);
    let _ = write!(
        html,
        "<p>The production: <a href=\"{link}\">{link}</a></p>",
        link = escape_html(summary.link)
    );
    Mail { subject, text, html }
}

/// Plain text of (sanitised) HTML: tags dropped, block ends as line breaks, entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut tag = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "p" | "br" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4"
                ) {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    // Paragraphs stay apart by one blank line, never more.
    let mut text = String::with_capacity(decoded.len());
    let mut blank = 0;
    for line in decoded.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        text.push_str(line);
        blank = 0;
    }
    text
}

/// An admin mail-out: the draft's (already sanitised) HTML in the common frame.
pub fn announcement(subject: &str, html: &str) -> Mail {
    Mail {
        subject: subject.to_owned(),
        text: html_to_text(html),
        html: format!("<div style=\"font-family: sans-serif\">{html}</div>"),
    }
}

/// A new local account, for its owner (never with the password).
pub fn account_created(username: &str, email: &str, login_url: &str) -> Mail {
    Mail {
        subject: "Your Rushes account".to_owned(),
        text: format!(
            "An account was created for you on Rushes.\n\nUsername: {username}\nEmail: {email}\n\n\
             Sign in at {login_url} with the password your administrator gave you.\n"
        ),
        html: format!(
            "<p>An account was created for you on Rushes.</p><p>Username: <b>{}</b><br>Email: {}</p>\
             <p>Sign in at <a href=\"{url}\">{url}</a> with the password your administrator gave you.</p>",
            escape_html(username),
            escape_html(email),
            url = escape_html(login_url),
        ),
    }
}

/// A password reset link (single use, expiring).
pub fn password_reset(username: &str, link: &str, valid_minutes: i64) -> Mail {
    Mail {
        subject: "Reset your Rushes password".to_owned(),
        text: format!(
            "Someone asked to reset the password of {username}.\n\nSet a new one at {link}\n\
             The link works once, within {valid_minutes} minutes. If this was not you, ignore this mail.\n"
        ),
        html: format!(
            "<p>Someone asked to reset the password of <b>{}</b>.</p><p><a href=\"{link}\">Set a new password</a></p>\
             <p>The link works once, within {valid_minutes} minutes. If this was not you, ignore this mail.</p>",
            escape_html(username),
            link = escape_html(link),
        ),
    }
}

/// A finished transcript, for whoever asked for it.
pub fn transcript_ready(name: &str, segments: usize, duration_s: f64, link: &str) -> Mail {
    let minutes = duration_s / 60.0;
    Mail {
        subject: format!("Transcript ready: {name}"),
        text: format!(
            "The transcript of {name} ({minutes:.1} min, {segments} segments) is ready.\n\nRead or export it at {link}\n"
        ),
        html: format!(
            "<p>The transcript of <b>{}</b> ({minutes:.1} min, {segments} segments) is ready.</p>\
             <p><a href=\"{link}\">Read or export it</a></p>",
            escape_html(name),
            link = escape_html(link),
        ),
    }
}

/// An invitation to join Rushes.
pub fn invitation(inviter: &str, link: &str, valid_days: i64) -> Mail {
    Mail {
        subject: "You are invited to Rushes".to_owned(),
        text: format!(
            "{inviter} invited you to Rushes.\n\nAccept at {link}\nThe invitation is valid for {valid_days} days.\n"
        ),
        html: format!(
            "<p>{} invited you to Rushes.</p><p><a href=\"{link}\">Accept the invitation</a></p>\
             <p>It is valid for {valid_days} days.</p>",
            escape_html(inviter),
            link = escape_html(link),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_shape_checked() {
        assert!(looks_like_address("owner@example.com"));
        for bad in ["", "owner", "@example.com", "owner@", "a b@example.com", "a@b@c"] {
            assert!(!looks_like_address(bad), "{bad}");
        }
    }

    #[test]
    fn html_becomes_readable_text() {
        let text = html_to_text("<p>Hello <b>crew</b> &amp; cast</p><p>Wrap at 6</p><img src=\"x.png\">");
        assert_eq!(text, "Hello crew & cast\n\nWrap at 6");
        assert_eq!(html_to_text("one<br>two"), "one\ntwo");
    }

    #[test]
    fn scan_summary_escapes_and_counts() {
        let examples = vec!["A001/<clip>.mov".to_owned()];
        let mail = scan_summary(&ScanSummary {
            production: "Show & Tell",
            new_clips: 3,
            examples: &examples,
            link: "http://rushes/p",
            ..ScanSummary::default()
        });
        assert_eq!(mail.subject, "Show & Tell: 3 new clips");
        assert!(mail.html.contains("Show &amp; Tell"));
        assert!(mail.html.contains("A001/&lt;clip&gt;.mov"));
        assert!(mail.text.contains("and 2 more"));
        assert!(!mail.text.contains("broken"), "{}", mail.text);
    }

    #[test]
    fn scan_summary_names_broken_files_with_their_reasons() {
        let broken = vec![("B001/B001C099.mov".to_owned(), "moov atom <not> found".to_owned())];
        let mail = scan_summary(&ScanSummary {
            production: "Show",
            broken_files: 2,
            broken: &broken,
            link: "http://rushes/productions/1",
            ..ScanSummary::default()
        });
        assert_eq!(mail.subject, "Show: 2 broken files");
        assert!(
            mail.text.contains("B001/B001C099.mov: moov atom <not> found"),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("and 1 more"), "{}", mail.text);
        assert!(!mail.text.contains("transcoded"), "{}", mail.text);
        assert!(mail.html.contains("moov atom &lt;not&gt; found"), "{}", mail.html);
        let both = scan_summary(&ScanSummary {
            production: "Show",
            new_clips: 1,
            broken_files: 1,
            broken: &broken,
            link: "http://rushes/productions/1",
            ..ScanSummary::default()
        });
        assert_eq!(both.subject, "Show: 1 new clip, 1 broken file");
    }

    #[test]
    fn mail_links_are_pages_not_api_routes() {
        let id = uuid::Uuid::nil();
        let page = production_page("http://rushes.example/", id);
        assert_eq!(page, format!("http://rushes.example/productions/{id}"));
        assert!(!transcript_page("http://rushes.example", id).contains("/api/"));
    }
}
