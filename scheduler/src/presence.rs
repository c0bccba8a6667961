//! The scheduler's row in `schedulers`: where it serves its metrics (the control plane's
//! service discovery lists every running scheduler for Prometheus), kept fresh while it
//! runs and marked stopped when it stops.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the row's `last_seen_at` is refreshed.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// Registers this scheduler, refreshes its row until `shutdown`, then marks it stopped.
/// PostgreSQL being away only delays the row: scheduling does not depend on it.
pub async fn keep(db: PgPool, metrics_addr: String, shutdown: CancellationToken) {
    let id = Uuid::now_v7();
    let mut registered = false;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let result = if registered {
            sqlx::query("UPDATE schedulers SET last_seen_at = now() WHERE id = $1")
                .bind(id)
                .execute(&db)
                .await
        } else {
            sqlx::query("INSERT INTO schedulers (id, host, pid, version, metrics_addr) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(rushes_common::host_name())
                .bind(i32::try_from(std::process::id()).unwrap_or(0))
                .bind(rushes_common::VERSION)
                .bind(&metrics_addr)
                .execute(&db)
                .await
        };
        match result {
            Ok(_) => registered = true,
            Err(err) => tracing::debug!(error = %err, "cannot refresh the scheduler's row"),
        }
    }
    if registered {
        let stopped = sqlx::query("UPDATE schedulers SET stopped_at = now(), last_seen_at = now() WHERE id = $1")
            .bind(id)
            .execute(&db)
            .await;
        if let Err(err) = stopped {
            tracing::warn!(error = %err, "cannot mark the scheduler stopped");
        }
    }
}
