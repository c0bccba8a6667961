//! The one place that knows the RabbitMQ topology: names, declarations and deletion.
//!
//! Classic topology (one broker node; the default):
//!
//! ```text
//!  publish ──► {p}.jobs (direct) ──rk=family──► {p}.{family}   (durable, x-max-priority 10)
//!  retry   ──► {p}.retry.{n}s (fanout) ──► {p}.retry.{n}s  (TTL n s, dead-letters to {p}.jobs,
//!                                                            keeping the family routing key and
//!                                                            priority; FIFO, so expiry is in order)
//!  park    ──► {p}.dead (fanout) ──► {p}.dead               (reason in headers, bounded)
//! ```
//!
//! Quorum topology (a cluster, `RUSHES_QUEUE_TYPE=quorum`): every queue is a quorum
//! queue, replicated on the cluster's nodes with its leader placed where leaders are
//! fewest. RabbitMQ 3.10's quorum queues have no priorities, so each family has one
//! queue per priority band, the routing key naming the band; a worker consumes every
//! band of a family on one channel and always takes the most urgent band's deliveries
//! first (and its slots go to the most urgent held job first). Retry queues
//! dead-letter at least once (kept until the job queue has the message).
//!
//! ```text
//!  publish ──► {p}.jobs ──rk=family.band──► {p}.{family}.{band}   band: high (AMQP priority ≥ 6),
//!                                                                  normal (2–5), low (0–1)
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

/// What kind of queues the topology is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    /// Classic queues with broker-side priorities, on the node that declared them: one
    /// broker node.
    #[default]
    Classic,
    /// Replicated quorum queues, one per priority band of each family: a cluster.
    Quorum,
}

/// A priority band of the quorum topology: the queue suffix and the lowest AMQP
/// priority (0–10) it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub name: &'static str,
    pub lowest: u8,
}

/// The bands of a family in the quorum topology, most urgent first. The default API
/// priority (20, AMQP 2) is `normal`; rechecks of held jobs travel at the top, `high`.
pub const BANDS: [Band; 3] = [
    Band {
        name: "high",
        lowest: 6,
    },
    Band {
        name: "normal",
        lowest: 2,
    },
    Band { name: "low", lowest: 0 },
];

/// Where quorum queues' leaders go: the node with the fewest (RabbitMQ 3.10 also
/// accepts its older name, `least-leaders`), so losing one node loses a third of them.
const LEADER_LOCATOR: &str = "balanced";

/// Names and declarations of every exchange and queue under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    queue_type: QueueType,
}

impl Topology {
    /// The classic topology under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            queue_type: QueueType::Classic,
        }
    }

    /// The same names with queues of `queue_type`.
    pub fn of_type(self, queue_type: QueueType) -> Self {
        Self { queue_type, ..self }
    }

    pub fn queue_type(&self) -> QueueType {
        self.queue_type
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The direct exchange every job is published to (routing key = family).
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The name of a family's queue: the queue itself in the classic topology, the stem
    /// of its band queues in the quorum one (for display and for parked letters).
    pub fn queue(&self, family: QueueFamily) -> String {
        format!("{}.{}", self.prefix, family.as_str())
    }

    /// Every queue a family's jobs wait in, most urgent first: one in the classic
    /// topology, one per band in the quorum one.
    pub fn queues(&self, family: QueueFamily) -> Vec<String> {
        match self.queue_type {
            QueueType::Classic => vec![self.queue(family)],
            QueueType::Quorum => BANDS
                .iter()
                .map(|band| format!("{}.{}", self.queue(family), band.name))
                .collect(),
        }
    }

    /// The routing key, on the jobs exchange, of a job of `family` (a family's name) at
    /// AMQP priority `priority` (none: the lowest).
    pub fn routing_key(&self, family: &str, priority: Option<u8>) -> String {
        match self.queue_type {
            QueueType::Classic => family.to_owned(),
            QueueType::Quorum => format!("{family}.{}", band_of(priority.unwrap_or(0)).name),
        }
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
        let mut dead_args = self.queue_args();
        dead_args.insert("x-max-length".into(), AMQPValue::LongLongInt(DEAD_LETTER_MAX));
        channel
            .queue_declare(dead.as_str().into(), durable_queue, dead_args)
            .await?;
        bind(channel, &dead, &dead, "").await?;

        for family in QueueFamily::ALL {
            let mut args = self.queue_args();
            if self.queue_type == QueueType::Classic {
                args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(AMQP_MAX_PRIORITY));
            }
            args.insert("x-dead-letter-exchange".into(), long_string(&dead));
            for (queue, band) in self.queues(family).into_iter().zip(BANDS) {
                channel
                    .queue_declare(queue.as_str().into(), durable_queue, args.clone())
                    .await?;
                let routing_key = self.routing_key(family.as_str(), Some(band.lowest));
                bind(channel, &queue, &jobs, &routing_key).await?;
            }
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
            let mut args = self.queue_args();
            let ttl_ms = i64::try_from(seconds * 1000).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
            args.insert("x-dead-letter-exchange".into(), long_string(&jobs));
            if self.queue_type == QueueType::Quorum {
                // A quorum queue dead-letters at most once unless told otherwise: an
                // expiring retry would be lost if the job queue's leader were away.
                args.insert("x-dead-letter-strategy".into(), long_string("at-least-once"));
                args.insert("x-overflow".into(), long_string("reject-publish"));
            }
            // Not a priority queue: RabbitMQ expires messages only at a queue's head, and a
            // priority queue would hold a low-priority message behind newer urgent ones.
            channel.queue_declare(name.as_str().into(), durable_queue, args).await?;
            bind(channel, &name, &name, "").await?;
        }
        Ok(())
    }

    /// The arguments every queue of this topology's type starts from.
    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            args.insert("x-queue-type".into(), long_string("quorum"));
            args.insert("x-queue-leader-locator".into(), long_string(LEADER_LOCATOR));
        }
        args
    }

    /// Deletes every exchange and queue of this prefix (test teardown, tenant removal).
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let mut queues: Vec<String> = QueueFamily::ALL.into_iter().flat_map(|f| self.queues(f)).collect();
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

/// The band of an AMQP priority.
fn band_of(priority: u8) -> Band {
    BANDS[band_rank(priority)]
}

/// The rank in [`BANDS`] (0: the most urgent) of the band an AMQP priority belongs to.
pub fn band_rank(priority: u8) -> usize {
    BANDS
        .iter()
        .position(|band| priority >= band.lowest)
        .unwrap_or(BANDS.len() - 1)
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
    fn quorum_queues_are_bands_most_urgent_first() {
        let classic = Topology::new("t1");
        assert_eq!(classic.queues(QueueFamily::Email), ["t1.email"]);
        assert_eq!(classic.routing_key("email", Some(9)), "email");
        let quorum = Topology::new("t1").of_type(QueueType::Quorum);
        assert_eq!(quorum.queue(QueueFamily::Email), "t1.email");
        assert_eq!(
            quorum.queues(QueueFamily::Email),
            ["t1.email.high", "t1.email.normal", "t1.email.low"]
        );
        assert_eq!(quorum.routing_key("email", Some(AMQP_MAX_PRIORITY)), "email.high");
        assert_eq!(quorum.routing_key("email", Some(6)), "email.high");
        assert_eq!(quorum.routing_key("email", Some(5)), "email.normal");
        assert_eq!(
            quorum.routing_key("email", Some(crate::job::amqp_priority(crate::job::DEFAULT_PRIORITY))),
            "email.normal"
        );
        assert_eq!(quorum.routing_key("email", Some(1)), "email.low");
        assert_eq!(quorum.routing_key("email", None), "email.low");
        // Every AMQP priority has exactly one band, and the bands are in urgency order.
        assert!(BANDS.windows(2).all(|w| w[0].lowest > w[1].lowest));
        assert_eq!(BANDS[BANDS.len() - 1].lowest, 0);
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
