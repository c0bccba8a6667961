//! Bulk account tasks run as jobs (and audited): importing or updating users from CSV,
//! enabling, disabling or emptying a group's users, purging soft-deleted users.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::catalogue::{JobPayload, QueueFamily, Target};

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

/// Who asked for an account job: the worker re-checks their rights when it runs, so a
/// job queued by someone who may not grant admin cannot grant it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    /// The bootstrap admin token (`RUSHES_ADMIN_TOKEN`).
    BootstrapAdmin,
    /// A user account (an admin, or someone with `manage_users`).
    User(Uuid),
}

impl Requester {
    /// The requester's user id, `None` for the bootstrap token.
    pub fn user_id(self) -> Option<Uuid> {
        match self {
            Self::BootstrapAdmin => None,
            Self::User(id) => Some(id),
        }
    }
}

/// `import_users`: create or update users from CSV, all or nothing; a dry run reports
/// what would change without changing it. The CSV carries no passwords: the control
/// plane takes the `password` column out and hashes it before queueing
/// (`password_hashes`, keyed by lower-case username).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUsers {
    pub csv: String,
    #[serde(default)]
    pub dry_run: bool,
    pub requester: Requester,
    #[serde(default)]
    pub password_hashes: BTreeMap<String, String>,
}

/// Shortest password an account may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A password found in an import's CSV, to be hashed before the job is queued.
#[derive(Debug, Clone)]
pub struct CsvPassword {
    /// 1-based line of the row.
    pub line: u64,
    /// Lower-case username of the row.
    pub username: String,
    pub password: String,
}

/// Takes the `password` column out of a users CSV: the CSV without it, and the
/// passwords it held. Errors name the line (a password too short, unreadable CSV).
pub fn split_passwords(csv_text: &str) -> Result<(String, Vec<CsvPassword>), Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(str::to_owned).collect(),
        Err(e) => return Err(vec![format!("line 1: unreadable header: {e}")]),
    };
    let lower: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    let Some(password_at) = lower.iter().position(|h| h == "password") else {
        return Ok((csv_text.to_owned(), Vec::new()));
    };
    let username_at = lower.iter().position(|h| h == "username");
    let mut out = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    let mut errors = Vec::new();
    let keep = |record: &csv::StringRecord| -> Vec<String> {
        record
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != password_at)
            .map(|(_, v)| v.to_owned())
            .collect()
    };
    let write = |out: &mut csv::Writer<Vec<u8>>, fields: Vec<String>, errors: &mut Vec<String>| {
        if let Err(e) = out.write_record(&fields) {
            errors.push(format!("cannot rewrite the CSV: {e}"));
        }
    };
    write(&mut out, keep(&csv::StringRecord::from(header.clone())), &mut errors);
    let mut passwords = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let password = record.get(password_at).unwrap_or("");
        if !password.is_empty() {
            // The same rule as every other way of setting a password (8 to 1024 characters).
            if let Some(problem) = crate::accounts::password_problem(password) {
                errors.push(format!("line {line}: {problem}"));
            }
            let username = username_at.and_then(|i| record.get(i)).unwrap_or("").to_lowercase();
            passwords.push(CsvPassword {
                line,
                username,
                password: password.to_owned(),
            });
        }
        write(&mut out, keep(&record), &mut errors);
    }
    let csv = out
        .into_inner()
        .map_err(|e| vec![format!("cannot rewrite the CSV: {e}")])
        .and_then(|bytes| String::from_utf8(bytes).map_err(|e| vec![format!("cannot rewrite the CSV: {e}")]))?;
    if errors.is_empty() {
        Ok((csv, passwords))
    } else {
        Err(errors)
    }
}

impl JobPayload for ImportUsers {
    const KIND: &'static str = "import_users";
    const QUEUE: QueueFamily = QueueFamily::Maintenance;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(600);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);

    fn schema() -> serde_json::Value {
        use super::schema::*;
        let requester = serde_json::json!({
            "description": "who asked (re-checked when the job runs)",
            "oneOf": [
                { "type": "string", "enum": ["bootstrap_admin"] },
                object(&[("user", uuid("the requesting user"), true)]),
            ],
        });
        let hashes = serde_json::json!({
            "type": "object",
            "description": "Argon2 hashes of the passwords taken out of the CSV, by lower-case username",
            "additionalProperties": { "type": "string" },
        });
        object(&[
            (
                "csv",
                string("the users CSV (`GET /users/import/template` has the columns), at most 1 MiB"),
                true,
            ),
            (
                "dry_run",
                boolean("report what would change without changing it"),
                false,
            ),
            ("requester", requester, true),
            ("password_hashes", hashes, false),
        ])
    }

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
    const TARGET: Option<Target> = Some(Target {
        field: "group_id",
        table: "groups",
        noun: "group",
        follows: None,
    });

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[
            ("group_id", uuid("the group whose users to change"), true),
            (
                "action",
                one_of_strings("what to do to each member", &["enable", "disable", "remove"]),
                true,
            ),
        ])
    }
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

    fn schema() -> serde_json::Value {
        use super::schema::*;
        object(&[(
            "deleted_days_ago",
            integer(
                "purge users soft-deleted at least this many days ago (default 0)",
                0,
                Some(i64::from(u32::MAX)),
            ),
            false,
        )])
    }
}

/// Minutes a password reset link stays valid.
pub const RESET_LINK_MINUTES: i64 = 60;
/// Days an invitation link stays valid.
pub const INVITATION_DAYS: i64 = 14;

/// `account_link`: mails a password-reset or invitation link. The worker mints the
/// link's token when it sends the mail and stores only its digest, so no link is ever
/// in a job payload, a dead letter or a broker message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "link", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountLink {
    /// A single-use reset link to the user's address.
    PasswordReset { user_id: Uuid },
    /// A (new) link for a pending invitation; earlier links stop working.
    Invitation { invitation_id: Uuid },
}

impl JobPayload for AccountLink {
    const KIND: &'static str = "account_link";
    const QUEUE: QueueFamily = QueueFamily::Email;
    const MAX_ATTEMPTS: i32 = 8;
    const TIMEOUT: Duration = Duration::from_secs(120);
    const BACKOFF_BASE: Duration = Duration::from_secs(10);

    fn schema() -> serde_json::Value {
        use super::schema::*;
        let variant = |link: &str, field: &str, what: &str| {
            object(&[
                ("link", one_of_strings("which link", &[link]), true),
                (field, uuid(what), true),
            ])
        };
        serde_json::json!({ "oneOf": [
            variant("password_reset", "user_id", "the user to mail a reset link"),
            variant("invitation", "invitation_id", "the pending invitation to mail a link for"),
        ] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_csv() {
        let (csv, passwords) = split_passwords(
            "username,email,password,groups\nAna,ana@example.com,long enough,crew\nbo,bo@example.com,,\n",
        )
        .unwrap_or_default();
        assert_eq!(
            csv,
            "username,email,groups\nAna,ana@example.com,crew\nbo,bo@example.com,\n"
        );
        assert_eq!(passwords.len(), 1);
        assert_eq!(passwords[0].username, "ana");
        assert_eq!(passwords[0].line, 2);
        assert_eq!(passwords[0].password, "long enough");
        let errors = split_passwords("username,password\nana,short\n")
            .err()
            .unwrap_or_default();
        assert!(errors[0].contains("line 2") && errors[0].contains("8"), "{errors:?}");
        let long = format!("username,password\nana,{}\n", "p".repeat(1025));
        let errors = split_passwords(&long).err().unwrap_or_default();
        assert!(errors[0].contains("line 2") && errors[0].contains("1024"), "{errors:?}");
        let (same, none) = split_passwords("username,email\nana,a@b.c\n").unwrap_or_default();
        assert_eq!(same, "username,email\nana,a@b.c\n");
        assert!(none.is_empty());
    }

    #[test]
    fn requesters_round_trip() {
        let id = Uuid::now_v7();
        for requester in [Requester::BootstrapAdmin, Requester::User(id)] {
            let json = serde_json::to_value(requester).unwrap_or_default();
            assert_eq!(serde_json::from_value::<Requester>(json).ok(), Some(requester));
        }
        let missing = serde_json::from_value::<ImportUsers>(serde_json::json!({"csv": "username\nx"}));
        assert!(missing.is_err(), "an import names its requester");
    }
}
