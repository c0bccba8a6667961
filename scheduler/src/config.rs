//! The scheduler's settings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig, parse_seconds};

/// Leader-elected scheduler of Rushes: fires cron / interval / clocked schedules stored
/// in PostgreSQL, relays committed-but-unpublished jobs and re-publishes jobs stranded
/// by dead workers or by messages the broker lost.
#[derive(Debug, Clone, Parser)]
#[command(name = "rushes-scheduler", version)]
pub struct SchedulerConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub lease: LeaseConfig,
    /// Address of this scheduler's `/metrics`, `/healthz` and `/readyz` (port 0 picks a free one).
    #[arg(long, env = "RUSHES_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub metrics_addr: SocketAddr,
    /// Seconds between relay passes of the leader (default 1).
    #[arg(long, env = "RUSHES_RELAY_INTERVAL", default_value = "1", value_parser = parse_seconds)]
    pub relay_interval: Duration,
    /// Seconds after its due time within which a late fire still counts as on time
    /// (leader failover, a slow pass); later ones were missed and follow the schedule's
    /// missed-run policy (default 30).
    #[arg(long, env = "RUSHES_MISFIRE_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub misfire_grace: Duration,
    /// Seconds a committed job may stay unpublished before the relay publishes it
    /// (default 2: the enqueuer's own publish normally lands well within it).
    #[arg(long, env = "RUSHES_RELAY_GRACE", default_value = "2", value_parser = parse_seconds)]
    pub relay_grace: Duration,
    /// Seconds after which a queued job whose message was published but that no worker
    /// has claimed counts as stranded when its queue in the broker holds fewer messages
    /// than it has queued jobs (purged, or lost with a broker node): the relay then
    /// re-publishes it, and again at most once per this age (default 300; duplicates
    /// are harmless, the claim decides).
    #[arg(long, env = "RUSHES_STRANDED_AFTER", default_value = "300", value_parser = parse_seconds)]
    pub stranded_after: Duration,
}
