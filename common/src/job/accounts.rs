//! Bulk account tasks run as jobs (and audited): importing or updating users from CSV,
//! enabling, disabling or emptying a group's users, purging soft-deleted users.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{JobPayload, QueueFamily};

/// Columns of the users CSV, in order (the template download has them as its header).
/// `groups` is `;`-separated group names; `password` only sets a new user's password.
pub const USER_CSV_COLUMNS: [&str; 8] = [
    "username",
    "email",
    "is_admin",
    "active",
    "may_scan",
    "may_transcode",
    "groups",
    "password",
];

/// Largest CSV an import takes.
pub const MAX_CSV_BYTES: usize = 1 << 20;

/// `import_users`: create or update users from CSV, all or nothing; a dry run reports
/// what would change without changing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUsers {
    pub csv: String,
    #[serde(default)]
    pub dry_run: bool,
}

impl JobPayload for ImportUsers {
    const KIND: &'static str = "import_users";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);

    fn validate(&self) -> Result<(), String> {
        if self.csv.trim().is_empty() {
            return Err("csv: empty".into());
        }
        if self.csv.len() > MAX_CSV_BYTES {
            return Err(format!("csv: larger than {MAX_CSV_BYTES} bytes"));
        }
        Ok(())
    }
}

/// What `group_users` does to every member of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAction {
    Enable,
    Disable,
    Remove,
}

/// `group_users`: enable all, disable all (revoking their tokens) or remove all users of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUsers {
    pub group_id: Uuid,
    pub action: GroupAction,
}

impl JobPayload for GroupUsers {
    const KIND: &'static str = "group_users";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);
}

/// `purge_users`: delete for good the users soft-deleted at least N days ago.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeUsers {
    #[serde(default)]
    pub deleted_days_ago: u32,
}

impl JobPayload for PurgeUsers {
    const KIND: &'static str = "purge_users";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);
}
