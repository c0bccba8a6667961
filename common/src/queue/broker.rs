//! The pooled broker connection (deadpool-lapin) and broker-level queries.

use std::sync::Arc;
use std::time::Duration;

use deadpool_lapin::{PoolConfig, Runtime, Timeouts};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, ConnectionProperties};

use super::topology::Topology;
use crate::config::BrokerConfig;
use crate::job::QueueFamily;

/// How long any single broker operation (connect, get a pooled connection) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the broker: {0}")]
    Unreachable(String),
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("broker operation timed out")]
    Timeout,
}

/// Depth and consumers of one family's queue, as the broker reports them.
#[derive(Debug, Clone, Copy)]
pub struct QueueStats {
    pub family: QueueFamily,
    pub messages: u32,
    pub consumers: u32,
}

/// A pool of broker connections plus the topology of one prefix. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    pool: deadpool_lapin::Pool,
    topology: Topology,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("prefix", &self.inner.topology.prefix())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker handle; connects lazily, so processes start while RabbitMQ is down.
    pub fn new(config: &BrokerConfig, connection_name: &str) -> Result<Self, BrokerError> {
        let mut pool_config = PoolConfig::new(4);
        pool_config.timeouts = Timeouts {
            wait: Some(BROKER_TIMEOUT),
            create: Some(BROKER_TIMEOUT),
            recycle: Some(BROKER_TIMEOUT),
        };
        let pool_settings = deadpool_lapin::Config {
            url: Some(config.amqp_url.expose().to_owned()),
            pool: Some(pool_config),
        };
        let name = connection_name.to_owned();
        let pool = pool_settings
            .create_pool(
                move || ConnectionProperties::default().with_connection_name(name.clone().into()),
                Runtime::Tokio1,
            )
            .map_err(|e| BrokerError::Unreachable(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                topology: Topology::new(config.queue_prefix.clone()),
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// A pooled connection, made (or remade) if needed.
    async fn connection(&self) -> Result<deadpool_lapin::Connection, BrokerError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| BrokerError::Unreachable(e.to_string()))
    }

    /// A new channel on a pooled connection.
    pub(crate) async fn channel(&self) -> Result<Channel, BrokerError> {
        let connection = self.connection().await?;
        let channel = tokio::time::timeout(BROKER_TIMEOUT, connection.create_channel())
            .await
            .map_err(|_| BrokerError::Timeout)??;
        Ok(channel)
    }

    /// A new channel on which the whole topology has been (re-)declared.
    pub(crate) async fn declared_channel(&self) -> Result<Channel, BrokerError> {
        let channel = self.channel().await?;
        tokio::time::timeout(BROKER_TIMEOUT * 2, self.topology().declare(&channel))
            .await
            .map_err(|_| BrokerError::Timeout)??;
        Ok(channel)
    }

    /// Declares the topology (idempotent): `rushes-control migrate` and start-up.
    pub async fn declare_topology(&self) -> Result<(), BrokerError> {
        let channel = self.declared_channel().await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }

    /// Deletes every queue and exchange of this prefix (test teardown).
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        let channel = self.channel().await?;
        self.topology().delete(&channel).await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }

    /// Whether the broker answers: a pooled connection that is (or can be made) live.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let connection = self.connection().await?;
        if connection.status().connected() {
            Ok(())
        } else {
            Err(BrokerError::Unreachable("connection is not open".into()))
        }
    }

    /// Messages parked in the broker's dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<u32, BrokerError> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(
                self.topology().dead_letters().as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(queue.message_count())
    }

    /// Depth and consumer count of every family's queue (passive declares).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, BrokerError> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut stats = Vec::with_capacity(QueueFamily::ALL.len());
        for family in QueueFamily::ALL {
            let name = self.topology().queue(family);
            match channel
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await
            {
                Ok(queue) => stats.push(QueueStats {
                    family,
                    messages: queue.message_count(),
                    consumers: queue.consumer_count(),
                }),
                Err(err) => {
                    // A passive declare of a missing queue closes the channel: the
                    // topology has not been declared yet, so every queue is empty.
                    tracing::debug!(queue = %name, error = %err, "queue not declared yet");
                    return Ok(QueueFamily::ALL
                        .into_iter()
                        .map(|family| QueueStats {
                            family,
                            messages: 0,
                            consumers: 0,
                        })
                        .collect());
                }
            }
        }
        let _ = channel.close(200, "OK".into()).await;
        Ok(stats)
    }
}
