//! `import_users`: creates or updates users from CSV (see `USER_CSV_COLUMNS`), all or
//! nothing. Every row is checked first (shape, duplicates within the file, emails owned
//! by someone else, unknown groups); any error means nothing is applied, and the report
//! lists the row-level errors. A dry run reports what would change and stops there.

use std::collections::{HashMap, HashSet};

use rushes_common::audit::{self, Change};
use rushes_common::job::accounts::{ImportUsers, Requester, USER_CSV_COLUMNS};
use rushes_common::job::email::Email;
use rushes_common::job::store::{NewJob, Tx};
use rushes_common::mail;
use serde_json::{Value, json};
use uuid::Uuid;

use super::accounts::actor;
use super::{JobContext, JobError, db_error};

/// One parsed row.
#[derive(Debug, Clone)]
struct Row {
    line: u64,
    username: String,
    email: String,
    is_admin: bool,
    active: bool,
    may_scan: bool,
    may_transcode: bool,
    groups: Vec<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Existing {
    id: Uuid,
    username: String,
    email: String,
    is_admin: bool,
    active: bool,
    may_scan: bool,
    may_transcode: bool,
    /// The admin flag or membership of `hub`.
    admin: bool,
}

fn flag(value: &str, default: bool) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(default),
        "true" | "yes" | "y" | "1" => Ok(true),
        "false" | "no" | "n" | "0" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}

/// Parses the CSV; returns the rows and the row-level errors.
fn parse(csv_text: &str) -> (Vec<Row>, Vec<Value>) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text.as_bytes());
    let mut errors = Vec::new();
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
        Err(e) => {
            return (
                Vec::new(),
                vec![json!({ "row": 1, "error": format!("unreadable header: {e}") })],
            );
        }
    };
    let column = |name: &str| header.iter().position(|h| h == name);
    for required in ["username", "email"] {
        if column(required).is_none() {
            errors.push(json!({ "row": 1, "error": format!("the header has no `{required}` column") }));
        }
    }
    if let Some(unknown) = header.iter().find(|h| !USER_CSV_COLUMNS.contains(&h.as_str())) {
        errors.push(json!({ "row": 1, "error": format!("unknown column `{unknown}`") }));
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(json!({ "row": line, "error": e.to_string() }));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let get = |name: &str| column(name).and_then(|i| record.get(i)).unwrap_or("").to_owned();
        let mut problems = Vec::new();
        let username = get("username");
        if let Some(problem) = rushes_common::accounts::username_problem(&username) {
            problems.push(problem);
        }
        let email = get("email");
        if !mail::looks_like_address(&email) {
            problems.push(format!("email: `{email}` is not an email address"));
        }
        let mut read_flag = |name: &str, default: bool| {
            flag(&get(name), default).unwrap_or_else(|e| {
                problems.push(format!("{name}: {e}"));
                default
            })
        };
        let (is_admin, active, may_scan, may_transcode) = (
            read_flag("is_admin", false),
            read_flag("active", true),
            read_flag("may_scan", false),
            read_flag("may_transcode", false),
        );
        if !get("password").is_empty() {
            problems.push(
                "password: plain-text passwords are taken only by `POST /api/v1/users/import`, which hashes them \
                 before queueing"
                    .to_owned(),
            );
        }
        let groups = get("groups")
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        if problems.is_empty() {
            rows.push(Row {
                line,
                username,
                email,
                is_admin,
                active,
                may_scan,
                may_transcode,
                groups,
            });
        } else {
            errors.push(json!({ "row": line, "error": problems.join("; ") }));
        }
    }
    (rows, errors)
}

/// What the requester may do, re-checked when the job runs (their rights may have
/// changed since they queued it).
struct Rights {
    requester: Option<Uuid>,
    admin: bool,
}

async fn rights(ctx: &JobContext, requester: Requester) -> Result<Rights, JobError> {
    let Some(user) = requester.user_id() else {
        return Ok(Rights {
            requester: None,
            admin: true,
        });
    };
    let (admin, manages): (bool, bool) = sqlx::query_as(
        "SELECT user_is_admin(u.id), 'manage_users' = ANY(user_policies(u.id, NULL)) \
         FROM users u WHERE u.id = $1 AND u.active AND u.deleted_at IS NULL",
    )
    .bind(user)
    .fetch_optional(&ctx.db)
    .await
    .map_err(db_error)?
    .unwrap_or((false, false));
    if !admin && !manages {
        return Err(JobError::Permanent(
            "the requester is no longer an active admin or user manager".into(),
        ));
    }
    Ok(Rights {
        requester: Some(user),
        admin,
    })
}

pub async fn run(ctx: JobContext, payload: ImportUsers) -> Result<Value, JobError> {
    let rights = rights(&ctx, payload.requester).await?;
    let (rows, mut errors) = parse(&payload.csv);
    let deleted: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT lower(username) FROM users WHERE deleted_at IS NOT NULL")
            .fetch_all(&ctx.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
    let grantable: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT name FROM groups WHERE may_grant_group($1, id)")
            .bind(rights.requester)
            .fetch_all(&ctx.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
    let existing: Vec<Existing> = sqlx::query_as(
        "SELECT id, username, email, is_admin, active, may_scan, may_transcode, user_is_admin(id) AS admin \
         FROM users WHERE deleted_at IS NULL",
    )
    .fetch_all(&ctx.db)
    .await
    .map_err(db_error)?;
    let by_name: HashMap<String, &Existing> = existing.iter().map(|u| (u.username.to_lowercase(), u)).collect();
    let by_email: HashMap<String, &Existing> = existing.iter().map(|u| (u.email.to_lowercase(), u)).collect();
    let groups: HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>("SELECT name, id FROM groups")
        .fetch_all(&ctx.db)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect();

    let (mut seen_names, mut seen_emails) = (HashSet::new(), HashSet::new());
    for row in &rows {
        let mut problems = Vec::new();
        if !by_name.contains_key(&row.username.to_lowercase())
            && let Some(problem) = rushes_common::accounts::reserved_problem(&row.username)
        {
            problems.push(problem);
        }
        if !seen_names.insert(row.username.to_lowercase()) {
            problems.push(format!("username `{}` appears twice in the file", row.username));
        }
        if !seen_emails.insert(row.email.to_lowercase()) {
            problems.push(format!("email `{}` appears twice in the file", row.email));
        }
        if let Some(owner) = by_email.get(&row.email.to_lowercase())
            && !owner.username.eq_ignore_ascii_case(&row.username)
        {
            problems.push(format!("email `{}` belongs to user `{}`", row.email, owner.username));
        }
        if let Some(unknown) = row.groups.iter().find(|g| !groups.contains_key(*g)) {
            problems.push(format!("no group called `{unknown}`"));
        } else if let Some(refused) = row.groups.iter().find(|g| !grantable.contains(*g)) {
            problems.push(format!(
                "group `{refused}`: only an admin may add users to it (it grants more than the requester holds)"
            ));
        }
        if payload
            .password_hashes
            .get(&row.username.to_lowercase())
            .is_some_and(|h| !h.starts_with("$argon2id$"))
        {
            problems.push("password: not an argon2id hash".to_owned());
        }
        if deleted.contains(&row.username.to_lowercase()) {
            problems.push(format!(
                "username `{}` belongs to a deleted account: purge deleted users first or choose another name",
                row.username
            ));
        }
        if !rights.admin {
            let target_is_admin = by_name.get(&row.username.to_lowercase()).is_some_and(|u| u.admin);
            if row.is_admin || target_is_admin {
                problems.push(format!(
                    "user `{}`: only an admin may create, change or grant an admin account",
                    row.username
                ));
            }
        }
        if !problems.is_empty() {
            errors.push(json!({ "row": row.line, "error": problems.join("; ") }));
        }
    }

    let mut created = Vec::new();
    let mut updated = Vec::new();
    let mut unchanged = 0usize;
    for row in &rows {
        match by_name.get(&row.username.to_lowercase()) {
            None => created.push(json!({ "username": row.username, "email": row.email })),
            Some(user) => {
                let mut changes = serde_json::Map::new();
                let mut differs = |field: &str, before: Value, after: Value| {
                    if before != after {
                        changes.insert(field.to_owned(), json!({ "from": before, "to": after }));
                    }
                };
                differs("email", json!(user.email), json!(row.email));
                differs("is_admin", json!(user.is_admin), json!(row.is_admin));
                differs("active", json!(user.active), json!(row.active));
                differs("may_scan", json!(user.may_scan), json!(row.may_scan));
                differs("may_transcode", json!(user.may_transcode), json!(row.may_transcode));
                if changes.is_empty() && row.groups.is_empty() {
                    unchanged += 1;
                } else {
                    updated.push(json!({ "username": row.username, "changes": changes, "groups": row.groups }));
                }
            }
        }
    }
    let report = |applied: bool, errors: &[Value]| {
        json!({
            "dry_run": payload.dry_run,
            "applied": applied,
            "created": created,
            "updated": updated,
            "unchanged": unchanged,
            "errors": errors,
        })
    };
    if !errors.is_empty() {
        errors.sort_by_key(|e| e["row"].as_u64().unwrap_or(0));
        return Ok(report(false, &errors));
    }
    if payload.dry_run {
        return Ok(report(false, &[]));
    }

    let actor = actor(&ctx).await?;
    let mut tx = Tx::begin(&ctx.db).await.map_err(db_error)?;
    let mut welcome = Vec::new();
    for row in &rows {
        let hash = payload.password_hashes.get(&row.username.to_lowercase());
        let before = by_name.get(&row.username.to_lowercase()).copied();
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO users (id, username, email, password_hash, is_admin, active, may_scan, may_transcode) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email, is_admin = EXCLUDED.is_admin, \
                 active = EXCLUDED.active, may_scan = EXCLUDED.may_scan, may_transcode = EXCLUDED.may_transcode \
             RETURNING id",
        )
        .bind(before.map_or_else(Uuid::now_v7, |u| u.id))
        .bind(before.map_or(row.username.as_str(), |u| u.username.as_str()))
        .bind(&row.email)
        .bind(hash)
        .bind(row.is_admin)
        .bind(row.active)
        .bind(row.may_scan)
        .bind(row.may_transcode)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let group_ids: Vec<Uuid> = row.groups.iter().filter_map(|g| groups.get(g).copied()).collect();
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id) SELECT g, $2 FROM unnest($1::uuid[]) AS g \
             ON CONFLICT DO NOTHING",
        )
        .bind(&group_ids)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if !row.active {
            sqlx::query("UPDATE tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            sqlx::query("UPDATE share_links SET revoked_at = now() WHERE created_by_id = $1 AND revoked_at IS NULL")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let after = json!({
            "username": row.username, "email": row.email, "is_admin": row.is_admin, "active": row.active,
            "may_scan": row.may_scan, "may_transcode": row.may_transcode, "groups": row.groups,
        });
        let change = Change {
            action: if before.is_some() { "user.update" } else { "user.create" },
            target_type: "user",
            target_id: Some(id.to_string()),
            before: before.map(|u| {
                json!({ "username": u.username, "email": u.email, "is_admin": u.is_admin, "active": u.active,
                        "may_scan": u.may_scan, "may_transcode": u.may_transcode })
            }),
            after: Some(after),
        };
        audit::record(&mut *tx, &actor, change).await.map_err(db_error)?;
        if before.is_none() {
            welcome.push((row.username.clone(), row.email.clone()));
        }
    }
    let mails: Vec<NewJob> = welcome
        .iter()
        .map(|(username, email)| {
            let url = ctx.services.smtp.public_url.trim_end_matches('/');
            let message = mail::account_created(username, email, url);
            NewJob::of(&Email::new(vec![email.clone()], message))
        })
        .collect();
    tx.enqueue(mails)
        .await
        .map_err(|e| JobError::Retryable(format!("cannot queue the account mails: {e}")))?;
    tx.commit(&ctx.publisher).await.map_err(db_error)?;
    Ok(report(true, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_row_level_errors() {
        let (rows, errors) = parse(
            "username,email,is_admin,groups,password\n\
             ana,ana@example.com,yes,crew;hub,\n\
             bad name,nope,maybe,,short\n\
             \"bo\",bo@example.com,,crew,\n\
             cy,cy@example.com,,,plain text\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].groups, ["crew", "hub"]);
        assert!(rows[0].is_admin && rows[0].active);
        assert_eq!(errors.len(), 2);
        assert!(errors[1]["error"].as_str().unwrap_or_default().contains("plain-text"));
        assert_eq!(errors[0]["row"], 3);
        let message = errors[0]["error"].as_str().unwrap_or_default();
        assert!(message.contains("username") && message.contains("email") && message.contains("is_admin"));
        let (_, errors) = parse("name,mail\nx,y\n");
        assert!(
            errors[0]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no `username`")
        );
    }
}
