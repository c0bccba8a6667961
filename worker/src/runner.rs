//! Consuming one queue: (re)connect with backoff, a prefetch window of the free slots
//! plus a lookahead that adapts to how long the queue's jobs run, pause and resume, and
//! the life of each delivery — claim (batched with others), wait for a slot (the most
//! urgent first), run, hand the outcome to the group-committing ledger (which frees
//! the slot), and acknowledge once the outcome is durable.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rushes_common::job::{AMQP_MAX_PRIORITY, Envelope, JobRecord, QueueFamily, spec};
use rushes_common::logs::Level;
use rushes_common::queue::{
    Backoff, Incoming, Outgoing, QueueType, SettleFrames, Settler, Subscription, Topology, printable,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::context::{JobContext, RunningJob};
use crate::jobs::JobError;
use crate::ledger::{Attempt, Claim, Letter, Outcome, QuickHold};
use crate::slots::{Pending, SlotPermit, Slots};
use crate::state::Shared;
use rushes_common::job::store::{self, release};

/// Pauses before a redelivered job held by another worker is claimed again, in case
/// that worker just died (then its liveness lock goes within moments).
const LOOK_AGAIN: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(600),
];

/// A quick-claimed job still running after this long is claimed the ordinary way: its
/// row says `running`, and its heartbeats start (see [`store::promote`]).
const PROMOTE_AFTER: Duration = Duration::from_millis(100);

/// A claimed job that has waited this long for a slot goes back to its queue, for a
/// worker with a free slot (and this worker stops holding work ahead).
const GIVE_BACK_AFTER: Duration = Duration::from_millis(250);
/// Most doublings of [`GIVE_BACK_AFTER`] for a message given back before.
const GIVE_BACK_DOUBLINGS: u64 = 5;

/// How long a delivery waits for a slot before it goes back: [`GIVE_BACK_AFTER`],
/// doubled for each time the message went back to its queue before (quorum queues count
/// them in `x-delivery-count`), up to 8 s. With priority bands a worker holds a window
/// per band; when every worker is busy, the less urgent ones would otherwise go back
/// and come straight back to it four times a second.
fn give_back_after(headers: &serde_json::Value) -> Duration {
    let returns = headers
        .get("x-delivery-count")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
        .min(GIVE_BACK_DOUBLINGS);
    GIVE_BACK_AFTER * (1u32 << returns)
}

/// One queue's slots and deliveries, across channel generations.
struct Lane {
    family: QueueFamily,
    slots: Arc<Slots>,
    /// Deliveries taken and not yet settled, whatever channel they came on.
    held: AtomicUsize,
}

/// A delivery and the settler of the channel it came on.
struct Delivery {
    incoming: Incoming,
    settler: Settler,
}

impl Deref for Delivery {
    type Target = Incoming;
    fn deref(&self) -> &Incoming {
        &self.incoming
    }
}

impl Delivery {
    /// Acknowledged with the channel's next contiguous run.
    fn ack(self) {
        self.settler.ack(self.incoming);
    }

    /// Back to its queue, now.
    fn requeue(self) {
        self.settler.requeue(self.incoming);
    }
}

/// Counts a delivery as held (by the worker, its lane and its channel) until dropped.
struct HeldGuard {
    lane: Arc<Lane>,
    on_channel: Arc<AtomicUsize>,
    shared: Arc<Shared>,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.on_channel.fetch_sub(1, Ordering::SeqCst);
        self.lane.held.fetch_sub(1, Ordering::SeqCst);
        self.lane.slots.freed.notify_one();
    }
}

/// Consumes `family` with `total` slots until the worker stops taking work.
pub(crate) async fn consume_queue(shared: Arc<Shared>, family: QueueFamily, total: u16) {
    let lane = Arc::new(Lane {
        family,
        slots: Slots::new(
            total,
            shared.metrics.busy.with_label_values(&[family.as_str()]),
            shared.broker.topology().queue_type() == QueueType::Quorum,
        ),
        held: AtomicUsize::new(0),
    });
    shared
        .metrics
        .slots
        .with_label_values(&[family.as_str()])
        .set(i64::from(total));
    shared.register_slots(family, lane.slots.clone());
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
        let window = lane.window(0);
        if window == 0 {
            // Every slot is held by a job from a lost channel: wait for one to finish.
            tokio::select! {
                _ = shared.stop_taking.cancelled() => break,
                _ = lane.slots.freed.notified() => continue,
            }
        }
        match Subscription::open(&shared.broker, family, window, &tag).await {
            Ok(subscription) => {
                backoff.reset();
                shared.set_connected(family, true);
                tracing::info!(queue = family.as_str(), prefetch = window, "consuming");
                serve(&shared, &lane, subscription, window, &mut paused).await;
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

impl Lane {
    /// The prefetch window of a channel, given the deliveries this channel holds: the
    /// slots, plus — for short jobs — a lookahead and room for deliveries whose outcome
    /// is being committed; less what older channels still hold. 0: every slot is taken.
    fn window(&self, on_channel: usize) -> u16 {
        let total = self.slots.total();
        let ahead = self.slots.ahead();
        let window = if ahead == 0 {
            total
        } else {
            total.saturating_mul(2).saturating_add(ahead)
        };
        let orphans = self.held.load(Ordering::SeqCst).saturating_sub(on_channel);
        window.saturating_sub(u16::try_from(orphans).unwrap_or(u16::MAX))
    }
}

/// Takes deliveries from one subscription until its channel fails or the worker stops.
async fn serve(
    shared: &Arc<Shared>,
    lane: &Arc<Lane>,
    mut subscription: Subscription,
    mut prefetch: u16,
    paused: &mut tokio::sync::watch::Receiver<std::collections::HashSet<QueueFamily>>,
) {
    let family = lane.family;
    let on_channel = Arc::new(AtomicUsize::new(0));
    let settler = Settler::spawn(SettleFrames {
        acks: shared
            .metrics
            .settle_frames
            .with_label_values(&[family.as_str(), "ack"]),
        requeues: shared
            .metrics
            .settle_frames
            .with_label_values(&[family.as_str(), "requeue"]),
    });
    let prefetch_gauge = shared.metrics.prefetch.with_label_values(&[family.as_str()]);
    prefetch_gauge.set(i64::from(prefetch));
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
            _ = lane.slots.freed.notified() => {
                // The lookahead follows the jobs' pace; jobs still running from a lost
                // channel hold slots this channel must not fill.
                let want = lane.window(on_channel.load(Ordering::SeqCst)).max(1);
                if want != prefetch {
                    if let Err(err) = subscription.set_prefetch(want).await {
                        tracing::warn!(queue = family.as_str(), error = %err, "channel lost while setting prefetch");
                        break;
                    }
                    prefetch = want;
                    prefetch_gauge.set(i64::from(prefetch));
                }
            }
            next = subscription.next(), if subscription.is_consuming() => match next {
                Some(Ok(incoming)) => {
                    settler.delivered(&incoming);
                    on_channel.fetch_add(1, Ordering::SeqCst);
                    shared.in_flight.fetch_add(1, Ordering::SeqCst);
                    lane.held.fetch_add(1, Ordering::SeqCst);
                    let guard = HeldGuard { lane: lane.clone(), on_channel: on_channel.clone(), shared: shared.clone() };
                    let (shared, lane) = (shared.clone(), lane.clone());
                    let delivery = Delivery { incoming, settler: settler.clone() };
                    tokio::spawn(async move {
                        handle_delivery(&shared, &lane, delivery).await;
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
                _ = lane.slots.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    settler.flush().await;
    subscription.close().await;
}

/// The life of one delivery. Every path settles it (ack, requeue, or park then ack).
async fn handle_delivery(shared: &Arc<Shared>, lane: &Arc<Lane>, incoming: Delivery) {
    let family = lane.family;
    let pending = lane.slots.pending(incoming.priority);
    if let Some(content_type) = incoming.content_type.as_deref()
        && !is_json(content_type)
    {
        let reason = format!("unsupported content type `{content_type}` (job messages are application/json)");
        return park(shared, family, incoming, None, None, "content_type", &reason).await;
    }
    let envelope = match Envelope::from_bytes(&incoming.body) {
        Ok(envelope) => envelope,
        Err(err) => return park(shared, family, incoming, None, None, "malformed", &err.to_string()).await,
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
            incoming,
            Some(envelope.id),
            Some(&envelope.kind),
            "unknown_kind",
            &reason,
        )
        .await;
    }
    // While the queue's jobs are short, a claim takes the job's claim lock and writes nothing.
    let quick = shared.quick_claims && lane.slots.short();
    let priority = incoming.priority.unwrap_or(0);
    let mut claim = shared.ledger.claim(envelope.id, priority, quick).await;
    if incoming.redelivered {
        // Its worker may have died a moment ago: the broker saw the connection close
        // and redelivered before PostgreSQL ended that worker's session (and released
        // its liveness lock). Look again briefly before deferring to the lease.
        for pause in LOOK_AGAIN {
            if !matches!(claim, Ok((Claim::HeldElsewhere, _))) {
                break;
            }
            tokio::time::sleep(pause).await;
            claim = shared.ledger.claim(envelope.id, priority, quick).await;
        }
    }
    match claim {
        Ok((Claim::Claimed(job), hold)) => start_claimed(shared, lane, incoming, *job, pending, hold).await,
        Ok((Claim::Missing, _)) => {
            let reason = format!("no job {} in the database", envelope.id);
            park(
                shared,
                family,
                incoming,
                None,
                Some(&envelope.kind),
                "unknown_job",
                &reason,
            )
            .await;
        }
        Ok((Claim::Settled(state), _)) => {
            tracing::debug!(job.id = %envelope.id, state = state.as_str(), "duplicate delivery of a settled job dropped");
            shared
                .metrics
                .duplicates
                .with_label_values(&[family.as_str(), "dropped"])
                .inc();
            incoming.ack();
        }
        Ok((Claim::HeldElsewhere, _)) => recheck_later(shared, family, incoming, envelope.id).await,
        Err(err) => {
            tracing::warn!(job.id = %envelope.id, error = %err, "cannot claim; returning the message to the queue");
            tokio::time::sleep(Duration::from_secs(1)).await;
            incoming.requeue();
        }
    }
}

/// A delivery of a job that another worker holds with a fresh heartbeat and a live
/// database session (a redelivery after a lost channel, or a host gone silent). It comes back after the
/// lease could have gone stale: then it is dropped if the job settled, or re-claimed
/// if its holder died.
async fn recheck_later(shared: &Shared, family: QueueFamily, incoming: Delivery, id: Uuid) {
    let delay_s = Topology::delay_level(shared.lease.stale_after);
    // The copy comes back at the queue's highest priority: it is a timer for a job
    // that already started, not new work, and at its own priority it would wait behind
    // the whole backlog (seen after a PostgreSQL restart: 20 s behind a draining queue).
    let copy = Outgoing::delayed_copy(
        shared.broker.topology(),
        family,
        incoming.body.clone(),
        incoming.message_id.as_deref(),
        Some(AMQP_MAX_PRIORITY),
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
            incoming.ack();
        }
        Err(err) => {
            tracing::warn!(job.id = %id, error = %err, "cannot schedule a recheck; returning the message");
            tokio::time::sleep(Duration::from_secs(1)).await;
            incoming.requeue();
        }
    }
}

/// A claimed job waits for a slot — the most urgent first — then runs. One that waits
/// longer than [`give_back_after`] goes back to its queue for a worker with a free slot
/// (and this worker stops holding work ahead); one still waiting when the worker stops
/// goes back at once. `hold`: the job was quick-claimed.
async fn start_claimed(
    shared: &Arc<Shared>,
    lane: &Arc<Lane>,
    incoming: Delivery,
    job: JobRecord,
    pending: Pending,
    hold: Option<QuickHold>,
) {
    let claimed = Instant::now();
    let running = Arc::new(RunningJob::new());
    running.quick.store(hold.is_some(), Ordering::SeqCst);
    // Tracked from the claim: heartbeats hold it, and a cancel reaches it while it waits.
    shared.track(job.id, job.attempts, running.clone());
    let permit = tokio::select! {
        permit = lane.slots.acquire(job.priority, incoming.tag) => Some(permit),
        _ = tokio::time::sleep(give_back_after(&incoming.headers)) => None,
        _ = shared.stop_taking.cancelled() => None,
    };
    // Waiting in line, or running, or going back: no longer a claim a kept slot waits for.
    drop(pending);
    let Some(permit) = permit else {
        shared.untrack(job.id, &running);
        let why = if shared.stop_taking.is_cancelled() {
            "the worker is stopping"
        } else {
            lane.slots.slowed();
            "no slot came free in time"
        };
        return give_back(shared, lane.family, incoming, &job, why, hold).await;
    };
    // When it really started: the claim's time (the database's clock) plus the wait.
    let started_at = job
        .started_at
        .map(|at| at + chrono::TimeDelta::from_std(claimed.elapsed()).unwrap_or_default());
    let claim = Claimed {
        job,
        running,
        started_at,
        hold,
    };
    run_claimed(shared, lane, incoming, claim, permit).await
}

/// A claimed job about to run.
struct Claimed {
    job: JobRecord,
    running: Arc<RunningJob>,
    /// When it really started.
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its claim lock, while it is quick-claimed.
    hold: Option<QuickHold>,
}

async fn run_claimed(shared: &Arc<Shared>, lane: &Arc<Lane>, incoming: Delivery, claim: Claimed, permit: SlotPermit) {
    let Claimed {
        job,
        running,
        started_at,
        mut hold,
    } = claim;
    let family = lane.family;
    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
    async move {
        // The attempt its outcome ends: quick while its claim lock is held.
        let attempt_of = |hold: &Option<QuickHold>| match hold {
            Some(_) => Attempt::quick(&job),
            None => Attempt::claimed(job.attempts),
        };
        let Some(kind) = spec(&job.kind) else {
            // The row names a kind this build does not know (the message said otherwise).
            shared.untrack(job.id, &running);
            let message = format!("unknown job kind `{}`", job.kind);
            return match shared
                .ledger
                .record(job.id, attempt_of(&hold), started_at, Outcome::Failed(message))
                .await
            {
                Ok(_) => incoming.ack(),
                Err(_) => incoming.requeue(),
            };
        };
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
            // Cancelled while it waited for its slot: it never starts.
            Some(_) if running.cancel.is_cancelled() => Err(JobError::Cancelled),
            Some(future) => {
                let mut handle = tokio::spawn(future.in_current_span());
                let ran = {
                    let run = lane.slots.watch(tokio::time::timeout(kind.timeout, &mut handle));
                    tokio::pin!(run);
                    let mut promoting = hold.is_some();
                    loop {
                        tokio::select! {
                            ran = &mut run => break ran,
                            _ = tokio::time::sleep(PROMOTE_AFTER), if promoting => {
                                promoting = promote(shared, &job, started_at, &running, &mut hold).await;
                            }
                        }
                    }
                };
                match ran {
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
                return give_back(shared, family, incoming, &job, "interrupted by shutdown", hold.take()).await;
            }
            Err(JobError::Unable(reason)) => {
                return hand_back(shared, family, incoming, &job, &reason, started, hold.take()).await;
            }
            Err(JobError::Cancelled) => {
                // Cancelled by an admin (the row already says so) or re-claimed elsewhere.
                finish_metrics(shared, &job, family, "cancelled", started);
                tracing::info!("job stopped: cancelled or no longer ours");
                job_line(shared, &job, Level::Info, "stopped: cancelled".to_owned(), started);
                return incoming.ack();
            }
        };
        let label = match &outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Retrying(..) => "retrying",
            Outcome::Dead(..) => "dead",
        };
        // The slot is free as soon as the outcome is handed to the ledger; the delivery
        // is acknowledged only once the outcome is committed.
        let attempt = attempt_of(&hold);
        let recorded = shared.ledger.submit(job.id, attempt, started_at, outcome.clone()).await;
        // Until it is acknowledged, its band keeps the slot (when the queue has bands).
        let _settling = lane.slots.pending(incoming.priority);
        drop(permit);
        lane.slots.ran(started.elapsed());
        let mut recorded = match recorded {
            Ok(pending) => pending.await.unwrap_or_else(|_| Err("ledger stopped".to_owned())),
            Err(err) => Err(err),
        };
        if let Err(err) = &recorded {
            tracing::warn!(error = %err, "cannot record the outcome yet; trying again");
            recorded = record_again(shared, &job, attempt, started_at, &outcome).await;
        }
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                finish_metrics(shared, &job, family, "lost", started);
                tracing::info!(
                    outcome = label,
                    "job was cancelled or re-claimed meanwhile; outcome not recorded"
                );
                return incoming.ack();
            }
            Err(err) => {
                // Still not recorded: leave the delivery to come back; the claim is still
                // ours, so it waits for our heartbeat to go stale and runs again (at least
                // once).
                tracing::error!(error = %err, "cannot record the outcome; returning the message");
                return incoming.requeue();
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
                    return incoming.requeue();
                }
            }
            Outcome::Dead(ref message, _) => {
                tracing::error!(error = %message, attempts = job.attempts, "job is dead: out of attempts");
                return forward_letter(shared, family, incoming, "exhausted", message).await;
            }
        }
        incoming.ack();
    }
    .instrument(span)
    .await
}

/// An outcome the database did not take (restarting, out of reach) is handed to the
/// ledger again, with backoff, for as long as the lease: the attempt stays ours meanwhile
/// (the delivery is still held, and the attempt fences any other claim), so the job
/// finishes as soon as the database is back instead of being run again later.
async fn record_again(
    shared: &Shared,
    job: &JobRecord,
    attempt: Attempt,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    outcome: &Outcome,
) -> Result<bool, String> {
    let give_up = Instant::now() + shared.lease.stale_after;
    let mut backoff = Backoff::new(Duration::from_secs(2));
    loop {
        let delay = backoff.next_delay();
        if Instant::now() + delay >= give_up {
            return Err(format!(
                "the database did not take the outcome within {} s",
                shared.lease.stale_after.as_secs()
            ));
        }
        tokio::select! {
            _ = shared.stopped.cancelled() => return Err("the worker stopped before the outcome was recorded".to_owned()),
            _ = tokio::time::sleep(delay) => {}
        }
        match shared.ledger.record(job.id, attempt, started_at, outcome.clone()).await {
            Err(err) => tracing::debug!(error = %err, "the outcome is still not recorded"),
            done => return done,
        }
    }
}

/// Claims a quick-claimed job that runs long the ordinary way ([`store::promote`]):
/// from then on its row says `running`, heartbeats hold it and its claim lock goes.
/// A job no longer waiting for this attempt (cancelled or requeued meanwhile) is told
/// to stop. Returns whether to try again later (the database did not answer).
async fn promote(
    shared: &Shared,
    job: &JobRecord,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    running: &RunningJob,
    hold: &mut Option<QuickHold>,
) -> bool {
    match store::promote(&shared.db, shared.worker_id, job, started_at).await {
        Ok(true) => {
            running.quick.store(false, Ordering::SeqCst);
            *hold = None;
            false
        }
        Ok(false) => {
            tracing::info!("job is no longer waiting for this attempt (cancelled or requeued); stopping it");
            running.cancel.cancel();
            false
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot mark the long job running yet; trying again");
            true
        }
    }
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

/// The job goes back to `queued` (its attempt not counted) and its message back to the
/// queue, for another worker: the worker is stopping, or the job waited too long for a slot.
async fn give_back(
    shared: &Shared,
    family: QueueFamily,
    incoming: Delivery,
    job: &JobRecord,
    why: &str,
    hold: Option<QuickHold>,
) {
    if let Err(err) = let_go(shared, job, hold).await {
        tracing::warn!(job.id = %job.id, error = %err, "cannot release the job; it will be re-claimed once its heartbeat is stale")
    } else {
        tracing::info!(job.id = %job.id, why, "job given back to its queue");
    }
    shared
        .metrics
        .finished
        .with_label_values(&[job.kind.as_str(), family.as_str(), "requeued"])
        .inc();
    incoming.requeue();
}

/// Lets go of a job before its message goes back: an ordinary claim puts the row back to
/// `queued` (the attempt not counted); a quick one, which wrote nothing, drops its lock.
async fn let_go(shared: &Shared, job: &JobRecord, hold: Option<QuickHold>) -> Result<(), sqlx::Error> {
    match hold {
        Some(hold) => hold.release().await,
        None => {
            release(&shared.db, shared.worker_id, Some(&[job.id])).await?;
        }
    }
    Ok(())
}

/// Seconds a job this worker could not run waits before it is offered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(5);

/// This worker cannot run the job now (another may): it re-reads what it may take (so
/// it stops taking the queue when its abilities say so), puts the job back to `queued`
/// without counting the attempt, and offers it again after a short delay.
async fn hand_back(
    shared: &Arc<Shared>,
    family: QueueFamily,
    incoming: Delivery,
    job: &JobRecord,
    reason: &str,
    started: Instant,
    hold: Option<QuickHold>,
) {
    tracing::warn!(reason, "this worker cannot run the job; handing it back");
    if let Err(err) = crate::presence::reload_pauses(shared).await {
        tracing::warn!(error = %err, "cannot re-read what this worker may take");
    }
    if let Err(err) = let_go(shared, job, hold).await {
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
        Ok(()) => incoming.ack(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot publish the delayed copy; returning the message");
            incoming.requeue();
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
    incoming: Delivery,
    job: Option<Uuid>,
    kind: Option<&str>,
    reason_label: &str,
    reason: &str,
) {
    let kind = kind.map(|k| printable(k, KIND_CHARS));
    let reason = printable(reason, REASON_CHARS);
    let reason = reason.as_str();
    tracing::warn!(queue = family.as_str(), message_id = ?incoming.message_id, reason, "dead-lettering message");
    let recorded = store::park(
        &shared.db,
        &Letter {
            queue: family.as_str(),
            kind: kind.unwrap_or_default(),
            body: incoming.body.clone(),
            headers: incoming.headers.clone(),
        },
        job,
        reason,
    )
    .await;
    if let Err(err) = recorded {
        tracing::error!(error = %err, "cannot record the dead letter; returning the message");
        tokio::time::sleep(Duration::from_secs(1)).await;
        return incoming.requeue();
    }
    forward_letter(shared, family, incoming, reason_label, reason).await;
}

/// Copies a recorded dead letter to the dead-letter queue with the reason in its
/// headers, counts it, and acknowledges the delivery.
async fn forward_letter(shared: &Shared, family: QueueFamily, incoming: Delivery, reason_label: &str, reason: &str) {
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
    incoming.ack();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_given_back_before_waits_longer_before_going_back_again() {
        let after = |headers: serde_json::Value| give_back_after(&headers);
        assert_eq!(after(serde_json::json!({})), GIVE_BACK_AFTER);
        assert_eq!(after(serde_json::json!({"x-delivery-count": 0})), GIVE_BACK_AFTER);
        assert_eq!(after(serde_json::json!({"x-delivery-count": 2})), GIVE_BACK_AFTER * 4);
        assert_eq!(
            after(serde_json::json!({"x-delivery-count": 40})),
            Duration::from_secs(8)
        );
        assert_eq!(after(serde_json::json!({"x-delivery-count": "many"})), GIVE_BACK_AFTER);
    }
}
