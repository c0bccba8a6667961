//! Consuming one family's queue with a channel-wide prefetch, and reconnect backoff.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};

use super::broker::{Broker, BrokerError};
use super::message::headers_json;
use crate::job::QueueFamily;

/// One consumer of one family's queue on its own channel. Its prefetch is
/// channel-wide, so it bounds every unacknowledged delivery of the channel: the
/// worker sets it to its free slots, never more.
pub struct Subscription {
    channel: Channel,
    consumer: Option<Consumer>,
    queue: String,
    tag: String,
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
        let mut subscription = Self {
            channel,
            consumer: None,
            queue: broker.topology().queue(family),
            tag: tag.to_owned(),
        };
        subscription.set_prefetch(prefetch).await?;
        subscription.resume().await?;
        Ok(subscription)
    }

    /// Changes the channel-wide prefetch (takes effect for the next deliveries).
    pub async fn set_prefetch(&self, prefetch: u16) -> Result<(), BrokerError> {
        self.channel
            .basic_qos(prefetch.max(1), BasicQosOptions { global: true })
            .await?;
        Ok(())
    }

    /// Starts (or restarts after [`Self::pause`]) the consumer.
    pub async fn resume(&mut self) -> Result<(), BrokerError> {
        if self.consumer.is_none() {
            let consumer = self
                .channel
                .basic_consume(
                    self.queue.as_str().into(),
                    self.tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            self.consumer = Some(consumer);
        }
        Ok(())
    }

    /// Stops deliveries; the channel stays open so in-flight deliveries can still be
    /// settled. Deliveries that raced the cancel go straight back to the queue.
    pub async fn pause(&mut self) -> Result<(), BrokerError> {
        if let Some(mut consumer) = self.consumer.take() {
            self.channel
                .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
                .await?;
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            while let Ok(Some(Ok(delivery))) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                delivery.acker.nack(requeue).await?;
            }
        }
        Ok(())
    }

    pub fn is_consuming(&self) -> bool {
        self.consumer.is_some()
    }

    pub fn is_connected(&self) -> bool {
        self.channel.status().connected()
    }

    /// The next delivery; `None` while paused. An error means the channel is gone.
    pub async fn next(&mut self) -> Option<Result<Incoming, BrokerError>> {
        let consumer = self.consumer.as_mut()?;
        match consumer.next().await {
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
