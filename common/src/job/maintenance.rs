//! Housekeeping kinds the scheduler's default schedules run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalogue::{JobPayload, QueueFamily};

/// `purge_jobs`: delete finished job rows (and their dead letters) older than N days.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeJobs {
    pub older_than_days: u32,
}

impl JobPayload for PurgeJobs {
    const KIND: &'static str = "purge_jobs";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const HOUSEKEEPING: bool = true;

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[(
            "older_than_days",
            integer(
                "delete finished jobs finished this many days ago",
                1,
                Some(i64::from(u32::MAX)),
            ),
            true,
        )])
    }

    fn validate(&self) -> Result<(), String> {
        if self.older_than_days == 0 {
            return Err("older_than_days must be at least 1".into());
        }
        Ok(())
    }
}

/// `reap_workers`: mark workers gone whose heartbeat stopped N seconds ago.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReapWorkers {
    pub silent_for_s: u64,
}

impl JobPayload for ReapWorkers {
    const KIND: &'static str = "reap_workers";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 2;
    const TIMEOUT: Duration = Duration::from_secs(300);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);
    const HOUSEKEEPING: bool = true;

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[(
            "silent_for_s",
            integer("mark gone the workers silent this many seconds", 10, None),
            true,
        )])
    }

    fn validate(&self) -> Result<(), String> {
        if self.silent_for_s < 10 {
            return Err("silent_for_s must be at least 10".into());
        }
        Ok(())
    }
}

/// `purge_logins`: delete login-log rows older than N days, password resets used or
/// expired more than M days ago, and login counters idle long enough to be forgotten.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeLogins {
    #[serde(default = "default_login_log_days")]
    pub login_log_days: u32,
    #[serde(default = "default_resets_days")]
    pub resets_days: u32,
}

fn default_login_log_days() -> u32 {
    90
}

fn default_resets_days() -> u32 {
    7
}

impl JobPayload for PurgeLogins {
    const KIND: &'static str = "purge_logins";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const HOUSEKEEPING: bool = true;

    fn schema() -> serde_json::Value {
        use super::schema::*;
        let days = |what| integer(what, 1, Some(i64::from(u32::MAX)));
        object(&[
            (
                "login_log_days",
                days("keep login-log rows this many days (default 90)"),
                false,
            ),
            (
                "resets_days",
                days("keep used or expired password resets this many days (default 7)"),
                false,
            ),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        if self.login_log_days == 0 {
            return Err("login_log_days must be at least 1".into());
        }
        if self.resets_days == 0 {
            return Err("resets_days must be at least 1".into());
        }
        Ok(())
    }
}

/// `snapshot_stats`: writes one day's figures (users, active users, logins, clips, hours
/// transcoded and transcribed, jobs by kind and outcome, each production's active
/// users) into the stats tables, so history outlives job purges and deletions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotStats {
    /// The day (UTC) to record; default yesterday. Recording a day again rewrites it.
    #[serde(default)]
    pub day: Option<chrono::NaiveDate>,
}

impl JobPayload for SnapshotStats {
    const KIND: &'static str = "snapshot_stats";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(1800);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const HOUSEKEEPING: bool = true;

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[(
            "day",
            string("the day (UTC, YYYY-MM-DD) to record; default yesterday"),
            false,
        )])
    }

    /// A day still to come has no figures: recording it would write zeros over nothing.
    fn validate(&self) -> Result<(), String> {
        match self.day {
            Some(day) if day > chrono::Utc::now().date_naive() => Err(format!("day: {day} has not come yet")),
            _ => Ok(()),
        }
    }
}

/// `purge_logs`: the stored logs' retention, and "clear all logs". Deletes system-log
/// lines (every service's, with the jobs' own lines) older than `logs_days` — `0` clears
/// them all — and, when `audit_days` is given, audit entries older than that. Audited,
/// with what went.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeLogs {
    pub logs_days: u32,
    /// Absent: the audit log is kept whole.
    #[serde(default)]
    pub audit_days: Option<u32>,
}

impl JobPayload for PurgeLogs {
    const KIND: &'static str = "purge_logs";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);
    const HOUSEKEEPING: bool = true;

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[
            (
                "logs_days",
                integer(
                    "keep system-log lines this many days; 0 clears them all",
                    0,
                    Some(i64::from(u32::MAX)),
                ),
                true,
            ),
            (
                "audit_days",
                integer(
                    "keep audit entries this many days (at least 30); absent: keep them all",
                    30,
                    Some(i64::from(u32::MAX)),
                ),
                false,
            ),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        match self.audit_days {
            Some(days) if days < 30 => Err("audit_days must be at least 30: the audit trail is evidence".into()),
            _ => Ok(()),
        }
    }
}

/// What `purge_deleted` may take for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletedItem {
    /// Accounts soft-deleted long enough ago.
    Users,
    /// Clips whose rushes have been missing from storage long enough (with their
    /// proxies, transcripts and the rest made from them).
    Clips,
    /// Transcription uploads whose uploader's account was deleted long enough ago.
    Uploads,
    /// The viewer's copies made for share links revoked or expired long enough ago.
    ShareCopies,
}

impl DeletedItem {
    pub const ALL: [DeletedItem; 4] = [Self::Users, Self::Clips, Self::Uploads, Self::ShareCopies];
}

/// The most days `purge_deleted` looks back (a century: beyond, no timestamp reaches).
pub const MAX_PURGE_DAYS: u32 = 36_500;

fn every_item() -> Vec<DeletedItem> {
    DeletedItem::ALL.to_vec()
}

/// `purge_deleted` ("purge deleted items"): takes for good what was deleted, or went
/// missing, at least `deleted_days_ago` days ago (required: no default can know how long
/// storage may be away): users, clips, uploads and share links' viewer copies (all
/// unless `items` says which), with their outputs on disk. Each item is audited;
/// `dry_run` reports what would go and changes nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeDeleted {
    pub deleted_days_ago: u32,
    #[serde(default = "every_item")]
    pub items: Vec<DeletedItem>,
    #[serde(default)]
    pub dry_run: bool,
}

impl JobPayload for PurgeDeleted {
    const KIND: &'static str = "purge_deleted";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);
    const BACKOFF_BASE: Duration = Duration::from_secs(60);

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[
            (
                "deleted_days_ago",
                integer(
                    "take what was deleted (or went missing) at least this many days ago",
                    0,
                    Some(i64::from(MAX_PURGE_DAYS)),
                ),
                true,
            ),
            (
                "items",
                array(
                    "what to purge (default: all)",
                    one_of_strings("an item", &["users", "clips", "uploads", "share_copies"]),
                ),
                false,
            ),
            ("dry_run", boolean("report what would go, change nothing"), false),
        ])
    }

    fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("items: name at least one of users, clips, uploads, share_copies (absent: all)".into());
        }
        if self.deleted_days_ago > MAX_PURGE_DAYS {
            return Err(format!("deleted_days_ago: at most {MAX_PURGE_DAYS}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_to_come_is_not_recorded() {
        let day = |d: &str| SnapshotStats { day: d.parse().ok() };
        assert!(day("2999-01-01").validate().is_err());
        assert!(day("2020-01-01").validate().is_ok());
        assert!(SnapshotStats { day: None }.validate().is_ok());
    }
}
