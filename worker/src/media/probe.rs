//! What a file is: a cheap look at its first bytes (is it worth probing?), then ffprobe
//! for the facts a clip records (duration, frame rate, timecode, audio tracks).

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::formats::{self, MAX_AUDIO_TRACKS};

/// Longest ffprobe may take over one file.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Extensions cameras and recorders write: a hint that a file is worth probing.
const MEDIA_EXTENSIONS: [&str; 24] = [
    "mov", "mp4", "m4v", "mxf", "mts", "m2ts", "ts", "mkv", "webm", "avi", "mpg", "mpeg", "braw", "r3d", "crm", "dv",
    "wav", "bwf", "aif", "aiff", "mp3", "m4a", "aac", "flac",
];

/// Whether a file deserves an ffprobe: a media extension, or media magic in its first bytes.
pub fn worth_probing(path: &Path) -> bool {
    let hinted = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MEDIA_EXTENSIONS.iter().any(|m| m.eq_ignore_ascii_case(e)));
    hinted || has_media_magic(path)
}

fn has_media_magic(path: &Path) -> bool {
    let mut head = [0u8; 400];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = 0;
    while len < head.len() {
        match file.read(&mut head[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    magic_says_media(&head[..len])
}

/// Container signatures of the formats rushes come in.
pub fn magic_says_media(head: &[u8]) -> bool {
    let at = |offset: usize, sig: &[u8]| head.get(offset..offset + sig.len()) == Some(sig);
    let quicktime = [b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"]
        .iter()
        .any(|atom| at(4, *atom));
    let riff = at(0, b"RIFF") && (at(8, b"WAVE") || at(8, b"AVI "));
    let transport = (at(0, &[0x47]) && at(188, &[0x47])) || (at(4, &[0x47]) && at(196, &[0x47]));
    quicktime
        || riff
        || transport
        || at(0, &[0x06, 0x0e, 0x2b, 0x34]) // MXF
        || at(0, &[0x1a, 0x45, 0xdf, 0xa3]) // Matroska / WebM
        || at(0, &[0x00, 0x00, 0x01, 0xba]) // MPEG program stream
        || at(0, b"ID3")
        || at(0, b"fLaC")
        || at(0, b"OggS")
        || (at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")))
        || at(4, b"RED1")
        || at(4, b"RED2")
}

/// The facts a scan records about a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub container: String,
    pub duration_s: Option<f64>,
    pub video: Option<VideoInfo>,
    pub audio: Vec<AudioTrack>,
    /// `HH:MM:SS:FF` (`;` before the frames when drop-frame).
    pub start_timecode: Option<String>,
    pub created_on: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub codec: String,
    pub width: i32,
    pub height: i32,
    pub frame_rate: Option<(i32, i32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioTrack {
    pub codec: String,
    pub channels: i32,
}

impl MediaInfo {
    pub fn frame_rate_f64(&self) -> Option<f64> {
        let (num, den) = self.video.as_ref()?.frame_rate?;
        (den > 0).then(|| f64::from(num) / f64::from(den))
    }

    /// Seconds since midnight of the first frame, from the start timecode.
    pub fn timecode_start_s(&self) -> Option<f64> {
        timecode_seconds(self.start_timecode.as_deref()?, self.frame_rate_f64()?)
    }
}

/// `HH:MM:SS:FF` (or `;`/`.` before the frames) at `fps` → seconds since midnight.
pub fn timecode_seconds(timecode: &str, fps: f64) -> Option<f64> {
    let parts: Vec<&str> = timecode.split([':', ';', '.']).collect();
    let [h, m, s, f] = parts.as_slice() else {
        return None;
    };
    let n = |v: &str| v.parse::<u32>().ok();
    let (h, m, s, f) = (n(h)?, n(m)?, n(s)?, n(f)?);
    if m >= 60 || s >= 60 || fps <= 0.0 {
        return None;
    }
    Some(f64::from(h * 3600 + m * 60 + s) + f64::from(f) / fps.round().max(1.0))
}

/// Why a file is not a clip, or why it could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The file is not usable media; the text says why (ffprobe's words where it had some).
    #[error("{0}")]
    NotMedia(String),
    /// The file is media Rushes refuses to read: a container format off the allowlist
    /// (a playlist, say) or more audio tracks than accepted. The text says which.
    #[error("{0}")]
    Refused(String),
    /// ffprobe itself could not run: worth trying again.
    #[error("cannot run ffprobe: {0}")]
    Tool(String),
}

/// Runs ffprobe over `path`, reading only the container formats of the allowlist.
pub async fn probe(ffprobe: &Path, path: &Path) -> Result<MediaInfo, ProbeError> {
    let mut command = tokio::process::Command::new(ffprobe);
    command
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .args(formats::input_args(path))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(PROBE_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(err)) => return Err(ProbeError::Tool(err.to_string())),
        Err(_) => {
            return Err(ProbeError::NotMedia(format!(
                "ffprobe gave no answer within {PROBE_TIMEOUT:?}"
            )));
        }
    };
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        if let Some(format) = formats::refused_in(reason.lines()) {
            return Err(ProbeError::Refused(formats::refusal(&format)));
        }
        let reason = reason.lines().last().unwrap_or("ffprobe failed").trim();
        return Err(ProbeError::NotMedia(strip_context(reason).to_owned()));
    }
    parse(&output.stdout)
}

/// `file:/a/b.mov: Invalid data found` → `Invalid data found`.
fn strip_context(line: &str) -> &str {
    match line.rsplit_once(": ") {
        Some((_, reason)) if !reason.is_empty() => reason,
        _ => line,
    }
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<i32>,
    height: Option<i32>,
    channels: Option<i32>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: i32,
}

#[derive(Deserialize, Default)]
struct Tags {
    timecode: Option<String>,
    creation_time: Option<String>,
}

#[derive(Deserialize)]
struct Format {
    format_name: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: Tags,
}

/// Turns ffprobe's JSON into [`MediaInfo`], refusing images and streamless files.
pub fn parse(json: &[u8]) -> Result<MediaInfo, ProbeError> {
    let report: Report =
        serde_json::from_slice(json).map_err(|e| ProbeError::NotMedia(format!("unreadable ffprobe output: {e}")))?;
    let format = report
        .format
        .ok_or_else(|| ProbeError::NotMedia("ffprobe found no container".into()))?;
    let container = format.format_name.unwrap_or_default();
    // ffprobe ran with the allowlist; this holds whoever made the report.
    if !formats::is_allowed(&container) {
        return Err(ProbeError::Refused(formats::refusal(&container)));
    }
    let kind = |s: &Stream, k: &str| s.codec_type.as_deref() == Some(k);
    let video = report
        .streams
        .iter()
        .find(|s| kind(s, "video") && s.disposition.attached_pic == 0);
    let audio: Vec<AudioTrack> = report
        .streams
        .iter()
        .filter(|s| kind(s, "audio"))
        .map(|s| AudioTrack {
            codec: s.codec_name.clone().unwrap_or_default(),
            channels: s.channels.unwrap_or(0),
        })
        .collect();
    if video.is_none() && audio.is_empty() {
        return Err(ProbeError::NotMedia("no audio or video streams".into()));
    }
    if audio.len() > MAX_AUDIO_TRACKS {
        return Err(ProbeError::Refused(formats::too_many_tracks(audio.len())));
    }
    let seconds = |v: &Option<String>| {
        v.as_deref()
            .and_then(|d| d.parse::<f64>().ok())
            .filter(|d| d.is_finite())
    };
    let duration_s = seconds(&format.duration).or_else(|| {
        report
            .streams
            .iter()
            .filter_map(|s| seconds(&s.duration))
            .reduce(f64::max)
    });
    let start_timecode = video
        .and_then(|v| v.tags.timecode.clone())
        .or_else(|| report.streams.iter().find_map(|s| s.tags.timecode.clone()))
        .or(format.tags.timecode);
    let created_on = format
        .tags
        .creation_time
        .or_else(|| report.streams.iter().find_map(|s| s.tags.creation_time.clone()))
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let video = video.map(|v| VideoInfo {
        codec: v.codec_name.clone().unwrap_or_default(),
        width: v.width.unwrap_or(0),
        height: v.height.unwrap_or(0),
        frame_rate: rational(v.r_frame_rate.as_deref()).or_else(|| rational(v.avg_frame_rate.as_deref())),
    });
    Ok(MediaInfo {
        container,
        duration_s,
        video,
        audio,
        start_timecode,
        created_on,
    })
}

/// `"30000/1001"` → `(30000, 1001)`; zero or malformed → `None`.
fn rational(text: Option<&str>) -> Option<(i32, i32)> {
    let (num, den) = text?.split_once('/')?;
    let (num, den) = (num.parse::<i32>().ok()?, den.parse::<i32>().ok()?);
    (num > 0 && den > 0).then_some((num, den))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_recognises_containers_and_not_text() {
        let mut mp4 = vec![0, 0, 0, 0x20];
        mp4.extend_from_slice(b"ftypisom");
        assert!(magic_says_media(&mp4));
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.resize(64, 0);
        assert!(magic_says_media(&wav));
        assert!(magic_says_media(&[0x06, 0x0e, 0x2b, 0x34, 0x02]));
        assert!(!magic_says_media(b"<?xml version=\"1.0\"?>"));
        assert!(!magic_says_media(b""));
    }

    #[test]
    fn timecodes_become_seconds() {
        assert_eq!(timecode_seconds("10:00:00:00", 25.0), Some(36_000.0));
        assert_eq!(timecode_seconds("01:00:01:12", 24.0), Some(3601.5));
        assert_eq!(timecode_seconds("00:00:00;15", 29.97), Some(0.5));
        assert_eq!(timecode_seconds("00:61:00:00", 25.0), None);
        assert_eq!(timecode_seconds("garbage", 25.0), None);
    }

    #[test]
    fn reports_parse_and_images_are_refused() -> Result<(), ProbeError> {
        let report = br#"{"streams":[
            {"codec_type":"video","codec_name":"h264","width":1920,"height":1080,"r_frame_rate":"25/1",
             "tags":{"timecode":"10:00:00:00"}},
            {"codec_type":"audio","codec_name":"pcm_s24le","channels":1},
            {"codec_type":"audio","codec_name":"pcm_s24le","channels":2}],
            "format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"2.000000",
                      "tags":{"creation_time":"2026-05-01T10:00:00.000000Z"}}}"#;
        let info = parse(report)?;
        assert_eq!(info.duration_s, Some(2.0));
        assert_eq!(info.frame_rate_f64(), Some(25.0));
        assert_eq!(info.audio.len(), 2);
        assert_eq!(info.start_timecode.as_deref(), Some("10:00:00:00"));
        assert_eq!(info.timecode_start_s(), Some(36_000.0));
        assert!(info.created_on.is_some());
        let image = br#"{"streams":[{"codec_type":"video","codec_name":"mjpeg"}],"format":{"format_name":"image2"}}"#;
        assert!(matches!(parse(image), Err(ProbeError::Refused(why)) if why.contains("still image")));
        let playlist = br#"{"streams":[{"codec_type":"video","codec_name":"h264"}],"format":{"format_name":"hls"}}"#;
        assert!(matches!(parse(playlist), Err(ProbeError::Refused(why)) if why.contains("`hls`")));
        let empty = br#"{"streams":[],"format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2"}}"#;
        assert!(matches!(parse(empty), Err(ProbeError::NotMedia(_))));
        Ok(())
    }

    /// ffprobe's report of a file with `tracks` mono PCM audio streams.
    fn report_with_audio(tracks: usize) -> Vec<u8> {
        let audio = serde_json::json!({"codec_type": "audio", "codec_name": "pcm_s24le", "channels": 1});
        let report = serde_json::json!({
            "streams": vec![audio; tracks],
            "format": {"format_name": "mxf", "duration": "1.0"},
        });
        serde_json::to_vec(&report).unwrap_or_default()
    }

    #[test]
    fn at_most_64_audio_tracks_are_accepted() -> Result<(), ProbeError> {
        assert_eq!(parse(&report_with_audio(MAX_AUDIO_TRACKS))?.audio.len(), 64);
        match parse(&report_with_audio(MAX_AUDIO_TRACKS + 1)) {
            Err(ProbeError::Refused(why)) => assert!(why.contains("65 audio tracks"), "{why}"),
            other => panic!("65 tracks accepted: {other:?}"),
        }
        Ok(())
    }
}
