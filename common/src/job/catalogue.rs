//! The catalogue of job kinds: each kind's name, queue family, retry policy and
//! payload validation. Control validates against it; the worker's registry runs it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::accounts::{AccountLink, GroupUsers, ImportUsers, PurgeUsers};
use super::email::{Email, SendEmailDraft};
use super::maintenance::{PurgeDeleted, PurgeJobs, PurgeLogins, PurgeLogs, ReapWorkers, SnapshotStats};
use super::media::{Scan, ScanAll, ShareProxy, Transcode, TranscodeLong, TranscodeUpload};
use super::sleep::Sleep;
use super::transcription::Transcribe;

/// A job family: one durable priority queue each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFamily {
    Scan,
    Transcode,
    TranscodeLong,
    Transcribe,
    Email,
    Maintenance,
}

impl QueueFamily {
    pub const ALL: [QueueFamily; 6] = [
        Self::Scan,
        Self::Transcode,
        Self::TranscodeLong,
        Self::Transcribe,
        Self::Email,
        Self::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scan => "scan",
            Self::Transcode => "transcode",
            Self::TranscodeLong => "transcode_long",
            Self::Transcribe => "transcribe",
            Self::Email => "email",
            Self::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for QueueFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue name that is not one of [`QueueFamily::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown queue `{0}` (known: scan, transcode, transcode_long, transcribe, email, maintenance)")]
pub struct UnknownQueue(pub String);

impl FromStr for QueueFamily {
    type Err = UnknownQueue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|q| q.as_str() == s)
            .ok_or_else(|| UnknownQueue(s.to_owned()))
    }
}

/// A typed job payload: its kind's name, queue and policies.
pub trait JobPayload: Serialize + DeserializeOwned + Send + 'static {
    /// The kind's name in the API, the `jobs.kind` column and the envelope.
    const KIND: &'static str;
    /// The queue its jobs go to unless the enqueuer picks another.
    const QUEUE: QueueFamily;
    /// Attempts before the job is `dead`.
    const MAX_ATTEMPTS: i32 = 5;
    /// Longest one attempt may run before it is stopped and counted as failed.
    const TIMEOUT: Duration = Duration::from_secs(3600);
    /// First retry delay; each later one doubles.
    const BACKOFF_BASE: Duration = Duration::from_secs(5);
    /// Routine upkeep the scheduler runs (every minute, every night): left out of job
    /// lists unless asked for, and its successes logged at debug, not info.
    const HOUSEKEEPING: bool = false;
    /// May be sent to any queue (a `sleep` probing GPU nodes); other kinds run only on
    /// their own.
    const ANY_QUEUE: bool = false;
    /// The row the job works on, when its payload names one.
    const TARGET: Option<Target> = None;

    /// Checks beyond the payload's shape (ranges, consistency).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// The payload's JSON Schema (`GET /kinds`).
    fn schema() -> serde_json::Value;
}

/// The row a job works on, named by a UUID field of its payload: an enqueue naming a
/// row that does not exist is refused, and where the row follows its current job
/// ([`Follows`]) a job enqueued on its own (by hand, by a schedule) becomes that current
/// job, so that it runs and the row shows its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The payload field holding the row's id.
    pub field: &'static str,
    pub table: &'static str,
    /// What the row is, in messages ("clip").
    pub noun: &'static str,
    pub follows: Option<Follows>,
}

/// A table whose rows follow their current job's state. The store writes it into
/// `jobs.mirror` at insert; one trigger (migration `20261202000060_job_mirror.sql`, a
/// branch per value) moves the row when the job's state changes. No kind name is in
/// SQL, so renaming a kind cannot silently stop the mirroring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    Clips,
    Uploads,
    Transcripts,
}

impl Mirror {
    pub const ALL: [Mirror; 3] = [Self::Clips, Self::Uploads, Self::Transcripts];

    /// The value of `jobs.mirror`: the table's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Clips => "clips",
            Self::Uploads => "uploads",
            Self::Transcripts => "transcripts",
        }
    }
}

/// The columns of a row that follows its current job of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follows {
    /// The table, as `jobs.mirror` names it for the trigger (it is [`Target::table`]).
    pub mirror: Mirror,
    /// Holds the current job's id.
    pub job: &'static str,
    /// Its `transcode_state`.
    pub state: &'static str,
    /// Its last error.
    pub error: &'static str,
}

/// What the fleet knows about one kind, without its payload type.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub name: &'static str,
    pub queue: QueueFamily,
    pub max_attempts: i32,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub housekeeping: bool,
    pub any_queue: bool,
    pub target: Option<Target>,
    validate: fn(&serde_json::Value) -> Result<(), String>,
    schema: fn() -> serde_json::Value,
}

impl KindSpec {
    pub const fn of<P: JobPayload>() -> Self {
        Self {
            name: P::KIND,
            queue: P::QUEUE,
            max_attempts: P::MAX_ATTEMPTS,
            timeout: P::TIMEOUT,
            backoff_base: P::BACKOFF_BASE,
            housekeeping: P::HOUSEKEEPING,
            any_queue: P::ANY_QUEUE,
            target: P::TARGET,
            validate: validate_json::<P>,
            schema: P::schema,
        }
    }

    /// The payload's JSON Schema.
    pub fn schema(&self) -> serde_json::Value {
        (self.schema)()
    }

    /// Checks that `payload` decodes into this kind's payload and passes its checks.
    pub fn validate(&self, payload: &serde_json::Value) -> Result<(), String> {
        (self.validate)(payload)
    }

    /// Delay before attempt `attempt + 1`, after `attempt` failed: exponential, capped at a day.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
        self.backoff_base
            .saturating_mul(1 << exponent)
            .min(Duration::from_secs(86_400))
    }
}

fn validate_json<P: JobPayload>(payload: &serde_json::Value) -> Result<(), String> {
    let parsed = P::deserialize(payload).map_err(|e| e.to_string())?;
    parsed.validate()
}

static CATALOGUE: &[KindSpec] = &[
    KindSpec::of::<Sleep>(),
    KindSpec::of::<PurgeJobs>(),
    KindSpec::of::<ReapWorkers>(),
    KindSpec::of::<PurgeLogins>(),
    KindSpec::of::<SnapshotStats>(),
    KindSpec::of::<PurgeLogs>(),
    KindSpec::of::<Scan>(),
    KindSpec::of::<ScanAll>(),
    KindSpec::of::<Transcode>(),
    KindSpec::of::<TranscodeLong>(),
    KindSpec::of::<TranscodeUpload>(),
    KindSpec::of::<ShareProxy>(),
    KindSpec::of::<Transcribe>(),
    KindSpec::of::<Email>(),
    KindSpec::of::<ImportUsers>(),
    KindSpec::of::<GroupUsers>(),
    KindSpec::of::<PurgeUsers>(),
    KindSpec::of::<PurgeDeleted>(),
    KindSpec::of::<SendEmailDraft>(),
    KindSpec::of::<AccountLink>(),
];

/// Every kind the fleet knows.
pub fn catalogue() -> &'static [KindSpec] {
    CATALOGUE
}

/// The kind called `name`, if the fleet knows it.
pub fn spec(name: &str) -> Option<&'static KindSpec> {
    CATALOGUE.iter().find(|k| k.name == name)
}

/// The names of the housekeeping kinds ([`JobPayload::HOUSEKEEPING`]).
pub fn housekeeping_kinds() -> Vec<&'static str> {
    CATALOGUE.iter().filter(|k| k.housekeeping).map(|k| k.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_round_trip() {
        for q in QueueFamily::ALL {
            assert_eq!(q.as_str().parse::<QueueFamily>().ok(), Some(q));
        }
        assert!("default".parse::<QueueFamily>().is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let Some(sleep) = spec("sleep") else {
            panic!("sleep is in the catalogue");
        };
        let base = sleep.backoff_base;
        assert_eq!(sleep.backoff(1), base);
        assert_eq!(sleep.backoff(2), base * 2);
        assert_eq!(sleep.backoff(3), base * 4);
        assert_eq!(sleep.backoff(60), Duration::from_secs(86_400));
    }

    #[test]
    fn validation_names_the_problem() {
        let Some(sleep) = spec("sleep") else {
            panic!("sleep is in the catalogue");
        };
        assert!(sleep.validate(&serde_json::json!({"seconds": 0.5})).is_ok());
        let err = sleep.validate(&serde_json::json!({"seconds": "soon"})).err();
        assert!(err.is_some_and(|e| e.contains("invalid type")));
        let err = sleep.validate(&serde_json::json!({"seconds": -1.0})).err();
        assert!(err.is_some_and(|e| e.contains("seconds")));
    }

    #[test]
    fn schemas_agree_with_the_payload_types() {
        for kind in catalogue() {
            let schema = kind.schema();
            let variants = match schema.get("oneOf").and_then(serde_json::Value::as_array) {
                Some(variants) => variants.clone(),
                None => vec![schema.clone()],
            };
            for variant in &variants {
                assert_eq!(variant["type"], "object", "{}: {schema}", kind.name);
                assert_eq!(variant["additionalProperties"], false, "{}: {schema}", kind.name);
            }
            let required = schema["required"].as_array().map_or(0, Vec::len);
            // A payload without its required fields does not decode; one with none decodes.
            assert_eq!(
                kind.validate(&serde_json::json!({})).is_err(),
                required > 0 || schema.get("oneOf").is_some(),
                "{}: {schema}",
                kind.name
            );
            let properties = schema["properties"].as_object().map(|p| p.len()).unwrap_or(0);
            assert!(properties >= required, "{}: {schema}", kind.name);
            if let Some(target) = kind.target {
                assert!(schema["properties"].get(target.field).is_some(), "{}", kind.name);
                assert!(
                    schema["required"]
                        .as_array()
                        .is_some_and(|r| r.contains(&target.field.into()))
                );
            }
        }
        assert_eq!(
            housekeeping_kinds(),
            [
                "purge_jobs",
                "reap_workers",
                "purge_logins",
                "snapshot_stats",
                "purge_logs"
            ]
        );
    }

    #[test]
    fn a_kind_is_catalogued_once_and_mirrors_its_own_table() {
        let mut names: Vec<&str> = catalogue().iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalogue().len(), "a kind name is catalogued twice");
        for kind in catalogue() {
            if let Some(target) = kind.target
                && let Some(follows) = target.follows
            {
                assert_eq!(follows.mirror.as_str(), target.table, "{}", kind.name);
            }
        }
    }
}
