//! The ffmpeg command lines of the transcode kinds, planned from what the scan recorded
//! about a clip. One decode pass makes every output of a kind.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rushes_common::media::watermark::Position;

use super::backend::VideoBackend;
use super::formats;
use super::staging::Staging;
use crate::config::TranscodeConfig;

/// What the plans need to know about a clip.
#[derive(Debug, Clone)]
pub struct ClipFacts {
    pub has_video: bool,
    pub width: i32,
    pub height: i32,
    pub audio_tracks: usize,
    pub duration_s: Option<f64>,
}

/// An ffmpeg argument list and the output names it writes (into the staging folder).
#[derive(Debug)]
pub struct Plan {
    pub args: Vec<OsString>,
    pub outputs: Vec<String>,
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The `[awav]` graph output as the 16 kHz mono 16-bit WAV Whisper reads.
const WAV_OUTPUT: [&str; 10] = [
    "-map",
    "[awav]",
    "-ac",
    "1",
    "-ar",
    "16000",
    "-c:a",
    "pcm_s16le",
    "-f",
    "wav",
];

/// Appends a filter chain (without its output label) that downmixes each of `tracks`
/// audio tracks of input 0 to mono and mixes them into one.
fn mono_mix(graph: &mut String, tracks: usize) {
    if tracks <= 1 {
        graph.push_str("[0:a:0]aformat=channel_layouts=mono");
        return;
    }
    for i in 0..tracks {
        let _ = write!(graph, "[0:a:{i}]aformat=channel_layouts=mono[a{i}];");
    }
    for i in 0..tracks {
        let _ = write!(graph, "[a{i}]");
    }
    let _ = write!(graph, "amix=inputs={tracks}:duration=longest");
}

/// The 16 kHz mono WAV Whisper reads, as `speech.wav`: one audio track (`track`, 1-based)
/// or, with `None`, the mix of all `tracks` — the same mix as a transcode's `audio.wav`.
pub fn speech_wav(input: &Path, tracks: usize, track: Option<usize>, staging: &Staging) -> Plan {
    let mut args: Vec<OsString> = formats::input_args(input).into();
    let mut graph = String::new();
    match track {
        Some(n) => {
            let _ = write!(graph, "[0:a:{}]aformat=channel_layouts=mono", n.saturating_sub(1));
        }
        None => mono_mix(&mut graph, tracks),
    }
    graph.push_str("[awav]");
    args.push("-filter_complex".into());
    args.push(graph.into());
    push(&mut args, &WAV_OUTPUT);
    args.push(staging.path("speech.wav").into());
    Plan {
        args,
        outputs: vec!["speech.wav".to_owned()],
    }
}

/// A production's watermark burned into the picture of the proxy and poster: its text
/// with the placeholders filled, and/or its image.
#[derive(Debug, Clone)]
pub struct BurnIn {
    /// A file holding the text: drawtext reads it, so the text itself needs no escaping.
    /// `None`: no text.
    pub text_file: Option<PathBuf>,
    /// `None`: fontconfig's `Sans`.
    pub font_file: Option<PathBuf>,
    pub position: Position,
    pub opacity: f64,
    /// The text's height as a fraction of the picture's.
    pub size: f64,
    pub image: Option<ImageOverlay>,
}

/// The production's watermark image drawn over the picture.
#[derive(Debug, Clone)]
pub struct ImageOverlay {
    /// The PNG the control plane stored.
    pub file: PathBuf,
    pub position: Position,
    pub opacity: f64,
    /// The image's height as a fraction of the picture's.
    pub size: f64,
}

/// A mark's `x` and `y` expressions: `frame` and `mark` name the filter's variables for
/// the picture's and the mark's width and height.
fn placed(position: Position, margin: u32, frame: (&str, &str), mark: (&str, &str)) -> (String, String) {
    let ((fw, fh), (mw, mh)) = (frame, mark);
    let centred = format!("({fw}-{mw})/2");
    let (right, bottom) = (format!("{fw}-{mw}-{margin}"), format!("{fh}-{mh}-{margin}"));
    match position {
        Position::Center => (centred, format!("({fh}-{mh})/2")),
        Position::Top => (centred, margin.to_string()),
        Position::Bottom => (centred, bottom),
        Position::TopLeft => (margin.to_string(), margin.to_string()),
        Position::TopRight => (right, margin.to_string()),
        Position::BottomLeft => (margin.to_string(), bottom),
        Position::BottomRight => (right, bottom),
    }
}

/// The margin between a mark and the picture's edge.
fn margin(height: u32) -> u32 {
    ((f64::from(height) * 0.04).round() as u32).max(2)
}

/// Characters a path may not hold to be named in a filter graph unquoted (each level of
/// ffmpeg's filter parsing gives one of them a meaning).
const FILTER_SPECIAL: [char; 9] = ['\\', '\'', ':', ',', ';', '[', ']', '=', '%'];

/// A path as a filter option's value, or why it cannot be one.
fn filter_path(path: &Path) -> Result<String, String> {
    let text = path.to_string_lossy();
    if text.chars().any(|c| FILTER_SPECIAL.contains(&c) || c.is_control()) {
        return Err(format!(
            "watermark: the path {text:?} holds one of {FILTER_SPECIAL:?}, which ffmpeg's filter graph reads as syntax"
        ));
    }
    Ok(text.into_owned())
}

impl BurnIn {
    /// The `drawtext` filter drawing the text on a picture `height` pixels high (`None`:
    /// no text).
    pub fn text_filter(&self, height: u32) -> Result<Option<String>, String> {
        let Some(text_file) = &self.text_file else {
            return Ok(None);
        };
        let size = ((f64::from(height) * self.size).round() as u32).max(8);
        let border = (height / 360).max(1);
        let (x, y) = placed(self.position, margin(height), ("w", "h"), ("text_w", "text_h"));
        let font = match &self.font_file {
            Some(file) => format!("fontfile={}", filter_path(file)?),
            None => "font=Sans".to_owned(),
        };
        let alpha = self.opacity.clamp(0.0, 1.0);
        Ok(Some(format!(
            "drawtext=textfile={}:expansion=none:{font}:fontsize={size}:fontcolor=white@{alpha:.3}:\
             borderw={border}:bordercolor=black@{alpha:.3}:x={x}:y={y}",
            filter_path(text_file)?
        )))
    }
}

impl ImageOverlay {
    /// The image made ready for a picture `height` pixels high: scaled, its alpha faded.
    pub fn prepare(&self, height: u32) -> String {
        let size = ((f64::from(height) * self.size).round() as u32 / 2 * 2).max(2);
        let alpha = self.opacity.clamp(0.0, 1.0);
        format!("format=rgba,scale=w=-2:h={size},colorchannelmixer=aa={alpha:.3}")
    }

    /// The `overlay` filter putting it on a picture `height` pixels high.
    pub fn overlay(&self, height: u32) -> String {
        let (x, y) = placed(self.position, margin(height), ("W", "H"), ("w", "h"));
        format!("overlay=x={x}:y={y}")
    }
}

/// The height of the proxy's picture: the settings' height, never above the clip's, even.
fn proxy_height(settings: &TranscodeConfig, clip: &ClipFacts) -> u32 {
    let wanted = settings.proxy_height.max(2);
    let height = u32::try_from(clip.height)
        .ok()
        .filter(|h| *h > 0)
        .map_or(wanted, |h| h.min(wanted));
    (height / 2 * 2).max(2)
}

/// Proxy (H.264/AAC MP4, faststart; audio-only clips get an M4A), the mix of every
/// audio track, one AAC file per extra track, a poster frame and a 16 kHz mono WAV;
/// `burn_in` is drawn into the proxy's and the poster's picture.
pub fn transcode(
    input: &Path,
    clip: &ClipFacts,
    settings: &TranscodeConfig,
    backend: &VideoBackend,
    staging: &Staging,
    burn_in: Option<&BurnIn>,
) -> Result<Plan, String> {
    let mut args: Vec<OsString> = Vec::new();
    let mut outputs = Vec::new();
    if clip.has_video && backend.hw_decode.is_some() {
        push(&mut args, &["-hwaccel", "cuda"]);
    }
    args.extend(formats::input_args(input));
    let poster_at = clip.duration_s.map_or(0.0, |d| (d * 0.1).min(10.0));
    if clip.has_video {
        push(&mut args, &["-ss", &format!("{poster_at:.3}")]);
        args.extend(formats::input_args(input));
    }

    let burn_in = burn_in.filter(|_| clip.has_video);
    // Inputs: the clip (0), the clip again for the poster (1), the watermark image (2).
    let image = burn_in.and_then(|b| b.image.as_ref());
    if let Some(image) = image {
        args.extend(formats::watermark_image_args(&image.file));
    }

    let mut graph = String::new();
    let height = settings.proxy_height.max(2);
    let shown = proxy_height(settings, clip);
    let mark = match burn_in.map(|b| b.text_filter(shown)).transpose()?.flatten() {
        Some(text) => format!(",{text}"),
        None => String::new(),
    };
    let scale = format!("scale=w=-2:h='trunc(min({height},ih)/2)*2'");
    match image {
        Some(image) => {
            let (prepare, overlay) = (image.prepare(shown), image.overlay(shown));
            let _ = write!(
                graph,
                "[0:v:0]{scale}:flags=bicubic,format=yuv420p{mark}[vbase];[2:v]{prepare},split=2[wm0][wm1];\
                 [vbase][wm0]{overlay},format=yuv420p[vout];[1:v:0]{scale}{mark}[pbase];[pbase][wm1]{overlay}[pout];"
            );
        }
        None if clip.has_video => {
            let _ = write!(graph, "[0:v:0]{scale}:flags=bicubic,format=yuv420p{mark}[vout];");
        }
        None => {}
    }
    if clip.audio_tracks > 0 {
        mono_mix(&mut graph, clip.audio_tracks);
        graph.push_str(",asplit=2[amix][awav];");
    }
    let graph = graph.trim_end_matches(';').to_owned();
    if !graph.is_empty() {
        args.push("-filter_complex".into());
        args.push(graph.into());
    }

    let audio_rate = format!("{}k", settings.audio_bitrate_kbps);
    let has_audio = clip.audio_tracks > 0;
    if clip.has_video {
        push(&mut args, &["-map", "[vout]"]);
        if has_audio {
            push(
                &mut args,
                &["-map", "[amix]", "-c:a", "aac", "-b:a", &audio_rate, "-ac", "2"],
            );
        }
        proxy_video(&mut args, backend, settings.proxy_bitrate_kbps);
        args.push(staging.path("proxy.mp4").into());
        outputs.push("proxy.mp4".to_owned());
    } else if has_audio {
        push(
            &mut args,
            &[
                "-map",
                "[amix]",
                "-c:a",
                "aac",
                "-b:a",
                &audio_rate,
                "-ac",
                "2",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
        );
        args.push(staging.path("proxy.m4a").into());
        outputs.push("proxy.m4a".to_owned());
    }
    for track in 1..clip.audio_tracks {
        let name = format!("track_{}.m4a", track + 1);
        push(
            &mut args,
            &[
                "-map",
                &format!("0:a:{track}"),
                "-c:a",
                "aac",
                "-b:a",
                &audio_rate,
                "-f",
                "mp4",
            ],
        );
        args.push(staging.path(&name).into());
        outputs.push(name);
    }
    if has_audio {
        push(&mut args, &WAV_OUTPUT);
        args.push(staging.path("audio.wav").into());
        outputs.push("audio.wav".to_owned());
    }
    if clip.has_video {
        if image.is_some() {
            push(&mut args, &["-map", "[pout]"]);
        } else {
            push(&mut args, &["-map", "1:v:0", "-vf", &format!("{scale}{mark}")]);
        }
        push(
            &mut args,
            &["-frames:v", "1", "-q:v", "3", "-f", "image2", "-update", "1"],
        );
        args.push(staging.path("poster.jpg").into());
        outputs.push("poster.jpg".to_owned());
    }
    Ok(Plan { args, outputs })
}

/// The proxy's video encoding: H.264 (NVENC where the backend has it) at `rate` kb/s,
/// an MP4 that starts playing before it is all downloaded.
fn proxy_video(args: &mut Vec<OsString>, backend: &VideoBackend, rate: u32) {
    if backend.is_nvenc() {
        push(args, &["-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr"]);
    } else {
        push(args, &["-c:v", "libx264", "-preset", "veryfast"]);
    }
    push(
        args,
        &[
            "-profile:v",
            "high",
            "-b:v",
            &format!("{rate}k"),
            "-maxrate",
            &format!("{}k", rate * 3 / 2),
            "-bufsize",
            &format!("{}k", rate * 2),
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ],
    );
}

/// A share link's proxy: `proxy` (one Rushes made, `height` pixels high) again with
/// `burn_in`'s text drawn (the viewer's name), its audio copied as it is.
pub fn marked_copy(
    proxy: &Path,
    height: u32,
    burn_in: &BurnIn,
    settings: &TranscodeConfig,
    backend: &VideoBackend,
    staging: &Staging,
) -> Result<Plan, String> {
    let text = burn_in
        .text_filter(height)?
        .ok_or("a marked copy needs a text to draw")?;
    let mut args: Vec<OsString> = Vec::new();
    args.extend(formats::input_args(proxy));
    push(
        &mut args,
        &[
            "-filter_complex",
            &format!("[0:v:0]{text},format=yuv420p[vout]"),
            "-map",
            "[vout]",
            "-map",
            "0:a?",
            "-c:a",
            "copy",
        ],
    );
    proxy_video(&mut args, backend, settings.proxy_bitrate_kbps);
    args.push(staging.path("proxy.mp4").into());
    Ok(Plan {
        args,
        outputs: vec!["proxy.mp4".to_owned()],
    })
}

/// Thumbnails on a scrub sheet: their size, spacing and layout.
#[derive(Debug, Clone, PartialEq)]
pub struct SpriteLayout {
    pub interval_s: f64,
    pub count: u32,
    pub columns: u32,
    pub rows: u32,
    pub width: u32,
    pub height: u32,
}

/// Most thumbnails one sheet holds; longer clips space them further apart.
const MAX_THUMBNAILS: f64 = 200.0;
const THUMB_WIDTH: u32 = 160;
const COLUMNS: u32 = 10;

impl SpriteLayout {
    pub fn new(duration_s: f64, wanted_interval_s: f64, width: i32, height: i32) -> Self {
        let interval_s = wanted_interval_s.max(duration_s / MAX_THUMBNAILS).max(0.1);
        let count = ((duration_s / interval_s).ceil() as u32).max(1);
        let columns = count.min(COLUMNS);
        let rows = count.div_ceil(columns);
        let aspect = if width > 0 && height > 0 {
            f64::from(height) / f64::from(width)
        } else {
            9.0 / 16.0
        };
        let thumb_height = ((f64::from(THUMB_WIDTH) * aspect / 2.0).round() as u32 * 2).max(2);
        Self {
            interval_s,
            count,
            columns,
            rows,
            width: THUMB_WIDTH,
            height: thumb_height,
        }
    }

    /// The WebVTT index: one cue per thumbnail, pointing at its tile of `sprite.jpg`.
    pub fn vtt(&self, duration_s: f64) -> String {
        let mut out = String::from("WEBVTT\n\n");
        for i in 0..self.count {
            let start = f64::from(i) * self.interval_s;
            let end = (start + self.interval_s).min(duration_s.max(start + 0.001));
            let (x, y) = ((i % self.columns) * self.width, (i / self.columns) * self.height);
            let _ = write!(
                out,
                "{} --> {}\nsprite.jpg#xywh={x},{y},{},{}\n\n",
                vtt_time(start),
                vtt_time(end),
                self.width,
                self.height
            );
        }
        out
    }
}

fn vtt_time(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// Scrub sheet (from the proxy's video) and waveform image (from its audio).
pub fn transcode_long(proxy: &Path, clip: &ClipFacts, sprite: Option<&SpriteLayout>, staging: &Staging) -> Plan {
    let mut args: Vec<OsString> = formats::input_args(proxy).into();
    let mut outputs = Vec::new();
    let mut graph = Vec::new();
    if let Some(layout) = sprite {
        graph.push(format!(
            "[0:v:0]select='isnan(prev_selected_t)+gte(t-prev_selected_t,{:.3})',scale={}:{},tile={}x{}[sprite]",
            layout.interval_s, layout.width, layout.height, layout.columns, layout.rows
        ));
    }
    if clip.audio_tracks > 0 {
        graph.push("[0:a:0]showwavespic=s=1600x200:colors=0x4a9eff[wave]".to_owned());
    }
    args.push("-filter_complex".into());
    args.push(graph.join(";").into());
    if sprite.is_some() {
        push(
            &mut args,
            &[
                "-map",
                "[sprite]",
                "-frames:v",
                "1",
                "-q:v",
                "4",
                "-f",
                "image2",
                "-update",
                "1",
            ],
        );
        args.push(staging.path("sprite.jpg").into());
        outputs.push("sprite.jpg".to_owned());
    }
    if clip.audio_tracks > 0 {
        push(
            &mut args,
            &["-map", "[wave]", "-frames:v", "1", "-f", "image2", "-update", "1"],
        );
        args.push(staging.path("waveform.png").into());
        outputs.push("waveform.png".to_owned());
    }
    Plan { args, outputs }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `-i` of `args` reads through the allowlist: `-format_whitelist <list>` just before it.
    fn settings() -> TranscodeConfig {
        TranscodeConfig {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            proxy_height: 540,
            proxy_bitrate_kbps: 2500,
            audio_bitrate_kbps: 128,
            video_hwaccel: "none".into(),
            sprite_interval: std::time::Duration::from_secs(5),
            timeout_factor: 10.0,
            probe_concurrency: 4,
            watermark_font: "/fonts/Sans.ttf".into(),
        }
    }

    fn assert_allowlisted(args: &[OsString]) {
        let inputs: Vec<usize> = args
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == "-i")
            .map(|(i, _)| i)
            .collect();
        assert!(!inputs.is_empty(), "{args:?}");
        for i in inputs {
            assert!(i >= 2, "{args:?}");
            assert_eq!(args[i - 2], "-format_whitelist", "{args:?}");
            // Media through the allowlist; the watermark image (ours) through the PNG demuxer alone.
            assert!(
                args[i - 1] == OsString::from(formats::whitelist())
                    || (args[i - 1] == formats::WATERMARK_IMAGE_DEMUXER
                        && args[i - 3] == formats::WATERMARK_IMAGE_DEMUXER),
                "{args:?}"
            );
            assert!(args[i + 1].to_string_lossy().starts_with("file:"), "{args:?}");
        }
    }

    #[test]
    fn every_plan_reads_its_inputs_through_the_allowlist() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("rushes-plan-{}", std::process::id()));
        let staging = Staging::create(&dir, uuid::Uuid::nil(), 1)?;
        let settings = settings();
        let clip = ClipFacts {
            has_video: true,
            width: 1920,
            height: 1080,
            audio_tracks: 3,
            duration_s: Some(12.0),
        };
        let source = Path::new("/media/show/A001.mov");
        let cuda = VideoBackend {
            encoder: "h264_nvenc",
            hw_decode: Some("cuda"),
        };
        for backend in [VideoBackend::software(), cuda] {
            let plan = transcode(source, &clip, &settings, &backend, &staging, None).map_err(std::io::Error::other)?;
            assert_eq!(
                plan.args.iter().filter(|a| *a == "-i").count(),
                2,
                "the clip and its poster"
            );
            assert_allowlisted(&plan.args);
        }
        assert_allowlisted(&speech_wav(source, 3, None, &staging).args);
        assert_allowlisted(&speech_wav(source, 3, Some(2), &staging).args);
        let layout = SpriteLayout::new(12.0, 5.0, 1920, 1080);
        assert_allowlisted(&transcode_long(Path::new("/data/proxy.mp4"), &clip, Some(&layout), &staging).args);
        drop(staging);
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_watermark_is_drawn_from_its_file_in_the_proxy_and_the_poster() {
        let mark = BurnIn {
            text_file: Some("/data/clips/c/.staging-j-1/watermark.txt".into()),
            font_file: Some("/fonts/DejaVu Sans.ttf".into()),
            position: Position::BottomRight,
            opacity: 0.5,
            size: 0.1,
            image: None,
        };
        let Ok(Some(filter)) = mark.text_filter(540) else {
            panic!("refused")
        };
        assert!(filter.starts_with("drawtext=textfile=/data/clips/c/.staging-j-1/watermark.txt:expansion=none:"));
        assert!(filter.contains("fontfile=/fonts/DejaVu Sans.ttf:fontsize=54:fontcolor=white@0.500"));
        assert!(filter.contains("x=w-text_w-22:y=h-text_h-22"), "{filter}");
        let centre = BurnIn {
            position: Position::Center,
            font_file: None,
            ..mark.clone()
        };
        let Ok(Some(filter)) = centre.text_filter(540) else {
            panic!("refused")
        };
        assert!(
            filter.contains("font=Sans") && filter.contains("x=(w-text_w)/2:y=(h-text_h)/2"),
            "{filter}"
        );
        for bad in ["/data/it's", "/data/a:b", "/data/a,b", "/data/[x]", "/data/%{pts}"] {
            let odd = BurnIn {
                text_file: Some(bad.into()),
                ..mark.clone()
            };
            assert!(odd.text_filter(540).is_err(), "{bad}");
        }
        let none = BurnIn {
            text_file: None,
            ..mark.clone()
        };
        assert!(matches!(none.text_filter(540), Ok(None)));
    }

    #[test]
    fn a_watermark_image_is_overlaid_on_the_proxy_and_the_poster() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("rushes-plan-image-{}", std::process::id()));
        let staging = Staging::create(&dir, uuid::Uuid::nil(), 1)?;
        let logo = ImageOverlay {
            file: "/data/watermarks/p.png".into(),
            position: Position::TopLeft,
            opacity: 0.25,
            size: 0.2,
        };
        assert_eq!(
            logo.prepare(540),
            "format=rgba,scale=w=-2:h=108,colorchannelmixer=aa=0.250"
        );
        assert_eq!(logo.overlay(540), "overlay=x=22:y=22");
        let burn_in = BurnIn {
            text_file: None,
            font_file: None,
            position: Position::Center,
            opacity: 0.5,
            size: 0.06,
            image: Some(logo),
        };
        let clip = ClipFacts {
            has_video: true,
            width: 1920,
            height: 1080,
            audio_tracks: 1,
            duration_s: Some(12.0),
        };
        let plan = transcode(
            Path::new("/media/show/A001.mov"),
            &clip,
            &settings(),
            &VideoBackend::software(),
            &staging,
            Some(&burn_in),
        )
        .map_err(std::io::Error::other)?;
        assert_allowlisted(&plan.args);
        let args: Vec<String> = plan.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let image_at = args.iter().position(|a| a == "file:/data/watermarks/p.png");
        assert_eq!(image_at.map(|i| &args[i - 5]), Some(&"-f".to_owned()), "{args:?}");
        assert_eq!(args.iter().filter(|a| *a == "-i").count(), 3, "clip, poster, image");
        let graph = args
            .iter()
            .skip_while(|a| *a != "-filter_complex")
            .nth(1)
            .cloned()
            .unwrap_or_default();
        assert!(graph.contains("[2:v]format=rgba"), "{graph}");
        assert!(
            graph.contains("[vbase][wm0]overlay=x=22:y=22,format=yuv420p[vout]"),
            "{graph}"
        );
        assert!(graph.contains("[pbase][wm1]overlay=x=22:y=22[pout]"), "{graph}");
        assert!(args.windows(2).any(|w| w[0] == "-map" && w[1] == "[pout]"), "{args:?}");
        drop(staging);
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn sprite_layout_caps_thumbnails_and_indexes_tiles() {
        let short = SpriteLayout::new(12.0, 5.0, 1920, 1080);
        assert_eq!((short.count, short.columns, short.rows), (3, 3, 1));
        assert_eq!(short.height, 90);
        let vtt = short.vtt(12.0);
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90\n"));
        assert!(vtt.contains("00:00:10.000 --> 00:00:12.000\nsprite.jpg#xywh=320,0,160,90"));
        let long = SpriteLayout::new(4.0 * 3600.0, 5.0, 1920, 1080);
        assert_eq!(long.count, 200);
        assert_eq!((long.columns, long.rows), (10, 20));
    }
}
