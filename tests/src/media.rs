//! Test media made with Debian's ffmpeg (test patterns with timecode, tones on several
//! audio tracks), ffprobe checks of outputs, and a real SMTP server (aiosmtpd).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Clip {
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: &'static str,
    pub timecode: Option<&'static str>,
    pub audio_tracks: u32,
    /// `libx264` (small files) or `mpeg4` (fast to make at long durations).
    pub codec: &'static str,
}

impl Default for Clip {
    fn default() -> Self {
        Self {
            seconds: 2.0,
            width: 320,
            height: 240,
            fps: "25",
            timecode: Some("10:00:00:00"),
            audio_tracks: 2,
            codec: "libx264",
        }
    }
}

impl Clip {
    /// Writes the clip to `path` (a `.mov`), creating its folder.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut args: Vec<String> = vec![
            "-hide_banner".into(),
            "-loglevel".into(),
            "error".into(),
            "-y".into(),
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!(
                "testsrc2=size={}x{}:rate={}:duration={}",
                self.width, self.height, self.fps, self.seconds
            ),
        ];
        for track in 0..self.audio_tracks {
            args.extend([
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("sine=frequency={}:duration={}", 300 + 200 * track, self.seconds),
            ]);
        }
        args.extend(["-map".into(), "0:v".into()]);
        for track in 0..self.audio_tracks {
            args.extend(["-map".into(), format!("{}:a", track + 1)]);
        }
        args.extend(["-c:v".into(), self.codec.into()]);
        if self.codec == "libx264" {
            args.extend(["-preset".into(), "ultrafast".into()]);
        } else {
            args.extend(["-q:v".into(), "20".into()]);
        }
        args.extend(["-c:a".into(), "pcm_s16le".into()]);
        if let Some(tc) = self.timecode {
            args.extend(["-timecode".into(), tc.into()]);
        }
        args.push(path.to_string_lossy().into_owned());
        run("ffmpeg", &args)
    }
}

/// A camera clip in which someone speaks: test picture with timecode, `speech` (a
/// recording) on the first audio track after `lead_s` seconds of silence, and a tone on
/// a second track; it ends a second after the speech.
pub fn speaking_clip(speech: &Path, lead_s: f64, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(speech)
        .stdin(Stdio::null())
        .output()
        .context("cannot run ffprobe")?;
    let spoken: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .with_context(|| format!("no duration for {}", speech.display()))?;
    let delay_ms = (lead_s * 1000.0).round();
    let args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-i",
        &speech.to_string_lossy(),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=500",
        "-filter_complex",
        &format!("[1:a]adelay={delay_ms}:all=1,apad[speech]"),
        "-map",
        "0:v",
        "-map",
        "[speech]",
        "-map",
        "2:a",
        "-t",
        &format!("{:.2}", lead_s + spoken + 1.0),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "pcm_s16le",
        "-timecode",
        "10:00:00:00",
        &path.to_string_lossy(),
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    run("ffmpeg", &args)
}

/// A playlist format ffmpeg follows into other files, whatever the playlist is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playlist {
    /// `#EXTM3U`: HTTP Live Streaming.
    Hls,
    /// An MPD manifest: MPEG-DASH.
    Dash,
}

impl Playlist {
    /// The demuxer ffprobe names for it.
    pub fn format(self) -> &'static str {
        match self {
            Self::Hls => "hls",
            Self::Dash => "dash",
        }
    }

    /// A playlist whose only segment is `target` (an absolute path): an ffmpeg without
    /// a format allowlist reads `target` through it.
    pub fn naming(self, target: &Path) -> String {
        let target = target.display();
        match self {
            Self::Hls => format!("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n"),
            Self::Dash => format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                 <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-on-demand:2011\" \
                 type=\"static\" mediaPresentationDuration=\"PT2S\" minBufferTime=\"PT1S\">\n\
                 <Period><AdaptationSet mimeType=\"video/mp4\"><Representation id=\"1\" bandwidth=\"100000\">\
                 <BaseURL>file://{target}</BaseURL></Representation></AdaptationSet></Period>\n</MPD>\n"
            ),
        }
    }
}

/// Writes a short `.mov` with `tracks` silent mono audio tracks (and no video) to `path`.
pub fn write_audio_tracks(path: &Path, tracks: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
        .map(String::from)
        .to_vec();
    args.push("anullsrc=r=8000:cl=mono:d=0.2".into());
    for _ in 0..tracks {
        args.extend(["-map".into(), "0:a".into()]);
    }
    args.extend(["-c:a".into(), "pcm_s16le".into()]);
    args.push(path.to_string_lossy().into_owned());
    run("ffmpeg", &args)
}

fn run(program: &str, args: &[String]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!("{program} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// ffprobe's JSON (format and streams) of a file.
pub fn ffprobe(path: &Path) -> anyhow::Result<Value> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .context("cannot run ffprobe")?;
    if !output.status.success() {
        bail!(
            "ffprobe {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// A grey picture of a video file's frame at `at_s` seconds: `(width, height, pixels)`
/// (one byte per pixel, rows top to bottom).
pub fn gray_frame(path: &Path, at_s: f64) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    let stream = &ffprobe(path)?["streams"];
    let video = stream
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .context("no video stream")?;
    let (width, height) = (
        video["width"].as_u64().context("no width")? as usize,
        video["height"].as_u64().context("no height")? as usize,
    );
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_s:.3}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", "format=gray", "-f", "rawvideo", "-"])
        .output()
        .context("cannot run ffmpeg")?;
    if !output.status.success() || output.stdout.len() != width * height {
        bail!(
            "ffmpeg gave {} bytes of a {width}x{height} frame: {}",
            output.stdout.len(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok((width, height, output.stdout))
}

/// A real SMTP server on localhost that keeps what it accepts in a folder.
pub struct SmtpSink {
    pub port: u16,
    pub folder: PathBuf,
    child: Option<Child>,
}

/// The Python with Debian's aiosmtpd (`RUSHES_TEST_PYTHON`, default `/usr/bin/python3`).
fn python() -> String {
    std::env::var("RUSHES_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned())
}

impl SmtpSink {
    /// Starts a sink on `port` (0: a free one) storing into `folder`.
    pub async fn start(port: u16, folder: PathBuf) -> anyhow::Result<Self> {
        let port = if port == 0 { crate::dead_port()?.port() } else { port };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_sink.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(&folder)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the SMTP sink (apt-get install python3-aiosmtpd)")?;
        let sink = Self {
            port,
            folder,
            child: Some(child),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(sink);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("the SMTP sink did not listen on {port}")
    }

    /// Every message received so far (`from`, `to`, `data`).
    pub fn messages(&self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let Ok(listing) = std::fs::read_dir(&self.folder) else {
            return Ok(out);
        };
        for item in listing.flatten() {
            if item.path().extension().is_some_and(|e| e == "json") {
                out.push(serde_json::from_str(&std::fs::read_to_string(item.path())?)?);
            }
        }
        Ok(out)
    }

    /// Waits until `count` messages have arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> anyhow::Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages()?;
            if messages.len() >= count {
                return Ok(messages);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} of {count} mails arrived within {timeout:?}", messages.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The token of the first `token=<48 hex>` link in a raw mail (quoted-printable undone).
pub fn link_token(raw: &str) -> Option<String> {
    let text = raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    text.match_indices("token=").find_map(|(at, _)| {
        let token: String = text[at + 6..].chars().take_while(char::is_ascii_hexdigit).collect();
        (token.len() == 48).then_some(token)
    })
}

impl SmtpSink {
    /// The link tokens of the mails received for `to`, oldest first.
    pub fn link_tokens(&self, to: &str) -> anyhow::Result<Vec<String>> {
        let mut mails: Vec<Value> = self
            .messages()?
            .into_iter()
            .filter(|m| m["to"].as_array().is_some_and(|a| a.iter().any(|t| t == to)))
            .collect();
        mails.sort_by_key(|m| m["received_ns"].as_u64().unwrap_or(0));
        Ok(mails
            .iter()
            .filter_map(|m| link_token(m["data"].as_str().unwrap_or_default()))
            .collect())
    }

    /// Waits for the `count`-th link mailed to `to`; returns it.
    pub async fn wait_link(&self, to: &str, count: usize, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let tokens = self.link_tokens(to)?;
            if let Some(token) = tokens.get(count.saturating_sub(1)) {
                return Ok(token.clone());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} of {count} links to {to} arrived within {timeout:?}", tokens.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
