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
        let failed = if gpus.is_empty() {
            None
        } else {
            self_test(&gpus, config).await
        };
        if let Some(why) = &failed
            && config.transcribe.whisper_device == "cuda"
        {
            anyhow::bail!("RUSHES_WHISPER_DEVICE=cuda, but a GPU failed its self-test: {why}");
        }
        let transcriber = transcribes.then(|| {
            let failed = failed.clone();
            let per_gpu = crate::transcriber::slots_per_gpu(&gpus, &config.transcribe);
            let default = u16::try_from(gpus.len().max(1))
                .unwrap_or(u16::MAX)
                .saturating_mul(per_gpu);
            let slots = config
                .slots_by_queue_with(default)
                .iter()
                .find(|(f, _)| *f == QueueFamily::Transcribe)
                .map_or(1, |(_, n)| usize::from(*n));
            let transcriber =
                Transcriber::new(&config.transcribe, &config.media.data_dir, gpus, slots, metrics.clone());
            if let Some(why) = failed {
                transcriber.failed_self_test(why);
            }
            Arc::new(transcriber)
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

/// Each GPU's self-test (every op the model uses in f16 against the CPU, then the
/// bundled clip heard by a tiny model, when one is installed, on the GPU and on the
/// CPU): the first failure, if any.
async fn self_test(gpus: &[crate::gpu::GpuInfo], config: &WorkerConfig) -> Option<String> {
    let models = config
        .transcribe
        .whisper_model_dir
        .clone()
        .unwrap_or_else(|| config.media.data_dir.join("models"));
    let tiny = ["tiny.en", "tiny"]
        .iter()
        .map(|name| models.join(name))
        .find(|dir| dir.join("config.json").is_file());
    let compute = config.transcribe.whisper_compute_type;
    for g in gpus {
        let (index, tiny) = (g.index, tiny.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let device = crate::gpu::device_for(Some(index)).map_err(|e| e.to_string())?;
            crate::whisper::selftest::run(&device, candle_core::DType::F16, tiny.as_deref(), compute)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the self-test stopped: {e}")));
        match outcome {
            Ok(passed) => tracing::info!(
                gpu = index,
                name = %g.name,
                ops = passed.ops,
                heard = passed.heard.as_deref().unwrap_or("(no tiny model installed: not listened)"),
                "GPU passed its self-test"
            ),
            Err(why) => {
                let why = format!("GPU {index} ({}) failed its self-test: {why}", g.name);
                tracing::error!(reason = %why, "this worker will not transcribe");
                return Some(why);
            }
        }
    }
    None
}
