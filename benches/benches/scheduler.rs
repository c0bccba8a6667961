//! The scheduler under 10 000 enabled schedules (half 6-field cron, half intervals of
//! 2–10 s, spread across the second) on one in-process scheduler for 20 s: fire lag
//! (the job's `enqueued_at` − its due time) p50 / p99, scheduler CPU per 1 000 fires,
//! and the time from an edit to the edited schedule firing.
//!
//! `cargo bench -p rushes-benches --bench scheduler` (env: RUSHES_BENCH_SCHEDULES,
//! RUSHES_BENCH_SECONDS, RUSHES_TEST_PG, RUSHES_TEST_AMQP).

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use rushes_benches::{BenchEnv, env_or, full_run};
use rushes_common::config::LeaseConfig;
use tokio_util::sync::CancellationToken;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let full = full_run();
    let count: i64 = if full {
        env_or("RUSHES_BENCH_SCHEDULES", "10000").parse()?
    } else {
        200
    };
    let seconds: u64 = if full {
        env_or("RUSHES_BENCH_SECONDS", "20").parse()?
    } else {
        3
    };
    let env = BenchEnv::new().await?;
    let (db, database, broker_config) = (&env.db, &env.database, &env.broker_config);

    let outcome = async {
        // Half cron (every 5 s at a per-schedule second), half intervals of 2–10 s.
        sqlx::query(
            "INSERT INTO schedules (id, name, kind, payload, cron_expr, cron_timezone, interval_every, interval_period, start_time) \
             SELECT gen_random_uuid(), 'bench-' || i, 'sleep', '{\"seconds\": 0}', \
                    CASE WHEN i % 2 = 0 THEN (i % 5) || '/5 * * * * *' END, CASE WHEN i % 2 = 0 THEN 'UTC' END, \
                    CASE WHEN i % 2 = 1 THEN 2 + i % 9 END, CASE WHEN i % 2 = 1 THEN 'seconds' END, \
                    date_trunc('second', now()) + make_interval(secs => (i % 1000) / 1000.0) \
             FROM generate_series(1, $1) AS i",
        )
        .bind(count)
        .execute(db)
        .await?;
        let edited: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO schedules (id, name, kind, payload, cron_expr, cron_timezone) \
             VALUES (gen_random_uuid(), 'bench-edited', 'sleep', '{\"seconds\": 0}', '0 0 1 1 *', 'UTC') RETURNING id",
        )
        .fetch_one(db)
        .await?;

        let mut config: rushes_scheduler::SchedulerConfig = rushes_common::config::parse_from(vec![
            "rushes-scheduler".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ])?;
        config.database = database.clone();
        config.broker = broker_config.clone();
        config.lease = LeaseConfig { heartbeat_interval: Duration::from_secs(2), stale_after: Duration::from_secs(15) };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(rushes_scheduler::run(config, shutdown.clone()));

        // Warm up: leadership taken, first due times computed, firing under way.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs").fetch_one(db).await? < count / 4 {
            anyhow::ensure!(std::time::Instant::now() < deadline, "the scheduler did not start firing");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = Utc::now();
        let cpu_before = cpu_seconds();
        tokio::time::sleep(Duration::from_secs(seconds / 2)).await;

        // An edit: the yearly schedule becomes due 200 ms from now.
        let edit_at = Utc::now();
        sqlx::query(
            "UPDATE schedules SET cron_expr = NULL, cron_timezone = NULL, clocked_at = now() + interval '200 milliseconds', \
                    next_run_at = now() + interval '200 milliseconds', updated_at = now() WHERE id = $1",
        )
        .bind(edited)
        .execute(db)
        .await?;
        tokio::time::sleep(Duration::from_secs(seconds - seconds / 2)).await;
        let cpu = cpu_seconds() - cpu_before;
        let ended = Utc::now();
        shutdown.cancel();
        handle.await??;

        let mut lags: Vec<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM enqueued_at - scheduled_for)::float8 * 1000 FROM jobs \
             WHERE scheduled_for >= $1 AND scheduled_for < $2",
        )
        .bind(started)
        .bind(ended)
        .fetch_all(db)
        .await?;
        anyhow::ensure!(!lags.is_empty(), "nothing fired");
        lags.sort_by(f64::total_cmp);
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        let edit_fired: Option<chrono::DateTime<Utc>> =
            sqlx::query_scalar("SELECT enqueued_at FROM jobs WHERE schedule_id = $1").bind(edited).fetch_optional(db).await?;
        let edit_ms = edit_fired.map(|t| (t - edit_at).num_milliseconds());
        anyhow::Ok((lags.len(), at(0.5), at(0.99), cpu, edit_ms))
    }
    .await;
    env.teardown().await;
    let (fires, p50, p99, cpu, edit_ms) = outcome.context("scheduler benchmark")?;

    println!();
    println!("| measure ({count} enabled schedules, {seconds} s, one scheduler) | value | aim |");
    println!("| --- | --- | --- |");
    println!("| fires | {fires} ({:.0}/s) | |", fires as f64 / seconds as f64);
    println!("| fire lag p50 / p99 | {p50:.1} ms / {p99:.1} ms | p99 ≤ 50 ms |");
    println!(
        "| scheduler CPU per 1 000 fires (its process; PostgreSQL not counted) | {:.0} ms | |",
        cpu * 1000.0 / fires as f64 * 1000.0
    );
    match edit_ms {
        Some(ms) => println!("| edit → edited schedule fired (due 200 ms after the edit) | {ms} ms | pickup ≤ 1 s |"),
        None => println!("| edit → edited schedule fired | never | pickup ≤ 1 s |"),
    }
    Ok(())
}
