//! Leadership: a PostgreSQL session advisory lock held on a dedicated connection. The
//! lock dies with the connection, so a leader that crashes or loses PostgreSQL stops
//! leading at once, and a standby takes over on its next try.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Advisory-lock key of the scheduler leadership ("rushes-s" in ASCII).
pub const LEADER_LOCK_KEY: i64 = 0x7275_7368_6573_2d73;

/// How long a liveness check of the lock connection may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection that may hold the leadership lock.
pub struct Candidate {
    connection: PgConnection,
    leading: bool,
}

impl Candidate {
    pub async fn connect(database_url: &str) -> Result<Self, sqlx::Error> {
        // The process id in the session name tells operators (and tests) who leads.
        let options: PgConnectOptions = rushes_common::db::connect_options(database_url)?;
        let options = options.application_name(&format!("rushes-scheduler {}", std::process::id()));
        let connection = PgConnection::connect_with(&options).await?;
        Ok(Self {
            connection,
            leading: false,
        })
    }

    /// Tries to take the lock; `true` while this candidate leads.
    pub async fn try_lead(&mut self) -> Result<bool, sqlx::Error> {
        if !self.leading {
            let attempt = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK_KEY)
                .fetch_one(&mut self.connection);
            self.leading = tokio::time::timeout(CHECK_TIMEOUT, attempt)
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
        }
        Ok(self.leading)
    }

    /// Confirms the lock connection is alive (and so the lock still held). An error
    /// means leadership is lost: drop this candidate and connect again.
    pub async fn confirm(&mut self) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut self.connection)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Gives the lock back, so a standby takes over without waiting; bounded, because the
    /// connection may be the one that just failed (then dropping it releases the lock).
    pub async fn resign(mut self) {
        let release = async {
            if self.leading {
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LEADER_LOCK_KEY)
                    .execute(&mut self.connection)
                    .await?;
            }
            self.connection.close().await
        };
        if !matches!(tokio::time::timeout(CHECK_TIMEOUT, release).await, Ok(Ok(()))) {
            tracing::debug!("leadership connection dropped without a clean close");
        }
    }
}
