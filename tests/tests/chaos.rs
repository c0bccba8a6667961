//! A small chaos run (`cargo bench --bench chaos` is the full one): while jobs and an
//! interval schedule run through worker and scheduler processes, workers are SIGKILLed
//! and started again, the scheduler leader is killed, and PostgreSQL and RabbitMQ are
//! cut off from the fleet for a moment. The cuts go through proxies the fleet connects
//! by, so the shared servers keep serving the other tests. Afterwards nothing is lost,
//! no success is recorded twice, no attempt runs after one, every job that failed once
//! was retried, and no due time fired twice.

use std::net::SocketAddr;
use std::time::Duration;

use rushes_common::job::audit;
use rushes_common::job::sleep::Sleep;
use rushes_common::job::store::{NewJob, enqueue};
use rushes_tests::proxy::Proxy;
use rushes_tests::{TestEnv, amqp_url, dead_port, pg_server};
use uuid::Uuid;

const SIGKILL: i32 = 9;
const JOBS: usize = 400;
const WORKERS: usize = 3;

/// The address of a service URL's `host:port` (`scheme://user@host:port/…`).
async fn authority(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    tokio::net::lookup_host(host_port)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host_port} has no address"))
}

/// A scheduler process with `env`, serving its metrics on a port of its own: its pid
/// and that address.
fn spawn_scheduler(test: &mut TestEnv, env: &[(&str, &str)]) -> anyhow::Result<(u32, SocketAddr)> {
    let metrics = dead_port()?;
    let metrics_addr = metrics.to_string();
    let mut with_metrics = env.to_vec();
    with_metrics.push(("RUSHES_METRICS_ADDR", metrics_addr.as_str()));
    Ok((test.spawn_scheduler_process(&with_metrics)?, metrics))
}

/// Whether the scheduler serving metrics on `addr` leads.
async fn leads(env: &TestEnv, addr: SocketAddr) -> bool {
    let Ok(response) = env.http.get(format!("http://{addr}/metrics")).send().await else {
        return false;
    };
    response.text().await.is_ok_and(|t| {
        t.lines()
            .any(|l| l.starts_with("rushes_scheduler_leader ") && l.ends_with(" 1"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_chaos_run_loses_nothing_and_records_nothing_twice() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let database = Proxy::start(authority(&pg_server()).await?, true).await?;
    let broker = Proxy::start(authority(&amqp_url()).await?, true).await?;
    let database_url = format!("postgres://postgres@{}/{}", database.addr, env.db_name);
    let broker_url = broker.amqp_url();
    let through_proxies = [
        ("RUSHES_DATABASE_URL", database_url.as_str()),
        ("RUSHES_AMQP_URL", broker_url.as_str()),
        // The injected failures and the cuts are expected: only errors are news.
        ("RUSHES_LOG", "error"),
    ];
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(env.spawn_worker_process("maintenance=4", &through_proxies)?);
    }
    let mut schedulers = Vec::new();
    for _ in 0..2 {
        schedulers.push(spawn_scheduler(&mut env, &through_proxies)?);
    }
    let schedule: Uuid = sqlx::query_scalar(
        "INSERT INTO schedules (id, name, kind, payload, interval_every, interval_period, next_run_at) \
         VALUES (gen_random_uuid(), 'chaos', 'sleep', '{\"seconds\": 0}', 1, 'seconds', now()) RETURNING id",
    )
    .fetch_one(&env.db)
    .await?;

    // 0–0.4 s each; every tenth fails its first attempt (a fixed mix, not a random one).
    let mut state: u64 = 20_261_203;
    let mut fail_once = Vec::new();
    let mut jobs = Vec::with_capacity(JOBS);
    for n in 0..JOBS {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let seconds = (state >> 40) as f64 / (1u64 << 24) as f64 * 0.4;
        let fails = n % 10 == 3;
        jobs.push(NewJob::of(&Sleep {
            fail_attempts: u32::from(fails),
            ..Sleep::seconds(seconds)
        }));
        fail_once.push(fails);
    }
    let ids: Vec<Uuid> = enqueue(&env.db, &env.publisher, jobs)
        .await?
        .into_iter()
        .map(|j| j.id)
        .collect();
    let retried: Vec<Uuid> = ids
        .iter()
        .zip(&fail_once)
        .filter(|(_, f)| **f)
        .map(|(id, _)| *id)
        .collect();

    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(1000).await;
    env.signal(workers[0], SIGKILL)?;
    workers[0] = env.spawn_worker_process("maintenance=4", &through_proxies)?;
    pause(1000).await;
    database.down();
    pause(1500).await;
    database.up();
    pause(1000).await;
    env.signal(workers[1], SIGKILL)?;
    workers[1] = env.spawn_worker_process("maintenance=4", &through_proxies)?;
    pause(1000).await;
    broker.down();
    pause(1500).await;
    broker.up();
    pause(1000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let mut found = None;
        for (index, (_, metrics)) in schedulers.iter().enumerate() {
            if leads(&env, *metrics).await {
                found = Some(index);
            }
        }
        if let Some(index) = found {
            break index;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no scheduler leads");
        pause(100).await;
    };
    env.signal(schedulers[leader].0, SIGKILL)?;
    schedulers[leader] = spawn_scheduler(&mut env, &through_proxies)?;
    env.signal(workers[2], SIGKILL)?;
    workers[2] = env.spawn_worker_process("maintenance=4", &through_proxies)?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let active: i64 = audit::active(&env.db, &ids).await?;
        if active == 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{active} jobs still active 120 s after the faults"
        );
        pause(200).await;
    }
    // Interval fires keep going: at least one more after the leader was killed.
    let fired_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE schedule_id = $1")
        .bind(schedule)
        .fetch_one(&env.db)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE schedule_id = $1")
        .bind(schedule)
        .fetch_one(&env.db)
        .await?
        <= fired_before
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the schedule stopped firing after its leader was killed"
        );
        pause(200).await;
    }

    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'succeeded'")
        .bind(&ids)
        .fetch_one(&env.db)
        .await?;
    assert_eq!(succeeded, JOBS as i64, "every job succeeded, none lost");
    let unretried: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND attempts < 2")
        .bind(&retried)
        .fetch_one(&env.db)
        .await?;
    assert_eq!(unretried, 0, "every job that failed once was tried again");
    // The jobs' own stored lines (a killed worker may lose its last unwritten lines,
    // never add any): no success twice, no line of an attempt after the success.
    let doubled: i64 = audit::successes_recorded_twice(&env.db, &ids).await?;
    assert_eq!(doubled, 0, "a success recorded twice");
    let after_success: i64 = audit::lines_after_success(&env.db, &ids).await?;
    assert_eq!(after_success, 0, "an attempt ran after the recorded success");
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT scheduled_for FROM jobs WHERE schedule_id = $1 \
                               GROUP BY scheduled_for HAVING count(*) > 1) d",
    )
    .bind(schedule)
    .fetch_one(&env.db)
    .await?;
    assert_eq!(twice, 0, "a due time fired twice");
    Ok(())
}
