//! The housekeeping kinds behind the default schedules.

use std::time::Duration;

use rushes_tests::TestEnv;
use serde_json::json;
use uuid::Uuid;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_jobs_deletes_only_old_finished_rows() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let old = env.sleep_job(0.0, None).await?;
    let recent = env.sleep_job(0.0, None).await?;
    env.wait_state(old, "succeeded", T).await?;
    env.wait_state(recent, "succeeded", T).await?;
    let waiting = env
        .enqueue(json!({"kind": "sleep", "queue": "transcribe", "payload": {"seconds": 0}}))
        .await?;
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '40 days', enqueued_at = now() - interval '40 days' WHERE id = $1")
        .bind(old)
        .execute(&env.db)
        .await?;
    sqlx::query("UPDATE jobs SET enqueued_at = now() - interval '40 days' WHERE id = $1")
        .bind(waiting)
        .execute(&env.db)
        .await?;

    let purge = env
        .enqueue(json!({"kind": "purge_jobs", "payload": {"older_than_days": 30}}))
        .await?;
    let done = env.wait_state(purge, "succeeded", T).await?;
    assert_eq!(done["result"], json!({"deleted": 1}));
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM jobs").fetch_all(&env.db).await?;
    assert!(!left.contains(&old), "the old finished job is gone");
    assert!(
        left.contains(&recent) && left.contains(&waiting),
        "recent and unfinished jobs stay"
    );

    let (status, error) = env
        .post(
            "/api/v1/jobs",
            json!({"kind": "purge_jobs", "payload": {"older_than_days": 0}}),
        )
        .await?;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_workers_marks_silent_workers_gone() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let silent = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO workers (id, host, pid, version, queues, slots, last_seen_at) \
         VALUES ($1, 'lost-host', 1, 'test', '{}', 1, now() - interval '1 hour')",
    )
    .bind(silent)
    .execute(&env.db)
    .await?;
    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);

    let reap = env
        .enqueue(json!({"kind": "reap_workers", "payload": {"silent_for_s": 300}}))
        .await?;
    let done = env.wait_state(reap, "succeeded", T).await?;
    assert_eq!(done["result"], json!({"marked_gone": [silent]}));
    let (_, all) = env.get("/api/v1/workers?all=true").await?;
    let workers = all["workers"].as_array().cloned().unwrap_or_default();
    let lost = workers
        .iter()
        .find(|w| w["id"] == silent.to_string())
        .cloned()
        .unwrap_or_default();
    assert_eq!(lost["online"], false);
    assert!(lost["stopped_at"].is_string(), "{lost}");
    assert!(
        workers.iter().any(|w| w["online"] == true),
        "the live worker stays online"
    );
    Ok(())
}
