//! Confirmed publishing: every message is persistent and mandatory, and a publish
//! returns only once the broker has confirmed (or refused) every message of a batch.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};
use tokio::sync::Mutex;

use super::broker::{Broker, BrokerError};
use super::message::Outgoing;
use crate::metrics::JobsEnqueued;

/// Messages published before their confirms are awaited together.
const CONFIRM_BATCH: usize = 1000;
/// Longest a whole publish call may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message could not be routed to any queue (exchange {exchange}, routing key {routing_key})")]
    Unroutable { exchange: String, routing_key: String },
    #[error("publish timed out after {0:?}")]
    Timeout(Duration),
}

impl From<lapin::Error> for PublishError {
    fn from(e: lapin::Error) -> Self {
        Self::Broker(BrokerError::Amqp(e))
    }
}

/// Publishes with confirms on one shared channel, recreated after any failure. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    broker: Broker,
    channel: Arc<Mutex<Option<Channel>>>,
    jobs_enqueued: JobsEnqueued,
}

impl Publisher {
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            channel: Arc::new(Mutex::new(None)),
            jobs_enqueued: JobsEnqueued::default(),
        }
    }

    /// Counts the jobs enqueued through this publisher (and its clones) in `counter`.
    pub fn counting(mut self, counter: JobsEnqueued) -> Self {
        self.jobs_enqueued = counter;
        self
    }

    /// The process's count of jobs enqueued ([`crate::job::store::Tx::commit`] counts there).
    pub fn jobs_enqueued(&self) -> &JobsEnqueued {
        &self.jobs_enqueued
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Publishes every message and waits for the broker's confirms, in batches.
    pub async fn publish(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        if messages.is_empty() {
            return Ok(());
        }
        let outcome = match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_confirmed(messages)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PublishError::Timeout(PUBLISH_TIMEOUT)),
        };
        if outcome.is_err() {
            // Whatever went wrong, the next publish starts from a fresh channel.
            *self.channel.lock().await = None;
        }
        outcome
    }

    async fn publish_confirmed(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        let channel = self.confirm_channel().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        for batch in messages.chunks(CONFIRM_BATCH) {
            let mut confirms = Vec::with_capacity(batch.len());
            for message in batch {
                let confirm = channel
                    .basic_publish(
                        message.exchange.as_str().into(),
                        message.routing_key.as_str().into(),
                        options,
                        &message.body,
                        message.properties.clone(),
                    )
                    .await?;
                confirms.push((confirm, message));
            }
            for (confirm, message) in confirms {
                match confirm.await? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(_)) => {
                        return Err(PublishError::Unroutable {
                            exchange: message.exchange.clone(),
                            routing_key: message.routing_key.clone(),
                        });
                    }
                    Confirmation::Nack(_) | Confirmation::NotRequested => return Err(PublishError::Nacked),
                }
            }
        }
        Ok(())
    }

    async fn confirm_channel(&self) -> Result<Channel, PublishError> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.broker.declared_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }
}
