//! The Rushes worker: consumes the queues it is given and runs their jobs, with the
//! guarantees of ARCHITECTURE "A job's life".

pub mod config;
mod context;
pub mod gpu;
pub mod jobs;
mod ledger;
mod mailer;
pub mod media;
mod metrics;
mod presence;
mod runner;
mod services;
mod slots;
mod state;
mod transcriber;
pub mod whisper;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rushes_common::queue::Broker;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::config::WorkerConfig;
pub use crate::context::JobContext;
pub use crate::jobs::{JobError, Registry};

/// After the grace period, how long requeued jobs get to wind down before the process exits.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Entry point of the `rushes-worker` binary (and of test binaries that wrap it).
pub fn main_entry() -> anyhow::Result<()> {
    let config: WorkerConfig = rushes_common::config::parse()?;
    rushes_common::telemetry::init();
    rushes_common::shutdown::block_on_service(Some(config.runtime_threads()), |shutdown| run(config, shutdown))
}

/// Runs a worker until `shutdown` is cancelled (or an admin asks it to restart), then
/// stops: no new deliveries, in-flight jobs get `shutdown_grace` to finish, the rest
/// are requeued. Asked to drain, it lets every job it took finish, however long.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = rushes_common::db::pool(&config.database).context("invalid database settings")?;
    let worker_id = Uuid::now_v7();
    let broker =
        Broker::new(&config.broker, &format!("rushes-worker {worker_id}")).context("invalid broker settings")?;
    let host = config.host.clone().unwrap_or_else(rushes_common::host_name);
    let metrics = metrics::WorkerMetrics::new().context("cannot register metrics")?;
    let services = services::Services::start(&config, &metrics).await?;
    let transcribe_slots = services.transcriber.as_ref().map_or(1, |t| t.slot_count());
    let queues = config.slots_by_queue_with(u16::try_from(transcribe_slots).unwrap_or(u16::MAX));
    anyhow::ensure!(!queues.is_empty(), "no queues to consume (--queues)");
    let lease = &config.lease;
    anyhow::ensure!(
        !lease.heartbeat_interval.is_zero() && lease.stale_after >= lease.heartbeat_interval * 3,
        "heartbeat interval must be above zero and the stale period at least three heartbeats \
         (got {:?} and {:?})",
        lease.heartbeat_interval,
        lease.stale_after
    );

    let shared = Arc::new(state::Shared::new(
        db,
        broker,
        Registry::builtin(),
        services,
        metrics,
        worker_id,
        host,
        queues.clone(),
        config.lease.clone(),
        config.quick_claims,
        // A signal stops the worker taking work; so does an admin's drain or restart.
        shutdown.child_token(),
    ));
    // A worker started while PostgreSQL is down waits for it rather than exiting.
    let mut backoff = rushes_common::queue::Backoff::new(Duration::from_secs(10));
    while let Err(err) = presence::register(&shared).await {
        let delay = backoff.next_delay();
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "cannot register the worker yet");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
    if let Err(err) = presence::reload_pauses(&shared).await {
        tracing::warn!(error = %err, "cannot read queue pauses yet");
    }

    let probe = shared.clone();
    let ready: rushes_common::metrics::ReadyCheck = Arc::new(move || {
        let shared = probe.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&shared.db)
                .await
                .map_err(|e| format!("database: {e}"))?;
            let down = shared.disconnected_queues();
            if down.is_empty() {
                Ok(())
            } else {
                Err(format!("not consuming: {}", down.join(", ")))
            }
        })
    });
    let metrics_addr = rushes_common::metrics::serve(
        config.metrics_addr,
        shared.metrics.registry.clone(),
        ready,
        shared.stopped.clone(),
    )
    .await
    .with_context(|| format!("cannot listen on {}", config.metrics_addr))?;
    if let Err(err) = presence::advertise_metrics(&shared, metrics_addr).await {
        tracing::warn!(error = %err, "cannot record the metrics address: Prometheus will not find this worker");
    }
    tracing::info!(worker.id = %worker_id, %metrics_addr, queues = ?queues, "worker started");
    shared.logs.system(
        rushes_common::logs::Level::Info,
        format!("worker {worker_id} started on {} ({queues:?})", shared.host),
    );

    tokio::spawn(presence::liveness_loop(shared.clone()));
    tokio::spawn(presence::heartbeat_loop(shared.clone()));
    tokio::spawn(presence::listen_loop(shared.clone()));
    let mut consumers = tokio::task::JoinSet::new();
    for (family, slots) in queues {
        for reason in metrics::DEAD_LETTER_REASONS {
            shared
                .metrics
                .dead_letters
                .with_label_values(&[family.as_str(), reason]);
        }
        consumers.spawn(runner::consume_queue(shared.clone(), family, slots));
    }

    let dead_gpu = shared.services.transcriber.as_ref().map(|t| t.dead_gpu());
    let gpu_died = async {
        match &dead_gpu {
            Some(dead) => dead.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let fatal = tokio::select! {
        _ = shared.stop_taking.cancelled() => None,
        _ = gpu_died => {
            shared.stop_taking.cancel();
            let why = shared.services.transcriber.as_ref().and_then(|t| t.gpu_failure());
            Some(why.unwrap_or_else(|| "a GPU failed".to_owned()))
        }
    };
    let drained = if shared.draining.load(std::sync::atomic::Ordering::SeqCst) {
        // An admin asked for a drain: every job taken finishes, however long it runs.
        tracing::info!("draining: no new jobs; finishing every job taken");
        tokio::select! {
            _ = wait_idle(&shared) => true,
            // A signal during the drain ends it as a signal does: the grace period.
            _ = shutdown.cancelled() => tokio::time::timeout(config.shutdown_grace, wait_idle(&shared)).await.is_ok(),
        }
    } else {
        tracing::info!(
            grace_s = config.shutdown_grace.as_secs_f64(),
            "stopping: no new jobs; waiting for in-flight jobs"
        );
        tokio::time::timeout(config.shutdown_grace, wait_idle(&shared))
            .await
            .is_ok()
    };
    if !drained {
        let left = shared.running_snapshot();
        tracing::warn!(jobs = left.len(), "grace period over; requeueing unfinished jobs");
        for (_, job) in left {
            job.requeue_on_stop.store(true, std::sync::atomic::Ordering::SeqCst);
            job.cancel.cancel();
        }
        let _ = tokio::time::timeout(WIND_DOWN, wait_idle(&shared)).await;
    }
    shared.stopped.cancel();
    while consumers.join_next().await.is_some() {}
    // Anything a stubborn handler still holds goes back to `queued`; its message was
    // returned to the queue when the channel closed.
    match rushes_common::job::store::release(&shared.db, worker_id, None).await {
        Ok(ids) if !ids.is_empty() => tracing::warn!(jobs = ids.len(), "released jobs still held at exit"),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot release held jobs; they will be re-claimed when stale"),
    }
    if let Err(err) = presence::deregister(&shared).await {
        tracing::warn!(error = %err, "cannot mark the worker stopped");
    }
    shared
        .logs
        .system(rushes_common::logs::Level::Info, format!("worker {worker_id} stopped"));
    // Give the log writer a moment to store the last lines.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tracing::info!("worker stopped");
    match fatal {
        // Non-zero, for the supervisor to start a fresh process with a fresh CUDA context.
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}

/// Waits until every delivery taken has been settled.
async fn wait_idle(shared: &state::Shared) {
    while shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
