//! The one allowlist of container formats read from files Rushes did not make (rushes,
//! uploads). ffmpeg guesses a format from a file's content whatever its name, and some
//! demuxers open further files: an HLS or DASH playlist named `x.mov` would have its
//! "segments" — any file the worker can read — made into a proxy. Every ffprobe and
//! ffmpeg input therefore carries `-format_whitelist` with the demuxers below, and
//! anything else is refused before its header is read.

use std::ffi::OsString;
use std::path::Path;

/// Demuxers of the media a scan recognises, none of which opens another file
/// (QuickTime's external data references stay off, ffmpeg's default). Never here:
/// `hls`, `dash`, `concat`, `image2`, `tty`, `*_pipe`, `lavfi`, or any other demuxer
/// that reads a list of files or is not a recording.
pub const ALLOWED_DEMUXERS: [&str; 15] = [
    "mov",      // QuickTime, MP4, M4A, 3GP (`mov,mp4,m4a,3gp,3g2,mj2`)
    "mxf",      // MXF (OP1a, OP-Atom)
    "mpegts",   // MPEG-TS, M2TS / AVCHD
    "matroska", // Matroska, WebM (`matroska,webm`)
    "avi",      // AVI, OpenDML
    "mpeg",     // MPEG program stream (.mpg, .vob)
    "dv",       // raw DV
    "r3d",      // REDCODE
    "wav",      // WAV, BWF, RF64
    "w64",      // Sony Wave64
    "aiff",     // AIFF, AIFF-C
    "mp3",      // MPEG audio layer 2/3
    "aac",      // raw ADTS AAC
    "flac",     // FLAC
    "ogg",      // Ogg (Vorbis, Opus, FLAC)
];

/// Most audio tracks accepted from one file: each becomes a filter input and an output.
pub const MAX_AUDIO_TRACKS: usize = 64;

/// What ffmpeg and ffprobe say when a file's format is not on the whitelist.
const NOT_ON_WHITELIST: &str = "Format not on whitelist";

/// The `-format_whitelist` value: the allowed demuxers, comma separated.
pub fn whitelist() -> String {
    ALLOWED_DEMUXERS.join(",")
}

/// One untrusted input: `-format_whitelist <allowlist> -i file:<path>`. `file:` keeps
/// names with `:` or a leading `-` from being read as protocols or options.
pub fn input_args(path: &Path) -> [OsString; 4] {
    let mut input = OsString::from("file:");
    input.push(path.as_os_str());
    ["-format_whitelist".into(), whitelist().into(), "-i".into(), input]
}

/// The one demuxer a production's watermark image is read with: a PNG the control plane
/// decoded and encoded again itself, never a file as someone sent it.
pub const WATERMARK_IMAGE_DEMUXER: &str = "png_pipe";

/// The watermark image as an input: its format forced and the only one allowed.
pub fn watermark_image_args(path: &Path) -> [OsString; 6] {
    let mut input = OsString::from("file:");
    input.push(path.as_os_str());
    [
        "-f".into(),
        WATERMARK_IMAGE_DEMUXER.into(),
        "-format_whitelist".into(),
        WATERMARK_IMAGE_DEMUXER.into(),
        "-i".into(),
        input,
    ]
}

/// Whether a format as ffprobe names it (`mov,mp4,m4a,3gp,3g2,mj2`) is allowed: one of
/// its comma-separated names is on the list, as ffmpeg itself matches a whitelist.
pub fn is_allowed(format_name: &str) -> bool {
    format_name
        .split(',')
        .any(|name| ALLOWED_DEMUXERS.contains(&name.trim()))
}

/// The format ffmpeg refused, if its log says it refused one: the context of the line
/// `[hls @ 0x55d…] Format not on whitelist 'mov,…'` is the demuxer it probed. `None`
/// when no line says so; an unnamed refusal is `unknown`.
pub fn refused_in<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let line = lines.into_iter().find(|l| l.contains(NOT_ON_WHITELIST))?;
    let named = line
        .trim_start()
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(" @ "))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b',')
        });
    Some(named.unwrap_or("unknown").to_owned())
}

/// Why a file in `format` is not read: the text a refused job or a skipped file carries.
pub fn refusal(format: &str) -> String {
    let still = format == "image2" || format == "tty" || format.ends_with("_pipe");
    if still {
        format!("a still image or text ({format}), not a clip: container format `{format}` is refused")
    } else {
        format!(
            "container format `{format}` is refused: only recorded media containers are read \
             (playlists and other formats that open further files never are)"
        )
    }
}

/// Why a file with `tracks` audio tracks is not read.
pub fn too_many_tracks(tracks: usize) -> String {
    format!("{tracks} audio tracks; at most {MAX_AUDIO_TRACKS} are accepted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_carries_the_allowlist() {
        let args = input_args(Path::new("/media/show/-odd:name.mov"));
        assert_eq!(args[0], "-format_whitelist");
        assert_eq!(args[1], OsString::from(whitelist()));
        assert_eq!(args[2], "-i");
        assert_eq!(args[3], "file:/media/show/-odd:name.mov");
        let list = whitelist();
        for refused in [
            "hls",
            "dash",
            "concat",
            "image2",
            "tty",
            "lavfi",
            "jpeg_pipe",
            "webm_dash_manifest",
        ] {
            assert!(!list.split(',').any(|d| d == refused), "{refused} must not be allowed");
        }
    }

    #[test]
    fn formats_match_as_ffmpeg_matches_them() {
        for ok in ["mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mxf", "wav", "mpegts"] {
            assert!(is_allowed(ok), "{ok}");
        }
        for refused in ["hls", "dash", "concat", "image2", "tty", "png_pipe", "", "movie"] {
            assert!(!is_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn the_refused_format_is_read_from_the_log() {
        let ffprobe = [
            "[hls @ 0x55af76e1b280] Format not on whitelist 'mov,mxf'",
            "file:/tmp/x.mov: Invalid argument",
        ];
        assert_eq!(refused_in(ffprobe), Some("hls".into()));
        let ffmpeg = ["[dash @ 0x5563217cc940] [error] Format not on whitelist 'mov,mxf'"];
        assert_eq!(refused_in(ffmpeg), Some("dash".into()));
        assert_eq!(refused_in(["Format not on whitelist 'mov'"]), Some("unknown".into()));
        assert_eq!(refused_in(["[mov @ 0x1] moov atom not found"]), None);
        assert!(refusal("hls").contains("`hls` is refused"));
        assert!(refusal("image2").contains("still image"));
    }
}
