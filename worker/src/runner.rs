//! Consuming one queue: (re)connect with backoff, prefetch = free slots, pause and
//! resume, and the life of each delivery — claim, run, record, then settle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rushes_common::job::{Envelope, JobRecord, QueueFamily, spec};
use rushes_common::logs::Level;
use rushes_common::queue::{Backoff, Incoming, Outgoing, Subscription, Topology, printable};
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use crate::context::{JobContext, RunningJob};
use crate::jobs::JobError;
use crate::ledger::{Claim, Letter, Outcome, release};
use crate::state::Shared;

/// Slot accounting of one queue, across channel generations.
struct Slots {
    total: u16,
    /// Deliveries being worked on, whatever channel they came on.
    busy: AtomicUsize,
    /// Signalled whenever a slot frees.
    freed: Notify,
}

impl Slots {
    fn free(&self) -> u16 {
        let busy = u16::try_from(self.busy.load(Ordering::SeqCst)).unwrap_or(u16::MAX);
        self.total.saturating_sub(busy)
    }
}

/// Releases a slot (and its channel's count) when the delivery is settled.
struct SlotGuard {
    slots: Arc<Slots>,
    on_channel: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    family: QueueFamily,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.on_channel.fetch_sub(1, Ordering::SeqCst);
        let busy = self.slots.busy.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        self.shared
            .metrics
            .busy
            .with_label_values(&[self.family.as_str()])
            .set(i64::try_from(busy).unwrap_or(0));
        self.slots.freed.notify_one();
    }
}

/// Consumes `family` with `total` slots until the worker stops taking work.
pub(crate) async fn consume_queue(shared: Arc<Shared>, family: QueueFamily, total: u16) {
    let slots = Arc::new(Slots {
        total,
        busy: AtomicUsize::new(0),
        freed: Notify::new(),
    });
    shared
        .metrics
        .slots
        .with_label_values(&[family.as_str()])
        .set(i64::from(total));
    let mut paused = shared.paused.subscribe();
    let mut backoff = Backoff::new(Duration::from_secs(5));
    let tag = format!("{}.{}", shared.worker_id, family.as_str());
    while !shared.stop_taking.is_cancelled() {
        if paused.borrow_and_update().contains(&family) {
            shared.metrics.paused.with_label_values(&[family.as_str()]).set(1);
            tokio::select! {
                _ = shared.stop_taking.cancelled() => break,
                _ = paused.changed() => continue,
            }
        }
        shared.metrics.paused.with_label_values(&[family.as_str()]).set(0);
        let free = slots.free();
        if free == 0 {
            // Every slot is held by a job from a lost channel: wait for one to finish.
            tokio::select! {
                _ = shared.stop_taking.cancelled() => break,
                _ = slots.freed.notified() => continue,
            }
        }
        match Subscription::open(&shared.broker, family, free, &tag).await {
            Ok(subscription) => {
                backoff.reset();
                shared.set_connected(family, true);
                tracing::info!(queue = family.as_str(), prefetch = free, "consuming");
                serve(&shared, family, &slots, subscription, &mut paused).await;
            }
            Err(err) => {
                shared.set_connected(family, false);
                let delay = backoff.next_delay();
                tracing::warn!(queue = family.as_str(), error = %err, retry_in_ms = delay.as_millis() as u64, "cannot consume");
                tokio::select! {
                    _ = shared.stop_taking.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    shared.set_connected(family, false);
}

/// Takes deliveries from one subscription until its channel fails or the worker stops.
async fn serve(
    shared: &Arc<Shared>,
    family: QueueFamily,
    slots: &Arc<Slots>,
    mut subscription: Subscription,
    paused: &mut tokio::sync::watch::Receiver<std::collections::HashSet<QueueFamily>>,
) {
    let on_channel = Arc::new(AtomicUsize::new(0));
    let mut prefetch = slots.free();
    loop {
        let want_paused = paused.borrow_and_update().contains(&family);
        shared
            .metrics
            .paused
            .with_label_values(&[family.as_str()])
            .set(i64::from(want_paused));
        let toggled = match (want_paused, subscription.is_consuming()) {
            (true, true) => subscription.pause().await,
            (false, false) => subscription.resume().await,
            _ => Ok(()),
        };
        if let Err(err) = toggled {
            tracing::warn!(queue = family.as_str(), error = %err, "channel lost while pausing/resuming");
            break;
        }
        tokio::select! {
            _ = shared.stop_taking.cancelled() => break,
            changed = paused.changed() => if changed.is_err() { break },
            _ = slots.freed.notified() => {
                // Jobs still running from a lost channel hold slots this channel must not fill.
                let orphans = slots.busy.load(Ordering::SeqCst).saturating_sub(on_channel.load(Ordering::SeqCst));
                let want = slots.total.saturating_sub(u16::try_from(orphans).unwrap_or(u16::MAX)).max(1);
                if want != prefetch {
                    if let Err(err) = subscription.set_prefetch(want).await {
                        tracing::warn!(queue = family.as_str(), error = %err, "channel lost while setting prefetch");
                        break;
                    }
                    prefetch = want;
                }
            }
            next = subscription.next(), if subscription.is_consuming() => match next {
                Some(Ok(incoming)) => {
                    on_channel.fetch_add(1, Ordering::SeqCst);
                    shared.in_flight.fetch_add(1, Ordering::SeqCst);
                    let busy = slots.busy.fetch_add(1, Ordering::SeqCst) + 1;
                    shared.metrics.busy.with_label_values(&[family.as_str()]).set(i64::try_from(busy).unwrap_or(0));
                    let guard = SlotGuard { slots: slots.clone(), on_channel: on_channel.clone(), shared: shared.clone(), family };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        handle_delivery(&shared, family, incoming).await;
                        drop(guard);
                    });
                }
                Some(Err(err)) => {
                    tracing::warn!(queue = family.as_str(), error = %err, "consumer channel lost; reconnecting");
                    shared.set_connected(family, false);
                    break;
                }
                None => {}
            },
        }
    }
    if shared.stop_taking.is_cancelled() {
        // Stop deliveries, but keep the channel open until in-flight jobs are settled on it.
        let _ = subscription.pause().await;
        while on_channel.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = shared.stopped.cancelled() => break,
                _ = slots.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    subscription.close().await;
}

/// The life of one delivery. Every path settles it (ack, requeue, or park then ack).
async fn handle_delivery(shared: &Arc<Shared>, family: QueueFamily, incoming: Incoming) {
    if let Some(content_type) = incoming.content_type.as_deref()
        && !is_json(content_type)
    {
        let reason = format!("unsupported content type `{content_type}` (job messages are application/json)");
        return park(shared, family, &incoming, None, None, "content_type", &reason).await;
    }
    let envelope = match Envelope::from_bytes(&incoming.body) {
        Ok(envelope) => envelope,
        Err(err) => return park(shared, family, &incoming, None, None, "malformed", &err.to_string()).await,
    };
    if spec(&envelope.kind).is_none() || !shared.registry.knows(&envelope.kind) {
        let kind = printable(&envelope.kind, KIND_CHARS);
        let reason = format!("unknown job kind `{kind}` (not in this worker's build)");
        // A job of ours that this build cannot run (a newer control plane, an older
        // worker) fails with its letter, so it is not left queued; retrying it from the
        // dead letters once the fleet knows the kind runs it.
        return park(
            shared,
            family,
            &incoming,
            Some(envelope.id),
            Some(&envelope.kind),
            "unknown_kind",
            &reason,
        )
        .await;
    }
    match shared.ledger.claim(envelope.id).await {
        Ok(Claim::Claimed(job)) => run_claimed(shared, family, incoming, *job).await,
        Ok(Claim::Missing) => {
            let reason = format!("no job {} in the database", envelope.id);
            park(
                shared,
                family,
                &incoming,
                None,
                Some(&envelope.kind),
                "unknown_job",
                &reason,
            )
            .await;
        }
        Ok(Claim::Settled(state)) => {
            tracing::debug!(job.id = %envelope.id, state = state.as_str(), "duplicate delivery of a settled job dropped");
            shared
                .metrics
                .duplicates
                .with_label_values(&[family.as_str(), "dropped"])
                .inc();
            settle(incoming.ack().await);
        }
        Ok(Claim::HeldElsewhere) => recheck_later(shared, family, incoming, envelope.id).await,
        Err(err) => {
            tracing::warn!(job.id = %envelope.id, error = %err, "cannot claim; returning the message to the queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            settle(incoming.requeue().await);
        }
    }
}

/// A delivery of a job that another worker holds with a fresh heartbeat (a redelivery
/// after a lost channel, or a worker killed a moment ago). It comes back after the
/// lease could have gone stale: then it is dropped if the job settled, or re-claimed
/// if its holder died.
async fn recheck_later(shared: &Shared, family: QueueFamily, incoming: Incoming, id: Uuid) {
    let delay_s = Topology::delay_level(shared.lease.stale_after);
    let copy = Outgoing::delayed_copy(
        shared.broker.topology(),
        family,
        incoming.body.clone(),
        incoming.message_id.as_deref(),
        incoming.priority,
        delay_s,
    );
    match shared.publisher.publish(&[copy]).await {
        Ok(()) => {
            tracing::debug!(job.id = %id, delay_s, "job held by a live worker; checking again later");
            shared
                .metrics
                .duplicates
                .with_label_values(&[family.as_str(), "rechecked"])
                .inc();
            settle(incoming.ack().await);
        }
        Err(err) => {
            tracing::warn!(job.id = %id, error = %err, "cannot schedule a recheck; returning the message");
            tokio::time::sleep(Duration::from_secs(1)).await;
            settle(incoming.requeue().await);
        }
    }
}

async fn run_claimed(shared: &Arc<Shared>, family: QueueFamily, incoming: Incoming, job: JobRecord) {
    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
    async move {
        let Some(kind) = spec(&job.kind) else {
            // The row names a kind this build does not know (the message said otherwise).
            let message = format!("unknown job kind `{}`", job.kind);
            return match shared
                .ledger
                .record(job.id, job.attempts, Outcome::Failed(message))
                .await
            {
                Ok(_) => settle(incoming.ack().await),
                Err(_) => settle(incoming.requeue().await),
            };
        };
        let running = Arc::new(RunningJob::new());
        shared.track(job.id, job.attempts, running.clone());
        shared
            .metrics
            .started
            .with_label_values(&[job.kind.as_str(), family.as_str()])
            .inc();
        let started = Instant::now();

        let ctx = JobContext {
            job_id: job.id,
            attempt: job.attempts,
            max_attempts: job.max_attempts,
            db: shared.db.clone(),
            publisher: shared.publisher.clone(),
            services: shared.services.clone(),
            logs: shared.logs.clone(),
            running: running.clone(),
        };
        let result = match shared.registry.start(&job.kind, ctx, job.payload.clone()) {
            Some(future) => {
                let mut handle = tokio::spawn(future.in_current_span());
                match tokio::time::timeout(kind.timeout, &mut handle).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(join_error)) if join_error.is_panic() => Err(JobError::Retryable(format!(
                        "handler panicked: {}",
                        panic_message(join_error)
                    ))),
                    Ok(Err(_)) => Err(JobError::Cancelled),
                    Err(_) => {
                        running.cancel.cancel();
                        handle.abort();
                        Err(JobError::Retryable(format!(
                            "timed out after {} s",
                            kind.timeout.as_secs()
                        )))
                    }
                }
            }
            None => Err(JobError::Permanent(format!("no handler for `{}`", job.kind))),
        };
        shared.untrack(job.id, &running);

        let outcome = match result {
            Ok(value) => Outcome::Succeeded(value),
            Err(JobError::Permanent(message)) => Outcome::Failed(message),
            Err(JobError::Retryable(message)) if job.attempts < job.max_attempts => {
                Outcome::Retrying(message, Topology::delay_level(kind.backoff(job.attempts)))
            }
            Err(JobError::Retryable(message)) => Outcome::Dead(
                message,
                Letter {
                    queue: family.as_str(),
                    kind: job.kind.clone(),
                    body: incoming.body.clone(),
                    headers: incoming.headers.clone(),
                },
            ),
            Err(JobError::Cancelled) if running.requeue_on_stop.load(Ordering::SeqCst) => {
                return requeue_on_stop(shared, family, incoming, &job).await;
            }
            Err(JobError::Unable(reason)) => {
                return hand_back(shared, family, incoming, &job, &reason, started).await;
            }
            Err(JobError::Cancelled) => {
                // Cancelled by an admin (the row already says so) or re-claimed elsewhere.
                finish_metrics(shared, &job, family, "cancelled", started);
                tracing::info!("job stopped: cancelled or no longer ours");
                job_line(shared, &job, Level::Info, "stopped: cancelled".to_owned(), started);
                return settle(incoming.ack().await);
            }
        };
        let label = match &outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Retrying(..) => "retrying",
            Outcome::Dead(..) => "dead",
        };
        match shared.ledger.record(job.id, job.attempts, outcome.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                finish_metrics(shared, &job, family, "lost", started);
                tracing::info!(
                    outcome = label,
                    "job was cancelled or re-claimed meanwhile; outcome not recorded"
                );
                return settle(incoming.ack().await);
            }
            Err(err) => {
                // Not recorded: leave the delivery to come back; the claim is still ours,
                // so it waits for our heartbeat to go stale and runs again (at least once).
                tracing::error!(error = %err, "cannot record the outcome; returning the message");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return settle(incoming.requeue().await);
            }
        }
        finish_metrics(shared, &job, family, label, started);
        // Routine upkeep (a reaper every minute) succeeding is not news.
        let success_level = if kind.housekeeping { Level::Debug } else { Level::Info };
        let (level, line) = match &outcome {
            Outcome::Succeeded(_) => (success_level, "succeeded".to_owned()),
            Outcome::Failed(message) => (Level::Error, format!("failed: {message}")),
            Outcome::Retrying(message, delay_s) => (Level::Warn, format!("failed, retrying in {delay_s} s: {message}")),
            Outcome::Dead(message, _) => (Level::Error, format!("dead after {} attempts: {message}", job.attempts)),
        };
        job_line(shared, &job, level, line, started);
        match outcome {
            Outcome::Succeeded(_) if kind.housekeeping => {
                tracing::debug!(duration_ms = started.elapsed().as_millis() as u64, "job succeeded")
            }
            Outcome::Succeeded(_) => {
                tracing::info!(duration_ms = started.elapsed().as_millis() as u64, "job succeeded")
            }
            Outcome::Failed(ref message) => tracing::warn!(error = %message, "job failed permanently"),
            Outcome::Retrying(ref message, delay_s) => {
                tracing::warn!(error = %message, retry_in_s = delay_s, "job failed; retrying");
                let retry = Outgoing::delayed(shared.broker.topology(), &job, delay_s);
                if let Err(err) = shared.publisher.publish(&[retry]).await {
                    // The row says `retrying`; the redelivery claims and runs it without the delay.
                    tracing::warn!(error = %err, "cannot publish the retry; returning the message");
                    return settle(incoming.requeue().await);
                }
            }
            Outcome::Dead(ref message, _) => {
                tracing::error!(error = %message, attempts = job.attempts, "job is dead: out of attempts");
                return forward_letter(shared, family, &incoming, "exhausted", message).await;
            }
        }
        settle(incoming.ack().await);
    }
    .instrument(span)
    .await
}

/// The job's own stored log line for how this attempt ended.
fn job_line(shared: &Shared, job: &JobRecord, level: Level, message: String, started: Instant) {
    let fields = serde_json::json!({
        "attempt": job.attempts,
        "kind": job.kind,
        "worker_id": shared.worker_id,
        "duration_ms": started.elapsed().as_millis() as u64,
    });
    shared.logs.log(level, Some(job.id), message, fields);
}

fn finish_metrics(shared: &Shared, job: &JobRecord, family: QueueFamily, outcome: &str, started: Instant) {
    shared
        .metrics
        .finished
        .with_label_values(&[job.kind.as_str(), family.as_str(), outcome])
        .inc();
    shared
        .metrics
        .duration
        .with_label_values(&[job.kind.as_str(), outcome])
        .observe(started.elapsed().as_secs_f64());
}

/// The worker is stopping and its grace ran out: the job goes back to `queued` and its
/// message back to the queue, for another worker.
async fn requeue_on_stop(shared: &Shared, family: QueueFamily, incoming: Incoming, job: &JobRecord) {
    match release(&shared.db, shared.worker_id, Some(&[job.id])).await {
        Ok(_) => tracing::info!("job interrupted by shutdown; requeued"),
        Err(err) => {
            tracing::warn!(error = %err, "cannot release the job; it will be re-claimed once its heartbeat is stale")
        }
    }
    shared
        .metrics
        .finished
        .with_label_values(&[job.kind.as_str(), family.as_str(), "requeued"])
        .inc();
    settle(incoming.requeue().await);
}

/// Seconds a job this worker could not run waits before it is offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(5);

/// This worker cannot run the job now (another may): it re-reads what it may take (so
/// it stops taking the queue when its abilities say so), puts the job back to `queued`
/// without counting the attempt, and offers it again after a short delay.
async fn hand_back(
    shared: &Arc<Shared>,
    family: QueueFamily,
    incoming: Incoming,
    job: &JobRecord,
    reason: &str,
    started: Instant,
) {
    tracing::warn!(reason, "this worker cannot run the job; handing it back");
    if let Err(err) = crate::presence::reload_pauses(shared).await {
        tracing::warn!(error = %err, "cannot re-read what this worker may take");
    }
    if let Err(err) = release(&shared.db, shared.worker_id, Some(&[job.id])).await {
        tracing::warn!(error = %err, "cannot release the job; it will be re-claimed once its heartbeat is stale");
    }
    finish_metrics(shared, job, family, "handed_back", started);
    job_line(
        shared,
        job,
        Level::Warn,
        format!("handed back, attempt not counted: {reason}"),
        started,
    );
    let again = Outgoing::delayed(shared.broker.topology(), job, Topology::delay_level(HAND_BACK_DELAY));
    match shared.publisher.publish(&[again]).await {
        Ok(()) => settle(incoming.ack().await),
        Err(err) => {
            tracing::warn!(error = %err, "cannot publish the delayed copy; returning the message");
            settle(incoming.requeue().await);
        }
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Longest kind (characters) kept from a message we cannot run.
const KIND_CHARS: usize = 200;
/// Longest reason (characters) recorded for a parked message.
const REASON_CHARS: usize = 1000;

/// Parks a message we cannot run: recorded in `dead_letters` — failing `job`, its row,
/// in the same statement if it is still waiting — then forwarded (see [`forward_letter`]).
/// The kind and reason may come from a foreign message: they are made storable first
/// (a NUL would fail the insert forever, and the message would never leave its queue).
async fn park(
    shared: &Shared,
    family: QueueFamily,
    incoming: &Incoming,
    job: Option<Uuid>,
    kind: Option<&str>,
    reason_label: &str,
    reason: &str,
) {
    let kind = kind.map(|k| printable(k, KIND_CHARS));
    let reason = printable(reason, REASON_CHARS);
    let reason = reason.as_str();
    tracing::warn!(queue = family.as_str(), message_id = ?incoming.message_id, reason, "dead-lettering message");
    let recorded = sqlx::query(
        "WITH failed AS ( \
             UPDATE jobs SET state = 'failed', error = $5, finished_at = now(), retry_at = NULL, \
                    history = history || jsonb_build_array(jsonb_build_object( \
                        'at', now(), 'event', 'failed', 'attempt', attempts, 'error', $5)) \
             WHERE id = $3 AND state IN ('queued', 'retrying') RETURNING id, attempts) \
         INSERT INTO dead_letters (id, queue, job_id, kind, reason, body, headers, attempt) \
         VALUES ($1, $2, (SELECT id FROM failed), $4, $5, $6, $7, (SELECT attempts FROM failed))",
    )
    .bind(Uuid::now_v7())
    .bind(family.as_str())
    .bind(job)
    .bind(kind)
    .bind(reason)
    .bind(&incoming.body)
    .bind(&incoming.headers)
    .execute(&shared.db)
    .await;
    if let Err(err) = recorded {
        tracing::error!(error = %err, "cannot record the dead letter; returning the message");
        tokio::time::sleep(Duration::from_secs(1)).await;
        return settle(incoming.requeue().await);
    }
    forward_letter(shared, family, incoming, reason_label, reason).await;
}

/// Copies a recorded dead letter to the dead-letter queue with the reason in its
/// headers, counts it, and acknowledges the delivery.
async fn forward_letter(shared: &Shared, family: QueueFamily, incoming: &Incoming, reason_label: &str, reason: &str) {
    let copy = Outgoing::dead_letter(
        shared.broker.topology(),
        &shared.broker.topology().queue(family),
        incoming.body.clone(),
        incoming.message_id.as_deref(),
        reason,
    );
    if let Err(err) = shared.publisher.publish(&[copy]).await {
        tracing::warn!(error = %err, "dead letter recorded in PostgreSQL but not copied to the dead-letter queue");
    }
    shared
        .metrics
        .dead_letters
        .with_label_values(&[family.as_str(), reason_label])
        .inc();
    settle(incoming.ack().await);
}

/// Logs a failed ack/nack: the channel is gone and the broker redelivers the message,
/// which the claim then recognises.
fn settle(result: Result<(), rushes_common::queue::BrokerError>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "could not settle a delivery; the broker will redeliver it");
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "non-string panic".to_owned()),
        Err(_) => "task failed".to_owned(),
    }
}
