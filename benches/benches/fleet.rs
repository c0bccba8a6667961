//! Fleet throughput and latency, against the raw broker ceiling measured in the same
//! run on the same broker:
//!
//! (a) raw lapin: N persistent 300-byte messages published with confirms awaited every
//!     100, consumed at once with manual acks (prefetch 100); (a2) the same at prefetch 2;
//!     (a3) the same messages published first, then drained (the broker's own drain
//!     ceiling);
//! (b) N `sleep 0` jobs through the whole path (rows committed, confirmed publish,
//!     claim, run, outcome recorded, ack) with one worker of 2 slots;
//! drains: N jobs enqueued before the workers start (what Celery's figure measures),
//!     with 1 × 2 slots, 1 × 16 slots and 4 workers × 2 slots;
//! PostgreSQL commits and AMQP ack frames per job, enqueue → start latency at 50 jobs/s,
//! and the start latency of priority-100 jobs while a 10 000-job backlog drains.
//!
//! (a) and (b) share two cores with PostgreSQL, RabbitMQ and each other, on a machine
//! whose neighbours come and go: one run of either moves by ±20 %. Both are measured
//! [`ROUNDS`] times, alternately, after an untimed warm-up of each (a fresh database's
//! first pages, new connections' caches), and compared by their medians.
//!
//! `cargo bench -p rushes-benches --bench fleet` (env: RUSHES_BENCH_N, RUSHES_TEST_PG,
//! RUSHES_TEST_AMQP).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rushes_benches::{BenchEnv, env_or, full_run, percentile};
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig};
use rushes_common::job::sleep::Sleep;
use rushes_common::job::store::{NewJob, enqueue};
use rushes_common::queue::Publisher;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 100;
/// Longest PostgreSQL takes to publish a backend's statistics (PGSTAT_IDLE_INTERVAL + 1 s).
const STATS_SETTLE: Duration = Duration::from_secs(11);
/// Celery 5, one worker, prefork 2, acks_late, on the same broker and cores (issue figure).
const CELERY_DRAIN: f64 = 2500.0;
/// Time for a started worker's consumers to subscribe (runs that must not count it).
const CONSUMER_START: Duration = Duration::from_millis(300);
/// Measured runs of (a) and of (b), alternately.
const ROUNDS: usize = 3;

/// What one run of jobs measured.
struct Run {
    rate: f64,
    commits_per_job: Option<f64>,
    acks_per_job: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with `--bench` absent: stay quick then.
    let full = full_run();
    let n: usize = if full {
        env_or("RUSHES_BENCH_N", "10000").parse().context("RUSHES_BENCH_N")?
    } else {
        200
    };
    let backlog = if full { 10_000 } else { 300 };
    let env = BenchEnv::new().await?;
    let rounds = if full { ROUNDS } else { 1 };
    let raw_slots = raw_ceiling(&env.amqp, &env.tag, n, 2, false).await?;
    let raw_drain = raw_ceiling(&env.amqp, &env.tag, n, BATCH as u16, true).await?;
    let bench = Bench {
        db: &env.db,
        publisher: &env.publisher,
        database: &env.database,
        broker: &env.broker_config,
        measure_commits: full,
    };
    let outcome = async {
        // Untimed warm-ups, then (a) and (b) alternately; commits counted in the last (b).
        raw_ceiling(&env.amqp, &env.tag, n / 10, BATCH as u16, false).await?;
        bench.full_path(n / 10, false).await?;
        let (mut raws, mut paths) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            raws.push(raw_ceiling(&env.amqp, &env.tag, n, BATCH as u16, false).await?);
            paths.push(bench.full_path(n, round + 1 == rounds).await?);
        }
        let drain2 = bench.drain(n, 1, 2).await?;
        let drain16 = bench.drain(n, 1, 16).await?;
        let drain4 = bench.drain(n, 4, 2).await?;
        let latency = bench.latency((n / 20).clamp(50, 500), 50.0).await?;
        let urgent = bench
            .urgent_under_backlog(backlog, 20, Duration::from_millis(30))
            .await?;
        anyhow::Ok((raws, paths, drain2, drain16, drain4, latency, urgent))
    }
    .await;
    env.teardown().await;
    let (mut raws, paths, drain2, drain16, drain4, (p50, p99), (u50, u99, left)) = outcome?;
    let mut path_rates: Vec<f64> = paths.iter().map(|run| run.rate).collect();
    let runs = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    let (raw_runs, path_runs) = (runs(&raws), runs(&path_rates));
    let (raw, path) = (percentile(&mut raws, 0.5), percentile(&mut path_rates, 0.5));
    let last_path = paths.last().context("no run of the full path")?;

    let per_job = |run: &Run| {
        let commits = run.commits_per_job.map_or("–".to_owned(), |c| format!("{c:.3}"));
        format!("{commits} commits/job, {:.3} ack frames/job", run.acks_per_job)
    };
    println!();
    println!("| measure (N = {n}, this machine, same broker) | value |");
    println!("| --- | --- |");
    println!(
        "| (a) raw lapin: confirmed publish (every {BATCH}) + consume/ack (prefetch {BATCH}), median of {rounds} | {raw:.0} msg/s (runs: {raw_runs}) |"
    );
    println!("| (a2) raw lapin as (a) but prefetch 2 | {raw_slots:.0} msg/s |");
    println!(
        "| (a3) raw lapin drain: {n} published first, then consumed/acked (prefetch {BATCH}) | {raw_drain:.0} msg/s |"
    );
    println!(
        "| (b) Rushes full path, `sleep 0`, 1 worker × 2 slots, median of {rounds} | {path:.0} jobs/s (runs: {path_runs}; last run: {}) |",
        per_job(last_path)
    );
    println!("| (b)/(a), medians | {:.0} % (goal ≥ 60 %) |", 100.0 * path / raw);
    println!(
        "| drain of {n} queued jobs, 1 worker × 2 slots | {:.0} jobs/s = {:.1}× Celery's {CELERY_DRAIN:.0}/s (goal ≥ 3×; {}) |",
        drain2.rate,
        drain2.rate / CELERY_DRAIN,
        per_job(&drain2)
    );
    println!(
        "| drain, 1 worker × 16 slots | {:.0} jobs/s ({}) |",
        drain16.rate,
        per_job(&drain16)
    );
    println!(
        "| drain, 4 workers × 2 slots (one process) | {:.0} jobs/s ({}) |",
        drain4.rate,
        per_job(&drain4)
    );
    println!("| enqueue → start at 50 jobs/s, p50 / p99 | {p50:.1} ms / {p99:.1} ms (Celery p99 9.9 ms) |");
    println!(
        "| priority-100 start latency during a {backlog}-job drain, p50 / p99 of 20 | {u50:.1} ms / {u99:.1} ms (goal p99 ≤ 50 ms; {left} backlog jobs still waiting at the last) |"
    );
    Ok(())
}

/// Raw lapin, no Rushes: `n` persistent messages published with confirms every
/// [`BATCH`] and consumed with manual acks at `prefetch`, at once (`drain_first`: false)
/// or after all are published (true: a drain, timed from the consumer's start).
async fn raw_ceiling(amqp: &str, tag: &str, n: usize, prefetch: u16, drain_first: bool) -> anyhow::Result<f64> {
    let connection = Connection::connect(amqp, ConnectionProperties::default()).await?;
    let publish = connection.create_channel().await?;
    let consume = connection.create_channel().await?;
    let queue = format!("bench{tag}.raw");
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(10));
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    publish.queue_declare(queue.as_str().into(), durable, args).await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    consume.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let body = vec![b'x'; 300];
    if drain_first {
        publish_confirmed(&publish, &queue, &body, n).await?;
    }
    let started = Instant::now();
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumed = tokio::spawn(async move {
        let mut seen = 0;
        while seen < n {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    seen += 1;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e)),
                None => anyhow::bail!("consumer ended"),
            }
        }
        anyhow::Ok(())
    });
    if !drain_first {
        publish_confirmed(&publish, &queue, &body, n).await?;
    }
    consumed.await??;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publish
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "OK".into()).await;
    Ok(rate)
}

/// Publishes `n` persistent copies of `body` to `queue`, awaiting confirms every [`BATCH`].
async fn publish_confirmed(publish: &lapin::Channel, queue: &str, body: &[u8], n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                publish
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    Ok(())
}

/// In-process workers consuming `maintenance`, each with its own pools and metrics port,
/// on a runtime of their own with the threads their processes would have: as in a
/// deployment, where the worker is its own process, its tasks never queue the bench's
/// enqueuer behind them (on one shared runtime, a draining worker's tasks made each
/// enqueue wait ~40 ms to be polled).
struct Workers {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    handles: Vec<JoinHandle<anyhow::Result<()>>>,
    metrics: Vec<String>,
    /// One client, its connections kept: a poll must not cost the workers a connection.
    http: reqwest::Client,
}

impl Workers {
    async fn start(database: &DatabaseConfig, broker: &BrokerConfig, count: usize, slots: u16) -> anyhow::Result<Self> {
        let (mut configs, mut metrics) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut worker: rushes_worker::WorkerConfig = rushes_common::config::parse_from(vec![
                "rushes-worker".into(),
                "--queues".into(),
                format!("maintenance={slots}").into(),
                "--metrics-addr".into(),
                format!("127.0.0.1:{port}").into(),
            ])?;
            worker.database = database.clone();
            worker.broker = broker.clone();
            worker.lease = LeaseConfig {
                heartbeat_interval: Duration::from_secs(2),
                stale_after: Duration::from_secs(15),
            };
            configs.push(worker);
            metrics.push(format!("http://127.0.0.1:{port}/metrics"));
        }
        // As many threads as the workers' processes would have (`runtime_threads`).
        let threads = configs.iter().map(rushes_worker::WorkerConfig::runtime_threads).sum();
        let runtime = rushes_common::shutdown::runtime(Some(threads))?;
        let shutdown = CancellationToken::new();
        let handles = configs
            .into_iter()
            .map(|worker| runtime.spawn(rushes_worker::run(worker, shutdown.clone())))
            .collect();
        // Started once every metrics endpoint answers (the consumers subscribe right after).
        let http = reqwest::Client::new();
        for url in &metrics {
            let deadline = Instant::now() + Duration::from_secs(30);
            while http.get(url).send().await.is_err() {
                anyhow::ensure!(Instant::now() < deadline, "worker metrics at {url} never answered");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Self {
            runtime,
            shutdown,
            handles,
            metrics,
            http,
        })
    }

    /// Ack frames the workers sent so far.
    async fn ack_frames(&self) -> anyhow::Result<f64> {
        self.sum("rushes_worker_settle_frames_total", "frame=\"ack\"").await
    }

    /// Jobs the workers ran whose success is committed.
    async fn succeeded(&self) -> anyhow::Result<f64> {
        self.sum("rushes_jobs_finished_total", "outcome=\"succeeded\"").await
    }

    /// The sum over the workers of the series of `metric` whose labels contain `labels`.
    async fn sum(&self, metric: &str, labels: &str) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for url in &self.metrics {
            let text = self.http.get(url).send().await?.text().await?;
            total += text
                .lines()
                .filter(|l| l.starts_with(metric) && l.contains(labels))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(total)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for handle in self.handles {
            handle.await??;
        }
        // Its tasks are done; dropping a runtime inside another would block it.
        self.runtime.shutdown_background();
        Ok(())
    }
}

struct Bench<'a> {
    db: &'a PgPool,
    publisher: &'a Publisher,
    database: &'a DatabaseConfig,
    broker: &'a BrokerConfig,
    /// Wait for PostgreSQL's statistics around measured runs (full runs only).
    measure_commits: bool,
}

impl Bench<'_> {
    /// Commits so far in this database, once every backend has reported them.
    async fn commits(&self) -> anyhow::Result<Option<i64>> {
        if !self.measure_commits {
            return Ok(None);
        }
        tokio::time::sleep(STATS_SETTLE).await;
        Ok(Some(
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                .fetch_one(self.db)
                .await?,
        ))
    }

    async fn enqueue_sleeps(&self, n: usize, priority: u8) -> anyhow::Result<Vec<uuid::Uuid>> {
        let mut ids = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let batch = left.min(1000);
            let jobs = (0..batch)
                .map(|_| NewJob {
                    priority: Some(priority),
                    ..NewJob::of(&Sleep::seconds(0.0))
                })
                .collect();
            ids.extend(enqueue(self.db, self.publisher, jobs).await?.into_iter().map(|j| j.id));
            left -= batch;
        }
        Ok(ids)
    }

    /// (b): jobs enqueued in batches of 100 while one worker of 2 slots runs them; the
    /// commits per job counted if `count_commits` (it waits for the statistics twice).
    async fn full_path(&self, n: usize, count_commits: bool) -> anyhow::Result<Run> {
        let workers = Workers::start(self.database, self.broker, 1, 2).await?;
        // The consumer starts right after the metrics answer: let it subscribe first.
        tokio::time::sleep(CONSUMER_START).await;
        let before = if count_commits { self.commits().await? } else { None };
        let started = self.now().await?;
        let mut left = n;
        while left > 0 {
            let batch = left.min(BATCH);
            let jobs = (0..batch).map(|_| NewJob::of(&Sleep::seconds(0.0))).collect();
            enqueue(self.db, self.publisher, jobs).await?;
            left -= batch;
        }
        self.finish(workers, n, started, before).await
    }

    /// A drain: `n` jobs queued first, then `count` workers of `slots` slots start.
    async fn drain(&self, n: usize, count: usize, slots: u16) -> anyhow::Result<Run> {
        self.enqueue_sleeps(n, 0).await?;
        let before = self.commits().await?;
        let started = self.now().await?;
        let workers = Workers::start(self.database, self.broker, count, slots).await?;
        // From the workers' start: their start-up is part of a drain, as for Celery's.
        self.finish(workers, n, started, before).await
    }

    /// The database's clock: runs are timed from it to the last outcome it committed.
    async fn now(&self) -> anyhow::Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(self.db)
            .await?)
    }

    /// Waits for the `n` jobs to be done, stops the workers and tells the rate from
    /// `started` to the last success committed, the commits since `before` and the ack
    /// frames, per job.
    async fn finish(
        &self,
        workers: Workers,
        n: usize,
        started: DateTime<Utc>,
        before: Option<i64>,
    ) -> anyhow::Result<Run> {
        // Waited for through the workers' own count of committed successes, looked at
        // rarely (a poll costs the workers and the database being measured); timed by
        // the outcomes' commit times in PostgreSQL.
        let deadline = Instant::now() + Duration::from_secs(600);
        while workers.succeeded().await? < n as f64 {
            anyhow::ensure!(Instant::now() < deadline, "the workers did not finish {n} jobs");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_drained(self.db, Duration::from_secs(60)).await?;
        let last: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(finished_at) FROM jobs WHERE state = 'succeeded' AND finished_at >= $1")
                .bind(started)
                .fetch_one(self.db)
                .await?;
        let took = last.context("no job finished")? - started;
        let rate = n as f64 / (took.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
        let acks = workers.ack_frames().await?;
        workers.stop().await?;
        let after = if before.is_some() { self.commits().await? } else { None };
        Ok(Run {
            rate,
            commits_per_job: before.zip(after).map(|(b, a)| (a - b) as f64 / n as f64),
            acks_per_job: acks / n as f64,
        })
    }

    /// Enqueue → start latency (p50, p99 in ms) at a low fixed rate.
    async fn latency(&self, count: usize, rate: f64) -> anyhow::Result<(f64, f64)> {
        let workers = Workers::start(self.database, self.broker, 1, 2).await?;
        tokio::time::sleep(CONSUMER_START).await;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ticker.tick().await;
            ids.extend(self.enqueue_sleeps(1, 20).await?);
        }
        wait_drained(self.db, Duration::from_secs(120)).await?;
        workers.stop().await?;
        let mut ms = start_latencies(self.db, &ids).await?;
        Ok((percentile(&mut ms, 0.5), percentile(&mut ms, 0.99)))
    }

    /// Priority-100 jobs enqueued every `every` while `backlog` priority-0 jobs drain
    /// through one worker of 2 slots: their start latency (p50, p99 in ms) and the
    /// backlog jobs still waiting when the last one was enqueued (0: not under load).
    async fn urgent_under_backlog(
        &self,
        backlog: usize,
        count: usize,
        every: Duration,
    ) -> anyhow::Result<(f64, f64, i64)> {
        self.enqueue_sleeps(backlog, 0).await?;
        let workers = Workers::start(self.database, self.broker, 1, 2).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut ids = Vec::with_capacity(count);
        let mut ticker = tokio::time::interval(every);
        for _ in 0..count {
            ticker.tick().await;
            ids.extend(self.enqueue_sleeps(1, 100).await?);
        }
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE priority = 0 AND state = 'queued'")
            .fetch_one(self.db)
            .await?;
        wait_drained(self.db, Duration::from_secs(600)).await?;
        workers.stop().await?;
        let mut ms = start_latencies(self.db, &ids).await?;
        Ok((percentile(&mut ms, 0.5), percentile(&mut ms, 0.99), left))
    }
}

async fn start_latencies(db: &PgPool, ids: &[uuid::Uuid]) -> anyhow::Result<Vec<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - enqueued_at)::float8 * 1000 FROM jobs WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// Waits until no job is queued, running or retrying (a cheap count over the partial
/// index of active jobs, so the wait does not load the database it measures).
async fn wait_drained(db: &PgPool, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'retrying')")
                .fetch_one(db)
                .await?;
        if active == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{active} jobs still active");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
