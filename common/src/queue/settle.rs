//! Settling one channel's deliveries in few frames. Deliveries finish out of order;
//! each is acknowledged only once its owner says so (after its outcome is durable),
//! and acknowledgements go out as one `multiple` ack per contiguous run of delivery
//! tags: a busy channel sends far fewer ack frames than it receives deliveries. A
//! delivery that is ready behind one still being worked on waits at most
//! [`HOLD`] before it is acknowledged on its own, so a long job never holds
//! finished ones (and the prefetch window they occupy) for its whole run.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::consume::Incoming;

/// Longest a ready delivery waits for the ones before it to be ready too.
pub const HOLD: Duration = Duration::from_millis(20);

enum Event {
    /// Delivered to us (sent in delivery order, before any settlement of the tag).
    Delivered(u64),
    Ack(u64, Acker),
    Requeue(u64, Acker),
    /// Acknowledge everything ready now, then answer.
    Flush(oneshot::Sender<()>),
}

/// Frames sent, for the metrics: one per `ack` (single or multiple) and per `nack`.
#[derive(Clone)]
pub struct SettleFrames {
    pub acks: IntCounter,
    pub requeues: IntCounter,
}

/// Handle to one channel's settler task. Cheap to clone; the task ends when every
/// handle is dropped (settling whatever is ready first).
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::UnboundedSender<Event>,
}

impl Settler {
    pub fn spawn(frames: SettleFrames) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, frames));
        Self { tx }
    }

    /// Registers a delivery as it arrives, before anything can settle it.
    pub fn delivered(&self, incoming: &Incoming) {
        let _ = self.tx.send(Event::Delivered(incoming.tag));
    }

    /// Acknowledges the delivery (soon, possibly together with others).
    pub fn ack(&self, incoming: Incoming) {
        let _ = self.tx.send(Event::Ack(incoming.tag, incoming.acker));
    }

    /// Returns the delivery to its queue, now.
    pub fn requeue(&self, incoming: Incoming) {
        let _ = self.tx.send(Event::Requeue(incoming.tag, incoming.acker));
    }

    /// Acknowledges every delivery that is ready, without waiting for the ones before
    /// it (before the channel closes).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Event::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// What is delivered and not yet settled, and what of it is ready to be acknowledged.
struct Book<A> {
    /// Delivered, not yet settled: tag → when it arrived.
    outstanding: BTreeMap<u64, Instant>,
    ready: BTreeMap<u64, A>,
}

impl<A> Default for Book<A> {
    fn default() -> Self {
        Self {
            outstanding: BTreeMap::new(),
            ready: BTreeMap::new(),
        }
    }
}

/// One settlement the book decided on.
#[derive(Debug, PartialEq, Eq)]
enum Frame<A> {
    /// Acknowledge every outstanding delivery up to and including this one.
    Through(A),
    One(A),
}

impl<A> Book<A> {
    fn delivered(&mut self, tag: u64, at: Instant) {
        self.outstanding.insert(tag, at);
    }

    fn ready(&mut self, tag: u64, acker: A) {
        self.ready.insert(tag, acker);
    }

    fn forget(&mut self, tag: u64) {
        self.outstanding.remove(&tag);
        self.ready.remove(&tag);
    }

    /// The oldest delivery not ready yet, and when it arrived.
    fn first_gap(&self) -> Option<(u64, Instant)> {
        self.outstanding
            .iter()
            .find(|(tag, _)| !self.ready.contains_key(tag))
            .map(|(tag, at)| (*tag, *at))
    }

    /// The frames to send now, and when to look again if some ready deliveries wait
    /// behind a gap younger than [`HOLD`].
    fn frames(&mut self, now: Instant) -> (Vec<Frame<A>>, Option<Instant>) {
        let mut frames = Vec::new();
        let gap = self.first_gap();
        let below: Vec<u64> = match gap {
            Some((gap, _)) => self.ready.range(..gap).map(|(t, _)| *t).collect(),
            None => self.ready.keys().copied().collect(),
        };
        if let Some(last) = below.last().copied() {
            for tag in &below {
                self.outstanding.remove(tag);
            }
            let mut through = None;
            for tag in below {
                if let Some(acker) = self.ready.remove(&tag)
                    && tag == last
                {
                    through = Some(acker);
                }
            }
            if let Some(acker) = through {
                frames.push(Frame::Through(acker));
            }
        }
        let mut again = None;
        if let Some((_, gap_at)) = gap
            && !self.ready.is_empty()
        {
            if now.duration_since(gap_at) >= HOLD {
                for (tag, acker) in std::mem::take(&mut self.ready) {
                    self.outstanding.remove(&tag);
                    frames.push(Frame::One(acker));
                }
            } else {
                again = Some(gap_at + HOLD);
            }
        }
        (frames, again)
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Event>, frames: SettleFrames) {
    let mut book: Book<Acker> = Book::default();
    let mut again: Option<Instant> = None;
    loop {
        // `None`: every handle is gone; `Some(None)`: a held delivery's wait is over.
        let woken = match again {
            Some(at) => tokio::select! {
                event = rx.recv() => event.map(Some),
                _ = tokio::time::sleep_until(at) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        let Some(mut pending) = woken else { break };
        let mut flushed = Vec::new();
        // Everything already sent is settled in one go.
        loop {
            match pending.take() {
                Some(Event::Flush(reply)) => flushed.push(reply),
                Some(event) => apply(&mut book, event, &frames).await,
                None => {}
            }
            match rx.try_recv() {
                Ok(event) => pending = Some(event),
                Err(_) => break,
            }
        }
        let (mut to_send, wake) = book.frames(Instant::now());
        again = wake;
        if !flushed.is_empty() {
            to_send.extend(std::mem::take(&mut book.ready).into_iter().map(|(tag, acker)| {
                book.outstanding.remove(&tag);
                Frame::One(acker)
            }));
            again = None;
        }
        send(to_send, &frames).await;
        for reply in flushed {
            let _ = reply.send(());
        }
    }
    // Nothing before a gap can become ready any more (its task is gone with the channel).
    let rest = std::mem::take(&mut book.ready).into_values().map(Frame::One).collect();
    send(rest, &frames).await;
}

async fn apply(book: &mut Book<Acker>, event: Event, frames: &SettleFrames) {
    match event {
        Event::Delivered(tag) => book.delivered(tag, Instant::now()),
        Event::Ack(tag, acker) => book.ready(tag, acker),
        Event::Flush(reply) => {
            let _ = reply.send(());
        }
        Event::Requeue(tag, acker) => {
            book.forget(tag);
            frames.requeues.inc();
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(err) = acker.nack(requeue).await {
                tracing::debug!(error = %err, "could not requeue a delivery; the broker will redeliver it");
            }
        }
    }
}

async fn send(to_send: Vec<Frame<Acker>>, frames: &SettleFrames) {
    for frame in to_send {
        let (acker, multiple) = match frame {
            Frame::Through(acker) => (acker, true),
            Frame::One(acker) => (acker, false),
        };
        frames.acks.inc();
        if let Err(err) = acker.ack(BasicAckOptions { multiple }).await {
            tracing::debug!(error = %err, "could not acknowledge; the broker will redeliver");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(delivered: &[u64], at: Instant) -> Book<u64> {
        let mut book = Book::default();
        for tag in delivered {
            book.delivered(*tag, at);
        }
        book
    }

    #[test]
    fn a_contiguous_run_is_one_multiple_ack() {
        let now = Instant::now();
        let mut b = book(&[1, 2, 3, 4], now);
        for tag in [3, 1, 2] {
            b.ready(tag, tag);
        }
        let (frames, again) = b.frames(now);
        assert_eq!(frames, [Frame::Through(3)]);
        assert_eq!(again, None);
        assert_eq!(b.outstanding.keys().copied().collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn ready_deliveries_behind_a_gap_wait_at_most_the_hold() {
        let start = Instant::now();
        let mut b = book(&[1, 2, 3], start);
        b.ready(2, 2);
        b.ready(3, 3);
        let (frames, again) = b.frames(start);
        assert!(frames.is_empty(), "2 and 3 wait for 1");
        assert_eq!(again, Some(start + HOLD));
        let (frames, again) = b.frames(start + HOLD);
        assert_eq!(frames, [Frame::One(2), Frame::One(3)]);
        assert_eq!(again, None);
        // The gap itself is acknowledged once ready, on its own run.
        b.ready(1, 1);
        assert_eq!(b.frames(start + HOLD).0, [Frame::Through(1)]);
        assert!(b.outstanding.is_empty());
    }

    #[test]
    fn a_requeued_delivery_leaves_no_gap() {
        let now = Instant::now();
        let mut b = book(&[5, 6, 7], now);
        b.forget(5);
        b.ready(6, 6);
        b.ready(7, 7);
        assert_eq!(b.frames(now).0, [Frame::Through(7)]);
    }
}
