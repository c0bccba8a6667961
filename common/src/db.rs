//! The PostgreSQL pool and the migrations (the one place that knows the schema is `migrations/`).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::config::DatabaseConfig;

/// Every migration of the workspace, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool to the configured database. Connections are made lazily, so a
/// process starts (and reports unready) while PostgreSQL is down.
pub fn pool(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(config.database_url.expose())?.application_name("rushes");
    Ok(PgPoolOptions::new()
        .max_connections(config.database_max_connections)
        // No ping before every checkout: it doubles the round trips of the hot path, and
        // a dead connection surfaces as a query error, which every caller handles.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// The connection options of `url`. A server on this host (a loopback address,
/// `localhost` or a socket directory) is reached without TLS unless the URL or
/// `PGSSLMODE` asks for a mode: sqlx's default, `prefer`, would encrypt a loopback
/// connection whenever the server has a certificate (Debian's has one), which protects
/// nothing there and costs CPU (under sqlx 0.9.0, which did not set `TCP_NODELAY`, it
/// also stalled every large statement ~40 ms; 0.9.1 at least is required). A remote
/// server keeps `prefer`; production URLs name `sslmode=require` or `verify-full`.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    // sqlx takes either spelling of the parameter.
    let mode_named =
        ["sslmode=", "ssl-mode="].iter().any(|p| url.contains(p)) || std::env::var_os("PGSSLMODE").is_some();
    Ok(if !mode_named && is_local(options.get_host()) {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// A host name of this machine: loopback, `localhost`, or a Unix socket directory.
fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Option<PgSslMode> {
        connect_options(url).ok().map(|o| o.get_ssl_mode())
    }

    #[test]
    fn a_server_on_this_host_is_reached_without_tls_unless_a_mode_is_named() {
        if std::env::var_os("PGSSLMODE").is_some() {
            panic!("this test reads the URL alone: run it without PGSSLMODE set");
        }
        for url in [
            "postgres://u@127.0.0.1:5432/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]:5432/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            assert!(matches!(mode(url), Some(PgSslMode::Disable)), "{url}");
        }
        assert!(matches!(
            mode("postgres://u@127.0.0.1/db?sslmode=require"),
            Some(PgSslMode::Require)
        ));
        assert!(matches!(
            mode("postgres://u@localhost/db?ssl-mode=verify-full"),
            Some(PgSslMode::VerifyFull)
        ));
        assert!(matches!(
            mode("postgres://u@db.example.com/db"),
            Some(PgSslMode::Prefer)
        ));
        assert!(mode("not a url").is_none());
    }
}
