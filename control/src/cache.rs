//! What the API caches (dashboard counts): entries expire after the `cache_ttl_seconds`
//! setting, and "clear cache" reaches every control replica through a NOTIFY that each
//! one LISTENs for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// NOTIFY channel that clears every replica's cache.
pub const CLEAR_CHANNEL: &str = "rushes_cache_clear";

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Instant, Value)>>,
}

impl Cache {
    /// The cached value of `key` if younger than `ttl`.
    pub fn get(&self, key: &str, ttl: Duration) -> Option<Value> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: &str, value: Value) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(key.to_owned(), (Instant::now(), value));
    }

    /// Drops everything; returns how many entries there were.
    pub fn clear(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let n = entries.len();
        entries.clear();
        n
    }
}

/// Clears `cache` whenever any replica announces a clear, until `shutdown`. A lost
/// connection clears too (a clear may have been missed meanwhile) and reconnects.
pub async fn listen(db: PgPool, cache: Arc<Cache>, shutdown: CancellationToken) {
    let mut backoff = rushes_common::queue::Backoff::new(Duration::from_secs(10));
    loop {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cache listener cannot connect");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        if let Err(err) = listener.listen(CLEAR_CHANNEL).await {
            tracing::warn!(error = %err, "cache listener cannot LISTEN");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => continue,
            }
        }
        backoff = rushes_common::queue::Backoff::new(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = listener.recv() => match notice {
                    Ok(_) => {
                        let dropped = cache.clear();
                        tracing::info!(entries = dropped, "cache cleared");
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cache listener lost its connection");
                        cache.clear();
                        break;
                    }
                }
            }
        }
    }
}
