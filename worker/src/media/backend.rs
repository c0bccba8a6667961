//! The video backend of this worker, decided once at start: NVENC encoding where ffmpeg
//! encodes a frame with it, NVDEC decoding where it decodes a real H.264 frame into GPU
//! memory, software (libx264, ffmpeg's decoders) otherwise. Data-centre GPUs (H100,
//! H200, A100) have NVDEC but no NVENC: they decode on the GPU and encode in software.

use serde::Serialize;

use super::ffmpeg::{probe, succeeds};
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
    let nvenc = probe(
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
    let nvdec = decodes_on_gpu(ffmpeg).await;
    for (engine, result) in [("NVENC (encoding)", &nvenc), ("NVDEC (decoding)", &nvdec)] {
        if let Err(why) = result {
            tracing::info!(engine, reason = %why, "GPU video engine not usable; software instead");
        }
    }
    let (nvenc, cuda) = (nvenc.is_ok(), nvdec.is_ok());
    if config.video_hwaccel == "cuda" {
        anyhow::ensure!(
            nvenc && cuda,
            "RUSHES_VIDEO_HWACCEL=cuda but ffmpeg cannot use this node's GPU (NVENC: {nvenc}, NVDEC decoding a frame: {cuda}; the reasons are logged above)"
        );
    }
    let backend = VideoBackend {
        encoder: if nvenc { "h264_nvenc" } else { "libx264" },
        hw_decode: cuda.then_some("cuda"),
    };
    tracing::info!(encoder = backend.encoder, hw_decode = ?backend.hw_decode, "video backend chosen");
    Ok(backend)
}

/// Whether NVDEC decodes a real H.264 frame: a few frames encoded in software, then
/// decoded with `-hwaccel cuda` into GPU memory and downloaded — which fails, rather
/// than quietly falling back to software as a plain `-hwaccel cuda` would, when the
/// frames are not the GPU's. (Opening a CUDA device proves nothing about NVDEC.)
async fn decodes_on_gpu(ffmpeg: &std::path::Path) -> Result<(), String> {
    let sample = std::env::temp_dir().join(format!("rushes-nvdec-probe-{}.mp4", uuid::Uuid::new_v4()));
    let sample_arg = sample.to_string_lossy().into_owned();
    let result = async {
        probe(
            ffmpeg,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=256x144:d=0.2",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-y",
                &sample_arg,
            ],
        )
        .await
        .map_err(|why| format!("cannot make the H.264 sample: {why}"))?;
        probe(
            ffmpeg,
            &[
                "-hwaccel",
                "cuda",
                "-hwaccel_output_format",
                "cuda",
                "-i",
                &sample_arg,
                "-vf",
                "hwdownload,format=nv12",
                "-frames:v",
                "1",
                "-f",
                "null",
                "-",
            ],
        )
        .await
    }
    .await;
    let _ = std::fs::remove_file(&sample);
    result
}
