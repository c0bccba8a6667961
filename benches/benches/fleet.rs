//! Fleet throughput and latency, against the raw broker ceiling measured in the same
//! run on the same broker:
//!
//! (a) raw lapin: N persistent 300-byte messages published with confirms awaited every
//!     100, consumed at once with manual acks (prefetch 100);
//! (b) N `sleep 0` jobs through the whole path (rows committed, confirmed publish,
//!     claim, run, outcome recorded, ack) with one worker of 2 slots;
//! (c) enqueue → start latency at a low fixed rate.
//!
//! `cargo bench -p rushes-benches --bench fleet` (env: RUSHES_BENCH_N, RUSHES_TEST_PG,
//! RUSHES_TEST_AMQP).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rushes_benches::{BenchEnv, env_or, full_run};
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig};
use rushes_common::enqueue::{NewJob, enqueue};
use rushes_common::queue::Publisher;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with `--bench` absent: stay quick then.
    let n: usize = if full_run() {
        env_or("RUSHES_BENCH_N", "10000").parse().context("RUSHES_BENCH_N")?
    } else {
        200
    };
    let env = BenchEnv::new().await?;
    let raw = raw_ceiling(&env.amqp, &env.tag, n, BATCH as u16).await?;
    let raw_slots = raw_ceiling(&env.amqp, &env.tag, n, 2).await?;
    let (db, publisher, database, broker_config) = (&env.db, &env.publisher, &env.database, &env.broker_config);

    let outcome = async {
        let full = with_worker(database, broker_config, 2, full_path(db, publisher, n)).await?;
        let wide = with_worker(database, broker_config, 16, full_path(db, publisher, n)).await?;
        let latency = with_worker(
            database,
            broker_config,
            2,
            latency(db, publisher, (n / 20).clamp(50, 500), 50.0),
        )
        .await?;
        anyhow::Ok((full, wide, latency))
    }
    .await;
    env.teardown().await;
    let (full, wide, (p50, p99)) = outcome?;

    println!();
    println!("| measure (N = {n}, this machine, same broker) | value |");
    println!("| --- | --- |");
    println!("| (a) raw lapin: confirmed publish (every {BATCH}) + consume/ack (prefetch {BATCH}) | {raw:.0} msg/s |");
    println!("| (a2) raw lapin as (a) but prefetch 2 (= the worker's 2 slots) | {raw_slots:.0} msg/s |");
    println!("| (b) Rushes full path, `sleep 0`, 1 worker × 2 slots | {full:.0} jobs/s |");
    println!("| (b)/(a) | {:.0} % (aim ≥ 60 %) |", 100.0 * full / raw);
    println!("| (b)/(a2) | {:.0} % |", 100.0 * full / raw_slots);
    println!(
        "| (b16) as (b) with 1 worker × 16 slots (claims and outcomes batch) | {wide:.0} jobs/s ({:.0} % of (a)) |",
        100.0 * wide / raw
    );
    println!("| (c) enqueue → start latency at 50 jobs/s, p50 / p99 | {p50:.1} ms / {p99:.1} ms |");
    println!(
        "| reference (issue): Celery 5 prefork 2 ≈ 2 000 tasks/s; raw ≈ 6–7 k msg/s | (b)/Celery ≈ {:.1}× |",
        full / 2000.0
    );
    Ok(())
}

async fn raw_ceiling(amqp: &str, tag: &str, n: usize, prefetch: u16) -> anyhow::Result<f64> {
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
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let body = vec![b'x'; 300];
    let started = Instant::now();
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
    for chunk in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                publish
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    consumed.await??;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    publish
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    let _ = connection.close(200, "OK".into()).await;
    Ok(rate)
}

/// Runs `work` while one in-process worker consumes `maintenance` with `slots` slots.
async fn with_worker<T>(
    database: &DatabaseConfig,
    broker: &BrokerConfig,
    slots: u16,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let shutdown = CancellationToken::new();
    let mut worker: rushes_worker::WorkerConfig = rushes_common::config::parse_from(vec![
        "rushes-worker".into(),
        "--queues".into(),
        format!("maintenance={slots}").into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ])?;
    worker.database = database.clone();
    worker.broker = broker.clone();
    worker.lease = LeaseConfig {
        heartbeat_interval: Duration::from_secs(2),
        stale_after: Duration::from_secs(15),
    };
    let handle = tokio::spawn(rushes_worker::run(worker, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = work.await;
    shutdown.cancel();
    handle.await??;
    result
}

async fn full_path(db: &PgPool, publisher: &Publisher, n: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(BATCH);
        let jobs = (0..batch)
            .map(|_| NewJob::new("sleep", json!({"seconds": 0})))
            .collect();
        enqueue(db, publisher, jobs).await?;
        left -= batch;
    }
    wait_drained(db, Duration::from_secs(600)).await?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn latency(db: &PgPool, publisher: &Publisher, count: usize, rate: f64) -> anyhow::Result<(f64, f64)> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ticker.tick().await;
        let records = enqueue(db, publisher, vec![NewJob::new("sleep", json!({"seconds": 0}))]).await?;
        ids.extend(records.into_iter().map(|r| r.id));
    }
    wait_drained(db, Duration::from_secs(120)).await?;
    let mut ms: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM started_at - enqueued_at)::float8 * 1000 FROM jobs WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
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
