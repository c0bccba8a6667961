//! The scheduler's Prometheus metrics.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use rushes_common::metrics::{JobsEnqueued, counter, gauge};

#[derive(Clone)]
pub struct SchedulerMetrics {
    pub registry: Registry,
    leader: IntGaugeVec,
    /// Schedules handled, by schedule name and outcome (fired, skipped_missed, invalid).
    pub fires: IntCounterVec,
    /// Fire time − due time.
    pub lag: HistogramVec,
    /// Enabled schedules.
    pub loaded: IntGauge,
    pub relayed: IntCounterVec,
    pub errors: IntCounterVec,
    /// Jobs the schedules fired (carried by the scheduler's publisher).
    pub jobs_enqueued: JobsEnqueued,
}

impl SchedulerMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let lag = HistogramVec::new(
            HistogramOpts::new("rushes_schedule_lag_seconds", "Fire time minus due time").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
            ]),
            &[],
        )?;
        r.register(Box::new(lag.clone()))?;
        let loaded = IntGauge::new("rushes_schedules_loaded", "Enabled schedules")?;
        r.register(Box::new(loaded.clone()))?;
        let errors = counter(
            &r,
            "rushes_scheduler_errors_total",
            "Failed scheduler passes",
            &["task"],
        )?;
        // At 0 from the start, so that an alert's increase() sees the first failure.
        for task in ["fire", "relay"] {
            errors.with_label_values(&[task]);
        }
        let metrics = Self {
            leader: gauge(&r, "rushes_scheduler_leader", "1 while this scheduler leads", &[])?,
            fires: counter(
                &r,
                "rushes_schedule_fires_total",
                "Schedules handled when due",
                &["schedule", "outcome"],
            )?,
            relayed: counter(
                &r,
                "rushes_relay_published_total",
                "Jobs published by the relay",
                &["reason"],
            )?,
            errors,
            lag,
            loaded,
            jobs_enqueued: JobsEnqueued::register(&r)?,
            registry: r,
        };
        // A standby says so (0) from the start.
        metrics.set_leader(false);
        Ok(metrics)
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.with_label_values(&[] as &[&str]).set(i64::from(leading));
    }
}
