//! Admin operations: typed settings, the dashboard, the API cache cleared on every
//! replica, system information.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::TestEnv;
use rushes_tests::media::{Clip, ffprobe};
use serde_json::{Value, json};
use uuid::Uuid;

fn setting<'a>(settings: &'a Value, key: &str) -> &'a Value {
    settings["settings"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == key))
        .map_or(&Value::Null, |s| &s["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_typed_validated_and_audited() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (status, settings) = env.get("/api/v1/settings").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(setting(&settings, "whisper_model"), "small", "{settings}");
    assert_eq!(setting(&settings, "cache_ttl_seconds"), 600);

    let (status, updated) = env
        .patch(
            "/api/v1/settings",
            json!({ "proxy_height": 720, "scan_interval_minutes": 30 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(setting(&updated, "proxy_height"), 720);
    let (_, schedules) = env.get("/api/v1/schedules?kind=scan_all").await?;
    assert_eq!(
        schedules["schedules"][0]["interval"],
        json!({ "every": 30, "period": "minutes" })
    );

    for bad in [
        json!({ "proxy_height": 721, "whisper_model": "huge" }),
        json!({ "proxy_height": 10 }),
        json!({ "proxy_height": "tall" }),
        json!({ "no_such_setting": 1 }),
        json!({}),
    ] {
        let (status, error) = env.patch("/api/v1/settings", bad.clone()).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {error}");
    }
    let (_, after) = env.get("/api/v1/settings").await?;
    assert_eq!(setting(&after, "proxy_height"), 720, "a refused edit changes nothing");
    let (_, audit) = env
        .get("/api/v1/audit-log?target_type=setting&target_id=proxy_height")
        .await?;
    assert_eq!(audit["entries"][0]["before"], 540);
    assert_eq!(audit["entries"][0]["after"], 720);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_cache_on_one_replica_clears_every_replica() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let replica = env.spawn_control_replica().await?;
    let dashboard = |base: String| {
        let http = env.http.clone();
        async move {
            let body: Value = http
                .get(format!("{base}/api/v1/dashboard"))
                .bearer_auth(rushes_tests::TOKEN)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(body)
        }
    };
    let first = dashboard(replica.clone()).await?;
    assert_eq!(first["clips_transcoded"], 0, "{first}");

    std::fs::create_dir_all(env.media_root.join("cached"))?;
    let production = env.production("Cached", 1, "cached", None).await?;
    let id: Uuid = production["id"].as_str().unwrap_or_default().parse()?;
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, transcode_state) \
             VALUES ($1, $2, $3, $3, 1, 1, 'done')",
        )
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(format!("c{i}.mov"))
        .execute(&env.db)
        .await?;
    }
    assert_eq!(
        dashboard(replica.clone()).await?["clips_transcoded"],
        0,
        "counts are cached"
    );
    let (status, _) = env.post("/api/v1/cache/clear", json!({})).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = dashboard(replica.clone()).await?;
        if now["clips_transcoded"] == 3 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the replica kept its cache: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, audit) = env.get("/api/v1/audit-log?action=cache.clear").await?;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_scan_and_transcode_and_settings_reach_workers() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1,transcode_long=1").await?;
    let (status, _) = env
        .patch(
            "/api/v1/settings",
            json!({ "cache_ttl_seconds": 0, "proxy_height": 144 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    for name in ["A001C001", "A001C002"] {
        Clip::default().write(&env.media_root.join(format!("dash/A001/{name}.mov")))?;
    }
    let production = env.production("Dashboard", 1, "dash", None).await?;
    env.scan(&production["id"]).await?;
    let board = env
        .get_until("/api/v1/dashboard", Duration::from_secs(90), |b| {
            b["clips_transcoded"] == 2
        })
        .await?;
    assert_eq!(board["clips_waiting_transcode"], 0, "{board}");
    assert_eq!(board["clips_waiting_transcribe"], 2);
    assert_eq!(board["clips_transcribed"], 0);
    assert!(board["running_jobs"].is_array() && board["queues"].as_array().map(Vec::len) == Some(6));
    let workers = board["workers_online"].as_array().cloned().unwrap_or_default();
    assert_eq!(workers.len(), 1, "{board}");
    assert_eq!(workers[0]["capabilities"]["video"]["encoder"], "libx264");
    assert!(board["users_online"].is_number());

    let clips = env.clips(&production["id"]).await?;
    let proxy = env
        .data_dir
        .join("clips")
        .join(clips[0]["id"].as_str().unwrap_or_default())
        .join("proxy.mp4");
    let probe = ffprobe(&proxy)?;
    assert_eq!(
        probe["streams"][0]["height"], 144,
        "the proxy_height setting reached the worker"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_shows_versions_and_masks_secrets() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (status, info) = env.get("/api/v1/system").await?;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["rushes"], env!("CARGO_PKG_VERSION"));
    assert!(info["postgresql"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(info["rabbitmq"]["reachable"], true);
    assert_eq!(info["whisper_model"], "small");
    assert_eq!(info["config"]["admin_token"], "****");
    let amqp = info["config"]["amqp_url"].as_str().unwrap_or_default();
    assert!(amqp.contains(":****@") && !amqp.contains("guest@"), "{amqp}");
    assert!(!info.to_string().contains(rushes_tests::TOKEN));
    Ok(())
}
