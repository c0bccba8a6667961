//! What job handlers use beyond the database and the broker: media roots and the data
//! folder, ffmpeg settings and the video backend chosen at start, the mailer, and the
//! Whisper models of the transcription slots.

use std::sync::Arc;

use rushes_common::job::QueueFamily;
use rushes_common::media::{MediaConfig, MediaRoots};

use crate::config::{SmtpConfig, TranscodeConfig, WorkerConfig};
use crate::mailer::Mailer;
use crate::media::backend::{self, VideoBackend};
use crate::metrics::WorkerMetrics;
use crate::transcriber::Transcriber;

pub struct Services {
    pub media: MediaConfig,
    pub roots: MediaRoots,
    pub transcode: TranscodeConfig,
    pub video: VideoBackend,
    pub mailer: Mailer,
    pub smtp: SmtpConfig,
    /// Present when this worker consumes `transcribe`.
    pub transcriber: Option<Arc<Transcriber>>,
}

impl Services {
    /// Builds the services; probes the video hardware only when this worker transcodes,
    /// and looks for GPUs only when it transcribes (`transcribe_slots` > 0).
    pub async fn start(config: &WorkerConfig, metrics: &WorkerMetrics) -> anyhow::Result<Arc<Self>> {
        let transcodes = config
            .queues
            .iter()
            .any(|q| matches!(q.family, QueueFamily::Transcode | QueueFamily::TranscodeLong));
        let video = if transcodes {
            backend::detect(&config.transcode).await?
        } else {
            VideoBackend::software()
        };
        let transcribes = config.queues.iter().any(|q| q.family == QueueFamily::Transcribe);
        let gpus = match config.transcribe.whisper_device.as_str() {
            _ if !transcribes => Vec::new(),
            "cpu" => Vec::new(),
            device => {
                let gpus = crate::gpu::discover();
                if device == "cuda" && gpus.is_empty() {
                    anyhow::bail!(
                        "RUSHES_WHISPER_DEVICE=cuda, but no GPU can be used: {}",
                        if cfg!(feature = "cuda") {
                            "the CUDA driver reports none (see the log above for its message)"
                        } else {
                            "this worker was built without the `cuda` feature"
                        }
                    );
                }
                gpus
            }
        };
        let transcriber = transcribes.then(|| {
            let slots = config
                .slots_by_queue_with_gpus(gpus.len())
                .iter()
                .find(|(f, _)| *f == QueueFamily::Transcribe)
                .map_or(1, |(_, n)| usize::from(*n));
            Arc::new(Transcriber::new(
                &config.transcribe,
                &config.media.data_dir,
                gpus,
                slots,
                metrics.clone(),
            ))
        });
        Ok(Arc::new(Self {
            roots: MediaRoots::new(&config.media.media_roots),
            media: config.media.clone(),
            transcode: config.transcode.clone(),
            video,
            mailer: Mailer::new(&config.smtp)?,
            smtp: config.smtp.clone(),
            transcriber,
        }))
    }
}
