//! The worker's settings: shared sections plus which queues it consumes and how many slots each has.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser};
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig, Secret, parse_seconds};
use rushes_common::job::QueueFamily;
use rushes_common::media::MediaConfig;

/// Consumes Rushes job queues and runs the jobs.
#[derive(Debug, Clone, Parser)]
#[command(name = "rushes-worker", version)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub lease: LeaseConfig,
    #[command(flatten)]
    pub media: MediaConfig,
    #[command(flatten)]
    pub transcode: TranscodeConfig,
    #[command(flatten)]
    pub smtp: SmtpConfig,
    #[command(flatten)]
    pub transcribe: TranscribeConfig,
    /// Queues to consume, comma separated, each optionally with its slot count:
    /// `transcode=2,scan,email`. Queues: scan, transcode, transcode_long, transcribe, email, maintenance.
    #[arg(
        long,
        env = "RUSHES_QUEUES",
        value_delimiter = ',',
        default_value = "scan,transcode,transcode_long,transcribe,email,maintenance"
    )]
    pub queues: Vec<QueueSlots>,
    /// Slots of a queue listed without `=N`: jobs of that queue this worker runs at once.
    #[arg(long, env = "RUSHES_SLOTS", default_value_t = 2)]
    pub slots: u16,
    /// Address of this worker's `/metrics`, `/healthz` and `/readyz` (port 0 picks a free one).
    #[arg(long, env = "RUSHES_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
    /// Seconds a stopping worker (SIGTERM) gives in-flight jobs to finish before it
    /// requeues them (default 30).
    #[arg(long, env = "RUSHES_SHUTDOWN_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
    /// Name shown in the workers list (default: the host name).
    #[arg(long, env = "RUSHES_WORKER_HOST")]
    pub host: Option<String>,
    /// Quick claims: while a queue's jobs are short (under 20 ms on average), a claim
    /// takes the job's lock in a database session of its own and writes nothing, so a
    /// job costs one row version less; a job that runs past 100 ms is then claimed the
    /// ordinary way. `false` claims every job by writing `running` (default true).
    #[arg(long, env = "RUSHES_QUICK_CLAIMS", default_value_t = true, action = clap::ArgAction::Set)]
    pub quick_claims: bool,
    /// Threads of the worker's async runtime, which only moves messages and rows: every
    /// job's heavy work runs on blocking threads or in child processes (default: a
    /// quarter of the cores, at least one). On 2 cores, one thread instead of two ran
    /// 15 % more short jobs a second, as fewer wake-ups crossed between threads.
    #[arg(long, env = "RUSHES_WORKER_ASYNC_THREADS")]
    pub async_threads: Option<usize>,
}

/// How clips are probed and transcoded.
#[derive(Debug, Clone, Args)]
pub struct TranscodeConfig {
    /// The ffmpeg binary (Debian's package; never a downloaded one).
    #[arg(long, env = "RUSHES_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// The ffprobe binary.
    #[arg(long, env = "RUSHES_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: PathBuf,
    /// Height of the proxy video in pixels (never upscaled; default 540).
    #[arg(long, env = "RUSHES_PROXY_HEIGHT", default_value_t = 540)]
    pub proxy_height: u32,
    /// Video bitrate of the proxy in kbit/s (default 2500).
    #[arg(long, env = "RUSHES_PROXY_BITRATE_KBPS", default_value_t = 2500)]
    pub proxy_bitrate_kbps: u32,
    /// Audio bitrate of the proxy and per-track files in kbit/s (default 128).
    #[arg(long, env = "RUSHES_AUDIO_BITRATE_KBPS", default_value_t = 128)]
    pub audio_bitrate_kbps: u32,
    /// Hardware video: `auto` (NVENC and CUDA decoding where this node has them),
    /// `cuda` (insist), `none` (software). Decided once at worker start.
    #[arg(long, env = "RUSHES_VIDEO_HWACCEL", default_value = "auto", value_parser = ["auto", "cuda", "none"])]
    pub video_hwaccel: String,
    /// Seconds between scrub thumbnails (default 5; longer clips space them out to at
    /// most 200 thumbnails).
    #[arg(long, env = "RUSHES_SPRITE_INTERVAL", default_value = "5", value_parser = parse_seconds)]
    pub sprite_interval: Duration,
    /// A transcode may run this many times its clip's duration, plus five minutes,
    /// before it is stopped (default 10).
    #[arg(long, env = "RUSHES_TRANSCODE_TIMEOUT_FACTOR", default_value_t = 10.0)]
    pub timeout_factor: f64,
    /// ffprobe processes a scan runs at once (default 4).
    #[arg(long, env = "RUSHES_PROBE_CONCURRENCY", default_value_t = 4)]
    pub probe_concurrency: usize,
    /// Font file of burned-in watermarks (Debian's fonts-dejavu-core). When it is
    /// missing, fontconfig's `Sans`.
    #[arg(
        long,
        env = "RUSHES_WATERMARK_FONT",
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
    )]
    pub watermark_font: PathBuf,
}

/// How speech is transcribed.
#[derive(Debug, Clone, Args)]
pub struct TranscribeConfig {
    /// Folder of Whisper models, one sub-folder per model (`small/`, `tiny.en/`), each in
    /// Hugging Face (config.json, tokenizer.json, model.safetensors) or CTranslate2 /
    /// faster-whisper format (config.json, model.bin, tokenizer.json). Default:
    /// `<data dir>/models`.
    #[arg(long, env = "RUSHES_WHISPER_MODEL_DIR")]
    pub whisper_model_dir: Option<PathBuf>,
    /// The model used until an admin sets `whisper_model` (default small).
    #[arg(long, env = "RUSHES_WHISPER_MODEL", default_value = "small")]
    pub whisper_model: String,
    /// `auto` (a GPU per transcription slot where this node has GPUs and the worker was
    /// built with `cuda`), `cpu`, or `cuda` (GPUs or nothing: a worker that cannot use
    /// one does not start, rather than transcribe on its CPU).
    #[arg(long, env = "RUSHES_WHISPER_DEVICE", default_value = "auto", value_parser = ["auto", "cpu", "cuda"])]
    pub whisper_device: String,
    /// Beams of the beam search at temperature 0 (1: greedy, the fastest; 5 as
    /// faster-whisper, the most accurate).
    #[arg(long, env = "RUSHES_WHISPER_BEAM_SIZE", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub whisper_beam_size: u16,
    /// Time each word (segments carry `words`; one more decoder pass per 30 s).
    #[arg(long, env = "RUSHES_WHISPER_WORD_TIMESTAMPS", default_value_t = true, action = clap::ArgAction::Set)]
    pub whisper_word_timestamps: bool,
    /// Decode only what a voice-activity pass finds to be speech (silence and room tone
    /// cost little, and nothing is invented in them).
    #[arg(long, env = "RUSHES_WHISPER_VAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub whisper_vad: bool,
    /// How the weights are held and multiplied, as faster-whisper's `compute_type`:
    /// `auto` (the model's precision: float32 on a CPU, float16 on a GPU), `int8` (on a
    /// CPU, the decoder's weights in 8 bits with a scale per 32: base 1.6× as fast with
    /// the same words on the project's speech set, tiny.en 1.2× but 4 words in 96 worse;
    /// a GPU still computes in float16) or `float32`.
    #[arg(long, env = "RUSHES_WHISPER_COMPUTE_TYPE", default_value = "auto")]
    pub whisper_compute_type: crate::whisper::ComputeType,
}

/// The SMTP server mails go through.
#[derive(Debug, Clone, Args)]
pub struct SmtpConfig {
    #[arg(long, env = "RUSHES_SMTP_HOST", default_value = "127.0.0.1")]
    pub smtp_host: String,
    /// Default 1025 (the development mail catcher the quick start runs); 587 or 465 in production.
    #[arg(long, env = "RUSHES_SMTP_PORT", default_value_t = 1025)]
    pub smtp_port: u16,
    /// `none` (plain, for a local catcher), `starttls` or `tls` (implicit, port 465).
    #[arg(long, env = "RUSHES_SMTP_TLS", default_value = "none", value_parser = ["none", "starttls", "tls"])]
    pub smtp_tls: String,
    #[arg(long, env = "RUSHES_SMTP_USER")]
    pub smtp_user: Option<String>,
    #[arg(long, env = "RUSHES_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,
    /// The From header.
    #[arg(long, env = "RUSHES_SMTP_FROM", default_value = "Rushes <rushes@localhost>")]
    pub smtp_from: String,
    /// Seconds an SMTP exchange may take (default 30).
    #[arg(long, env = "RUSHES_SMTP_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub smtp_timeout: Duration,
    /// The control plane's URL as people reach it, for links in mails.
    #[arg(long, env = "RUSHES_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
}

/// One `--queues` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSlots {
    pub family: QueueFamily,
    /// `None`: take `--slots`.
    pub slots: Option<u16>,
}

impl FromStr for QueueSlots {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, slots) = match s.split_once('=') {
            Some((name, n)) => {
                let n: u16 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("slots of `{name}` must be a whole number, got `{n}`"))?;
                if n == 0 {
                    return Err(format!("slots of `{name}` must be at least 1"));
                }
                (name, Some(n))
            }
            None => (s, None),
        };
        let family = name.trim().parse::<QueueFamily>().map_err(|e| e.to_string())?;
        Ok(Self { family, slots })
    }
}

impl WorkerConfig {
    /// Each consumed family with its slot count (a family listed twice keeps its last count).
    pub fn slots_by_queue(&self) -> Vec<(QueueFamily, u16)> {
        self.slots_by_queue_with(1)
    }

    /// As [`Self::slots_by_queue`], where `transcribe` listed without `=N` gets
    /// `transcribe` slots (one on a node without GPUs: a CPU transcription uses every
    /// core; on a GPU node, as many as the GPUs' memory holds, see
    /// `transcriber::slots_per_gpu`).
    pub fn slots_by_queue_with(&self, transcribe: u16) -> Vec<(QueueFamily, u16)> {
        let mut out: Vec<(QueueFamily, u16)> = Vec::new();
        for q in &self.queues {
            let default = match q.family {
                QueueFamily::Transcribe => transcribe.max(1),
                _ => self.slots,
            };
            let slots = q.slots.unwrap_or(default).max(1);
            match out.iter_mut().find(|(f, _)| *f == q.family) {
                Some(entry) => entry.1 = slots,
                None => out.push((q.family, slots)),
            }
        }
        out
    }

    /// [`Self::async_threads`], or its default for this machine.
    pub fn runtime_threads(&self) -> usize {
        self.async_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get() / 4))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_slots_parse() {
        assert_eq!(
            "transcode=3".parse::<QueueSlots>(),
            Ok(QueueSlots {
                family: QueueFamily::Transcode,
                slots: Some(3)
            })
        );
        assert_eq!(
            "scan".parse::<QueueSlots>(),
            Ok(QueueSlots {
                family: QueueFamily::Scan,
                slots: None
            })
        );
        assert!("scan=0".parse::<QueueSlots>().is_err());
        assert!("celery".parse::<QueueSlots>().is_err());
    }

    #[test]
    fn defaults_fill_unsized_queues() -> anyhow::Result<()> {
        let config: WorkerConfig =
            rushes_common::config::parse_from(vec!["w".into(), "--queues".into(), "scan,email=4,scan=3".into()])?;
        assert_eq!(
            config.slots_by_queue(),
            vec![(QueueFamily::Scan, 3), (QueueFamily::Email, 4)]
        );
        Ok(())
    }

    #[test]
    fn runtime_threads_default_to_a_quarter_of_the_cores() -> anyhow::Result<()> {
        let with = |args: &[&str]| -> anyhow::Result<usize> {
            let mut argv: Vec<std::ffi::OsString> = vec!["w".into()];
            argv.extend(args.iter().map(Into::into));
            Ok(rushes_common::config::parse_from::<WorkerConfig>(argv)?.runtime_threads())
        };
        let cores = std::thread::available_parallelism()?.get();
        assert_eq!(with(&[])?, (cores / 4).max(1));
        assert_eq!(with(&["--async-threads", "3"])?, 3);
        assert_eq!(with(&["--async-threads", "0"])?, 1, "a runtime needs a thread");
        for bad in ["-1", "two", ""] {
            assert!(with(&["--async-threads", bad]).is_err(), "{bad:?} accepted");
        }
        Ok(())
    }
}
