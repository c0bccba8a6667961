//! The worker's settings: shared sections plus which queues it consumes and how many slots each has.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig, parse_seconds};
use rushes_common::job::QueueFamily;

/// Consumes Rushes job queues and runs the jobs.
#[derive(Debug, Clone, Parser)]
#[command(name = "rushes-worker", version)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub lease: LeaseConfig,
    /// Queues to consume, comma separated, each optionally with its slot count:
    /// `transcode=2,scan,email`. Queues: scan, transcode, transcode_long, transcribe, email, maintenance.
    #[arg(
        long,
        env = "RUSHES_QUEUES",
        value_delimiter = ',',
        default_value = "scan,transcode,transcode_long,transcribe,email,maintenance"
    )]
    pub queues: Vec<QueueSlots>,
    /// Slots of a queue listed without `=N`: jobs of that queue this worker runs at once.
    #[arg(long, env = "RUSHES_SLOTS", default_value_t = 2)]
    pub slots: u16,
    /// Address of this worker's `/metrics`, `/healthz` and `/readyz` (port 0 picks a free one).
    #[arg(long, env = "RUSHES_METRICS_ADDR", default_value = "127.0.0.1:9101")]
    pub metrics_addr: SocketAddr,
    /// Seconds a stopping worker (SIGTERM) gives in-flight jobs to finish before it
    /// requeues them (default 30).
    #[arg(long, env = "RUSHES_SHUTDOWN_GRACE", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
    /// Name shown in the workers list (default: the host name).
    #[arg(long, env = "RUSHES_WORKER_HOST")]
    pub host: Option<String>,
}

/// One `--queues` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSlots {
    pub family: QueueFamily,
    /// `None`: take `--slots`.
    pub slots: Option<u16>,
}

impl FromStr for QueueSlots {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, slots) = match s.split_once('=') {
            Some((name, n)) => {
                let n: u16 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("slots of `{name}` must be a whole number, got `{n}`"))?;
                if n == 0 {
                    return Err(format!("slots of `{name}` must be at least 1"));
                }
                (name, Some(n))
            }
            None => (s, None),
        };
        let family = name.trim().parse::<QueueFamily>().map_err(|e| e.to_string())?;
        Ok(Self { family, slots })
    }
}

impl WorkerConfig {
    /// Each consumed family with its slot count (a family listed twice keeps its last count).
    pub fn slots_by_queue(&self) -> Vec<(QueueFamily, u16)> {
        let mut out: Vec<(QueueFamily, u16)> = Vec::new();
        for q in &self.queues {
            let slots = q.slots.unwrap_or(self.slots).max(1);
            match out.iter_mut().find(|(f, _)| *f == q.family) {
                Some(entry) => entry.1 = slots,
                None => out.push((q.family, slots)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_slots_parse() {
        assert_eq!(
            "transcode=3".parse::<QueueSlots>(),
            Ok(QueueSlots {
                family: QueueFamily::Transcode,
                slots: Some(3)
            })
        );
        assert_eq!(
            "scan".parse::<QueueSlots>(),
            Ok(QueueSlots {
                family: QueueFamily::Scan,
                slots: None
            })
        );
        assert!("scan=0".parse::<QueueSlots>().is_err());
        assert!("celery".parse::<QueueSlots>().is_err());
    }

    #[test]
    fn defaults_fill_unsized_queues() -> anyhow::Result<()> {
        let config: WorkerConfig =
            rushes_common::config::parse_from(vec!["w".into(), "--queues".into(), "scan,email=4,scan=3".into()])?;
        assert_eq!(
            config.slots_by_queue(),
            vec![(QueueFamily::Scan, 3), (QueueFamily::Email, 4)]
        );
        Ok(())
    }
}
