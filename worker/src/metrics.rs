//! The worker's Prometheus metrics.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use rushes_common::metrics::{JobsEnqueued, counter, gauge, histogram};

/// The reasons a message is parked in the dead-letter queue (`rushes_dead_letters_total`'s
/// `reason`): created at 0 for every queue a worker consumes, so that an alert's
/// `increase()` sees the first one.
pub const DEAD_LETTER_REASONS: [&str; 5] = ["content_type", "malformed", "unknown_kind", "unknown_job", "exhausted"];

#[derive(Clone)]
pub struct WorkerMetrics {
    pub registry: Registry,
    /// Jobs this worker's jobs enqueued (carried by its publisher).
    pub jobs_enqueued: JobsEnqueued,
    /// Attempts started, by kind and queue.
    pub started: IntCounterVec,
    /// Attempts finished, by kind, queue and outcome (succeeded, failed, retrying, dead,
    /// cancelled, requeued, lost).
    pub finished: IntCounterVec,
    /// Attempt durations, by kind and outcome.
    pub duration: HistogramVec,
    /// Messages parked in the dead-letter queue, by queue and reason.
    pub dead_letters: IntCounterVec,
    /// Deliveries of jobs already settled or held by another worker, by queue and what was done.
    pub duplicates: IntCounterVec,
    /// Slots per queue.
    pub slots: IntGaugeVec,
    /// Busy slots per queue.
    pub busy: IntGaugeVec,
    /// 1 while the queue's consumer is connected to the broker.
    pub connected: IntGaugeVec,
    /// The consumer's prefetch window per queue (slots, plus a lookahead for short jobs).
    pub prefetch: IntGaugeVec,
    /// Settlement frames sent to the broker, by queue and frame (`ack` — one may cover
    /// many deliveries — or `requeue`).
    pub settle_frames: IntCounterVec,
    /// 1 while the queue is paused by an admin.
    pub paused: IntGaugeVec,
    /// Whisper's real-time factor (processing seconds per second of audio), by model and device.
    pub whisper_rtf: HistogramVec,
    pub whisper_encoder: HistogramVec,
    pub whisper_token: HistogramVec,
    /// GPU memory in bytes, by GPU and kind (total, free), read at start and after each transcription.
    pub gpu_memory: IntGaugeVec,
}

impl WorkerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        Ok(Self {
            jobs_enqueued: JobsEnqueued::register(&r)?,
            started: counter(
                &r,
                "rushes_jobs_started_total",
                "Job attempts started",
                &["kind", "queue"],
            )?,
            finished: counter(
                &r,
                "rushes_jobs_finished_total",
                "Job attempts finished",
                &["kind", "queue", "outcome"],
            )?,
            duration: histogram(
                &r,
                "rushes_job_duration_seconds",
                "Job attempt duration",
                &["kind", "outcome"],
            )?,
            dead_letters: counter(
                &r,
                "rushes_dead_letters_total",
                "Messages parked in the dead-letter queue",
                &["queue", "reason"],
            )?,
            duplicates: counter(
                &r,
                "rushes_duplicate_deliveries_total",
                "Deliveries of jobs that were not ours to run",
                &["queue", "disposition"],
            )?,
            slots: gauge(&r, "rushes_worker_slots", "Job slots per queue", &["queue"])?,
            busy: gauge(&r, "rushes_worker_slots_busy", "Busy job slots per queue", &["queue"])?,
            connected: gauge(
                &r,
                "rushes_worker_broker_connected",
                "1 while the queue's consumer is connected",
                &["queue"],
            )?,
            prefetch: gauge(
                &r,
                "rushes_worker_prefetch",
                "Prefetch window of the queue's consumer",
                &["queue"],
            )?,
            settle_frames: counter(
                &r,
                "rushes_worker_settle_frames_total",
                "Acknowledgement frames sent (one ack may settle many deliveries)",
                &["queue", "frame"],
            )?,
            paused: gauge(
                &r,
                "rushes_worker_queue_paused",
                "1 while the queue is paused",
                &["queue"],
            )?,
            whisper_rtf: whisper_histogram(
                &r,
                "rushes_whisper_real_time_factor",
                "Transcription time per second of audio",
                vec![0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
            )?,
            whisper_encoder: whisper_histogram(
                &r,
                "rushes_whisper_encoder_seconds_per_window",
                "Encoder time per 30-s window (each transcription's mean)",
                vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
            )?,
            whisper_token: whisper_histogram(
                &r,
                "rushes_whisper_decoder_seconds_per_token",
                "Decoder time per token kept, beams, fallbacks and word timings included (each transcription's mean)",
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
            )?,
            gpu_memory: gauge(
                &r,
                "rushes_gpu_memory_bytes",
                "GPU memory (total, free)",
                &["gpu", "name", "kind"],
            )?,
            registry: r,
        })
    }
}

/// A Whisper histogram labelled by model and device (`cpu`, `cuda:N`).
fn whisper_histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> Result<HistogramVec, prometheus::Error> {
    let h = HistogramVec::new(
        prometheus::HistogramOpts::new(name, help).buckets(buckets),
        &["model", "device"],
    )?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}
