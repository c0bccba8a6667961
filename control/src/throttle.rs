//! Attempt counters (table `throttles`) behind login, password-reset and share-link
//! limits. An attempt is counted *before* it is checked, in one locked read-and-write
//! per key, so concurrent guesses cannot all see "under the limit". After a rule's free
//! attempts each further one must wait an exponentially growing, capped delay after the
//! last counted one; an attempt refused for waiting changes nothing (it does not push
//! the wait further), and a quiet period forgets the count. A success refunds or clears
//! its count.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::error::ApiResult;

/// How many attempts a key gets and how it backs off after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Attempts counted before any wait.
    pub free: i32,
    /// Wait after the first attempt beyond the free ones; doubles with each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A key untouched this long starts again from zero.
    pub forget_after: Duration,
}

/// Failed logins of one username, whatever the address.
pub const LOGIN_ACCOUNT: Rule = Rule {
    free: 5,
    base_delay: Duration::seconds(30),
    max_delay: Duration::minutes(15),
    forget_after: Duration::hours(1),
};

/// Failed logins from one client address, whatever the username.
pub const LOGIN_ADDRESS: Rule = Rule {
    free: 20,
    base_delay: Duration::seconds(30),
    max_delay: Duration::minutes(15),
    forget_after: Duration::hours(1),
};

/// Password-reset requests from one client address (each request counts).
pub const RESET_ADDRESS: Rule = Rule {
    free: 5,
    base_delay: Duration::minutes(1),
    max_delay: Duration::hours(1),
    forget_after: Duration::hours(1),
};

/// Reset mails to one account (each mail counts).
pub const RESET_ACCOUNT: Rule = Rule {
    free: 3,
    base_delay: Duration::minutes(5),
    max_delay: Duration::hours(1),
    forget_after: Duration::hours(1),
};

/// Wrong passwords given to one share link.
pub const SHARE_LINK: Rule = Rule {
    free: 10,
    base_delay: Duration::seconds(30),
    max_delay: Duration::minutes(15),
    forget_after: Duration::hours(1),
};

/// The longest any rule remembers a key: older rows are purged.
pub const LONGEST_MEMORY: Duration = Duration::hours(1);

/// One key's count and when its last attempt was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub attempts: i32,
    pub last_at: Option<DateTime<Utc>>,
}

impl Rule {
    /// The wait after the last counted attempt when `attempts` were counted.
    pub fn delay(&self, attempts: i32) -> Duration {
        let over = attempts - self.free;
        if over < 0 {
            return Duration::zero();
        }
        let factor = 1i32 << over.min(20);
        (self.base_delay * factor).min(self.max_delay)
    }

    /// Counts an attempt at `now`: the new count, or the instant before which it must not be made.
    pub fn attempt(&self, count: Count, now: DateTime<Utc>) -> Result<Count, DateTime<Utc>> {
        let attempts = match count.last_at {
            Some(last) if now - last < self.forget_after => count.attempts.max(0),
            _ => 0,
        };
        if let Some(last) = count.last_at.filter(|_| attempts >= self.free) {
            let allowed_at = last + self.delay(attempts);
            if now < allowed_at {
                return Err(allowed_at);
            }
        }
        Ok(Count {
            attempts: attempts.saturating_add(1),
            last_at: Some(now),
        })
    }
}

/// Why an attempt was refused: it may be made again at `retry_at`.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub retry_at: DateTime<Utc>,
}

impl Limited {
    /// Whole seconds from `now` until the attempt may be made (at least 1).
    pub fn seconds(&self, now: DateTime<Utc>) -> i64 {
        ((self.retry_at - now).num_milliseconds() + 999).div_euclid(1000).max(1)
    }
}

/// Counts one attempt against every key (all or none): refused when any key must wait.
pub async fn attempt(db: &PgPool, keys: &[(String, Rule)], now: DateTime<Utc>) -> ApiResult<Result<(), Limited>> {
    let mut keys: Vec<&(String, Rule)> = keys.iter().collect();
    // One order for every caller, so that two attempts never wait on each other's rows.
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys.dedup_by(|a, b| a.0 == b.0);
    let mut tx = db.begin().await?;
    let mut counted = Vec::with_capacity(keys.len());
    let mut refused: Option<DateTime<Utc>> = None;
    for (key, rule) in keys {
        // Creates the row if need be and locks it; returns what it holds.
        let (attempts, last_at): (i32, Option<DateTime<Utc>>) = sqlx::query_as(
            "INSERT INTO throttles (key) VALUES ($1) ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key \
             RETURNING attempts, last_at",
        )
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
        match rule.attempt(Count { attempts, last_at }, now) {
            Ok(count) => counted.push((key, count)),
            Err(at) => refused = Some(refused.map_or(at, |r| r.max(at))),
        }
    }
    if let Some(retry_at) = refused {
        tx.rollback().await?;
        return Ok(Err(Limited { retry_at }));
    }
    for (key, count) in counted {
        sqlx::query("UPDATE throttles SET attempts = $2, last_at = $3 WHERE key = $1")
            .bind(key)
            .bind(count.attempts)
            .bind(count.last_at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Ok(()))
}

/// Takes back one counted attempt (it succeeded).
pub async fn refund(db: &PgPool, key: &str) -> ApiResult<()> {
    sqlx::query("UPDATE throttles SET attempts = greatest(attempts - 1, 0) WHERE key = $1")
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets a key's count (the account's owner proved who they are).
pub async fn clear(db: &PgPool, key: &str) -> ApiResult<()> {
    sqlx::query("DELETE FROM throttles WHERE key = $1")
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::seconds(1_800_000_000 + seconds)
    }

    const RULE: Rule = Rule {
        free: 3,
        base_delay: Duration::seconds(10),
        max_delay: Duration::seconds(60),
        forget_after: Duration::seconds(600),
    };

    #[test]
    fn free_attempts_then_a_doubling_capped_wait() {
        let mut count = Count {
            attempts: 0,
            last_at: None,
        };
        for _ in 0..3 {
            count = RULE.attempt(count, at(0)).unwrap_or(count);
        }
        assert_eq!(count.attempts, 3);
        assert_eq!(RULE.attempt(count, at(9)), Err(at(10)), "first wait: the base delay");
        let Ok(count) = RULE.attempt(count, at(10)) else {
            panic!("allowed once the wait is over");
        };
        assert_eq!(RULE.attempt(count, at(29)), Err(at(30)), "then twice as long");
        assert_eq!(RULE.delay(3), Duration::seconds(10));
        assert_eq!(RULE.delay(4), Duration::seconds(20));
        assert_eq!(RULE.delay(5), Duration::seconds(40));
        assert_eq!(RULE.delay(6), Duration::seconds(60), "capped");
        assert_eq!(RULE.delay(60), Duration::seconds(60), "capped, no overflow");
        assert_eq!(RULE.delay(2), Duration::zero());
    }

    #[test]
    fn a_refused_attempt_changes_nothing_and_quiet_forgets() {
        let count = Count {
            attempts: 3,
            last_at: Some(at(0)),
        };
        // Refusals carry no new count, so hammering does not move the wait.
        for t in 1..10 {
            assert_eq!(RULE.attempt(count, at(t)), Err(at(10)));
        }
        let fresh = RULE.attempt(count, at(600));
        assert_eq!(
            fresh,
            Ok(Count {
                attempts: 1,
                last_at: Some(at(600))
            }),
            "forgotten after the quiet period"
        );
        let limited = Limited { retry_at: at(10) };
        assert_eq!(limited.seconds(at(0)), 10);
        assert_eq!(limited.seconds(at(10)), 1);
    }
}
