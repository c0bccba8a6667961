//! The one place that knows the RabbitMQ topology: names, declarations and deletion.
//!
//! ```text
//!  publish ──► {p}.jobs (direct) ──rk=family──► {p}.{family}   (durable, x-max-priority 10)
//!  retry   ──► {p}.retry.{n}s (fanout) ──► {p}.retry.{n}s  (TTL n s, dead-letters to {p}.jobs,
//!                                                            keeping the family routing key and
//!                                                            priority; FIFO, so expiry is in order)
//!  park    ──► {p}.dead (fanout) ──► {p}.dead               (reason in headers, bounded)
//! ```

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};

use super::message::long_string;
use crate::job::{AMQP_MAX_PRIORITY, QueueFamily};

/// Delays (seconds) of the retry queues; a wanted delay rounds up to the next one.
pub const DELAY_LEVELS_S: [u64; 12] = [1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21_600];

/// Most messages the dead-letter queue keeps (the oldest drop first); every parked
/// message is also recorded in PostgreSQL's `dead_letters`.
pub const DEAD_LETTER_MAX: i64 = 100_000;

/// Names and declarations of every exchange and queue under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The direct exchange every job is published to (routing key = family).
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The durable priority queue of a family.
    pub fn queue(&self, family: QueueFamily) -> String {
        format!("{}.{}", self.prefix, family.as_str())
    }

    /// The exchange and queue where unrunnable messages are parked.
    pub fn dead_letters(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The exchange and queue of the delay level holding messages `seconds` long.
    pub fn delay(&self, seconds: u64) -> String {
        format!("{}.retry.{seconds}s", self.prefix)
    }

    /// The delay level (seconds) used for a wanted delay: the smallest level at least
    /// as long, or the longest level.
    pub fn delay_level(wanted: Duration) -> u64 {
        let wanted_s = wanted.as_secs_f64();
        DELAY_LEVELS_S
            .into_iter()
            .find(|&level| level as f64 >= wanted_s)
            .unwrap_or(DELAY_LEVELS_S[DELAY_LEVELS_S.len() - 1])
    }

    /// Declares (idempotently) every exchange, queue and binding.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };

        let jobs = self.jobs_exchange();
        let dead = self.dead_letters();
        channel
            .exchange_declare(
                jobs.as_str().into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                dead.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        let mut dead_args = FieldTable::default();
        dead_args.insert("x-max-length".into(), AMQPValue::LongLongInt(DEAD_LETTER_MAX));
        channel
            .queue_declare(dead.as_str().into(), durable_queue, dead_args)
            .await?;
        bind(channel, &dead, &dead, "").await?;

        for family in QueueFamily::ALL {
            let queue = self.queue(family);
            let mut args = FieldTable::default();
            args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(AMQP_MAX_PRIORITY));
            args.insert("x-dead-letter-exchange".into(), long_string(&dead));
            channel
                .queue_declare(queue.as_str().into(), durable_queue, args)
                .await?;
            bind(channel, &queue, &jobs, family.as_str()).await?;
        }

        for seconds in DELAY_LEVELS_S {
            let name = self.delay(seconds);
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Fanout,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await?;
            let mut args = FieldTable::default();
            let ttl_ms = i64::try_from(seconds * 1000).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
            args.insert("x-dead-letter-exchange".into(), long_string(&jobs));
            // Not a priority queue: RabbitMQ expires messages only at a queue's head, and a
            // priority queue would hold a low-priority message behind newer urgent ones.
            channel.queue_declare(name.as_str().into(), durable_queue, args).await?;
            bind(channel, &name, &name, "").await?;
        }
        Ok(())
    }

    /// Deletes every exchange and queue of this prefix (test teardown, tenant removal).
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut queues: Vec<String> = QueueFamily::ALL.into_iter().map(|f| self.queue(f)).collect();
        queues.push(self.dead_letters());
        queues.extend(DELAY_LEVELS_S.into_iter().map(|s| self.delay(s)));
        let mut exchanges = vec![self.jobs_exchange(), self.dead_letters()];
        exchanges.extend(DELAY_LEVELS_S.into_iter().map(|s| self.delay(s)));
        for queue in queues {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in exchanges {
            channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            ShortString::from(routing_key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1");
        assert_eq!(t.jobs_exchange(), "t1.jobs");
        assert_eq!(t.queue(QueueFamily::TranscodeLong), "t1.transcode_long");
        assert_eq!(t.dead_letters(), "t1.dead");
        assert_eq!(t.delay(30), "t1.retry.30s");
    }

    #[test]
    fn delays_round_up_to_a_level() {
        assert_eq!(Topology::delay_level(Duration::ZERO), 1);
        assert_eq!(Topology::delay_level(Duration::from_millis(1500)), 2);
        assert_eq!(Topology::delay_level(Duration::from_secs(5)), 5);
        assert_eq!(Topology::delay_level(Duration::from_secs(45)), 60);
        assert_eq!(Topology::delay_level(Duration::from_secs(999_999)), 21_600);
    }
}
