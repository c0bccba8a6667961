//! Scale-out: worker hosts as Linux network namespaces (`deploy/fleet-sim.sh`), each
//! running the real worker binary with 2 slots under its own host name and address,
//! reaching PostgreSQL and RabbitMQ over a private bridge.
//!
//! 1. **Scaling curve**, 1 → 2 → 4 hosts: N `sleep 0.05` jobs (I/O-bound: what limits
//!    them is the fleet's coordination, not this machine's 2 cores) queued at once,
//!    timed from the first enqueue to the last committed success; then enqueue → start
//!    p50/p99 at half the fleet's capacity. The same with a busy loop of 0.05 s of
//!    processor time per job (CPU-bound), to show where the 2 cores end the curve.
//! 2. **Host loss**, 4 hosts: one host's network goes down for 60 s while its worker
//!    keeps running, and another host's worker is SIGKILLed (and started again). Every
//!    job must succeed exactly once: each success is recorded by one worker (every live
//!    worker's own count of recorded successes equals the rows it holds), and the
//!    partitioned worker, back on the network, records nothing over the attempts taken
//!    from it (the attempt fences it).
//!
//! `cargo bench -p rushes-benches --bench scale_out` (as root; env RUSHES_TEST_PG,
//! RUSHES_TEST_AMQP). Prints the tables; exits non-zero when a job is lost or doubled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use rushes_benches::{BenchEnv, full_run, percentile};
use rushes_common::config::LeaseConfig;
use rushes_common::job::QueueFamily;
use rushes_common::job::audit;
use rushes_common::job::sleep::Sleep;
use rushes_common::job::store::{NewJob, enqueue};
use rushes_common::queue::Topology;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The bridge's address on the host side, where the hosts find the services.
const GATEWAY: &str = "10.77.0.1";
/// Where each host's worker serves its metrics (every host has its own network).
const METRICS_PORT: u16 = 9464;
const SLOTS: u16 = 2;
const SIGKILL: &str = "KILL";

fn fleet_sim() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/fleet-sim.sh")
}

fn host_address(host: usize) -> String {
    format!("10.77.0.{}", 10 + host)
}

/// The simulated hosts, removed when dropped (also on an error or a panic).
struct Hosts;

impl Hosts {
    fn up(count: usize) -> anyhow::Result<Self> {
        let status = std::process::Command::new(fleet_sim())
            .args(["up", &count.to_string()])
            .status()
            .context("cannot run deploy/fleet-sim.sh")?;
        ensure!(
            status.success(),
            "deploy/fleet-sim.sh up {count} failed: worker hosts need root and network namespaces"
        );
        Ok(Self)
    }

    fn link(host: usize, state: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new(fleet_sim())
            .args(["link", &host.to_string(), state])
            .status()?;
        ensure!(status.success(), "cannot set host {host}'s link {state}");
        Ok(())
    }

    fn down() {
        let _ = std::process::Command::new(fleet_sim()).arg("down").status();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        Self::down();
    }
}

/// A worker process on one host.
struct HostWorker {
    host: usize,
    child: Child,
}

/// Settings every host's worker gets, on top of the database and broker.
#[derive(Clone)]
struct WorkerSettings {
    database_url: String,
    amqp_url: String,
    prefix: String,
    scratch: PathBuf,
    lease: LeaseConfig,
}

impl WorkerSettings {
    async fn start(&self, host: usize) -> anyhow::Result<HostWorker> {
        // What the workers say (a cut-off host's complaints included) goes to a log per host.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.join(format!("worker-h{host}.log")))?;
        let child = Command::new(fleet_sim())
            .args(["run", &host.to_string(), env!("CARGO_BIN_EXE_rushes-bench-worker")])
            .env("RUSHES_DATABASE_URL", &self.database_url)
            .env("RUSHES_AMQP_URL", &self.amqp_url)
            .env("RUSHES_QUEUE_PREFIX", &self.prefix)
            .env("RUSHES_QUEUES", format!("maintenance={SLOTS}"))
            .env("RUSHES_METRICS_ADDR", format!("0.0.0.0:{METRICS_PORT}"))
            .env(
                "RUSHES_HEARTBEAT_INTERVAL",
                self.lease.heartbeat_interval.as_secs_f64().to_string(),
            )
            .env("RUSHES_STALE_AFTER", self.lease.stale_after.as_secs_f64().to_string())
            .env("RUSHES_SHUTDOWN_GRACE", "5")
            .env("RUSHES_MEDIA_ROOTS", &self.scratch)
            .env("RUSHES_DATA_DIR", &self.scratch)
            .env("RUSHES_LOG", "error")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start a worker on host {host}"))?;
        Ok(HostWorker { host, child })
    }
}

impl HostWorker {
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the worker already exited")?;
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -s {signal} {pid} failed");
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not drained within `grace`.
    async fn stop(mut self, grace: Duration) {
        let _ = self.signal("TERM");
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

struct Bench {
    env: BenchEnv,
    settings: WorkerSettings,
    http: reqwest::Client,
}

/// One point of a curve.
struct Point {
    hosts: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = full_run();
    Hosts::down(); // what an interrupted earlier run may have left
    let hosts = Hosts::up(4)?;
    // Ctrl-C: remove the hosts (and their processes) before leaving.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            Hosts::down();
            std::process::exit(130);
        }
    });
    let env = BenchEnv::new().await?;
    let scratch = std::env::temp_dir().join(format!("rushes-scale-out-{}", env.tag));
    std::fs::create_dir_all(&scratch)?;
    let settings = WorkerSettings {
        database_url: on_gateway(env.database.database_url.expose())?,
        amqp_url: on_gateway(env.broker_config.amqp_url.expose())?,
        prefix: env.broker_config.queue_prefix.clone(),
        scratch: scratch.clone(),
        lease: LeaseConfig {
            heartbeat_interval: Duration::from_secs(1),
            stale_after: Duration::from_secs(5),
        },
    };
    let bench = Bench {
        env,
        settings,
        http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
    };
    let outcome = bench.run(full).await;
    bench.env.teardown().await;
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        eprintln!("the workers' logs are kept in {}", scratch.display());
    }
    drop(hosts);
    outcome
}

/// A service URL of this machine, as the hosts reach it (through the bridge).
fn on_gateway(url: &str) -> anyhow::Result<String> {
    for local in ["127.0.0.1", "localhost"] {
        if url.contains(local) {
            return Ok(url.replacen(local, GATEWAY, 1));
        }
    }
    bail!("the benchmark forwards services on 127.0.0.1 to the hosts; {url} is elsewhere")
}

impl Bench {
    async fn run(&self, full: bool) -> anyhow::Result<()> {
        let sizes: &[usize] = if full { &[1, 2, 4] } else { &[1, 2] };
        let per_host = if full { 200 } else { 40 };
        let io = self.curve(sizes, &Sleep::seconds(0.05), per_host).await?;
        let cpu = self.curve(sizes, &Sleep::busy(0.05), per_host / 2).await?;
        println!();
        print_curve("I/O-bound (`sleep 0.05`)", &io, f64::from(SLOTS) / 0.05);
        print_curve(
            "CPU-bound (busy loop, 0.05 s of one core)",
            &cpu,
            f64::from(SLOTS) / 0.05,
        );
        println!(
            "The CPU-bound curve stops where this machine's 2 cores are busy: every host's jobs share them, \
             so more hosts add slots but no processor."
        );
        if full {
            let loss = self.host_loss().await?;
            println!();
            println!(
                "| host loss, 4 hosts × {SLOTS} slots, {} jobs of `sleep {}` | value |",
                loss.jobs, loss.seconds
            );
            println!("| --- | --- |");
            println!("| succeeded | {} |", loss.succeeded);
            println!("| lost (not succeeded) | {} |", loss.jobs - loss.succeeded);
            println!(
                "| doubled (a success recorded by a worker that does not hold it) | {} |",
                loss.doubled
            );
            println!(
                "| SIGKILLed worker's running jobs running again elsewhere after | {:.2} s |",
                loss.killed_recovery_s
            );
            println!(
                "| partitioned worker's running jobs running again elsewhere after | {:.1} s (lease {} s) |",
                loss.partition_recovery_s,
                self.settings.lease.stale_after.as_secs()
            );
            println!(
                "| partitioned worker's attempts refused or stopped once back (the attempt fences it) | {} of the {} it ran when cut off |",
                loss.fenced, loss.partitioned_jobs
            );
            println!("| messages left in the queue | {} |", loss.left_in_queue);
            ensure!(
                loss.succeeded == loss.jobs && loss.doubled == 0 && loss.left_in_queue == 0,
                "host loss broke a guarantee: {} lost, {} doubled, {} messages left",
                loss.jobs - loss.succeeded,
                loss.doubled,
                loss.left_in_queue
            );
        }
        Ok(())
    }

    /// Throughput and latency of `job` at each fleet size.
    async fn curve(&self, sizes: &[usize], job: &Sleep, per_host: usize) -> anyhow::Result<Vec<Point>> {
        let mut points = Vec::new();
        for &hosts in sizes {
            let workers = self.start_fleet(hosts).await?;
            let n = per_host * hosts;
            let started = self.db_now().await?;
            let ids = self.enqueue(job, n).await?;
            self.wait_done(&ids, Duration::from_secs(600)).await?;
            let last: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT max(finished_at) FROM jobs WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_one(&self.env.db)
                    .await?;
            let took = (last.context("no job finished")? - started)
                .num_microseconds()
                .unwrap_or(i64::MAX) as f64
                / 1e6;
            let rate = n as f64 / took;
            // Enqueue → start at half the capacity this fleet just showed.
            let every = Duration::from_secs_f64(2.0 / rate);
            let count = ((rate / 2.0) * 4.0).clamp(20.0, 400.0) as usize;
            let mut ticker = tokio::time::interval(every);
            let mut paced = Vec::with_capacity(count);
            for _ in 0..count {
                ticker.tick().await;
                paced.extend(self.enqueue(job, 1).await?);
            }
            self.wait_done(&paced, Duration::from_secs(600)).await?;
            let mut ms: Vec<f64> = sqlx::query_scalar(
                "SELECT extract(epoch FROM started_at - enqueued_at)::float8 * 1000 FROM jobs WHERE id = ANY($1)",
            )
            .bind(&paced)
            .fetch_all(&self.env.db)
            .await?;
            points.push(Point {
                hosts,
                rate,
                p50_ms: percentile(&mut ms, 0.5),
                p99_ms: percentile(&mut ms, 0.99),
            });
            for worker in workers {
                worker.stop(Duration::from_secs(10)).await;
            }
        }
        Ok(points)
    }

    /// One worker on each of hosts 1…`count`, consuming.
    async fn start_fleet(&self, count: usize) -> anyhow::Result<Vec<HostWorker>> {
        let mut workers = Vec::with_capacity(count);
        for host in 1..=count {
            workers.push(self.settings.start(host).await?);
        }
        self.wait_consumers(count as u32).await?;
        Ok(workers)
    }

    async fn wait_consumers(&self, count: u32) -> anyhow::Result<()> {
        let queue = Topology::new(self.settings.prefix.clone()).queue(QueueFamily::Maintenance);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let consumers = self.queue_declare(&queue).await?.consumer_count();
            if consumers == count {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{consumers} consumers on {queue}, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn queue_declare(&self, queue: &str) -> anyhow::Result<lapin::Queue> {
        let connection = lapin::Connection::connect(&self.env.amqp, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await;
        let _ = connection.close(200, "OK".into()).await;
        Ok(declared?)
    }

    async fn db_now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.env.db)
            .await?)
    }

    async fn enqueue(&self, job: &Sleep, n: usize) -> anyhow::Result<Vec<Uuid>> {
        let mut ids = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let jobs = chunk.iter().map(|_| NewJob::of(job)).collect();
            ids.extend(
                enqueue(&self.env.db, &self.env.publisher, jobs)
                    .await?
                    .into_iter()
                    .map(|j| j.id),
            );
        }
        Ok(ids)
    }

    /// Waits until none of `ids` is queued, running or retrying.
    async fn wait_done(&self, ids: &[Uuid], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let active = audit::active(&self.env.db, ids).await?;
            if active == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{active} jobs still active after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The worker id each host's live worker registered under.
    async fn worker_ids(&self) -> anyhow::Result<HashMap<usize, Uuid>> {
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT DISTINCT ON (host) host, id FROM workers WHERE stopped_at IS NULL ORDER BY host, started_at DESC",
        )
        .fetch_all(&self.env.db)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(host, id)| Some((host.strip_prefix("rushes-h")?.parse().ok()?, id)))
            .collect())
    }

    /// Running jobs held by `worker` among `ids`.
    async fn held_by(&self, worker: Uuid, ids: &[Uuid]) -> anyhow::Result<Vec<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY($1) AND state = 'running' AND worker_id = $2")
                .bind(ids)
                .bind(worker)
                .fetch_all(&self.env.db)
                .await?,
        )
    }

    /// Seconds until none of `jobs` is still running under `worker` (taken over or done).
    async fn taken_over(&self, worker: Uuid, jobs: &[Uuid], since: Instant, timeout: Duration) -> anyhow::Result<f64> {
        loop {
            if self.held_by(worker, jobs).await?.is_empty() {
                return Ok(since.elapsed().as_secs_f64());
            }
            ensure!(
                since.elapsed() < timeout,
                "jobs of worker {worker} not taken over within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One host's worker's count of `sleep` attempts that ended with `outcome`.
    async fn finished(&self, host: usize, outcome: &str) -> anyhow::Result<i64> {
        let url = format!("http://{}:{METRICS_PORT}/metrics", host_address(host));
        let text = self.http.get(&url).send().await?.text().await?;
        let labels = [r#"kind="sleep""#.to_owned(), format!(r#"outcome="{outcome}""#)];
        Ok(text
            .lines()
            .filter(|l| l.starts_with("rushes_jobs_finished_total") && labels.iter().all(|x| l.contains(x.as_str())))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as i64)
    }

    /// Attempts of a host's worker taken over while it was cut off: refused at the
    /// outcome ("lost") or stopped by its heartbeat finding the job no longer its own
    /// ("cancelled").
    async fn fenced(&self, host: usize) -> anyhow::Result<i64> {
        Ok(self.finished(host, "lost").await? + self.finished(host, "cancelled").await?)
    }

    async fn host_loss(&self) -> anyhow::Result<Loss> {
        const JOBS: usize = 1200;
        const SECONDS: f64 = 0.25;
        const PARTITIONED: usize = 3;
        const KILLED: usize = 4;
        // The relay re-publishes a running job whose heartbeat went silent (a silent
        // host's deliveries stay with its connection until the broker drops it).
        let scheduler_stop = CancellationToken::new();
        let mut scheduler: rushes_scheduler::SchedulerConfig = rushes_common::config::parse_from(vec![
            "rushes-scheduler".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ])?;
        scheduler.database = self.env.database.clone();
        scheduler.broker = self.env.broker_config.clone();
        scheduler.lease = self.settings.lease.clone();
        let scheduler_task = tokio::spawn(rushes_scheduler::run(scheduler, scheduler_stop.clone()));
        // The broker drops a silent host's connection after two missed heartbeats.
        let settings = WorkerSettings {
            amqp_url: format!("{}?heartbeat=5", self.settings.amqp_url),
            ..self.settings.clone()
        };
        let mut workers = Vec::new();
        for host in 1..=4 {
            workers.push(settings.start(host).await?);
        }
        self.wait_consumers(4).await?;
        let ids = self.enqueue(&Sleep::seconds(SECONDS), JOBS).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let by_host = self.worker_ids().await?;
        let partitioned = *by_host.get(&PARTITIONED).context("no worker on the partitioned host")?;
        let killed = *by_host.get(&KILLED).context("no worker on the killed host")?;

        // Cut the host off while it runs jobs, so that they must be taken from it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let partitioned_jobs = loop {
            let held = self.held_by(partitioned, &ids).await?;
            if !held.is_empty() {
                break held;
            }
            ensure!(Instant::now() < deadline, "the partitioned host never ran a job");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Hosts::link(PARTITIONED, "down")?;
        let cut = Instant::now();
        let killed_jobs = self.held_by(killed, &ids).await?;
        let victim = workers
            .iter()
            .position(|w| w.host == KILLED)
            .context("the killed host's worker")?;
        workers[victim].signal(SIGKILL)?;
        let killed_at = Instant::now();
        let killed_recovery_s = self
            .taken_over(killed, &killed_jobs, killed_at, Duration::from_secs(30))
            .await?;
        let mut dead = workers.remove(victim);
        let _ = dead.child.wait().await;
        workers.push(settings.start(KILLED).await?);
        let partition_recovery_s = self
            .taken_over(partitioned, &partitioned_jobs, cut, Duration::from_secs(60))
            .await?;
        let back_in = Duration::from_secs(60).saturating_sub(cut.elapsed());
        tokio::time::sleep(back_in).await;
        Hosts::link(PARTITIONED, "up")?;
        self.wait_done(&ids, Duration::from_secs(600)).await?;
        // The partitioned worker finds its way back (its database sessions resume and its
        // broker connection is made again) before its counts are read.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.finished(PARTITIONED, "succeeded").await.is_err() {
            ensure!(Instant::now() < deadline, "the partitioned worker never answered again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Its outcomes held up in TCP retransmission arrive, and are refused, within
        // about a minute and a half of the link coming back.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.fenced(PARTITIONED).await? < partitioned_jobs.len() as i64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'succeeded'")
            .bind(&ids)
            .fetch_one(&self.env.db)
            .await?;
        // Each live worker's own count of successes it recorded against the rows it holds.
        let by_host = self.worker_ids().await?;
        let mut doubled = 0;
        for (host, worker) in &by_host {
            let recorded = self.finished(*host, "succeeded").await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'succeeded' AND worker_id = $2",
            )
            .bind(&ids)
            .bind(worker)
            .fetch_one(&self.env.db)
            .await?;
            doubled += (recorded - held).max(0);
        }
        let fenced = self.fenced(PARTITIONED).await?;
        let left_in_queue = self
            .queue_declare(&Topology::new(self.settings.prefix.clone()).queue(QueueFamily::Maintenance))
            .await?
            .message_count();
        for worker in workers {
            worker.stop(Duration::from_secs(10)).await;
        }
        scheduler_stop.cancel();
        let _ = scheduler_task.await;
        Ok(Loss {
            jobs: JOBS,
            seconds: SECONDS,
            succeeded: usize::try_from(succeeded).unwrap_or(0),
            doubled,
            killed_recovery_s,
            partition_recovery_s,
            fenced,
            partitioned_jobs: partitioned_jobs.len(),
            left_in_queue,
        })
    }
}

struct Loss {
    jobs: usize,
    seconds: f64,
    succeeded: usize,
    doubled: i64,
    killed_recovery_s: f64,
    partition_recovery_s: f64,
    fenced: i64,
    partitioned_jobs: usize,
    left_in_queue: u32,
}

fn print_curve(title: &str, points: &[Point], per_host_ideal: f64) {
    let Some(base) = points.first().map(|p| p.rate) else {
        return;
    };
    println!("| {title} | jobs/s | × 1 host | ideal × | enqueue → start p50 / p99 at half capacity |");
    println!("| --- | --- | --- | --- | --- |");
    for p in points {
        println!(
            "| {} hosts × {SLOTS} slots | {:.0} jobs/s | ×{:.2} | ×{} | {:.1} ms / {:.1} ms |",
            p.hosts,
            p.rate,
            p.rate / base,
            p.hosts,
            p.p50_ms,
            p.p99_ms
        );
    }
    println!("(each host's 2 slots can run at most {per_host_ideal:.0} jobs/s of 0.05 s)");
    println!();
}
