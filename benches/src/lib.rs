//! Benchmarks of Rushes live in `benches/` (run with `cargo bench -p rushes-benches`);
//! each prints a table and its ratio to a reference measured in the same run. This
//! library holds what they share: a private database and queue prefix, and statistics.

use std::time::Duration;

use rushes_common::config::{BrokerConfig, DatabaseConfig, Secret};
use rushes_common::queue::{Broker, Publisher};
use sqlx::PgPool;

/// An environment variable, or `default`.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not (then stay quick).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The value at quantile `q` (0–1) of `samples` (sorted in place).
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
    samples.get(index).copied().unwrap_or(f64::NAN)
}

/// A database and queue prefix of the benchmark's own, removed by [`BenchEnv::teardown`].
pub struct BenchEnv {
    pub pg: String,
    pub amqp: String,
    pub tag: String,
    pub database: DatabaseConfig,
    pub broker_config: BrokerConfig,
    pub db: PgPool,
    pub broker: Broker,
    pub publisher: Publisher,
}

impl BenchEnv {
    /// Creates and migrates `rushes_bench_<tag>` and declares the `bench<tag>` topology
    /// (servers from `RUSHES_TEST_PG` / `RUSHES_TEST_AMQP`).
    pub async fn new() -> anyhow::Result<Self> {
        let pg = env_or("RUSHES_TEST_PG", "postgres://postgres@127.0.0.1:5432");
        let amqp = env_or("RUSHES_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2f");
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let database = DatabaseConfig {
            database_url: Secret::new(format!("{pg}/rushes_bench_{tag}")),
            database_max_connections: 10,
        };
        let broker_config = BrokerConfig {
            amqp_url: Secret::new(amqp.clone()),
            queue_prefix: format!("bench{tag}"),
            queue_type: rushes_common::queue::QueueType::Classic,
        };
        rushes_common::db::create_if_missing(&database).await?;
        let db = rushes_common::db::pool(&database)?;
        rushes_common::db::migrate(&db).await?;
        let broker = Broker::new(&broker_config, "rushes-bench")?;
        broker.declare_topology().await?;
        let publisher = Publisher::new(broker.clone());
        Ok(Self {
            pg,
            amqp,
            tag,
            database,
            broker_config,
            db,
            broker,
            publisher,
        })
    }

    /// Deletes the topology (twice: a worker's last publish may re-declare it) and drops
    /// the database.
    pub async fn teardown(self) {
        let _ = self.broker.delete_topology().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = self.broker.delete_topology().await;
        self.db.close().await;
        use sqlx::Connection as _;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{}/postgres", self.pg)).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS rushes_bench_{} WITH (FORCE)",
                self.tag
            )))
            .execute(&mut admin)
            .await;
        }
    }
}
