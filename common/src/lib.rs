//! Shared pieces of Rushes: configuration, telemetry, shutdown, database, the job
//! catalogue, the RabbitMQ topology and publishing, and metrics helpers.

pub mod accounts;
pub mod audit;
pub mod config;
pub mod db;
pub mod job;
pub mod logs;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod queue;
pub mod schedule;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod timecode;
pub mod tokens;
pub mod transcripts;

/// The version every Rushes process reports (workers row, `/healthz`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The versions of the main dependencies this build was made with (`name`, `version`;
/// a crate twice in the build appears twice).
pub fn dependencies() -> Vec<(&'static str, &'static str)> {
    env!("RUSHES_DEPENDENCIES")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// This machine's host name (`unknown` when it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
