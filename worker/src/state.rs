//! The state one worker process shares between its queue consumers, heartbeat and listener.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rushes_common::config::LeaseConfig;
use rushes_common::job::QueueFamily;
use rushes_common::logs::Level;
use rushes_common::queue::{Broker, Publisher};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::RunningJob;
use crate::jobs::Registry;
use crate::ledger::Ledger;
use crate::metrics::WorkerMetrics;
use crate::services::Services;
use crate::slots::Slots;

pub(crate) struct Shared {
    pub db: PgPool,
    pub broker: Broker,
    pub publisher: Publisher,
    pub ledger: Ledger,
    pub registry: Registry,
    pub services: Arc<Services>,
    pub logs: rushes_common::logs::LogSink,
    pub metrics: WorkerMetrics,
    pub worker_id: Uuid,
    pub host: String,
    pub queues: Vec<(QueueFamily, u16)>,
    pub lease: LeaseConfig,
    /// Queues an admin paused.
    pub paused: watch::Sender<HashSet<QueueFamily>>,
    /// Cancelled on SIGTERM: stop taking new deliveries.
    pub stop_taking: CancellationToken,
    /// Cancelled when the worker is about to exit: every loop ends.
    pub stopped: CancellationToken,
    /// Deliveries taken and not yet settled, across all queues.
    pub in_flight: AtomicUsize,
    /// Set when an admin asked this worker to drain: it finishes every job it holds,
    /// however long, before it exits.
    pub draining: AtomicBool,
    /// Claims of short jobs take a claim lock and write nothing ([`crate::ledger`]).
    pub quick_claims: bool,
    running: Mutex<HashMap<Uuid, Arc<RunningJob>>>,
    connected: HashMap<QueueFamily, AtomicBool>,
    /// Each consumed queue's slots, to resize while running.
    slots: Mutex<HashMap<QueueFamily, Arc<Slots>>>,
}

impl Shared {
    #[expect(clippy::too_many_arguments, reason = "assembled once, in `run`")]
    pub fn new(
        db: PgPool,
        broker: Broker,
        registry: Registry,
        services: Arc<Services>,
        metrics: WorkerMetrics,
        worker_id: Uuid,
        host: String,
        queues: Vec<(QueueFamily, u16)>,
        lease: LeaseConfig,
        quick_claims: bool,
        stop_taking: CancellationToken,
    ) -> Self {
        let ledger = Ledger::spawn(db.clone(), worker_id, lease.stale_after);
        let logs = rushes_common::logs::LogSink::spawn(db.clone(), "worker");
        let connected = queues.iter().map(|(f, _)| (*f, AtomicBool::new(false))).collect();
        Self {
            publisher: Publisher::new(broker.clone()).counting(metrics.jobs_enqueued.clone()),
            db,
            broker,
            ledger,
            registry,
            services,
            logs,
            metrics,
            worker_id,
            host,
            queues,
            lease,
            paused: watch::Sender::new(HashSet::new()),
            stop_taking,
            stopped: CancellationToken::new(),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            quick_claims,
            running: Mutex::new(HashMap::new()),
            connected,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Records the slots a queue's consumer runs, for [`Self::resize_slots`].
    pub fn register_slots(&self, family: QueueFamily, slots: Arc<Slots>) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(family, slots);
    }

    /// Slots in force per consumed queue.
    pub fn slots_in_force(&self) -> Vec<(QueueFamily, u16)> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        self.queues
            .iter()
            .map(|(family, configured)| (*family, slots.get(family).map_or(*configured, |s| s.total())))
            .collect()
    }

    /// Runs `total` slots for `family` from now on; false when this worker does not
    /// consume it.
    pub fn resize_slots(&self, family: QueueFamily, total: u16) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(lane) = slots.get(&family) else { return false };
        if lane.total() != total {
            lane.resize(total);
            self.metrics
                .slots
                .with_label_values(&[family.as_str()])
                .set(i64::from(total));
        }
        true
    }

    /// Tracks a running attempt. Should this worker re-claim its own job (its heartbeat
    /// went stale), the older attempt is stopped: only the newest one is ours.
    pub fn track(&self, id: Uuid, attempt: i32, job: Arc<RunningJob>) {
        job.attempt.store(attempt, Ordering::SeqCst);
        let previous = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, job);
        if let Some(previous) = previous {
            previous.cancel.cancel();
        }
    }

    /// Stops tracking `job`, unless a newer attempt of the same job replaced it.
    pub fn untrack(&self, id: Uuid, job: &Arc<RunningJob>) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.get(&id).is_some_and(|current| Arc::ptr_eq(current, job)) {
            running.remove(&id);
        }
    }

    pub fn running_job(&self, id: Uuid) -> Option<Arc<RunningJob>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    pub fn running_snapshot(&self) -> Vec<(Uuid, Arc<RunningJob>)> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, job)| (*id, job.clone()))
            .collect()
    }

    /// Records whether the consumer of `family` holds a broker channel; a change either
    /// way is also a line in the stored system log (an outage, a reconnection).
    pub fn set_connected(&self, family: QueueFamily, up: bool) {
        if let Some(flag) = self.connected.get(&family) {
            let was = flag.swap(up, Ordering::Relaxed);
            // Stopping closes every consumer on purpose: no outage to record then.
            if was != up && !self.stop_taking.is_cancelled() {
                let (level, message) = if up {
                    (Level::Info, format!("consumer of `{family}` connected to the broker"))
                } else {
                    (
                        Level::Warn,
                        format!("consumer of `{family}` lost the broker; reconnecting"),
                    )
                };
                self.logs.system(level, message);
            }
        }
        self.metrics
            .connected
            .with_label_values(&[family.as_str()])
            .set(i64::from(up));
    }

    /// Names of consumed queues that are neither connected nor paused.
    pub fn disconnected_queues(&self) -> Vec<&'static str> {
        let paused = self.paused.borrow();
        self.connected
            .iter()
            .filter(|(family, up)| !up.load(Ordering::Relaxed) && !paused.contains(family))
            .map(|(family, _)| family.as_str())
            .collect()
    }
}
