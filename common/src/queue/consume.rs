//! Consuming one family's queues (one, or its priority bands) with a bounded prefetch,
//! and reconnect backoff.

use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};

use super::broker::{Broker, BrokerError};
use super::message::headers_json;
use super::topology::QueueType;
use crate::job::QueueFamily;

/// The consumers of one family's queues on their own channel: one queue in the classic
/// topology, one per priority band in the quorum one, the most urgent band's deliveries
/// taken first. The worker keeps the prefetch at its free slots (plus a lookahead for
/// short jobs), never more: channel-wide on classic queues; per consumer, fixed when
/// the consumer starts, on quorum queues (which refuse a channel-wide prefetch).
pub struct Subscription {
    channel: Channel,
    /// One per queue, most urgent first; empty while paused.
    consumers: Vec<Consumer>,
    queues: Vec<String>,
    tag: String,
    per_consumer_prefetch: bool,
}

/// A delivery: the body and what the worker needs to settle it — always through the
/// channel's [`super::Settler`], which groups acknowledgements by contiguous tags (an
/// ack sent around it could be repeated by a later `multiple` ack).
pub struct Incoming {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub redelivered: bool,
    pub priority: Option<u8>,
    /// The message's `content_type` property, when it has one.
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    /// The channel's delivery tag: deliveries on one channel are numbered in order.
    pub tag: u64,
    pub(super) acker: Acker,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("message_id", &self.message_id)
            .field("redelivered", &self.redelivered)
            .field("bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Opens a channel (re-declaring the topology), sets the prefetch and starts consuming.
    /// `prefetch` must be at least 1 (0 would mean unlimited).
    pub async fn open(broker: &Broker, family: QueueFamily, prefetch: u16, tag: &str) -> Result<Self, BrokerError> {
        let channel = broker.declared_channel().await?;
        let topology = broker.topology();
        let mut subscription = Self {
            channel,
            consumers: Vec::new(),
            queues: topology.queues(family),
            tag: tag.to_owned(),
            per_consumer_prefetch: topology.queue_type() == QueueType::Quorum,
        };
        subscription.set_prefetch(prefetch).await?;
        subscription.resume().await?;
        Ok(subscription)
    }

    /// Changes the prefetch: at once for a classic queue's channel; on quorum queues,
    /// for the consumers started from now on (at the next resume or reconnect), as
    /// RabbitMQ keeps a running consumer's prefetch.
    pub async fn set_prefetch(&self, prefetch: u16) -> Result<(), BrokerError> {
        let global = !self.per_consumer_prefetch;
        self.channel
            .basic_qos(prefetch.max(1), BasicQosOptions { global })
            .await?;
        Ok(())
    }

    /// Starts (or restarts after [`Self::pause`]) the consumers, the most urgent queue first.
    pub async fn resume(&mut self) -> Result<(), BrokerError> {
        if self.consumers.is_empty() {
            for queue in &self.queues {
                let tag = self.consumer_tag(queue);
                let consumer = self
                    .channel
                    .basic_consume(
                        queue.as_str().into(),
                        tag.as_str().into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                self.consumers.push(consumer);
            }
        }
        Ok(())
    }

    /// The tag of the consumer of `queue`: the subscription's own for a single queue,
    /// with the band appended for bands (tags are unique per channel).
    fn consumer_tag(&self, queue: &str) -> String {
        if self.queues.len() == 1 {
            return self.tag.clone();
        }
        let band = queue.rsplit('.').next().unwrap_or(queue);
        format!("{}.{band}", self.tag)
    }

    /// Stops deliveries; the channel stays open so in-flight deliveries can still be
    /// settled. Deliveries that raced the cancel go straight back to the queue.
    pub async fn pause(&mut self) -> Result<(), BrokerError> {
        let consumers = std::mem::take(&mut self.consumers);
        if consumers.is_empty() {
            return Ok(());
        }
        for queue in &self.queues {
            self.channel
                .basic_cancel(self.consumer_tag(queue).as_str().into(), BasicCancelOptions::default())
                .await?;
        }
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        let returns = consumers.into_iter().map(|mut consumer| async move {
            while let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                delivery.acker.nack(requeue).await?;
            }
            Ok::<(), lapin::Error>(())
        });
        for returned in futures_util::future::join_all(returns).await {
            returned?;
        }
        Ok(())
    }

    pub fn is_consuming(&self) -> bool {
        !self.consumers.is_empty()
    }

    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    /// The next delivery, from the most urgent queue that has one; `None` while paused.
    /// An error means the channel is gone.
    pub async fn next(&mut self) -> Option<Result<Incoming, BrokerError>> {
        if self.consumers.is_empty() {
            return None;
        }
        let consumers = &mut self.consumers;
        let next = std::future::poll_fn(|cx| {
            for consumer in consumers.iter_mut() {
                if let Poll::Ready(item) = consumer.poll_next_unpin(cx) {
                    return Poll::Ready(item);
                }
            }
            Poll::Pending
        })
        .await;
        match next {
            Some(Ok(delivery)) => Some(Ok(Incoming {
                headers: headers_json(&delivery.properties),
                message_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.as_str().to_owned()),
                redelivered: delivery.redelivered,
                priority: *delivery.properties.priority(),
                content_type: delivery
                    .properties
                    .content_type()
                    .as_ref()
                    .map(|t| t.as_str().to_owned()),
                body: delivery.data,
                tag: delivery.delivery_tag,
                acker: delivery.acker,
            })),
            Some(Err(err)) => Some(Err(err.into())),
            None => Some(Err(BrokerError::Unreachable(
                "consumer was cancelled by the broker".into(),
            ))),
        }
    }

    /// Closes the channel; unacknowledged deliveries go back to the queue.
    pub async fn close(self) {
        let _ = self.channel.close(200, "OK".into()).await;
    }
}

/// Exponential reconnect delays with jitter: 100 ms doubling up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    pub fn new(max: Duration) -> Self {
        Self { next: Self::FIRST, max }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(120));
        assert!(delays[7] >= Duration::from_millis(800) && delays[7] <= Duration::from_millis(1200));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }
}
