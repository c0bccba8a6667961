//! Chaos: mixed jobs through 4 worker processes while, at times drawn from a seeded
//! generator, workers are SIGKILLed and started again, RabbitMQ and PostgreSQL are each
//! restarted once, and the scheduler leader is killed 3 times while interval schedules
//! fire. Afterwards every job must be in a final state, none lost or run after its
//! success was recorded, the failures injected must show as retries and dead jobs, no
//! schedule due time may fire twice, and the queue must hold nothing.
//!
//! `cargo bench -p rushes-benches --bench chaos` (as root, or a user allowed to run
//! `rabbitmqctl` and `pg_ctlcluster`; it restarts this machine's RabbitMQ and
//! PostgreSQL). Env: RUSHES_CHAOS_SEED, RUSHES_CHAOS_JOBS, RUSHES_CHAOS_LOG (the
//! processes' log filter), RUSHES_CHAOS_KEEP (keep the database, queues and logs to look
//! at afterwards), RUSHES_TEST_PG, RUSHES_TEST_AMQP. Prints one line per fault and the table; exits non-zero when a
//! guarantee is broken.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rushes_benches::{BenchEnv, env_or, full_run};
use rushes_common::job::QueueFamily;
use rushes_common::job::audit;
use rushes_common::job::sleep::Sleep;
use rushes_common::job::store::{NewJob, enqueue};
use tokio::process::{Child, Command};
use uuid::Uuid;

const WORKERS: usize = 4;
const SLOTS: u16 = 16;
const SCHEDULERS: usize = 2;
/// Interval schedules firing `sleep 0` every this many seconds during the run.
const SCHEDULE_EVERY_S: i64 = 2;
const SCHEDULES: usize = 3;

/// What can happen to the fleet, at a time of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    KillWorker(usize),
    RestartRabbitMq,
    RestartPostgres,
    KillLeader,
}

/// A job as enqueued, and what it was told to do.
struct Planned {
    seconds: f64,
    fail_attempts: u32,
}

/// A process of ours, started with the environment of the run.
struct Service {
    child: Child,
    metrics: String,
}

struct Fleet {
    env: Vec<(String, String)>,
    scratch: PathBuf,
    workers: Vec<Service>,
    schedulers: Vec<Service>,
}

impl Fleet {
    fn spawn(&self, binary: &str, name: &str, extra: &[(&str, String)]) -> anyhow::Result<Service> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.join(format!("{name}.log")))?;
        let mut command = Command::new(binary);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUSHES_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {binary}"))?;
        Ok(Service {
            child,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    fn worker(&self, index: usize) -> anyhow::Result<Service> {
        self.spawn(
            env!("CARGO_BIN_EXE_rushes-bench-worker"),
            &format!("worker-{index}"),
            &[("RUSHES_QUEUES", format!("maintenance={SLOTS}"))],
        )
    }

    fn scheduler(&self, index: usize) -> anyhow::Result<Service> {
        self.spawn(
            env!("CARGO_BIN_EXE_rushes-bench-scheduler"),
            &format!("scheduler-{index}"),
            &[],
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = full_run();
    let seed: u64 = env_or("RUSHES_CHAOS_SEED", "20261203")
        .parse()
        .context("RUSHES_CHAOS_SEED")?;
    let jobs: usize = env_or("RUSHES_CHAOS_JOBS", if full { "10000" } else { "300" })
        .parse()
        .context("RUSHES_CHAOS_JOBS")?;
    let kills = if full { 20 } else { 3 };
    let pg_version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .context("no PostgreSQL cluster under /etc/postgresql to restart")?;
    let env = BenchEnv::new().await?;
    let scratch = std::env::temp_dir().join(format!("rushes-chaos-{}", env.tag));
    std::fs::create_dir_all(&scratch)?;
    let outcome = run(&env, &scratch, seed, jobs, kills, &pg_version).await;
    // Whatever happened, the services are left running.
    let _ = std::process::Command::new("rabbitmqctl")
        .args(["-q", "start_app"])
        .status();
    let _ = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &pg_version, "main", "start"])
        .status();
    if std::env::var_os("RUSHES_CHAOS_KEEP").is_some() {
        eprintln!(
            "kept: database rushes_bench_{}, queues bench{}.*, the processes' logs in {}",
            env.tag,
            env.tag,
            scratch.display()
        );
        return outcome;
    }
    env.teardown().await;
    match &outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        Err(_) => eprintln!("the processes' logs are kept in {}", scratch.display()),
    }
    outcome
}

async fn run(
    env: &BenchEnv,
    scratch: &Path,
    seed: u64,
    jobs: usize,
    kills: usize,
    pg_version: &str,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fleet = Fleet {
        env: vec![
            (
                "RUSHES_DATABASE_URL".into(),
                env.database.database_url.expose().to_owned(),
            ),
            ("RUSHES_AMQP_URL".into(), env.broker_config.amqp_url.expose().to_owned()),
            ("RUSHES_QUEUE_PREFIX".into(), env.broker_config.queue_prefix.clone()),
            ("RUSHES_HEARTBEAT_INTERVAL".into(), "1".into()),
            ("RUSHES_STALE_AFTER".into(), "5".into()),
            ("RUSHES_SHUTDOWN_GRACE".into(), "5".into()),
            ("RUSHES_MEDIA_ROOTS".into(), scratch.display().to_string()),
            ("RUSHES_DATA_DIR".into(), scratch.display().to_string()),
            ("RUSHES_LOG".into(), env_or("RUSHES_CHAOS_LOG", "warn")),
        ],
        scratch: scratch.to_owned(),
        workers: Vec::new(),
        schedulers: Vec::new(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    for index in 0..SCHEDULERS {
        let scheduler = fleet.scheduler(index)?;
        fleet.schedulers.push(scheduler);
    }
    for index in 0..WORKERS {
        let worker = fleet.worker(index)?;
        fleet.workers.push(worker);
    }
    let schedules = add_schedules(env).await?;

    // The jobs: mostly short, some long; a tenth fail once (then succeed), one in a
    // hundred always fails (dead after its attempts).
    let plan: Vec<Planned> = (0..jobs)
        .map(|_| {
            let roll: f64 = rng.random();
            let seconds = if roll < 0.7 {
                rng.random_range(0.0..0.2)
            } else if roll < 0.95 {
                rng.random_range(0.2..1.0)
            } else {
                rng.random_range(1.0..2.0)
            };
            let fate: f64 = rng.random();
            let fail_attempts = if fate < 0.01 {
                u32::MAX
            } else if fate < 0.11 {
                1
            } else {
                0
            };
            Planned { seconds, fail_attempts }
        })
        .collect();
    let work_s: f64 = plan.iter().map(|p| p.seconds).sum();
    let expected_s = work_s / (WORKERS as f64 * f64::from(SLOTS));
    let span = Duration::from_secs_f64((expected_s * 0.8).max(10.0));
    let mut faults: Vec<(Duration, Fault)> = (0..kills)
        .map(|_| {
            (
                span.mul_f64(rng.random_range(0.05..1.0)),
                Fault::KillWorker(rng.random_range(0..WORKERS)),
            )
        })
        .collect();
    faults.push((span.mul_f64(rng.random_range(0.2..0.8)), Fault::RestartRabbitMq));
    faults.push((span.mul_f64(rng.random_range(0.2..0.8)), Fault::RestartPostgres));
    for _ in 0..3 {
        faults.push((span.mul_f64(rng.random_range(0.05..1.0)), Fault::KillLeader));
    }
    faults.sort_by_key(|f| f.0);

    let started_at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&env.db)
        .await?;
    let mut ids = Vec::with_capacity(jobs);
    for chunk in plan.chunks(500) {
        let batch = chunk
            .iter()
            .map(|p| {
                NewJob::of(&Sleep {
                    fail_attempts: p.fail_attempts,
                    ..Sleep::seconds(p.seconds)
                })
            })
            .collect();
        ids.extend(enqueue(&env.db, &env.publisher, batch).await?.into_iter().map(|j| j.id));
    }
    let start = Instant::now();
    let mut recoveries = Vec::new();
    for (at, fault) in &faults {
        tokio::time::sleep(at.saturating_sub(start.elapsed())).await;
        let began = Instant::now();
        let took = match *fault {
            Fault::KillWorker(index) => {
                let orphans = running_of(env, &fleet.workers[index], &ids).await;
                let _ = fleet.workers[index].child.start_kill();
                let _ = fleet.workers[index].child.wait().await;
                fleet.workers[index] = fleet.worker(index)?;
                wait_settled_or_running_elsewhere(env, &orphans, began).await?
            }
            Fault::RestartRabbitMq => {
                command("rabbitmqctl", &["-q", "stop_app"])?;
                command("rabbitmqctl", &["-q", "start_app"])?;
                work_again(env, began).await?
            }
            Fault::RestartPostgres => {
                command(
                    "pg_ctlcluster",
                    &["--skip-systemctl-redirect", pg_version, "main", "restart"],
                )?;
                work_again(env, began).await?
            }
            Fault::KillLeader => {
                let leader = leader_of(&fleet.schedulers, &http).await;
                if let Some(index) = leader {
                    let _ = fleet.schedulers[index].child.start_kill();
                    let _ = fleet.schedulers[index].child.wait().await;
                    fleet.schedulers[index] = fleet.scheduler(index)?;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while leader_of(&fleet.schedulers, &http).await.is_none() {
                        ensure!(Instant::now() < deadline, "no scheduler took the lead");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                began.elapsed()
            }
        };
        println!(
            "{:>7.1} s  {:<40} recovered in {:.2} s",
            at.as_secs_f64(),
            format!("{fault:?}"),
            took.as_secs_f64()
        );
        recoveries.push((*fault, took));
    }

    // Every job final, and the queue empty (duplicates of finished jobs are dropped by
    // the workers still running).
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let active: i64 = audit::active(&env.db, &ids).await?;
        if active == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{active} jobs still active 900 s after the last fault"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let queue = env.broker.topology().queue(QueueFamily::Maintenance);
    let mut left = u32::MAX;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        left = env
            .broker
            .queue_stats()
            .await?
            .iter()
            .find(|q| q.family == QueueFamily::Maintenance)
            .map_or(0, |q| q.messages);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = start.elapsed();
    let schedule_check = check_schedules(env, &schedules, started_at).await?;
    for worker in fleet.workers.iter_mut().chain(fleet.schedulers.iter_mut()) {
        let _ = worker.child.start_kill();
    }

    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state::text, count(*) FROM jobs WHERE id = ANY($1) GROUP BY state")
            .bind(&ids)
            .fetch_all(&env.db)
            .await?;
    let count = |state: &str| counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
    let (succeeded, failed, dead) = (count("succeeded"), count("failed"), count("dead"));
    let lost = jobs as i64 - succeeded - failed - dead;
    let meant_dead = plan.iter().filter(|p| p.fail_attempts == u32::MAX).count() as i64;
    let fail_once: Vec<Uuid> = ids
        .iter()
        .zip(&plan)
        .filter(|(_, p)| p.fail_attempts == 1)
        .map(|(id, _)| *id)
        .collect();
    let unretried: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND attempts < 2")
        .bind(&fail_once)
        .fetch_one(&env.db)
        .await?;
    // From the jobs' own stored lines: a success recorded twice, or any line of an
    // attempt after the one that succeeded.
    let doubled: i64 = audit::successes_recorded_twice(&env.db, &ids).await?;
    let after_success: i64 = audit::lines_after_success(&env.db, &ids).await?;
    let max_of = |kind: fn(&Fault) -> bool| {
        recoveries
            .iter()
            .filter(|(f, _)| kind(f))
            .map(|(_, t)| t.as_secs_f64())
            .fold(0.0, f64::max)
    };

    println!();
    println!(
        "| chaos run (seed {seed}, {jobs} jobs, {WORKERS} workers × {SLOTS} slots, {:.0} s) | value |",
        took.as_secs_f64()
    );
    println!("| --- | --- |");
    println!("| succeeded / failed / dead | {succeeded} / {failed} / {dead} (dead injected: {meant_dead}) |");
    println!("| lost (enqueued − final) | {lost} |");
    println!("| doubled (a success recorded twice) | {doubled} |");
    println!("| lines of an attempt after the recorded success | {after_success} |");
    println!("| fail-once jobs not retried | {unretried} of {} |", fail_once.len());
    println!("| schedule due times fired twice | {} |", schedule_check.twice);
    println!(
        "| longest gap between a schedule's fires | {:.1} s (every {SCHEDULE_EVERY_S} s; a due time delayed by a fault fires late, once) |",
        schedule_check.longest_gap_s
    );
    println!("| messages left in `{queue}` | {left} |");
    println!(
        "| max recovery: worker kill (its jobs running again) / RabbitMQ restart / PostgreSQL restart / leader kill (work or lead again) | {:.2} s / {:.2} s / {:.2} s / {:.2} s |",
        max_of(|f| matches!(f, Fault::KillWorker(_))),
        max_of(|f| *f == Fault::RestartRabbitMq),
        max_of(|f| *f == Fault::RestartPostgres),
        max_of(|f| *f == Fault::KillLeader)
    );
    ensure!(
        lost == 0
            && doubled == 0
            && after_success == 0
            && unretried == 0
            && dead == meant_dead
            && schedule_check.twice == 0
            && left == 0,
        "a guarantee was broken (see the table)"
    );
    Ok(())
}

fn command(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    ensure!(status.success(), "{program} {} failed", args.join(" "));
    Ok(())
}

/// Jobs a worker process holds now (its worker row found by its pid; none when the
/// database does not answer).
async fn running_of(env: &BenchEnv, service: &Service, ids: &[Uuid]) -> Vec<Uuid> {
    let Some(pid) = service.child.id() else {
        return Vec::new();
    };
    sqlx::query_scalar(
        "SELECT j.id FROM jobs j JOIN workers w ON w.id = j.worker_id \
         WHERE j.id = ANY($1) AND j.state = 'running' AND w.pid = $2 AND w.stopped_at IS NULL",
    )
    .bind(ids)
    .bind(i32::try_from(pid).unwrap_or(0))
    .fetch_all(&env.db)
    .await
    .unwrap_or_default()
}

/// Until every one of `jobs` has finished or runs under a worker alive.
async fn wait_settled_or_running_elsewhere(env: &BenchEnv, jobs: &[Uuid], since: Instant) -> anyhow::Result<Duration> {
    let deadline = since + Duration::from_secs(120);
    loop {
        let orphaned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'running' AND worker_gone(worker_id)",
        )
        .bind(jobs)
        .fetch_one(&env.db)
        .await
        .unwrap_or(i64::MAX);
        if orphaned == 0 {
            return Ok(since.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "{orphaned} jobs of a killed worker never ran again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until a job finishes after `since` (the fleet works again).
async fn work_again(env: &BenchEnv, since: Instant) -> anyhow::Result<Duration> {
    let from: DateTime<Utc> = Utc::now();
    let deadline = since + Duration::from_secs(120);
    loop {
        let done: Result<Option<DateTime<Utc>>, _> = sqlx::query_scalar("SELECT max(finished_at) FROM jobs")
            .fetch_one(&env.db)
            .await;
        if matches!(done, Ok(Some(at)) if at > from) {
            return Ok(since.elapsed());
        }
        ensure!(Instant::now() < deadline, "no job finished within 120 s of the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scheduler that says it leads.
async fn leader_of(schedulers: &[Service], http: &reqwest::Client) -> Option<usize> {
    for (index, scheduler) in schedulers.iter().enumerate() {
        let Ok(response) = http.get(&scheduler.metrics).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else { continue };
        if text
            .lines()
            .any(|l| l.starts_with("rushes_scheduler_leader ") && l.ends_with(" 1"))
        {
            return Some(index);
        }
    }
    None
}

async fn add_schedules(env: &BenchEnv) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::new();
    for n in 0..SCHEDULES {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO schedules (id, name, kind, payload, interval_every, interval_period, next_run_at) \
             VALUES (gen_random_uuid(), $1, 'sleep', '{\"seconds\": 0}', $2, 'seconds', now()) RETURNING id",
        )
        .bind(format!("chaos-{n}"))
        .bind(SCHEDULE_EVERY_S)
        .fetch_one(&env.db)
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

struct ScheduleCheck {
    twice: i64,
    longest_gap_s: f64,
}

async fn check_schedules(env: &BenchEnv, schedules: &[Uuid], since: DateTime<Utc>) -> anyhow::Result<ScheduleCheck> {
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT schedule_id, scheduled_for FROM jobs WHERE schedule_id = ANY($1) \
                               GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .bind(schedules)
    .fetch_one(&env.db)
    .await?;
    let gaps: Option<f64> = sqlx::query_scalar(
        "SELECT max(gap) FROM (SELECT extract(epoch FROM scheduled_for - lag(scheduled_for) \
                OVER (PARTITION BY schedule_id ORDER BY scheduled_for))::float8 AS gap \
             FROM jobs WHERE schedule_id = ANY($1) AND scheduled_for >= $2) g",
    )
    .bind(schedules)
    .bind(since)
    .fetch_one(&env.db)
    .await?;
    Ok(ScheduleCheck {
        twice,
        longest_gap_s: gaps.unwrap_or(0.0),
    })
}
