//! The Rushes scheduler: any number of replicas; one leader (PostgreSQL advisory lock)
//! fires the schedules stored in PostgreSQL and runs the relay, the others stand by hot.

pub mod config;
pub mod firing;
pub mod leader;
mod metrics;
mod presence;
pub mod relay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use rushes_common::job::JobRecord;
use rushes_common::logs::{Level, LogSink};
use rushes_common::queue::{Backoff, Broker, Publisher};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::config::SchedulerConfig;
use crate::leader::Candidate;
use crate::metrics::SchedulerMetrics;

/// NOTIFY channel on which schedule edits are announced (by a trigger on `schedules`).
pub const SCHEDULES_CHANNEL: &str = "rushes_schedules";
/// How often a standby tries to become leader.
const STANDBY_RETRY: Duration = Duration::from_millis(1000);
/// Longest the leader sleeps without looking at the table (edits normally wake it at once).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often the enabled-schedules gauge is refreshed.
const COUNT_EVERY: Duration = Duration::from_secs(10);
/// Longest between two looks for queued jobs whose message the broker lost (the look
/// is every tenth of the stranded age, at most this, at least every relay pass).
const UNCLAIMED_EVERY_MAX: Duration = Duration::from_secs(30);

/// Entry point of the `rushes-scheduler` binary.
pub fn main_entry() -> anyhow::Result<()> {
    let config: SchedulerConfig = rushes_common::config::parse()?;
    rushes_common::telemetry::init();
    rushes_common::shutdown::block_on_service(None, |shutdown| run(config, shutdown))
}

/// What the leader works with.
struct Scheduler {
    config: SchedulerConfig,
    db: PgPool,
    publisher: Publisher,
    metrics: SchedulerMetrics,
    /// The system log: leadership, schedule fires and failures.
    logs: LogSink,
    /// Fired jobs on their way to the broker (see [`publish_fired`]).
    outbox: mpsc::Sender<Vec<JobRecord>>,
}

/// Publishes fired jobs in the order they were fired; a failure leaves them to the relay.
async fn publish_fired(db: PgPool, publisher: Publisher, mut outbox: mpsc::Receiver<Vec<JobRecord>>) {
    while let Some(mut jobs) = outbox.recv().await {
        rushes_common::job::store::publish_or_leave_to_relay(&db, &publisher, &mut jobs).await;
    }
}

/// Runs until `shutdown`: competes for leadership and, while leading, fires and relays.
pub async fn run(config: SchedulerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let db = rushes_common::db::pool(&config.database).context("invalid database settings")?;
    let broker = Broker::new(&config.broker, "rushes-scheduler").context("invalid broker settings")?;
    let metrics = SchedulerMetrics::new().context("cannot register metrics")?;
    let publisher = Publisher::new(broker).counting(metrics.jobs_enqueued.clone());
    let (outbox, fired) = mpsc::channel(64);
    tokio::spawn(publish_fired(db.clone(), publisher.clone(), fired));
    let scheduler = Scheduler {
        logs: LogSink::spawn(db.clone(), "scheduler"),
        publisher,
        metrics,
        db,
        config,
        outbox,
    };

    let probe_db = scheduler.db.clone();
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
    let addr = rushes_common::metrics::serve(
        scheduler.config.metrics_addr,
        scheduler.metrics.registry.clone(),
        ready,
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("cannot listen on {}", scheduler.config.metrics_addr))?;
    tracing::info!(metrics_addr = %addr, "scheduler started");
    let presence = tokio::spawn(presence::keep(
        scheduler.db.clone(),
        rushes_common::metrics::advertised(addr, &rushes_common::host_name()),
        shutdown.clone(),
    ));

    let mut backoff = Backoff::new(Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        let mut candidate = match Candidate::connect(scheduler.config.database.database_url.expose()).await {
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
        if stand_by(&mut candidate, &shutdown).await {
            tracing::info!("leading");
            scheduler
                .logs
                .system(Level::Info, format!("scheduler {} is the leader", std::process::id()));
            scheduler.metrics.set_leader(true);
            if let Err(err) = scheduler.lead(&mut candidate, &shutdown).await {
                tracing::warn!(error = format!("{err:#}"), "standing down");
                scheduler
                    .logs
                    .system(Level::Warn, format!("scheduler stood down: {err:#}"));
            }
            scheduler.metrics.set_leader(false);
        }
        candidate.resign().await;
    }
    if let Err(err) = presence.await {
        tracing::warn!(error = %err, "the scheduler's presence task failed");
    }
    tracing::info!("scheduler stopped");
    Ok(())
}

/// Waits until this candidate takes the lock (`true`), or shutdown / a lost connection.
async fn stand_by(candidate: &mut Candidate, shutdown: &CancellationToken) -> bool {
    loop {
        match candidate.try_lead().await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "leadership connection lost");
                return false;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(STANDBY_RETRY) => {}
        }
    }
}

impl Scheduler {
    /// Leads until shutdown or until the lock connection fails. Nothing fires without
    /// first confirming the lock is still held.
    async fn lead(&self, candidate: &mut Candidate, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut listener = self.listen().await;
        let mut initialise = true;
        let mut last_relay: Option<Instant> = None;
        let mut last_unclaimed: Option<Instant> = None;
        let unclaimed_every = (self.config.stranded_after / 10).min(UNCLAIMED_EVERY_MAX);
        let mut last_count: Option<Instant> = None;
        loop {
            candidate.confirm().await.context("lost the leadership connection")?;
            if initialise {
                match firing::initialise(&self.db, Utc::now()).await {
                    Ok(_) => initialise = false,
                    Err(err) => tracing::warn!(error = %err, "cannot initialise new schedules"),
                }
            }
            self.fire().await;
            if last_relay.is_none_or(|t| t.elapsed() >= self.config.relay_interval) {
                self.relay().await;
                last_relay = Some(Instant::now());
                if last_unclaimed.is_none_or(|t| t.elapsed() >= unclaimed_every) {
                    self.relay_unclaimed().await;
                    last_unclaimed = Some(Instant::now());
                }
            }
            if last_count.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                if let Ok(n) = firing::enabled_count(&self.db).await {
                    self.metrics.loaded.set(n);
                }
                last_count = Some(Instant::now());
            }

            let mut sleep = MAX_SLEEP.min(self.config.relay_interval);
            if let Ok(Some(next)) = firing::next_due(&self.db).await {
                sleep = sleep.min((next - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(sleep) => {}
                notified = recv(&mut listener) => {
                    if notified {
                        // Take every edit announced so far in one go.
                        while listener.as_mut().and_then(PgListener::next_buffered).is_some() {}
                        initialise = true;
                    } else {
                        listener = self.listen().await;
                        initialise = true;
                    }
                }
            }
        }
    }

    /// LISTENs for schedule edits; `None` (polling each second) if that fails.
    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.db).await.ok()?;
        match listener.listen(SCHEDULES_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN for schedule edits; polling");
                None
            }
        }
    }

    /// Fires everything due now, batch after batch.
    async fn fire(&self) {
        loop {
            let mut pass =
                match firing::fire_due(&self.db, &self.publisher, Utc::now(), self.config.misfire_grace).await {
                    Ok(pass) => pass,
                    Err(err) => {
                        self.metrics.errors.with_label_values(&["fire"]).inc();
                        tracing::warn!(error = format!("{err:#}"), "firing pass failed");
                        return;
                    }
                };
            if pass.fires.is_empty() {
                return;
            }
            let fired_at = Utc::now();
            for fire in &pass.fires {
                if fire.outcome == firing::FireOutcome::Fired {
                    let lag_s = (fired_at - fire.due).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    self.metrics.lag.with_label_values(&[] as &[&str]).observe(lag_s);
                    tracing::debug!(schedule = %fire.name, lag_ms = lag_s * 1000.0, "fired");
                }
                // A housekeeping schedule (the reaper, every minute) firing is routine.
                let routine = rushes_common::job::spec(&fire.kind).is_some_and(|k| k.housekeeping);
                let level = match fire.outcome {
                    firing::FireOutcome::Invalid => Level::Error,
                    firing::FireOutcome::Fired if routine => Level::Debug,
                    _ => Level::Info,
                };
                let fields = serde_json::json!({ "schedule_id": fire.schedule_id, "due": fire.due, "outcome": fire.outcome.as_str() });
                self.logs.log(
                    level,
                    None,
                    format!("schedule `{}` {}", fire.name, fire.outcome.as_str()),
                    fields,
                );
                self.metrics
                    .fires
                    .with_label_values(&[fire.name.as_str(), fire.outcome.as_str()])
                    .inc();
            }
            // Publishing happens beside the firing loop, so a large batch (a thousand
            // crons due on the same second) does not delay the next due times.
            // A stalled broker must not stall firing: when the outbox is full the jobs,
            // already committed, are left to the relay.
            if !pass.jobs.is_empty() && self.outbox.try_send(std::mem::take(&mut pass.jobs)).is_err() {
                tracing::warn!("publisher backlogged; the relay will publish the fired jobs");
            }
        }
    }

    async fn relay(&self) {
        match relay::pass(
            &self.db,
            &self.publisher,
            self.config.relay_grace,
            self.config.lease.stale_after,
        )
        .await
        {
            Ok(r) => {
                self.metrics
                    .relayed
                    .with_label_values(&["unpublished"])
                    .inc_by(r.unpublished as u64);
                self.metrics
                    .relayed
                    .with_label_values(&["stranded"])
                    .inc_by(r.stranded as u64);
                if r.unpublished > 0 {
                    tracing::info!(jobs = r.unpublished, "relayed unpublished jobs");
                }
            }
            Err(err) => {
                self.metrics.errors.with_label_values(&["relay"]).inc();
                tracing::warn!(error = format!("{err:#}"), "relay pass failed");
            }
        }
    }

    /// Re-publishes queued jobs whose message the broker lost ([`relay::unclaimed`]).
    async fn relay_unclaimed(&self) {
        match relay::unclaimed(&self.db, &self.publisher, self.config.stranded_after).await {
            Ok(n) => self.metrics.relayed.with_label_values(&["unclaimed"]).inc_by(n as u64),
            Err(err) => {
                self.metrics.errors.with_label_values(&["relay"]).inc();
                tracing::warn!(error = format!("{err:#}"), "relay pass for lost messages failed");
            }
        }
    }
}

/// The next notification: `true`; the listener failed or there is none: `false` (after
/// a pause, so a dead listener does not spin).
async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => match l.recv().await {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN connection lost");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        },
        None => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            false
        }
    }
}
