//! A job's life through real workers: priority, retries, dead letters, cancel, pause.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::{QueueFamily, TestEnv, job_id};
use serde_json::{Value, json};
use uuid::Uuid;

const T: Duration = Duration::from_secs(20);

fn started_at(job: &Value) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    let at = job["started_at"].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(at).map_err(|e| anyhow::anyhow!("started_at {at:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_job_overtakes_a_backlog() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;

    // The blocker holds the only slot until the whole backlog and the urgent job are queued,
    // however slow this machine is at enqueueing; cancelling it frees the slot.
    let blocker = env.sleep_job(60.0, Some(20)).await?;
    env.wait_state(blocker, "running", T).await?;
    let mut low = Vec::new();
    for _ in 0..50 {
        low.push(env.sleep_job(0.0, Some(0)).await?);
    }
    let high = env.sleep_job(0.0, Some(90)).await?;
    let (status, cancelled) = env.post(&format!("/api/v1/jobs/{blocker}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");

    let high_started = started_at(&env.wait_state(high, "succeeded", T).await?)?;
    for id in &low {
        let job = env.wait_state(*id, "succeeded", T).await?;
        assert!(
            high_started < started_at(&job)?,
            "the priority-90 job ran before every low one: {job}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_dead_then_requeued_to_success() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=2").await?;

    // Fails retryably until `fail_until`; two attempts (backoff 1 s) end before it.
    let fail_until = chrono::Utc::now() + chrono::Duration::seconds(4);
    let id = env
        .enqueue(json!({"kind": "sleep", "max_attempts": 2, "payload": {"seconds": 0, "fail_until": fail_until}}))
        .await?;
    let retrying = env.wait_state(id, "retrying", T).await?;
    assert!(
        retrying["error"].as_str().is_some_and(|e| e.contains("asked to fail")),
        "{retrying}"
    );
    let dead = env.wait_state(id, "dead", T).await?;
    assert_eq!(dead["attempts"], 2);
    let second_start = chrono::DateTime::parse_from_rfc3339(dead["started_at"].as_str().unwrap_or_default())?;
    let enqueued = chrono::DateTime::parse_from_rfc3339(dead["enqueued_at"].as_str().unwrap_or_default())?;
    assert!(
        second_start - enqueued >= chrono::Duration::milliseconds(900),
        "backoff before attempt 2"
    );

    let (status, letters) = env.get("/api/v1/dead-letters").await?;
    assert_eq!(status, StatusCode::OK);
    let letter = letters["dead_letters"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["job_id"] == id.to_string()).cloned())
        .ok_or_else(|| anyhow::anyhow!("job {id} not in the dead-letter list: {letters}"))?;
    assert!(letter["reason"].as_str().is_some_and(|r| r.contains("asked to fail")));
    assert_eq!(letter["body"]["id"], id.to_string());

    // Once the fault is gone, requeueing the letter runs the job from its first attempt.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(4)).await;
    let letter_id = letter["id"].as_str().unwrap_or_default();
    let (status, requeued) = env
        .post(&format!("/api/v1/dead-letters/{letter_id}/requeue"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{requeued}");
    assert!(requeued["requeued_at"].is_string());
    let done = env.wait_state(id, "succeeded", T).await?;
    assert_eq!(done["attempts"], 1);
    let (status, _) = env
        .post(&format!("/api/v1/dead-letters/{letter_id}/requeue"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "a letter is requeued once");
    let (_, open) = env.get("/api/v1/dead-letters").await?;
    assert_eq!(open["dead_letters"], json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_permanent_outcomes_do_not_kill_the_worker() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let panicking = env
        .enqueue(json!({"kind": "sleep", "max_attempts": 1, "payload": {"seconds": 0, "panic": true}}))
        .await?;
    let dead = env.wait_state(panicking, "dead", T).await?;
    assert!(dead["error"].as_str().is_some_and(|e| e.contains("panicked")), "{dead}");

    // A payload its handler cannot decode (a row written by another build) fails
    // permanently: one attempt, no retry.
    let undecodable = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, payload, max_attempts, published_at) \
         VALUES ($1, 'sleep', 'maintenance', '{\"seconds\": \"later\"}', 3, now())",
    )
    .bind(undecodable)
    .execute(&env.db)
    .await?;
    let message = json!({"v": 1, "id": undecodable, "kind": "sleep", "payload": {}, "attempt": 0});
    env.publish_raw(QueueFamily::Maintenance, message.to_string().as_bytes())
        .await?;
    let failed = env.wait_state(undecodable, "failed", T).await?;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("invalid payload")),
        "{failed}"
    );

    // The same worker goes on.
    let ok = env.sleep_job(0.0, None).await?;
    env.wait_state(ok, "succeeded", T).await?;

    // The jobs API retries a dead job from its first attempt, not a succeeded one.
    let (status, retried) = env.post(&format!("/api/v1/jobs/{panicking}/retry"), json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(
        (retried["state"].as_str(), retried["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let (status, _) = env.post(&format!("/api/v1/jobs/{ok}/retry"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT, "a succeeded job is not retried");
    let (status, _) = env
        .post(&format!("/api/v1/jobs/{}/retry", Uuid::now_v7()), json!({}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_and_queued_jobs_within_a_second() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;

    let running = env.sleep_job(30.0, None).await?;
    env.wait_state(running, "running", T).await?;
    let queued = env.sleep_job(0.0, None).await?;

    for id in [queued, running] {
        let (status, job) = env.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).await?;
        assert_eq!(status, StatusCode::OK, "{job}");
        assert_eq!(job["state"], "cancelled");
    }
    // The running one stops: its slot frees, so a new job runs well before the 30 s.
    let asked = std::time::Instant::now();
    let next = env.sleep_job(0.0, None).await?;
    env.wait_state(next, "succeeded", Duration::from_secs(5)).await?;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the cancelled job released its slot at once"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued_job = env.job(queued).await?;
    assert_eq!(queued_job["state"], "cancelled");
    assert!(
        queued_job["started_at"].is_null(),
        "the cancelled queued job never ran: {queued_job}"
    );
    let running_job = env.job(running).await?;
    assert_eq!(running_job["state"], "cancelled", "{running_job}");
    assert_eq!(running_job["attempts"], 1);
    let (status, conflict) = env.post(&format!("/api/v1/jobs/{running}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sleep_keeps_a_core_busy_and_stops_when_cancelled() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let (status, created) = env
        .post(
            "/api/v1/jobs",
            json!({"kind": "sleep", "payload": {"seconds": 0.3, "busy": true}}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let done = env.wait_state(job_id(&created)?, "succeeded", T).await?;
    assert_eq!(done["result"], json!({"busy_s": 0.3}), "{done}");

    let (_, created) = env
        .post(
            "/api/v1/jobs",
            json!({"kind": "sleep", "payload": {"seconds": 60, "busy": true}}),
        )
        .await?;
    let spinning = job_id(&created)?;
    env.wait_state(spinning, "running", T).await?;
    let (status, job) = env.post(&format!("/api/v1/jobs/{spinning}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{job}");
    // The busy loop looks for the cancel every tick: its slot frees long before 60 s.
    let next = env.sleep_job(0.0, None).await?;
    env.wait_state(next, "succeeded", Duration::from_secs(10)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_consumed_until_resumed() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=2").await?;
    // Let the worker connect before pausing.
    let warmup = env.sleep_job(0.0, None).await?;
    env.wait_state(warmup, "succeeded", T).await?;

    let (status, queue) = env.post("/api/v1/queues/maintenance/pause", json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue["paused"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<Uuid> = futures_util::future::try_join_all((0..3).map(|_| env.sleep_job(0.0, None))).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &ids {
        assert_eq!(
            env.job(*id).await?["state"],
            "queued",
            "nothing is taken from a paused queue"
        );
    }
    let (_, queue) = env.get("/api/v1/queues/maintenance").await?;
    assert_eq!(queue["depth"], 3, "{queue}");
    assert_eq!(queue["consumers"], 0, "{queue}");

    let (status, queue) = env.post("/api/v1/queues/maintenance/resume", json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(queue["paused"], false);
    for id in ids {
        env.wait_state(id, "succeeded", T).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_messages_are_dead_lettered_with_a_reason() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;

    env.publish_raw(QueueFamily::Maintenance, b"this is not json").await?;
    let unknown_kind =
        json!({"v": 1, "id": Uuid::now_v7(), "kind": "celery.backend_cleanup", "payload": {}, "attempt": 0});
    env.publish_raw(QueueFamily::Maintenance, unknown_kind.to_string().as_bytes())
        .await?;
    let unknown_job = json!({"v": 1, "id": Uuid::now_v7(), "kind": "sleep", "payload": {"seconds": 0}, "attempt": 0});
    env.publish_raw(QueueFamily::Maintenance, unknown_job.to_string().as_bytes())
        .await?;
    let future_version = json!({"v": 9, "id": Uuid::now_v7(), "kind": "sleep", "payload": {}, "attempt": 0});
    env.publish_raw(QueueFamily::Maintenance, future_version.to_string().as_bytes())
        .await?;

    // The worker keeps consuming.
    let ok = env.sleep_job(0.0, None).await?;
    env.wait_state(ok, "succeeded", T).await?;

    let body = env
        .get_until("/api/v1/dead-letters", T, |b| {
            b["dead_letters"].as_array().is_some_and(|l| l.len() >= 4)
        })
        .await?;
    let letters = body["dead_letters"].as_array().cloned().unwrap_or_default();
    let reasons: Vec<&str> = letters.iter().filter_map(|l| l["reason"].as_str()).collect();
    for needle in [
        "malformed message",
        "unknown job kind `celery.backend_cleanup`",
        "no job",
        "unsupported envelope version 9",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "a letter says {needle:?}: {reasons:?}"
        );
    }
    for letter in &letters {
        assert_eq!(letter["queue"], "maintenance");
        assert_eq!(
            letter["headers"].as_object().map(|h| h.contains_key("x-rushes-reason")),
            Some(false),
            "headers are the original's"
        );
    }
    let garbage = letters
        .iter()
        .find(|l| l["body"] == "this is not json")
        .ok_or_else(|| anyhow::anyhow!("raw body kept"))?;

    // Requeueing a foreign letter sends the same bytes back; it is parked again.
    let garbage_id = garbage["id"].as_str().unwrap_or_default();
    let (status, _) = env
        .post(&format!("/api/v1/dead-letters/{garbage_id}/requeue"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::OK);
    env.get_until("/api/v1/dead-letters?queue=maintenance", T, |b| {
        b["dead_letters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["body"] == "this is not json")
            .count()
            == 1
    })
    .await?;

    // The broker's dead-letter queue holds a copy of each parked message.
    let queues = env.publisher.broker().queue_stats().await?;
    assert!(queues.iter().all(|q| q.messages == 0), "job queues drained");
    // (The copy follows the row: give it a moment.)
    let deadline = tokio::time::Instant::now() + T;
    while env.publisher.broker().dead_letter_depth().await? < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "five copies in the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.publisher.broker().dead_letter_depth().await?, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_a_kind_this_worker_lacks_fails_and_is_parked_with_its_row() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // As a newer control plane would enqueue it: a row and a message of a kind this build lacks.
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO jobs (id, kind, queue, payload, max_attempts, published_at) VALUES ($1, 'render_3d', 'maintenance', '{}', 3, now())")
        .bind(id)
        .execute(&env.db)
        .await?;
    let message = json!({"v": 1, "id": id, "kind": "render_3d", "payload": {}, "attempt": 0});
    env.publish_raw(QueueFamily::Maintenance, message.to_string().as_bytes())
        .await?;
    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);

    let failed = env.wait_state(id, "failed", T).await?;
    assert!(
        failed["error"].as_str().is_some_and(|e| e.contains("render_3d")),
        "{failed}"
    );
    env.get_until("/api/v1/dead-letters", T, |b| {
        b["dead_letters"][0]["job_id"] == id.to_string()
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_delayed_message_was_lost_is_sent_again() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // A job between attempts whose message vanished from the delay queue.
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, payload, max_attempts, state, attempts, error, published_at, retry_at) \
         VALUES ($1, 'sleep', 'maintenance', '{\"seconds\": 0}', 3, 'retrying', 1, 'earlier failure', \
                 now() - interval '1 hour', now() - interval '1 hour')",
    )
    .bind(id)
    .execute(&env.db)
    .await?;
    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);
    env.spawn_scheduler(env.scheduler_config()?);
    let done = env.wait_state(id, "succeeded", T).await?;
    assert_eq!(done["attempts"], 2, "{done}");
    Ok(())
}
