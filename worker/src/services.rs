//! What job handlers use beyond the database and the broker: media roots and the data
//! folder, ffmpeg settings and the video backend chosen at start, and the mailer.

use std::sync::Arc;

use rushes_common::job::QueueFamily;
use rushes_common::media::{MediaConfig, MediaRoots};

use crate::config::{SmtpConfig, TranscodeConfig, WorkerConfig};
use crate::mailer::Mailer;
use crate::media::backend::{self, VideoBackend};

pub struct Services {
    pub media: MediaConfig,
    pub roots: MediaRoots,
    pub transcode: TranscodeConfig,
    pub video: VideoBackend,
    pub mailer: Mailer,
    pub smtp: SmtpConfig,
}

impl Services {
    /// Builds the services; probes the video hardware only when this worker transcodes.
    pub async fn start(config: &WorkerConfig) -> anyhow::Result<Arc<Self>> {
        let transcodes = config
            .queues
            .iter()
            .any(|q| matches!(q.family, QueueFamily::Transcode | QueueFamily::TranscodeLong));
        let video = if transcodes {
            backend::detect(&config.transcode).await?
        } else {
            VideoBackend::software()
        };
        Ok(Arc::new(Self {
            roots: MediaRoots::new(&config.media.media_roots),
            media: config.media.clone(),
            transcode: config.transcode.clone(),
            video,
            mailer: Mailer::new(&config.smtp)?,
            smtp: config.smtp.clone(),
        }))
    }
}
