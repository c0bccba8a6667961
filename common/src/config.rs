//! Typed configuration sections shared by the binaries: each setting comes from a
//! flag, a `RUSHES_*` environment variable, an optional TOML file, or its default.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// A value that never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL of the system of record.
    #[arg(
        long,
        env = "RUSHES_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/rushes"
    )]
    pub database_url: Secret,
    /// Most connections this process opens to PostgreSQL.
    #[arg(long, env = "RUSHES_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
}

/// RabbitMQ connection settings and the queue-name prefix.
#[derive(Debug, Clone, Args)]
pub struct BrokerConfig {
    /// AMQP URL of RabbitMQ; for a cluster, its nodes' URLs separated by commas
    /// (connections go to the first node that answers, and move on when it stops).
    #[arg(
        long,
        env = "RUSHES_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: Secret,
    /// Prefix of every exchange and queue name, so that deployments and tests never collide.
    #[arg(long, env = "RUSHES_QUEUE_PREFIX", default_value = "rushes")]
    pub queue_prefix: String,
    /// `classic` (one broker node: queues with priorities) or `quorum` (a cluster:
    /// replicated queues, one per priority band of each family). Every process of a
    /// deployment must use the same.
    #[arg(long, env = "RUSHES_QUEUE_TYPE", value_enum, default_value_t = crate::queue::QueueType::Classic)]
    pub queue_type: crate::queue::QueueType,
}

/// Liveness of running jobs: how often workers heartbeat and when a heartbeat is stale.
#[derive(Debug, Clone, Args)]
pub struct LeaseConfig {
    /// Seconds between a worker's heartbeats for its running jobs (default 2).
    #[arg(long, env = "RUSHES_HEARTBEAT_INTERVAL", default_value = "2", value_parser = parse_seconds)]
    pub heartbeat_interval: Duration,
    /// Seconds without a heartbeat after which a running job counts as abandoned and may be
    /// re-claimed by another worker (default 15).
    #[arg(long, env = "RUSHES_STALE_AFTER", default_value = "15", value_parser = parse_seconds)]
    pub stale_after: Duration,
}

/// Parses a non-negative number of seconds (fractions allowed) into a duration.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|e| format!("not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("not a valid number of seconds: {e}"))
}

/// Parses the process's arguments into `T`, taking defaults from a TOML file when
/// `--config FILE` or `RUSHES_CONFIG` names one. Precedence: flag, environment, file, default.
/// `--help`, `--version` and usage errors print as clap prints them and exit (0 or 2).
pub fn parse<T: clap::Parser>() -> anyhow::Result<T> {
    parse_from::<T>(std::env::args_os().collect()).map_err(|err| match err.downcast::<clap::Error>() {
        Ok(clap_error) => clap_error.exit(),
        Err(other) => other,
    })
}

/// [`parse`] over explicit arguments (tests).
pub fn parse_from<T: clap::Parser>(args: Vec<OsString>) -> anyhow::Result<T> {
    let mut command = T::command().arg(
        clap::Arg::new("config")
            .long("config")
            .env("RUSHES_CONFIG")
            .value_name("FILE")
            .global(true)
            .help("TOML file of settings (keys are the long flag names with '_' for '-')"),
    );
    if let Some(path) = config_path(&args) {
        let defaults = read_toml(&path)?;
        for (key, value) in defaults {
            let has = |c: &clap::Command| c.get_arguments().any(|a| a.get_id().as_str() == key);
            let subcommands: Vec<String> = command
                .get_subcommands()
                .filter(|c| has(c))
                .map(|c| c.get_name().to_owned())
                .collect();
            if !has(&command) && subcommands.is_empty() {
                anyhow::bail!("{}: unknown setting `{key}`", path.display());
            }
            if has(&command) {
                command = command.mut_arg(key.as_str(), |arg| arg.default_value(value.clone()));
            }
            for name in subcommands {
                let value = value.clone();
                command = command.mut_subcommand(name, |c| c.mut_arg(key.as_str(), |arg| arg.default_value(value)));
            }
        }
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(T::from_arg_matches(&matches)?)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
    }
    std::env::var_os("RUSHES_CONFIG").map(PathBuf::from)
}

fn read_toml(path: &PathBuf) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => anyhow::bail!("{}: `{key}` has an unsupported value {other:?}", path.display()),
            };
            Ok((key, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Demo {
        #[command(flatten)]
        broker: BrokerConfig,
        #[arg(long, default_value_t = 1)]
        slots: u32,
    }

    #[test]
    fn toml_supplies_defaults_and_flags_win() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("rushes-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("demo.toml");
        std::fs::write(&file, "queue_prefix = \"fromfile\"\nslots = 3\n")?;
        let args = |extra: &[&str]| {
            let mut v: Vec<OsString> = vec!["demo".into(), "--config".into(), file.clone().into()];
            v.extend(extra.iter().map(OsString::from));
            v
        };
        let demo: Demo = parse_from(args(&[]))?;
        assert_eq!(demo.broker.queue_prefix, "fromfile");
        assert_eq!(demo.slots, 3);
        let demo: Demo = parse_from(args(&["--slots", "5"]))?;
        assert_eq!(demo.slots, 5);
        std::fs::write(&file, "no_such_setting = 1\n")?;
        let err = parse_from::<Demo>(args(&[]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown setting `no_such_setting`"), "{err}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }
}
