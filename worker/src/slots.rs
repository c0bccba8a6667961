//! One queue's slots, handed out by priority: a claimed job waits for a slot, and
//! when one frees the most urgent waiting job gets it (the oldest delivery among equals),
//! so a job prefetched ahead never delays a more urgent one delivered after it.
//!
//! When the queue comes in priority bands (quorum queues), the broker cannot put a
//! band's next job before a lower band's: a slot freed by a job of a band is kept for
//! that band (or a more urgent one) while the finished job's delivery waits for its
//! outcome's commit and acknowledgement, a moment more for the band's next delivery
//! (sent once the broker has the acknowledgement), and while a delivery of such a band
//! that arrived is being claimed, however slow the database.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::IntGauge;
use rushes_common::job::{MAX_PRIORITY, amqp_priority};
use rushes_common::queue::topology::band_rank;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// Below this average run time a queue's jobs are short and worth prefetching ahead.
const SHORT_JOB: Duration = Duration::from_millis(20);
/// How much work, in average run times, a worker may hold ahead of its slots.
const AHEAD_BUDGET: Duration = Duration::from_millis(10);
/// Most deliveries held beyond the slots.
pub(crate) const MAX_AHEAD: u16 = 64;
/// How long a slot freed by a job of a band stays kept for that band once nothing of
/// the band is pending any more: the next delivery's trip after the acknowledgement.
const KEEP_FOR_BAND: Duration = Duration::from_millis(50);

pub(crate) struct Slots {
    /// Slots in force (an admin may change them while the worker runs).
    total: AtomicU16,
    state: Mutex<State>,
    /// Signalled whenever a slot frees.
    pub freed: Notify,
    /// Average run time (µs, exponentially weighted); 0 until a job has run.
    pace_us: AtomicU64,
    /// Busy slots, for the metrics.
    busy_gauge: IntGauge,
    /// Whether the queue comes in priority bands.
    banded: bool,
}

struct State {
    /// Free slots, the kept ones included.
    free: u16,
    /// Slots taken away while busy: the next ones freed are not handed out again.
    owed: u16,
    waiters: BinaryHeap<Waiter>,
    /// Free slots kept for a band: (band rank, until when).
    kept: Vec<(usize, Instant)>,
    /// Deliveries pending (being claimed, or finished and not yet acknowledged), by band
    /// rank.
    pending: Vec<usize>,
}

impl State {
    /// Forgets the keeps that have run out, bar those a pending delivery is for (one of
    /// their band or a more urgent one).
    fn expire(&mut self, now: Instant) {
        let most_urgent_pending = self.pending.iter().position(|&n| n > 0);
        self.kept
            .retain(|&(band, until)| until > now || most_urgent_pending.is_some_and(|pending| pending <= band));
    }

    /// Takes a free slot for a job of `band` (`None`: no bands): an unkept one, else one
    /// kept for `band` or a less urgent band.
    fn take(&mut self, band: Option<usize>) -> bool {
        if usize::from(self.free) > self.kept.len() {
            self.free -= 1;
            return true;
        }
        let Some(band) = band else { return false };
        match self.kept.iter().position(|&(kept, _)| band <= kept) {
            Some(index) => {
                self.kept.swap_remove(index);
                self.free -= 1;
                true
            }
            None => false,
        }
    }
}

struct Waiter {
    priority: i16,
    order: u64,
    tx: oneshot::Sender<SlotPermit>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The greatest waiter is served first: highest priority, then earliest delivery.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.order.cmp(&self.order))
    }
}

/// A held slot; dropping it frees the slot (to the most urgent waiter, if any).
pub(crate) struct SlotPermit {
    /// `None` once the permit was handed back unused (under the slots' lock).
    slots: Option<Arc<Slots>>,
    /// The band of the job holding it, when the queue comes in bands.
    band: Option<usize>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release(self.band);
        }
    }
}

/// A pending delivery (see [`Slots::pending`]).
pub(crate) struct Pending {
    slots: Arc<Slots>,
    band: Option<usize>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(band) = self.band {
            let extended = {
                let mut state = self.slots.state.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(count) = state.pending.get_mut(band) {
                    *count = count.saturating_sub(1);
                }
                // The keeps it held last a moment more: the band's next delivery may
                // follow this one's acknowledgement.
                let until = Instant::now() + KEEP_FOR_BAND;
                let mut extended = false;
                for kept in state.kept.iter_mut().filter(|(kept, _)| band <= *kept) {
                    kept.1 = kept.1.max(until);
                    extended = true;
                }
                extended
            };
            if extended {
                self.slots.hand_out_after_keep();
            }
        }
    }
}

impl Slots {
    /// `banded`: the queue comes in priority bands (see the module's documentation).
    pub fn new(total: u16, busy_gauge: IntGauge, banded: bool) -> Arc<Self> {
        Arc::new(Self {
            total: AtomicU16::new(total),
            state: Mutex::new(State {
                free: total,
                owed: 0,
                waiters: BinaryHeap::new(),
                kept: Vec::new(),
                pending: Vec::new(),
            }),
            freed: Notify::new(),
            pace_us: AtomicU64::new(0),
            busy_gauge,
            banded,
        })
    }

    /// The band of a job of `priority` (API 0–100), when the queue comes in bands.
    fn band(&self, priority: i16) -> Option<usize> {
        self.banded.then(|| {
            let priority = u8::try_from(priority.clamp(0, i16::from(MAX_PRIORITY))).unwrap_or(0);
            band_rank(amqp_priority(priority))
        })
    }

    /// Counts a delivery of AMQP `priority` as pending until the returned guard drops: a
    /// slot kept for its band stays kept meanwhile, and [`KEEP_FOR_BAND`] after. A
    /// delivery is pending while it is claimed (until it waits for a slot, or needs
    /// none), and once its job ran, until it is acknowledged.
    pub fn pending(self: &Arc<Self>, priority: Option<u8>) -> Pending {
        let band = self.banded.then(|| band_rank(priority.unwrap_or(0)));
        if let Some(band) = band {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.pending.len() <= band {
                state.pending.resize(band + 1, 0);
            }
            state.pending[band] += 1;
        }
        Pending {
            slots: self.clone(),
            band,
        }
    }

    /// Hands slots out again once keeps made or extended now may have run out.
    fn hand_out_after_keep(self: &Arc<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let slots = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(KEEP_FOR_BAND).await;
                slots.hand_out();
                slots.freed.notify_waiters();
            });
        }
    }

    fn permit(self: &Arc<Self>, band: Option<usize>) -> SlotPermit {
        SlotPermit {
            slots: Some(self.clone()),
            band,
        }
    }

    /// Slots running a job now.
    #[cfg(test)]
    pub fn busy(&self) -> u16 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.busy_of(&state)
    }

    /// Slots in force.
    pub fn total(&self) -> u16 {
        self.total.load(Ordering::SeqCst)
    }

    /// Slots running a job, given the state.
    fn busy_of(&self, state: &State) -> u16 {
        self.total().saturating_add(state.owed).saturating_sub(state.free)
    }

    /// Runs `total` slots from now on: added ones take jobs at once; removed ones are
    /// taken from the free slots, else from the next jobs to end (running jobs finish).
    pub fn resize(self: &Arc<Self>, total: u16) {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let old = self.total.swap(total, Ordering::SeqCst);
            if total >= old {
                let grow = total - old;
                let repaid = grow.min(state.owed);
                state.owed -= repaid;
                state.free += grow - repaid;
            } else {
                let shrink = old - total;
                let taken = shrink.min(state.free);
                state.free -= taken;
                state.owed += shrink - taken;
                let free = usize::from(state.free);
                state.kept.truncate(free);
            }
            self.busy_gauge.set(i64::from(self.busy_of(&state)));
        }
        self.hand_out();
        self.freed.notify_waiters();
        self.freed.notify_one();
    }

    /// Waits for a slot; among waiters the highest `priority` wins, then the lowest `order`.
    pub async fn acquire(self: &Arc<Self>, priority: i16, order: u64) -> SlotPermit {
        let band = self.band(priority);
        let rx = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.expire(Instant::now());
            if state.waiters.is_empty() && state.take(band) {
                self.busy_gauge.set(i64::from(self.busy_of(&state)));
                return self.permit(band);
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.push(Waiter { priority, order, tx });
            rx
        };
        self.hand_out();
        match rx.await {
            Ok(permit) => permit,
            // The sender is only dropped with the slots themselves; never while we wait.
            Err(_) => std::future::pending().await,
        }
    }

    /// Gives a free slot to the best waiter (a waiter queued while slots were free).
    fn hand_out(self: &Arc<Self>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.expire(Instant::now());
        while let Some(best) = state.waiters.peek() {
            let band = self.band(best.priority);
            if !state.take(band) {
                break;
            }
            let Some(waiter) = state.waiters.pop() else { break };
            if let Err(mut permit) = waiter.tx.send(self.permit(band)) {
                // That waiter gave up: the slot goes to the next one.
                permit.slots = None;
                state.free += 1;
            }
        }
        self.busy_gauge.set(i64::from(self.busy_of(&state)));
    }

    /// Frees a slot held by a job of `band`: kept for that band a moment when no waiter
    /// is as urgent.
    fn release(self: &Arc<Self>, band: Option<usize>) {
        let kept = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.owed > 0 {
                // A slot an admin took away while it was busy: gone now.
                state.owed -= 1;
                self.busy_gauge.set(i64::from(self.busy_of(&state)));
                return;
            }
            state.free += 1;
            let best = state.waiters.peek().and_then(|w| self.band(w.priority));
            match band {
                Some(band) if best.is_none_or(|best| best > band) => {
                    state.kept.push((band, Instant::now() + KEEP_FOR_BAND));
                    true
                }
                _ => false,
            }
        };
        if kept {
            self.hand_out_after_keep();
        }
        self.hand_out();
        self.freed.notify_waiters();
    }

    /// Records how long a job ran, for [`Self::ahead`].
    pub fn ran(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.pace_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.pace_us.store(new, Ordering::Relaxed);
    }

    /// Runs a job; should it run past [`SHORT_JOB`], the queue's jobs are not short (any
    /// more) and the lookahead goes at once, not when the job ends.
    pub async fn watch<F: Future>(&self, job: F) -> F::Output {
        let job = std::pin::pin!(job);
        let mut job = job;
        tokio::select! {
            biased;
            output = &mut job => output,
            _ = tokio::time::sleep(SHORT_JOB) => {
                self.slowed();
                job.await
            }
        }
    }

    /// A job ran or waited for a slot too long: the queue's jobs are not short (any more).
    pub fn slowed(&self) {
        let floor = u64::try_from(SHORT_JOB.as_micros()).unwrap_or(u64::MAX);
        self.pace_us.fetch_max(floor, Ordering::Relaxed);
        // The consumer shrinks its prefetch window now.
        self.freed.notify_one();
    }

    /// Whether the queue's jobs are short: their average run time is known and below
    /// [`SHORT_JOB`].
    pub fn short(&self) -> bool {
        let pace = self.pace_us.load(Ordering::Relaxed);
        pace != 0 && pace < u64::try_from(SHORT_JOB.as_micros()).unwrap_or(u64::MAX)
    }

    /// Deliveries worth holding beyond the slots: enough to keep every slot busy for
    /// [`AHEAD_BUDGET`] when jobs are short, none for long (or not yet seen) jobs, so a
    /// worker never sits on work another worker's free slot could start now. A power of
    /// two, so the prefetch changes rarely.
    pub fn ahead(&self) -> u16 {
        if !self.short() {
            return 0;
        }
        let pace = self.pace_us.load(Ordering::Relaxed);
        let budget = u64::try_from(AHEAD_BUDGET.as_micros()).unwrap_or(u64::MAX);
        let want = (budget / pace).saturating_mul(u64::from(self.total())).max(1);
        let capped = u16::try_from(want.min(u64::from(MAX_AHEAD))).unwrap_or(MAX_AHEAD);
        1 << (15 - capped.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("busy", "busy slots").unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_most_urgent_waiter() {
        let slots = Slots::new(1, gauge(), false);
        let held = slots.acquire(0, 0).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (priority, order) in [(0, 1), (0, 2), (100, 3), (50, 4)] {
            let slots = slots.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let permit = slots.acquire(priority, order).await;
                let _ = tx.send(order);
                drop(permit);
            });
        }
        tokio::task::yield_now().await;
        while slots.state.lock().map(|s| s.waiters.len()).unwrap_or(0) < 4 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut served = Vec::new();
        for _ in 0..4 {
            served.push(rx.recv().await);
        }
        assert_eq!(served, [Some(3), Some(4), Some(1), Some(2)]);
        assert_eq!(slots.busy(), 0);
    }

    /// One banded slot held by a normal job, and a low job waiting for it.
    async fn normal_running_low_waiting() -> (Arc<Slots>, SlotPermit, tokio::task::JoinHandle<SlotPermit>) {
        let slots = Slots::new(1, gauge(), true);
        let normal = slots.acquire(20, 0).await;
        let low_slots = slots.clone();
        let low = tokio::spawn(async move { low_slots.acquire(0, 1).await });
        while slots.state.lock().map(|s| s.waiters.len()).unwrap_or(0) < 1 {
            tokio::task::yield_now().await;
        }
        (slots, normal, low)
    }

    #[tokio::test]
    async fn with_bands_a_freed_slot_waits_a_moment_for_its_band() {
        let (slots, normal, low) = normal_running_low_waiting().await;
        drop(normal);
        // The low job does not get the slot at once; the band's next job does.
        let next = tokio::time::timeout(Duration::from_millis(20), slots.acquire(20, 2)).await;
        assert!(next.is_ok(), "the slot was kept for the normal band");
        assert!(!low.is_finished());
        drop(next);
        // Nothing of the band comes: the low job gets the slot once the keep runs out.
        let low = tokio::time::timeout(KEEP_FOR_BAND * 4, low).await;
        assert!(matches!(low, Ok(Ok(_))), "the low job got the slot in the end");

        // An urgent job may take a slot kept for a lower band at once.
        let slots = Slots::new(1, gauge(), true);
        drop(slots.acquire(20, 0).await);
        let urgent = tokio::time::timeout(Duration::from_millis(20), slots.acquire(90, 1)).await;
        assert!(urgent.is_ok());
        drop(urgent);
        // Without bands nothing is kept.
        let slots = Slots::new(1, gauge(), false);
        let normal = slots.acquire(20, 0).await;
        drop(normal);
        let low = tokio::time::timeout(Duration::from_millis(5), slots.acquire(0, 1)).await;
        assert!(low.is_ok());
    }

    #[tokio::test]
    async fn with_bands_a_kept_slot_waits_for_a_pending_delivery_of_its_band_however_slow() {
        let (slots, normal, low) = normal_running_low_waiting().await;
        // The band's next delivery arrives (AMQP priority 2: normal), its claim is slow.
        let claim = slots.pending(Some(2));
        drop(normal);
        tokio::time::sleep(KEEP_FOR_BAND * 3).await;
        assert!(!low.is_finished(), "the slot stays kept while the claim runs");
        let next = tokio::time::timeout(Duration::from_millis(20), slots.acquire(20, 2)).await;
        drop(claim);
        assert!(next.is_ok(), "the claimed job got the kept slot");
        drop(next);
        // A claim that comes to nothing (a duplicate, say) frees the keep with it.
        let claim = slots.pending(Some(2));
        tokio::time::sleep(KEEP_FOR_BAND * 2).await;
        assert!(!low.is_finished());
        drop(claim);
        let low = tokio::time::timeout(KEEP_FOR_BAND * 3, low).await;
        assert!(
            matches!(low, Ok(Ok(_))),
            "the low job got the slot once no claim of the band was left"
        );
    }

    #[tokio::test]
    async fn slots_grow_at_once_and_shrink_as_jobs_end() {
        let slots = Slots::new(1, gauge(), false);
        let first = slots.acquire(0, 0).await;
        slots.resize(3);
        let second = tokio::time::timeout(Duration::from_millis(50), slots.acquire(0, 1)).await;
        let third = tokio::time::timeout(Duration::from_millis(50), slots.acquire(0, 2)).await;
        assert!(second.is_ok() && third.is_ok(), "added slots take jobs at once");
        assert_eq!((slots.total(), slots.busy()), (3, 3));
        // Down to one while three run: none is stopped; the next two to end are not replaced.
        slots.resize(1);
        assert_eq!(slots.busy(), 3);
        let waiting = slots.clone();
        let next = tokio::spawn(async move { waiting.acquire(0, 3).await });
        drop(first);
        drop(second);
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "two ended, both slots were owed");
        assert_eq!(slots.busy(), 1);
        drop(third);
        let next = tokio::time::timeout(Duration::from_millis(50), next).await;
        assert!(matches!(next, Ok(Ok(_))), "the one slot left takes the next job");
        // Growing back repays what is still owed before adding free slots.
        let slots = Slots::new(2, gauge(), false);
        let (a, b) = (slots.acquire(0, 0).await, slots.acquire(0, 1).await);
        slots.resize(0);
        slots.resize(1);
        drop(a);
        drop(b);
        assert_eq!((slots.total(), slots.busy()), (1, 0));
        let _one = tokio::time::timeout(Duration::from_millis(50), slots.acquire(0, 2)).await;
        assert_eq!(slots.busy(), 1);
    }

    #[tokio::test]
    async fn a_job_running_past_a_short_one_ends_the_lookahead_at_once() {
        let slots = Slots::new(2, gauge(), false);
        slots.ran(Duration::from_micros(50));
        assert!(slots.ahead() > 0);
        let quick = slots.watch(async { 1 }).await;
        assert_eq!((quick, slots.ahead() > 0), (1, true));
        let watched = slots.clone();
        let long = tokio::spawn(async move { watched.watch(tokio::time::sleep(Duration::from_secs(3))).await });
        let deadline = Instant::now() + Duration::from_secs(2);
        while slots.ahead() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(slots.ahead(), 0, "while the long job still runs");
        assert!(!long.is_finished());
        long.abort();
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_leak_its_slot() {
        let slots = Slots::new(1, gauge(), false);
        let held = slots.acquire(0, 0).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), slots.acquire(0, 1)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(slots.busy(), 0);
        let _again = slots.acquire(0, 2).await;
        assert_eq!(slots.busy(), 1);
    }

    #[test]
    fn lookahead_only_for_short_jobs() {
        let slots = Slots::new(2, gauge(), false);
        assert_eq!(slots.ahead(), 0, "nothing known yet: no lookahead");
        slots.ran(Duration::from_micros(100));
        assert_eq!(
            slots.ahead(),
            MAX_AHEAD,
            "10 ms of 0.1 ms jobs on 2 slots = 200, capped"
        );
        let slots = Slots::new(2, gauge(), false);
        slots.ran(Duration::from_micros(1));
        assert_eq!(slots.ahead(), MAX_AHEAD);
        let slots = Slots::new(2, gauge(), false);
        slots.ran(Duration::from_millis(2));
        assert_eq!(
            slots.ahead(),
            8,
            "10 ms of 2 ms jobs on 2 slots = 10, rounded down to 8"
        );
        slots.slowed();
        assert_eq!(slots.ahead(), 0);
        let slots = Slots::new(2, gauge(), false);
        slots.ran(Duration::from_secs(3));
        assert_eq!(slots.ahead(), 0);
    }
}
