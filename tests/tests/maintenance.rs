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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_logs_keeps_what_is_recent_and_clears_all_when_asked() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let line = |message: &'static str, days_ago: i32| {
        sqlx::query(
            "INSERT INTO logs (id, at, level, service, message) \
             VALUES (gen_random_uuid(), now() - make_interval(days => $1), 'info', 'test', $2)",
        )
        .bind(days_ago)
        .bind(message)
    };
    line("old line", 40).execute(&env.db).await?;
    line("recent line", 1).execute(&env.db).await?;
    sqlx::query(
        "INSERT INTO audit_log (id, request_id, actor, action, target_type, at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'test', 'old.entry', 'test', now() - interval '400 days')",
    )
    .execute(&env.db)
    .await?;
    let lines = |message: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM logs WHERE message = $1").bind(message)
    };
    let old_entries = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log WHERE action = 'old.entry'");

    // The default schedule, and bad payloads refused.
    let (_, schedules) = env.get("/api/v1/schedules?kind=purge_logs").await?;
    assert_eq!(schedules["schedules"][0]["name"], "purge-old-logs", "{schedules}");
    for bad in [
        json!({}),
        json!({ "logs_days": 30, "audit_days": 7 }),
        json!({ "logs_days": -1 }),
    ] {
        let (status, body) = env
            .post("/api/v1/jobs", json!({ "kind": "purge_logs", "payload": bad }))
            .await?;
        assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }

    // Retention: the old line goes, the recent one and the audit log stay.
    let purge = env
        .enqueue(json!({ "kind": "purge_logs", "payload": { "logs_days": 30 } }))
        .await?;
    let done = env.wait_state(purge, "succeeded", T).await?;
    assert_eq!(done["result"]["audit_entries"], serde_json::Value::Null, "{done}");
    assert_eq!(lines("old line").fetch_one(&env.db).await?, 0);
    assert_eq!(lines("recent line").fetch_one(&env.db).await?, 1);
    assert_eq!(
        old_entries().fetch_one(&env.db).await?,
        1,
        "the audit log is kept unless asked"
    );

    // With audit_days, old audit entries go too.
    let purge = env
        .enqueue(json!({ "kind": "purge_logs", "payload": { "logs_days": 30, "audit_days": 365 } }))
        .await?;
    let done = env.wait_state(purge, "succeeded", T).await?;
    assert_eq!(done["result"]["audit_entries"], 1, "{done}");
    assert_eq!(old_entries().fetch_one(&env.db).await?, 0);

    // Clear all logs: every line there was, and the clearing is audited.
    let clear = env
        .enqueue(json!({ "kind": "purge_logs", "payload": { "logs_days": 0 } }))
        .await?;
    let done = env.wait_state(clear, "succeeded", T).await?;
    assert!(done["result"]["logs"].as_u64().unwrap_or(0) >= 1, "{done}");
    assert_eq!(lines("recent line").fetch_one(&env.db).await?, 0);
    let audited: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'logs.clear' AND request_id = $1")
            .bind(clear)
            .fetch_optional(&env.db)
            .await?;
    assert_eq!(audited.map(|a| a["logs"].clone()), Some(done["result"]["logs"].clone()));
    Ok(())
}
