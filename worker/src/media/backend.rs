//! The video backend of this worker, decided once at start: NVENC encoding and CUDA
//! decoding where ffmpeg can open them on this node, software (libx264) otherwise.

use serde::Serialize;

use super::ffmpeg::succeeds;
use crate::config::TranscodeConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoBackend {
    /// `libx264` or `h264_nvenc`.
    pub encoder: &'static str,
    /// `cuda` when decoding runs on the GPU.
    pub hw_decode: Option<&'static str>,
}

impl VideoBackend {
    pub fn software() -> Self {
        Self {
            encoder: "libx264",
            hw_decode: None,
        }
    }

    pub fn is_nvenc(&self) -> bool {
        self.encoder == "h264_nvenc"
    }
}

/// Probes ffmpeg: that it runs at all, then (unless `none`) whether NVENC can encode a
/// frame and a CUDA device can be opened. `cuda` insists on both.
pub async fn detect(config: &TranscodeConfig) -> anyhow::Result<VideoBackend> {
    let ffmpeg = config.ffmpeg.as_path();
    anyhow::ensure!(
        succeeds(ffmpeg, &["-version"]).await,
        "cannot run ffmpeg at `{}` (RUSHES_FFMPEG); install Debian's ffmpeg package",
        ffmpeg.display()
    );
    if config.video_hwaccel == "none" {
        return Ok(VideoBackend::software());
    }
    let nvenc = succeeds(
        ffmpeg,
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=256x144:d=0.1",
            "-frames:v",
            "1",
            "-c:v",
            "h264_nvenc",
            "-f",
            "null",
            "-",
        ],
    )
    .await;
    let cuda = succeeds(
        ffmpeg,
        &[
            "-init_hw_device",
            "cuda=gpu",
            "-f",
            "lavfi",
            "-i",
            "anullsrc",
            "-t",
            "0.01",
            "-f",
            "null",
            "-",
        ],
    )
    .await;
    if config.video_hwaccel == "cuda" {
        anyhow::ensure!(
            nvenc && cuda,
            "RUSHES_VIDEO_HWACCEL=cuda but ffmpeg cannot use this node's GPU (NVENC: {nvenc}, CUDA decoding: {cuda})"
        );
    }
    let backend = VideoBackend {
        encoder: if nvenc { "h264_nvenc" } else { "libx264" },
        hw_decode: cuda.then_some("cuda"),
    };
    tracing::info!(encoder = backend.encoder, hw_decode = ?backend.hw_decode, "video backend chosen");
    Ok(backend)
}
