//! The built-in `sleep` kind: waits (or keeps a CPU core busy), reports progress, and
//! can be told to fail or panic, for tests, benchmarks and operators checking a fleet
//! end to end.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalogue::{JobPayload, QueueFamily};

/// Payload of `sleep`: `{"seconds": 1.5}`; the optional fields inject failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long to sleep, in seconds (0 to one day).
    pub seconds: f64,
    /// Fail (retryably) on each attempt up to and including this one.
    #[serde(default)]
    pub fail_attempts: u32,
    /// Fail (retryably) on every attempt that starts before this instant.
    #[serde(default)]
    pub fail_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Panic instead of sleeping, to check that workers survive a panicking handler.
    #[serde(default)]
    pub panic: bool,
    /// Keep one CPU core busy for the time instead of sleeping (a CPU-bound job, to
    /// load a fleet's processors rather than its coordination).
    #[serde(default)]
    pub busy: bool,
}

impl Sleep {
    /// A plain sleep of `seconds`, failing nothing.
    pub fn seconds(seconds: f64) -> Self {
        Self {
            seconds,
            fail_attempts: 0,
            fail_until: None,
            panic: false,
            busy: false,
        }
    }

    /// `seconds` of one busy CPU core.
    pub fn busy(seconds: f64) -> Self {
        Self {
            busy: true,
            ..Self::seconds(seconds)
        }
    }
}

impl JobPayload for Sleep {
    const KIND: &'static str = "sleep";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(86_400 + 60);
    const BACKOFF_BASE: Duration = Duration::from_secs(1);
    const ANY_QUEUE: bool = true;

    fn validate(&self) -> Result<(), String> {
        if !self.seconds.is_finite() || !(0.0..=86_400.0).contains(&self.seconds) {
            return Err(format!("seconds must be between 0 and 86400, got {}", self.seconds));
        }
        Ok(())
    }

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[
            ("seconds", number("how long to sleep", 0.0, 86_400.0), true),
            (
                "fail_attempts",
                integer("fail (retryably) this many first attempts", 0, None),
                false,
            ),
            (
                "fail_until",
                instant("fail (retryably) every attempt before this instant"),
                false,
            ),
            ("panic", boolean("panic instead of sleeping"), false),
            ("busy", boolean("keep one CPU core busy instead of sleeping"), false),
        ])
    }
}
