//! Dashboard latency with many clips: `GET /api/v1/dashboard` on a control plane over a
//! database holding N generated clip rows (default 1 000 000; every transcoded one with
//! a transcript), uncached (TTL 0) and
//! cached, against a bare `SELECT count(*) FROM clips` measured in the same run.
//!
//! `cargo bench -p rushes-benches --bench dashboard` (env: RUSHES_BENCH_CLIPS,
//! RUSHES_TEST_PG, RUSHES_TEST_AMQP). Without `--bench` it uses 10 000 rows.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rushes_benches::{BenchEnv, env_or, full_run, percentile};
use rushes_common::config::Secret;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clips: i64 = if full_run() {
        env_or("RUSHES_BENCH_CLIPS", "1000000")
            .parse()
            .context("RUSHES_BENCH_CLIPS")?
    } else {
        10_000
    };
    let env = BenchEnv::new().await?;
    let outcome = run(&env, clips).await;
    env.teardown().await;
    outcome
}

async fn run(env: &BenchEnv, clips: i64) -> anyhow::Result<()> {
    let db = &env.db;
    let started = Instant::now();
    sqlx::query(
        "WITH b AS (INSERT INTO base_productions (id, name) VALUES (gen_random_uuid(), 'Bench') RETURNING id), \
              p AS (INSERT INTO productions (id, base_production_id, series, friendly_name, path) \
                    SELECT gen_random_uuid(), b.id, 1, 'Bench', '/bench' FROM b RETURNING id) \
         INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, duration_s, transcode_state, outputs, \
                            missing) \
         SELECT gen_random_uuid(), p.id, 'card/' || g, 'clip ' || g, 1, 1, 10.0, \
                (ARRAY['pending','queued','running','done','done','done','failed'])[1 + g % 7]::transcode_state, \
                CASE WHEN g % 7 >= 3 THEN '{\"wav\": \"audio.wav\"}'::jsonb ELSE '{}'::jsonb END, g % 97 = 0 \
         FROM p, generate_series(1, $1) AS g",
    )
    .bind(clips)
    .execute(db)
    .await?;
    // Every transcoded clip has a transcript, in all the states one can be in.
    sqlx::query(
        "INSERT INTO transcripts (id, clip_id, state, requested_by) \
         SELECT gen_random_uuid(), c.id, \
                (ARRAY['queued','running','done','done','failed'])[1 + abs(hashtext(c.path)) % 5]::transcode_state, \
                'bench' \
         FROM clips c WHERE c.transcode_state = 'done'",
    )
    .execute(db)
    .await?;
    sqlx::query("ANALYZE clips").execute(db).await?;
    sqlx::query("ANALYZE transcripts").execute(db).await?;
    eprintln!(
        "{clips} clip rows and their transcripts in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = "bench-admin-token";
    let config = rushes_control::ControlConfig {
        database: env.database.clone(),
        broker: env.broker_config.clone(),
        http_addr: addr,
        admin_token: Some(Secret::new(token)),
        media: rushes_common::media::MediaConfig {
            media_roots: Vec::new(),
            data_dir: std::env::temp_dir(),
        },
        public_url: format!("http://{addr}"),
        upload_max_bytes: 1 << 30,
        upload_quota_bytes: 0,
        metrics_addr: None,
        trusted_proxies: Vec::new(),
        share_secret: None,
        oidc: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(rushes_control::serve(config, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/dashboard");
    let settings = format!("http://{addr}/api/v1/settings");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let time_get = |url: String| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let response = http.get(url).bearer_auth(token).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "dashboard answered {}",
                response.status()
            );
            let _ = response.bytes().await?;
            anyhow::Ok(started.elapsed().as_secs_f64() * 1000.0)
        }
    };
    http.patch(&settings)
        .bearer_auth(token)
        .json(&serde_json::json!({ "cache_ttl_seconds": 0 }))
        .send()
        .await?;
    time_get(url.clone()).await?;
    let mut uncached = Vec::new();
    for _ in 0..20 {
        uncached.push(time_get(url.clone()).await?);
    }
    http.patch(&settings)
        .bearer_auth(token)
        .json(&serde_json::json!({ "cache_ttl_seconds": 600 }))
        .send()
        .await?;
    time_get(url.clone()).await?;
    let mut cached = Vec::new();
    for _ in 0..50 {
        cached.push(time_get(url.clone()).await?);
    }
    let mut count = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM clips").fetch_one(db).await?;
        count.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    shutdown.cancel();
    let _ = server.await;

    let (p50_count, p50_uncached, p50_cached) = (
        percentile(&mut count, 0.5),
        percentile(&mut uncached, 0.5),
        percentile(&mut cached, 0.5),
    );
    println!("\n| {clips} clips | p50 | p95 | ratio to count(*) |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| bare `SELECT count(*) FROM clips` | {p50_count:.1} ms | {:.1} ms | 1.00× |",
        percentile(&mut count, 0.95)
    );
    println!(
        "| dashboard, uncached (TTL 0) | {p50_uncached:.1} ms | {:.1} ms | {:.2}× |",
        percentile(&mut uncached, 0.95),
        p50_uncached / p50_count
    );
    println!(
        "| dashboard, cached | {p50_cached:.1} ms | {:.1} ms | {:.2}× |",
        percentile(&mut cached, 0.95),
        p50_cached / p50_count
    );
    Ok(())
}
