//! What an admin may ask of a running worker (Flower's pool control): drain it, restart
//! it, change a queue's slots without a restart; each audited, and bad requests refused.

use std::time::Duration;

use anyhow::Context as _;

use reqwest::StatusCode;
use rushes_common::job::QueueFamily;
use rushes_tests::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const T: Duration = Duration::from_secs(30);

/// The id of the worker registered with process id `pid` (or, with `None`, the only
/// live worker of the environment), once it has registered.
async fn worker_id(env: &TestEnv, pid: Option<u32>) -> anyhow::Result<Uuid> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM workers WHERE stopped_at IS NULL AND ($1::int IS NULL OR pid = $1) \
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(pid.map(i32::try_from).transpose()?)
        .fetch_optional(&env.db)
        .await?;
        if let Some(id) = found {
            return Ok(id);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no worker registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit entries of `action` on worker `id`: their `after` values.
async fn audited(env: &TestEnv, action: &str, id: Uuid) -> anyhow::Result<Vec<Value>> {
    Ok(sqlx::query_scalar(
        "SELECT after FROM audit_log WHERE action = $1 AND target_type = 'worker' AND target_id = $2 ORDER BY at",
    )
    .bind(action)
    .bind(id.to_string())
    .fetch_all(&env.db)
    .await?)
}

/// Jobs of `ids` running now.
async fn running(env: &TestEnv, ids: &[Uuid]) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'running'")
            .bind(ids)
            .fetch_one(&env.db)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_worker_finishes_its_jobs_takes_no_more_and_exits_0() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // A grace period shorter than the job: a drain is not bound by it.
    let pid = env.spawn_worker_process("maintenance=1", &[("RUSHES_SHUTDOWN_GRACE", "0.5")])?;
    env.wait_consumers(QueueFamily::Maintenance, 1, T).await?;
    let worker = worker_id(&env, Some(pid)).await?;
    let long = env.sleep_job(3.0, None).await?;
    env.wait_state(long, "running", T).await?;

    let (status, body) = env.post(&format!("/api/v1/workers/{worker}/drain"), json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["stop_requested"], "drain");
    let (status, again) = env.post(&format!("/api/v1/workers/{worker}/drain"), json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "asking again changes nothing: {again}");
    assert_eq!(again["stop_requested_at"], body["stop_requested_at"]);
    env.wait_consumers(QueueFamily::Maintenance, 0, T).await?;
    let after = env.sleep_job(0.0, None).await?;

    assert_eq!(env.wait_process(pid, T).await?, Some(0), "a drained worker exits 0");
    let long = env.job(long).await?;
    assert_eq!(long["state"], "succeeded", "the running job finished: {long}");
    assert_eq!(long["attempts"], 1);
    assert_eq!(env.job(after).await?["state"], "queued", "no job taken after the drain");
    assert_eq!(
        audited(&env, "worker.drain", worker).await?,
        [json!({ "stop_requested": "drain" })]
    );
    let (_, shown) = env.get(&format!("/api/v1/workers/{worker}")).await?;
    assert!(shown["stopped_at"].is_string(), "{shown}");
    let (status, _) = env.post(&format!("/api/v1/workers/{worker}/drain"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT, "a stopped worker has nothing to drain");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_stops_as_on_sigterm_and_exits_0() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let pid = env.spawn_worker_process("maintenance=1", &[("RUSHES_SHUTDOWN_GRACE", "0.5")])?;
    env.wait_consumers(QueueFamily::Maintenance, 1, T).await?;
    let worker = worker_id(&env, Some(pid)).await?;
    let long = env.sleep_job(60.0, None).await?;
    env.wait_state(long, "running", T).await?;

    let (status, body) = env
        .post(&format!("/api/v1/workers/{worker}/restart"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["stop_requested"], "restart");
    assert_eq!(env.wait_process(pid, T).await?, Some(0));
    // Past its grace the job went back to its queue, its attempt not counted, for the
    // fresh worker a supervisor starts.
    let job = env.wait_state(long, "queued", T).await?;
    assert_eq!(job["attempts"], 0, "{job}");
    env.spawn_worker_process("maintenance=1", &[])?;
    env.wait_state(long, "running", T).await?;
    assert_eq!(audited(&env, "worker.restart", worker).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_change_on_a_running_worker() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.spawn_worker(env.worker_config("maintenance=1")?);
    env.wait_consumers(QueueFamily::Maintenance, 1, T).await?;
    let worker = worker_id(&env, None).await?;
    let path = format!("/api/v1/workers/{worker}");
    let in_force = |n: u64| {
        move |body: &Value| body["queues"]["maintenance"].as_u64() == Some(n) && body["slots"].as_u64() == Some(n)
    };

    let (status, body) = env.patch(&path, json!({ "slots": { "maintenance": 3 } })).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["slots_wanted"], json!({ "maintenance": 3 }));
    env.get_until(&path, T, in_force(3)).await?;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(env.sleep_job(2.0, None).await?);
    }
    env.wait_jobs(&jobs, "state = 'running'", 3, T)
        .await
        .context("three jobs at once on 3 slots")?;

    // Down to one while three run: none is stopped, and after them one at a time.
    let (status, _) = env.patch(&path, json!({ "slots": { "maintenance": 1 } })).await?;
    assert_eq!(status, StatusCode::OK);
    env.get_until(&path, T, in_force(1)).await?;
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(env.sleep_job(0.5, None).await?);
    }
    let mut most = 0;
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state <> 'succeeded'")
        .bind(&more)
        .fetch_one(&env.db)
        .await?
        > 0
    {
        most = most.max(running(&env, &more).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(most, 1, "one slot runs one job at a time");
    for job in &jobs {
        assert_eq!(env.job(*job).await?["state"], "succeeded", "no running job was stopped");
    }
    let audits = audited(&env, "worker.slots", worker).await?;
    assert_eq!(
        audits,
        [
            json!({ "slots": { "maintenance": 3 } }),
            json!({ "slots": { "maintenance": 1 } })
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_worker_requests_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let index = env.spawn_worker(env.worker_config("maintenance=2")?);
    env.wait_consumers(QueueFamily::Maintenance, 1, T).await?;
    let worker = worker_id(&env, None).await?;
    let path = format!("/api/v1/workers/{worker}");

    let nobody = Uuid::new_v4();
    for (method, url) in [
        ("get", format!("/api/v1/workers/{nobody}")),
        ("patch", format!("/api/v1/workers/{nobody}")),
        ("post", format!("/api/v1/workers/{nobody}/drain")),
        ("post", format!("/api/v1/workers/{nobody}/restart")),
    ] {
        let (status, body) = match method {
            "get" => env.get(&url).await?,
            "patch" => env.patch(&url, json!({ "slots": { "maintenance": 1 } })).await?,
            _ => env.post(&url, json!({})).await?,
        };
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {url}: {body}");
    }
    let (status, _) = env.get("/api/v1/workers/not-a-uuid").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for bad in [
        json!({ "slots": { "email": 2 } }),
        json!({ "slots": { "no-such-queue": 2 } }),
        json!({ "slots": { "maintenance": 0 } }),
        json!({ "slots": { "maintenance": 257 } }),
        json!({ "slots": { "maintenance": 70000 } }),
        json!({ "slots": { "maintenance": "two" } }),
        json!({ "slots": {} }),
        json!({}),
        json!({ "slots": { "maintenance": 2 }, "restart": true }),
    ] {
        let (status, body) = env.patch(&path, bad.clone()).await?;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {body}"
        );
        assert!(body["error"]["message"].is_string(), "a clear error for {bad}: {body}");
    }
    let (_, shown) = env.get(&path).await?;
    assert_eq!(shown["slots_wanted"], json!({}), "nothing was changed: {shown}");
    assert!(audited(&env, "worker.slots", worker).await?.is_empty());

    env.stop_worker(index).await?;
    let (status, body) = env.patch(&path, json!({ "slots": { "maintenance": 1 } })).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = env.post(&format!("{path}/restart"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    Ok(())
}
