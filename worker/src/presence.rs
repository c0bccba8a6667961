//! The worker's presence in PostgreSQL: its `workers` row, the heartbeat of its running
//! jobs (which also carries their progress and notices cancellations), and the
//! LISTEN/NOTIFY channel that brings cancels and queue pauses within milliseconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rushes_common::db::{CANCEL_CHANNEL, PAUSE_CHANNEL, WORKER_CHANNEL};
use rushes_common::job::QueueFamily;
use rushes_common::job::store::{self, Beat};
use rushes_common::queue::Backoff;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::state::Shared;

/// The workers-row columns of [`Commands`].
macro_rules! command_columns {
    () => {
        "stop_requested, slots_wanted, queues"
    };
}

/// Inserts this worker's row.
pub async fn register(shared: &Shared) -> Result<(), sqlx::Error> {
    let queues: serde_json::Map<String, serde_json::Value> = shared
        .queues
        .iter()
        .map(|(family, slots)| (family.as_str().to_owned(), serde_json::Value::from(*slots)))
        .collect();
    let total: i32 = shared.queues.iter().map(|(_, s)| i32::from(*s)).sum();
    let mut capabilities = serde_json::json!({ "video": shared.services.video });
    // The GPUs this worker transcribes on, or else encodes or decodes video on (the
    // workers list, and the `gpus` label Prometheus's discovery gives it).
    let gpus = match &shared.services.transcriber {
        Some(transcriber) => {
            capabilities["transcribe"] = transcriber.describe();
            transcriber.gpus().to_vec()
        }
        None if shared.services.video != crate::media::backend::VideoBackend::software() => {
            crate::gpu::inventory().await
        }
        None => Vec::new(),
    };
    capabilities["ffmpeg"] =
        serde_json::json!(rushes_common::media::tool_version(&shared.services.transcode.ffmpeg).await);
    if !gpus.is_empty() {
        capabilities["cuda_driver"] = serde_json::json!(crate::gpu::driver_version().await);
    }
    let gpus = serde_json::to_value(gpus).unwrap_or_else(|_| serde_json::Value::Array(Vec::new()));
    sqlx::query(
        "INSERT INTO workers (id, host, pid, version, queues, slots, capabilities, gpus) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(shared.worker_id)
    .bind(&shared.host)
    .bind(i32::try_from(std::process::id()).unwrap_or(0))
    .bind(rushes_common::VERSION)
    .bind(serde_json::Value::Object(queues))
    .bind(total)
    .bind(capabilities)
    .bind(gpus)
    .execute(&shared.db)
    .await?;
    Ok(())
}

/// Records where this worker serves its metrics (Prometheus finds it through the
/// control plane's service discovery).
pub async fn advertise_metrics(shared: &Shared, bound: std::net::SocketAddr) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE workers SET metrics_addr = $2 WHERE id = $1")
        .bind(shared.worker_id)
        .bind(rushes_common::metrics::advertised(bound, &shared.host))
        .execute(&shared.db)
        .await?;
    Ok(())
}

/// Marks this worker stopped.
pub async fn deregister(shared: &Shared) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE workers SET stopped_at = now(), last_seen_at = now() WHERE id = $1")
        .bind(shared.worker_id)
        .execute(&shared.db)
        .await?;
    Ok(())
}

/// Holds this worker's liveness lock (migration `worker_liveness`) in a database session
/// of its own, outside the pool, for as long as the worker runs. When the process dies,
/// PostgreSQL ends the session and drops the lock with it, and a worker that receives
/// one of its jobs again re-claims it at once instead of waiting for the lease. The
/// session is checked every heartbeat and opened again, lock retaken, when it breaks.
pub async fn liveness_loop(shared: Arc<Shared>) {
    let options = shared.db.connect_options();
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        let delay = match take_liveness_lock(&options, shared.worker_id).await {
            Ok(Some(mut session)) => {
                backoff.reset();
                let mut tick = tokio::time::interval(shared.lease.heartbeat_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shared.stopped.cancelled() => {
                            let _ = session.close().await;
                            return;
                        }
                        _ = tick.tick() => {}
                    }
                    if let Err(err) = sqlx::query("SELECT 1").execute(&mut session).await {
                        tracing::warn!(error = %err, "liveness session lost; taking the lock again");
                        break;
                    }
                }
                backoff.next_delay()
            }
            // An earlier session of ours still holds it (PostgreSQL has not seen that
            // connection end yet): we count as alive meanwhile.
            Ok(None) => shared.lease.heartbeat_interval,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "cannot take the liveness lock");
                delay
            }
        };
        tokio::select! {
            _ = shared.stopped.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Opens a session and takes the lock in it (`None`: another session holds it), then
/// says in the workers row that this worker holds one — in that order, so the row
/// never claims a lock that is not held yet.
async fn take_liveness_lock(options: &PgConnectOptions, worker_id: Uuid) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut session = PgConnection::connect_with(options).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(worker_lock_key($1))")
        .bind(worker_id)
        .fetch_one(&mut session)
        .await?;
    if !taken {
        let _ = session.close().await;
        return Ok(None);
    }
    sqlx::query("UPDATE workers SET liveness_lock = true WHERE id = $1")
        .bind(worker_id)
        .execute(&mut session)
        .await?;
    Ok(Some(session))
}

/// Every `heartbeat_interval`: refresh the heartbeat and progress of running jobs in one
/// statement, cancel those no longer ours, touch the workers row, re-read pauses.
pub async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.lease.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.stopped.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The beat touches the workers row and reads back what an admin asked of it.
        match beat(&shared).await {
            Ok(Some(commands)) => {
                if let Err(err) = apply_commands(&shared, commands).await {
                    tracing::warn!(error = %err, "cannot do what an admin asked of this worker");
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
        if let Err(err) = reload_pauses(&shared).await {
            tracing::warn!(error = %err, "cannot read queue pauses");
        }
    }
}

async fn beat(shared: &Shared) -> Result<Option<Commands>, sqlx::Error> {
    if let Some(transcriber) = shared.services.transcriber.as_ref()
        && !transcriber.gpus().is_empty()
    {
        // Free GPU memory moves with other processes and our own models; a GPU that
        // failed is probed until it passes.
        transcriber.refresh_gpu_memory();
        transcriber.probe().await;
    }
    // A job quick-claimed and not promoted has no heartbeat (its row says `queued`).
    let mut jobs = shared.running_snapshot();
    jobs.retain(|(_, job)| !job.quick.load(Ordering::SeqCst));
    if !jobs.is_empty() {
        let beats: Vec<Beat> = jobs
            .iter()
            .map(|(id, job)| Beat {
                id: *id,
                attempt: job.attempt.load(Ordering::SeqCst),
                progress: job.progress(),
            })
            .collect();
        let alive = store::beat(&shared.db, shared.worker_id, &beats).await?;
        for (id, job) in &jobs {
            if !alive.contains(id) && !job.cancel.is_cancelled() {
                tracing::info!(job.id = %id, "job is no longer ours (cancelled or re-claimed); stopping it");
                job.cancel.cancel();
            }
        }
    }
    sqlx::query_as(concat!(
        "UPDATE workers SET last_seen_at = now() WHERE id = $1 RETURNING ",
        command_columns!()
    ))
    .bind(shared.worker_id)
    .fetch_optional(&shared.db)
    .await
}

/// What an admin asked of this worker (migration `worker_control`): a stop, and slots.
#[derive(sqlx::FromRow)]
struct Commands {
    stop_requested: Option<String>,
    slots_wanted: serde_json::Value,
    queues: serde_json::Value,
}

/// Reads what an admin asked of this worker and does it: resizes queues' slots (and
/// records the slots in force), or stops taking work — to drain (finish every job it
/// holds, then exit) or to restart (stop as on SIGTERM).
pub async fn reload_commands(shared: &Shared) -> Result<(), sqlx::Error> {
    let commands: Option<Commands> =
        sqlx::query_as(concat!("SELECT ", command_columns!(), " FROM workers WHERE id = $1"))
            .bind(shared.worker_id)
            .fetch_optional(&shared.db)
            .await?;
    match commands {
        Some(commands) => apply_commands(shared, commands).await,
        None => Ok(()),
    }
}

/// Does what an admin asked of this worker (read by [`reload_commands`] or the beat).
async fn apply_commands(shared: &Shared, commands: Commands) -> Result<(), sqlx::Error> {
    if let Some(wanted) = commands.slots_wanted.as_object() {
        for (name, total) in wanted {
            let (Ok(family), Some(total)) = (
                name.parse::<QueueFamily>(),
                total.as_u64().and_then(|t| u16::try_from(t).ok()),
            ) else {
                continue;
            };
            if shared.resize_slots(family, total) {
                tracing::debug!(queue = family.as_str(), slots = total, "slots set");
            }
        }
        let in_force = shared.slots_in_force();
        let queues: serde_json::Map<String, serde_json::Value> = in_force
            .iter()
            .map(|(family, slots)| (family.as_str().to_owned(), serde_json::Value::from(*slots)))
            .collect();
        let queues = serde_json::Value::Object(queues);
        if queues != commands.queues {
            let total: i32 = in_force.iter().map(|(_, s)| i32::from(*s)).sum();
            sqlx::query("UPDATE workers SET queues = $2, slots = $3 WHERE id = $1")
                .bind(shared.worker_id)
                .bind(&queues)
                .bind(total)
                .execute(&shared.db)
                .await?;
            tracing::info!(queues = %queues, "slots now in force");
            shared.logs.system(
                rushes_common::logs::Level::Info,
                format!("worker {} runs slots {queues}", shared.worker_id),
            );
        }
    }
    match commands.stop_requested.as_deref() {
        Some(how) if !shared.stop_taking.is_cancelled() => {
            if how == "drain" {
                shared.draining.store(true, Ordering::SeqCst);
            }
            tracing::info!(how, "an admin asked this worker to stop");
            shared.logs.system(
                rushes_common::logs::Level::Info,
                format!("worker {} stopping: {how} asked by an admin", shared.worker_id),
            );
            shared.stop_taking.cancel();
        }
        _ => {}
    }
    Ok(())
}

/// Reads `queue_pauses` and publishes the set to the queue consumers.
pub async fn reload_pauses(shared: &Shared) -> Result<(), sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar("SELECT queue FROM queue_pauses")
        .fetch_all(&shared.db)
        .await?;
    let mut paused: HashSet<QueueFamily> = names.iter().filter_map(|n| n.parse().ok()).collect();
    // A worker that lacks the configured Whisper model, or whose GPU cannot hold it,
    // stops taking `transcribe` (and says why in the workers list, with the model it
    // uses and the ones it has) until the setting or its model folder changes.
    if let Some(transcriber) = &shared.services.transcriber {
        let model = transcriber.wanted_model(&shared.db).await?;
        if !transcriber.refresh(&model) {
            paused.insert(QueueFamily::Transcribe);
        }
        if let Some(description) = transcriber.changed_description() {
            let written = sqlx::query(
                "UPDATE workers SET capabilities = jsonb_set(capabilities, '{transcribe}', $2) WHERE id = $1",
            )
            .bind(shared.worker_id)
            .bind(description)
            .execute(&shared.db)
            .await;
            if let Err(err) = written {
                // Written again at the next look.
                transcriber.forget_description();
                return Err(err);
            }
        }
    }
    shared.paused.send_if_modified(|current| {
        let changed = *current != paused;
        *current = paused;
        changed
    });
    Ok(())
}

/// Listens for cancels, pause changes and what an admin asks of this worker;
/// reconnects with backoff.
pub async fn listen_loop(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(Duration::from_secs(5));
    loop {
        let mut listener = match PgListener::connect_with(&shared.db).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "cannot LISTEN; retrying");
                tokio::select! {
                    _ = shared.stopped.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        if let Err(err) = listener
            .listen_all([CANCEL_CHANNEL, PAUSE_CHANNEL, WORKER_CHANNEL])
            .await
        {
            tracing::warn!(error = %err, "LISTEN failed; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
        backoff.reset();
        // Anything announced while we were not listening.
        let _ = reload_pauses(&shared).await;
        let _ = reload_commands(&shared).await;
        loop {
            let notification = tokio::select! {
                _ = shared.stopped.cancelled() => return,
                n = listener.recv() => n,
            };
            match notification {
                Ok(n) if n.channel() == CANCEL_CHANNEL => {
                    if let Ok(id) = n.payload().parse::<Uuid>()
                        && let Some(job) = shared.running_job(id)
                    {
                        tracing::info!(job.id = %id, "cancel requested");
                        job.cancel.cancel();
                    }
                }
                Ok(n) if n.channel() == WORKER_CHANNEL => {
                    if n.payload() == shared.worker_id.to_string()
                        && let Err(err) = reload_commands(&shared).await
                    {
                        tracing::warn!(error = %err, "cannot read what an admin asked of this worker");
                    }
                }
                Ok(_) => {
                    if let Err(err) = reload_pauses(&shared).await {
                        tracing::warn!(error = %err, "cannot read queue pauses");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
