//! Stored log lines: a process hands lines to a [`LogSink`], which writes them in
//! batches (one statement per batch) so logging never adds a round trip to a job. When
//! the database is slow the buffer fills and new lines are dropped (and counted) rather
//! than slowing the work down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Lines held before new ones are dropped.
const BUFFER: usize = 10_000;
/// Lines per statement.
const BATCH: usize = 500;
/// Longest a line waits before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone)]
struct Line {
    id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
    level: Level,
    job_id: Option<Uuid>,
    message: String,
    fields: Value,
}

/// Where a process's stored log lines go. Cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    service: &'static str,
    tx: mpsc::Sender<Line>,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    /// Starts the writer task of `service` (`control`, `worker`, `scheduler`).
    pub fn spawn(db: PgPool, service: &'static str) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(write_loop(db, service, rx));
        Self {
            service,
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Stores a line (of a job when `job_id` is given).
    pub fn log(&self, level: Level, job_id: Option<Uuid>, message: impl Into<String>, fields: Value) {
        let line = Line {
            id: Uuid::now_v7(),
            at: chrono::Utc::now(),
            level,
            job_id,
            message: message.into(),
            fields,
        };
        if self.tx.try_send(line).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    service = self.service,
                    dropped,
                    "stored log lines dropped: the database is behind"
                );
            }
        }
    }

    /// A system line (no job).
    pub fn system(&self, level: Level, message: impl Into<String>) {
        self.log(level, None, message, Value::Object(serde_json::Map::new()));
    }
}

/// A stretch of time the database refused the log's writes.
struct Outage {
    since: chrono::DateTime<chrono::Utc>,
    lost: usize,
    error: String,
}

impl Outage {
    /// The line that records it once the database is back.
    fn line(&self) -> Line {
        let until = chrono::Utc::now();
        Line {
            id: Uuid::now_v7(),
            at: until,
            level: Level::Warn,
            job_id: None,
            message: format!(
                "the database was unreachable from {} to {} ({} log lines could not be stored)",
                self.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                self.lost
            ),
            fields: serde_json::json!({ "outage": "database", "since": self.since, "until": until,
                                        "lost_lines": self.lost, "error": self.error }),
        }
    }
}

async fn write_loop(db: PgPool, service: &'static str, mut rx: mpsc::Receiver<Line>) {
    let mut batch = Vec::with_capacity(BATCH);
    // The database cannot take a line while it is down: the outage is recorded as one
    // line when it is back.
    let mut outage: Option<Outage> = None;
    loop {
        // During an outage, try again every few seconds even when nothing new is logged.
        let next = match &outage {
            None => rx.recv().await,
            Some(_) => match tokio::time::timeout(OUTAGE_RETRY, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    write_batch(&db, service, &mut batch, &mut outage).await;
                    continue;
                }
            },
        };
        let Some(first) = next else {
            return;
        };
        batch.push(first);
        let deadline = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(deadline);
        while batch.len() < BATCH {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => batch.push(line),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        write_batch(&db, service, &mut batch, &mut outage).await;
    }
}

/// How often a log whose database is down tries again.
const OUTAGE_RETRY: Duration = Duration::from_secs(5);

/// Writes `batch` (led by the line of an outage that has ended) and empties it; a failure
/// starts or extends the outage.
async fn write_batch(db: &PgPool, service: &str, batch: &mut Vec<Line>, outage: &mut Option<Outage>) {
    if let Some(down) = outage.as_ref() {
        batch.insert(0, down.line());
    }
    match write(db, service, batch).await {
        Ok(()) => *outage = None,
        Err(err) => {
            if outage.is_some() {
                batch.remove(0);
            }
            tracing::warn!(error = %err, lines = batch.len(), "cannot store log lines");
            let down = outage.get_or_insert_with(|| Outage {
                since: batch.first().map_or_else(chrono::Utc::now, |l| l.at),
                lost: 0,
                error: err.to_string(),
            });
            down.lost += batch.len();
        }
    }
    batch.clear();
}

async fn write(db: &PgPool, service: &str, lines: &[Line]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = lines.iter().map(|l| l.id).collect();
    let ats: Vec<chrono::DateTime<chrono::Utc>> = lines.iter().map(|l| l.at).collect();
    let levels: Vec<&str> = lines.iter().map(|l| l.level.as_str()).collect();
    let jobs: Vec<Option<Uuid>> = lines.iter().map(|l| l.job_id).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    let fields: Vec<&Value> = lines.iter().map(|l| &l.fields).collect();
    sqlx::query(
        "INSERT INTO logs (id, at, level, service, job_id, message, fields) \
         SELECT u.id, u.at, u.level, $4, u.job_id, u.message, u.fields \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $5::uuid[], $6::text[], $7::jsonb[]) \
              AS u(id, at, level, job_id, message, fields)",
    )
    .bind(ids)
    .bind(ats)
    .bind(levels)
    .bind(service)
    .bind(jobs)
    .bind(messages)
    .bind(fields)
    .execute(db)
    .await?;
    Ok(())
}
