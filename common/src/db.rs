//! The PostgreSQL pool and the migrations (the one place that knows the schema is `migrations/`).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

/// Every migration of the workspace, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool to the configured database. Connections are made lazily, so a
/// process starts (and reports unready) while PostgreSQL is down.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.expose().parse()?;
    let options = options.application_name("rushes");
    Ok(PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        // No ping before every checkout: it doubles the round trips of the hot path, and
        // a dead connection surfaces as a query error, which every caller handles.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Creates the configured database if it does not exist yet (`rushes-control migrate`).
pub async fn create_if_missing(config: &DatabaseConfig) -> Result<bool, sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    let url = config.database_url.expose();
    if sqlx::Postgres::database_exists(url).await? {
        return Ok(false);
    }
    sqlx::Postgres::create_database(url).await?;
    Ok(true)
}

/// Applies pending migrations (`rushes-control migrate`).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// NOTIFY channel carrying the id of a job an admin cancelled; workers LISTEN on it.
pub const CANCEL_CHANNEL: &str = "rushes_job_cancel";
/// NOTIFY channel announcing that queue pauses changed; workers LISTEN on it.
pub const PAUSE_CHANNEL: &str = "rushes_queue_pause";
/// NOTIFY channel carrying the id of a worker an admin asked something of (a stop, its
/// slots); that worker LISTENs on it.
pub const WORKER_CHANNEL: &str = "rushes_worker_control";
