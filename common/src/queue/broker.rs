//! The pooled broker connections (deadpool-lapin) and broker-level queries. A broker
//! may be a cluster: `RUSHES_AMQP_URL` lists its nodes (comma separated), one pool
//! each; connections come from the node that answered last, and from the next node
//! that answers when it stops answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// One pool per node, in the order the URLs were given.
    nodes: Vec<Node>,
    /// The node connections come from while it answers.
    current: AtomicUsize,
    topology: Topology,
}

struct Node {
    /// Where the node listens, without credentials (for logs).
    name: String,
    /// Host and port of a plain-AMQP node (its version can be read); `None` over TLS.
    plain: Option<(String, u16)>,
    pool: deadpool_lapin::Pool,
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
    /// `config.amqp_url` is one URL or several, comma separated (a cluster's nodes).
    pub fn new(config: &BrokerConfig, connection_name: &str) -> Result<Self, BrokerError> {
        let urls = node_urls(config.amqp_url.expose())?;
        let mut nodes = Vec::with_capacity(urls.len());
        for url in urls {
            let mut pool_config = PoolConfig::new(4);
            pool_config.timeouts = Timeouts {
                wait: Some(BROKER_TIMEOUT),
                create: Some(BROKER_TIMEOUT),
                recycle: Some(BROKER_TIMEOUT),
            };
            let name = node_name(url);
            let pool_settings = deadpool_lapin::Config {
                url: Some(url.to_owned()),
                pool: Some(pool_config),
            };
            let connection_name = connection_name.to_owned();
            let pool = pool_settings
                .create_pool(
                    move || ConnectionProperties::default().with_connection_name(connection_name.clone().into()),
                    Runtime::Tokio1,
                )
                .map_err(|e| BrokerError::Unreachable(format!("{name}: {e}")))?;
            let plain = url
                .parse::<lapin::uri::AMQPUri>()
                .ok()
                .filter(|uri| uri.scheme == lapin::uri::AMQPScheme::AMQP)
                .map(|uri| (uri.authority.host, uri.authority.port));
            nodes.push(Node { name, plain, pool });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                nodes,
                current: AtomicUsize::new(0),
                topology: Topology::new(config.queue_prefix.clone()).of_type(config.queue_type),
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// A pooled connection, made (or remade) if needed: from the node that answered
    /// last, else from the next one that answers, in the order given.
    async fn connection(&self) -> Result<deadpool_lapin::Connection, BrokerError> {
        let nodes = &self.inner.nodes;
        let first = self.inner.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..nodes.len() {
            let index = (first + k) % nodes.len();
            let node = &nodes[index];
            match node.pool.get().await {
                Ok(connection) => {
                    if index != first {
                        tracing::info!(node = %node.name, "using another broker node");
                        self.inner.current.store(index, Ordering::Relaxed);
                    }
                    return Ok(connection);
                }
                Err(err) => {
                    if nodes.len() > 1 {
                        tracing::warn!(node = %node.name, error = %err, "broker node unreachable");
                    }
                    failures.push(format!("{}: {err}", node.name));
                }
            }
        }
        Err(BrokerError::Unreachable(failures.join("; ")))
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

    /// Each node (`host:port`) with the product and version it names, or why not.
    pub async fn server_versions(&self) -> Vec<(String, Result<String, String>)> {
        let mut out = Vec::with_capacity(self.inner.nodes.len());
        for node in &self.inner.nodes {
            let version = match &node.plain {
                Some((host, port)) => super::server::version(host, *port, BROKER_TIMEOUT).await,
                None => Err("not read over TLS".to_owned()),
            };
            out.push((node.name.clone(), version));
        }
        out
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

    /// Depth and consumer count of every family's queue (passive declares; a family's
    /// bands summed, their consumers counted once: a worker consumes every band).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, BrokerError> {
        let channel = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let mut stats = Vec::with_capacity(QueueFamily::ALL.len());
        for family in QueueFamily::ALL {
            let mut family_stats = QueueStats {
                family,
                messages: 0,
                consumers: 0,
            };
            for name in self.topology().queues(family) {
                match channel
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(queue) => {
                        family_stats.messages = family_stats.messages.saturating_add(queue.message_count());
                        family_stats.consumers = family_stats.consumers.max(queue.consumer_count());
                    }
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
            stats.push(family_stats);
        }
        let _ = channel.close(200, "OK".into()).await;
        Ok(stats)
    }
}

/// The node URLs of `RUSHES_AMQP_URL`: one, or several separated by commas.
fn node_urls(list: &str) -> Result<Vec<&str>, BrokerError> {
    let urls: Vec<&str> = list.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    if urls.is_empty() {
        return Err(BrokerError::Unreachable("no broker URL given".to_owned()));
    }
    for url in &urls {
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| BrokerError::Unreachable(format!("{}: not an AMQP URL: {e}", node_name(url))))?;
    }
    Ok(urls)
}

/// `host:port` of a node URL (never its credentials), for logs and errors.
fn node_name(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!("{}:{}", uri.authority.host, uri.authority.port),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_nodes_is_split_and_named_without_credentials() {
        let urls = node_urls("amqp://u:secret@a:5672/%2f, amqp://u:secret@b:5673/%2f,").unwrap_or_default();
        assert_eq!(urls, ["amqp://u:secret@a:5672/%2f", "amqp://u:secret@b:5673/%2f"]);
        assert_eq!(node_name(urls[1]), "b:5673");
        assert!(node_urls(" , ").is_err(), "no URL at all");
        let bad = node_urls("amqp://u:secret@a:5672/%2f,http://u:secret@b/")
            .err()
            .map(|e| e.to_string());
        assert!(
            bad.as_deref()
                .is_some_and(|e| e.contains("not an AMQP URL") && !e.contains("secret")),
            "{bad:?}"
        );
    }
}
