//! The commands: each an API call, printed as a table (or the API's JSON with `--json`).

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::api::{Client, Failure, segment};
use super::table::{self, Column};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Jobs: list, show, enqueue, cancel, retry.
    #[command(subcommand)]
    Jobs(Jobs),
    /// Queues: depths, consumers, pauses.
    #[command(subcommand)]
    Queues(Queues),
    /// Workers: hosts, slots, GPUs, heartbeats.
    #[command(subcommand)]
    Workers(Workers),
    /// Dead letters: list, requeue.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetters),
    /// Schedules (cron, interval, clocked): list, create, enable, disable, run now.
    #[command(subcommand)]
    Schedules(Schedules),
    /// Productions: list, scan.
    #[command(subcommand)]
    Productions(Productions),
    /// Users: list.
    #[command(subcommand)]
    Users(Users),
}

#[derive(Debug, Subcommand)]
pub enum Jobs {
    /// Newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        id: String,
    },
    /// Enqueue a job of KIND (see `GET /api/v1/kinds`).
    Enqueue {
        kind: String,
        /// The payload as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// 0 to 100.
        #[arg(long)]
        priority: Option<u8>,
    },
    Cancel {
        id: String,
    },
    Retry {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Queues {
    List,
    /// Workers stop taking the queue's jobs; running jobs finish.
    Pause {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Resume {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Workers {
    List {
        /// Include stopped and silent workers.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    List {
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
    Requeue {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Schedules {
    List,
    Create(NewSchedule),
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    /// Enqueue the schedule's job now (its timing is unchanged).
    Run {
        id: String,
    },
}

/// A schedule: one of `--cron`, `--every` (with `--period`) or `--at`.
#[derive(Debug, Args)]
pub struct NewSchedule {
    name: String,
    kind: String,
    #[arg(long, default_value = "{}")]
    payload: String,
    #[arg(long)]
    priority: Option<u8>,
    /// minute hour day month weekday, e.g. "30 1 * * *".
    #[arg(long, conflicts_with_all = ["every", "at"])]
    cron: Option<String>,
    /// The cron's time zone (e.g. Europe/London; default UTC).
    #[arg(long, requires = "cron")]
    timezone: Option<String>,
    /// Every N periods.
    #[arg(long, conflicts_with = "at", requires = "period")]
    every: Option<u32>,
    /// seconds, minutes, hours or days.
    #[arg(long, requires = "every")]
    period: Option<String>,
    /// Once, at this time (RFC 3339).
    #[arg(long)]
    at: Option<String>,
    /// Created disabled.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, Subcommand)]
pub enum Productions {
    List {
        #[arg(long)]
        include_archived: bool,
    },
    /// Scan the production's rushes folder for new clips now.
    Scan { id: String },
}

#[derive(Debug, Subcommand)]
pub enum Users {
    List {
        /// Only users online now.
        #[arg(long)]
        online: bool,
    },
}

const JOB_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("KIND", "/kind"),
    ("STATE", "/state"),
    ("QUEUE", "/queue"),
    ("PRIORITY", "/priority"),
    ("ATTEMPTS", "/attempts"),
    ("ENQUEUED", "/enqueued_at"),
];
const QUEUE_COLUMNS: &[Column] = &[
    ("QUEUE", "/name"),
    ("DEPTH", "/depth"),
    ("CONSUMERS", "/consumers"),
    ("IN FLIGHT", "/in_flight"),
    ("QUEUED", "/queued"),
    ("RETRYING", "/retrying"),
    ("PAUSED", "/paused"),
];
const WORKER_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("HOST", "/host"),
    ("QUEUES", "/queues"),
    ("SLOTS", "/slots"),
    ("GPUS", "/gpus"),
    ("LAST SEEN", "/last_seen_at"),
];
const DEAD_LETTER_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("QUEUE", "/queue"),
    ("KIND", "/kind"),
    ("REASON", "/reason"),
    ("PARKED", "/created_at"),
];
const SCHEDULE_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("KIND", "/kind"),
    ("CRON", "/cron/expr"),
    ("EVERY", "/interval/every"),
    ("PERIOD", "/interval/period"),
    ("ENABLED", "/enabled"),
    ("NEXT RUN", "/next_run_at"),
];
const PRODUCTION_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("PATH", "/path"),
    ("CLIPS", "/clips"),
    ("ACTIVE", "/active"),
    ("LAST SCAN", "/last_scan_at"),
];
const USER_COLUMNS: &[Column] = &[
    ("ID", "/id"),
    ("USERNAME", "/username"),
    ("EMAIL", "/email"),
    ("ADMIN", "/is_admin"),
    ("ACTIVE", "/active"),
    ("ONLINE", "/online"),
];

/// What a command prints: a list's rows, one object's fields, or a one-line result.
enum Shown {
    Rows(&'static [Column]),
    Fields,
    Done(String),
}

pub async fn run(client: &Client, command: Command, json: bool) -> Result<(), Failure> {
    let (answer, shown) = call(client, command).await?;
    let out = if json {
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    } else {
        match shown {
            Shown::Rows(columns) => table::render(columns, &rows(&answer)),
            Shown::Fields => table::fields(&answer),
            Shown::Done(what) => what,
        }
    };
    println!("{out}");
    Ok(())
}

/// The rows of a list answer: the array itself, or the object's first array field.
fn rows(answer: &Value) -> Vec<Value> {
    match answer {
        Value::Array(rows) => rows.clone(),
        Value::Object(map) => map.values().find_map(|v| v.as_array().cloned()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn json_arg(name: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::Usage(format!("--{name}: not valid JSON ({e})")))
}

/// `?a=1&b=x` from the pairs that are set.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if let Some(value) = value {
            out.append_pair(key, value);
        }
    }
    let text = out.finish();
    if text.is_empty() { text } else { format!("?{text}") }
}

async fn call(client: &Client, command: Command) -> Result<(Value, Shown), Failure> {
    Ok(match command {
        Command::Jobs(Jobs::List {
            state,
            kind,
            queue,
            limit,
        }) => {
            let q = query(&[
                ("state", state),
                ("kind", kind),
                ("queue", queue),
                ("limit", Some(limit.to_string())),
            ]);
            (client.get(&format!("/jobs{q}")).await?, Shown::Rows(JOB_COLUMNS))
        }
        Command::Jobs(Jobs::Show { id }) => (client.get(&format!("/jobs/{}", segment(&id))).await?, Shown::Fields),
        Command::Jobs(Jobs::Enqueue {
            kind,
            payload,
            priority,
        }) => {
            let mut body = json!({ "kind": kind, "payload": json_arg("payload", &payload)? });
            if let Some(priority) = priority {
                body["priority"] = json!(priority);
            }
            let job = client.post("/jobs", Some(body)).await?;
            let line = format!("enqueued {}", table::cell(&job["id"]));
            (job, Shown::Done(line))
        }
        Command::Jobs(Jobs::Cancel { id }) => {
            done(client, &format!("/jobs/{}/cancel", segment(&id)), None, "cancelled").await?
        }
        Command::Jobs(Jobs::Retry { id }) => {
            done(client, &format!("/jobs/{}/retry", segment(&id)), None, "retried").await?
        }
        Command::Queues(Queues::List) => (client.get("/queues").await?, Shown::Rows(QUEUE_COLUMNS)),
        Command::Queues(Queues::Pause { name, reason }) => {
            let body = reason.map(|r| json!({ "reason": r }));
            done(client, &format!("/queues/{}/pause", segment(&name)), body, "paused").await?
        }
        Command::Queues(Queues::Resume { name }) => {
            done(client, &format!("/queues/{}/resume", segment(&name)), None, "resumed").await?
        }
        Command::Workers(Workers::List { all }) => {
            let q = query(&[("all", all.then(|| "true".to_owned()))]);
            (client.get(&format!("/workers{q}")).await?, Shown::Rows(WORKER_COLUMNS))
        }
        Command::DeadLetters(DeadLetters::List { all }) => {
            let q = query(&[("all", all.then(|| "true".to_owned()))]);
            (
                client.get(&format!("/dead-letters{q}")).await?,
                Shown::Rows(DEAD_LETTER_COLUMNS),
            )
        }
        Command::DeadLetters(DeadLetters::Requeue { id }) => {
            done(
                client,
                &format!("/dead-letters/{}/requeue", segment(&id)),
                None,
                "requeued",
            )
            .await?
        }
        Command::Schedules(Schedules::List) => (client.get("/schedules").await?, Shown::Rows(SCHEDULE_COLUMNS)),
        Command::Schedules(Schedules::Create(s)) => {
            let mut body = json!({
                "name": s.name,
                "kind": s.kind,
                "payload": json_arg("payload", &s.payload)?,
                "enabled": !s.disabled,
            });
            if let Some(priority) = s.priority {
                body["priority"] = json!(priority);
            }
            match (s.cron, s.every, s.at) {
                (Some(expr), None, None) => {
                    body["cron"] = json!({ "expr": expr, "timezone": s.timezone.unwrap_or_else(|| "UTC".to_owned()) });
                }
                (None, Some(every), None) => body["interval"] = json!({ "every": every, "period": s.period }),
                (None, None, Some(at)) => body["clocked"] = json!({ "at": at }),
                _ => {
                    return Err(Failure::Usage(
                        "give one of --cron, --every (with --period) or --at".into(),
                    ));
                }
            }
            let made = client.post("/schedules", Some(body)).await?;
            let line = format!(
                "created {} (next run {})",
                table::cell(&made["id"]),
                table::cell(&made["next_run_at"])
            );
            (made, Shown::Done(line))
        }
        Command::Schedules(Schedules::Enable { id }) => {
            done(client, &format!("/schedules/{}/enable", segment(&id)), None, "enabled").await?
        }
        Command::Schedules(Schedules::Disable { id }) => {
            done(
                client,
                &format!("/schedules/{}/disable", segment(&id)),
                None,
                "disabled",
            )
            .await?
        }
        Command::Schedules(Schedules::Run { id }) => {
            done(client, &format!("/schedules/{}/run", segment(&id)), None, "run").await?
        }
        Command::Productions(Productions::List { include_archived }) => {
            let q = query(&[("include_archived", include_archived.then(|| "true".to_owned()))]);
            (
                client.get(&format!("/productions{q}")).await?,
                Shown::Rows(PRODUCTION_COLUMNS),
            )
        }
        Command::Productions(Productions::Scan { id }) => {
            done(
                client,
                &format!("/productions/{}/scan", segment(&id)),
                None,
                "scan queued",
            )
            .await?
        }
        Command::Users(Users::List { online }) => {
            let q = query(&[("online", online.then(|| "true".to_owned()))]);
            (client.get(&format!("/users{q}")).await?, Shown::Rows(USER_COLUMNS))
        }
    })
}

/// A `POST` that changes something, answered by one line.
async fn done(client: &Client, path: &str, body: Option<Value>, what: &str) -> Result<(Value, Shown), Failure> {
    let answer = client.post(path, body).await?;
    Ok((answer, Shown::Done(what.to_owned())))
}
