//! The Rushes scheduler: one leader among any number of replicas (PostgreSQL advisory
//! lock) runs the relay; the others stand by hot. Schedules (cron / interval /
//! clocked) plug into the same leader loop.

pub mod config;
pub mod leader;
pub mod relay;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use rushes_common::metrics::{counter, gauge};
use rushes_common::queue::{Backoff, Broker, Publisher};
use tokio_util::sync::CancellationToken;

pub use crate::config::SchedulerConfig;
use crate::leader::Candidate;

/// How often a standby tries to become leader.
const STANDBY_RETRY: Duration = Duration::from_millis(1000);

#[derive(Clone)]
struct SchedulerMetrics {
    registry: Registry,
    leader: IntGaugeVec,
    relayed: IntCounterVec,
    errors: IntCounterVec,
}

impl SchedulerMetrics {
    fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        Ok(Self {
            leader: gauge(&r, "rushes_scheduler_leader", "1 while this scheduler leads", &[])?,
            relayed: counter(
                &r,
                "rushes_relay_published_total",
                "Jobs published by the relay",
                &["reason"],
            )?,
            errors: counter(
                &r,
                "rushes_scheduler_errors_total",
                "Failed scheduler passes",
                &["task"],
            )?,
            registry: r,
        })
    }
}

/// Entry point of the `rushes-scheduler` binary.
pub fn main_entry() -> anyhow::Result<()> {
    let config: SchedulerConfig = rushes_common::config::parse()?;
    rushes_common::telemetry::init();
    rushes_common::shutdown::block_on_service(|shutdown| run(config, shutdown))
}

/// Runs until `shutdown`: competes for leadership and, while leading, relays.
pub async fn run(config: SchedulerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = rushes_common::db::pool(&config.database).context("invalid database settings")?;
    let broker = Broker::new(&config.broker, "rushes-scheduler").context("invalid broker settings")?;
    let publisher = Publisher::new(broker);
    let metrics = SchedulerMetrics::new().context("cannot register metrics")?;
    let leading = Arc::new(AtomicBool::new(false));

    let probe_db = db.clone();
    let ready: rushes_common::metrics::ReadyCheck = Arc::new(move || {
        let db = probe_db.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&db)
                .await
                .map(|_| ())
                .map_err(|e| format!("database: {e}"))
        })
    });
    let addr = rushes_common::metrics::serve(config.metrics_addr, metrics.registry.clone(), ready, shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on {}", config.metrics_addr))?;
    tracing::info!(metrics_addr = %addr, "scheduler started");

    let mut backoff = Backoff::new(Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        let mut candidate = match Candidate::connect(config.database.database_url.expose()).await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(error = %err, "cannot connect for leadership; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        backoff.reset();
        lead_or_stand_by(&config, &db, &publisher, &metrics, &leading, &mut candidate, &shutdown).await;
        leading.store(false, Ordering::SeqCst);
        metrics.leader.with_label_values(&[] as &[&str]).set(0);
        candidate.resign().await;
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Returns when leadership (or the chance of it) is lost, or on shutdown.
async fn lead_or_stand_by(
    config: &SchedulerConfig,
    db: &sqlx::PgPool,
    publisher: &Publisher,
    metrics: &SchedulerMetrics,
    leading: &AtomicBool,
    candidate: &mut Candidate,
    shutdown: &CancellationToken,
) {
    loop {
        match candidate.try_lead().await {
            Ok(true) => {}
            Ok(false) => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(STANDBY_RETRY) => continue,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "leadership connection lost");
                return;
            }
        }
        if !leading.swap(true, Ordering::SeqCst) {
            tracing::info!("leading");
            metrics.leader.with_label_values(&[] as &[&str]).set(1);
        }
        // Never act without first confirming the lock is still ours.
        if let Err(err) = candidate.confirm().await {
            tracing::warn!(error = %err, "lost the leadership connection; standing down");
            return;
        }
        match relay::pass(db, publisher, config.relay_grace, config.lease.stale_after).await {
            Ok(r) => {
                metrics
                    .relayed
                    .with_label_values(&["unpublished"])
                    .inc_by(r.unpublished as u64);
                metrics
                    .relayed
                    .with_label_values(&["stranded"])
                    .inc_by(r.stranded as u64);
                if r.unpublished > 0 {
                    tracing::info!(jobs = r.unpublished, "relayed unpublished jobs");
                }
            }
            Err(err) => {
                metrics.errors.with_label_values(&["relay"]).inc();
                tracing::warn!(error = format!("{err:#}"), "relay pass failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.relay_interval) => {}
        }
    }
}
