//! What the API caches (dashboard counts): entries expire after the `cache_ttl_seconds`
//! setting, "clear cache" reaches every control replica through a NOTIFY that each one
//! LISTENs for, and counts (keys under [`COUNTS_PREFIX`]) are dropped whenever the rows
//! they count change (a trigger's NOTIFY on [`COUNTS_CHANNEL`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// NOTIFY channel that clears every replica's cache.
pub const CLEAR_CHANNEL: &str = "rushes_cache_clear";
/// NOTIFY channel on which the database says clips or transcripts changed (migration
/// `20261202000050`): cached counts are stale.
pub const COUNTS_CHANNEL: &str = "rushes_counts_changed";
/// Keys of cached counts, dropped on [`COUNTS_CHANNEL`].
pub const COUNTS_PREFIX: &str = "counts.";

#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<String, (Instant, Value)>>,
    /// Bumped by every drop, so that a value computed before a drop is not stored after it.
    generation: AtomicU64,
}

impl Cache {
    /// The current generation: pass it to [`Self::put_unless_dropped`] with a value
    /// computed after reading it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Stores `value` unless something was dropped since `generation` was read (the
    /// value may predate the change that caused the drop).
    pub fn put_unless_dropped(&self, key: &str, value: Value, generation: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) == generation {
            entries.insert(key.to_owned(), (Instant::now(), value));
        }
    }

    /// Drops the entries whose key starts with `prefix`.
    pub fn drop_prefix(&self, prefix: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|key, _| !key.starts_with(prefix));
    }

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
        self.generation.fetch_add(1, Ordering::SeqCst);
        let n = entries.len();
        entries.clear();
        n
    }
}

/// Clears `cache` whenever any replica announces a clear, and drops its counts whenever
/// the database announces a change, until `shutdown`. A lost connection clears too (a
/// notification may have been missed meanwhile) and reconnects.
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
        if let Err(err) = listener.listen_all([CLEAR_CHANNEL, COUNTS_CHANNEL]).await {
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
                    Ok(notice) if notice.channel() == COUNTS_CHANNEL => cache.drop_prefix(COUNTS_PREFIX),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_computed_before_a_drop_is_not_kept() {
        let cache = Cache::default();
        let ttl = Duration::from_secs(60);
        let before = cache.generation();
        cache.drop_prefix(COUNTS_PREFIX);
        cache.put_unless_dropped("counts.x", Value::from(1), before);
        assert_eq!(cache.get("counts.x", ttl), None, "computed before the change");
        let now = cache.generation();
        cache.put_unless_dropped("counts.x", Value::from(2), now);
        cache.put_unless_dropped("other", Value::from(3), now);
        assert_eq!(cache.get("counts.x", ttl), Some(Value::from(2)));
        cache.drop_prefix(COUNTS_PREFIX);
        assert_eq!(cache.get("counts.x", ttl), None);
        assert_eq!(cache.get("other", ttl), Some(Value::from(3)), "only counts are dropped");
    }
}
