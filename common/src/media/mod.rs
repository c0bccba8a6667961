//! Where media lives: the read-only media roots productions must stay inside, and the
//! data directory our own outputs (proxies, posters, sprites) go to.

mod roots;
pub mod skips;
pub mod transcodes;
pub mod watermark;

pub use roots::{MediaRoots, PathError};

use std::path::PathBuf;

use clap::Args;
use uuid::Uuid;

/// The first line of `binary -version` (ffmpeg's, say), if it runs within 5 s.
pub async fn tool_version(binary: &std::path::Path) -> Option<String> {
    let run = tokio::process::Command::new(binary)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .ok()?
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

/// Media settings shared by control (path checks, serving outputs) and workers.
#[derive(Debug, Clone, Args)]
pub struct MediaConfig {
    /// Folders productions may point into, comma separated. Rushes under them are only
    /// ever read. A production path outside every root is refused.
    #[arg(long, env = "RUSHES_MEDIA_ROOTS", value_delimiter = ',')]
    pub media_roots: Vec<PathBuf>,
    /// Folder for what Rushes writes: proxies, posters, sprites, uploads (default /var/lib/rushes).
    #[arg(long, env = "RUSHES_DATA_DIR", default_value = "/var/lib/rushes")]
    pub data_dir: PathBuf,
}

impl MediaConfig {
    /// The folder holding one clip's outputs.
    pub fn clip_dir(&self, clip_id: Uuid) -> PathBuf {
        self.data_dir.join("clips").join(clip_id.to_string())
    }

    /// The folder holding one upload: its `original` and its outputs.
    pub fn upload_dir(&self, upload_id: Uuid) -> PathBuf {
        self.data_dir.join("uploads").join(upload_id.to_string())
    }

    /// A production's watermark image (PNG, as the control plane re-encoded it).
    pub fn watermark_image_path(&self, production_id: Uuid) -> PathBuf {
        self.data_dir.join("watermarks").join(format!("{production_id}.png"))
    }

    /// A production's cover thumbnail (JPEG).
    pub fn cover_path(&self, production_id: Uuid) -> PathBuf {
        self.data_dir.join("covers").join(format!("{production_id}.jpg"))
    }
}

/// The outputs made for one share link (its viewer's proxy): inside the folder of the
/// clip or upload it shares (`target_dir`), so that they go with it.
pub fn share_dir(target_dir: &std::path::Path, share_id: Uuid) -> PathBuf {
    target_dir.join("shares").join(share_id.to_string())
}

/// The name an upload's original file is stored under, in its folder.
pub const UPLOAD_ORIGINAL: &str = "original";

/// Names a clip's outputs may have: the only files the API serves from a clip's folder.
pub fn is_output_name(name: &str) -> bool {
    const FIXED: [&str; 7] = [
        "proxy.mp4",
        "proxy.m4a",
        "poster.jpg",
        "audio.wav",
        "sprite.jpg",
        "sprite.vtt",
        "waveform.png",
    ];
    FIXED.contains(&name)
        || name
            .strip_prefix("track_")
            .and_then(|rest| rest.strip_suffix(".m4a"))
            .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_output_names_are_served() {
        for ok in ["proxy.mp4", "poster.jpg", "track_2.m4a", "sprite.vtt"] {
            assert!(is_output_name(ok), "{ok}");
        }
        for bad in [
            "../proxy.mp4",
            "track_.m4a",
            "track_x.m4a",
            "track_1234.m4a",
            ".tmp",
            "proxy.mp4/",
        ] {
            assert!(!is_output_name(bad), "{bad}");
        }
    }
}
