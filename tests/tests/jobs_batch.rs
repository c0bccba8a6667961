//! `POST /api/v1/jobs/batch`: many jobs in one request, all or none, with the checks
//! and rights of `POST /jobs`, published after the answer; one audit entry.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use rushes_tests::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const T: Duration = Duration::from_secs(15);

fn ids(body: &Value) -> anyhow::Result<Vec<Uuid>> {
    body["ids"]
        .as_array()
        .with_context(|| format!("no ids in {body}"))?
        .iter()
        .map(|id| {
            id.as_str()
                .context("id is not a string")?
                .parse()
                .context("id is not a UUID")
        })
        .collect()
}

async fn job_count(env: &TestEnv) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_enqueued_whole_audited_once_and_published() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (status, body) = env
        .post(
            "/api/v1/jobs/batch",
            json!({ "jobs": [
                { "kind": "sleep", "payload": { "seconds": 0 }, "priority": 0 },
                { "kind": "sleep", "payload": { "seconds": 0.5 }, "priority": 100, "queue": "transcribe" },
                { "kind": "sleep", "payload": { "seconds": 0 }, "max_attempts": 1 },
            ] }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids = ids(&body)?;
    assert_eq!(ids.len(), 3, "{body}");
    let expected = [(0, "maintenance", 3), (100, "transcribe", 3), (20, "maintenance", 1)];
    for (id, (priority, queue, max_attempts)) in ids.iter().zip(expected) {
        let job = env
            .wait_job(*id, T, |j| j["published_at"].is_string())
            .await
            .context("every job of a batch is published after the answer")?;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["priority"], priority, "{job}");
        assert_eq!(job["queue"], queue, "{job}");
        assert_eq!(job["max_attempts"], max_attempts, "{job}");
        assert!(job["requested_by"].is_string(), "{job}");
    }
    let audit: Vec<Value> = sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'job.enqueue_batch'")
        .fetch_all(&env.db)
        .await?;
    assert_eq!(audit.len(), 1, "one audit entry for the batch: {audit:?}");
    assert_eq!(audit[0]["count"], 3);
    assert_eq!(audit[0]["kinds"], json!({ "sleep": 3 }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_bad_items_is_refused_whole_naming_each_by_index() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let ok = json!({ "kind": "sleep", "payload": { "seconds": 0 } });
    let (status, body) = env
        .post(
            "/api/v1/jobs/batch",
            json!({ "jobs": [
                ok,
                { "kind": "sleep", "payload": { "seconds": 0 }, "priority": 101 },
                { "kind": "no_such_kind" },
                { "kind": "sleep", "payload": { "seconds": "long" } },
                { "kind": "sleep", "priority": "high" },
                17,
                { "kind": "transcode", "payload": { "clip_id": Uuid::now_v7() }, "queue": "email" },
                ok,
            ] }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    let indexes: Vec<i64> = body["error"]["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|item| item["index"].as_i64())
        .collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6], "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("jobs[1]: priority must be between 0 and 100, got 101"),
        "{message}"
    );
    assert!(
        body["error"]["items"][3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("field `priority`")),
        "{body}"
    );
    assert_eq!(job_count(&env).await?, 0, "nothing of a refused batch is enqueued");

    // A row that does not exist is named by its index too.
    let (status, body) = env
        .post(
            "/api/v1/jobs/batch",
            json!({ "jobs": [ok, { "kind": "transcode", "payload": { "clip_id": Uuid::now_v7() } }] }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["items"][0]["index"], 1, "{body}");
    assert!(
        body["error"]["items"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("names no clip")),
        "{body}"
    );

    for (jobs, what) in [
        (json!([]), "an empty batch"),
        (json!(vec![ok.clone(); 10_001]), "more than 10 000 jobs"),
    ] {
        let (status, body) = env.post("/api/v1/jobs/batch", json!({ "jobs": jobs })).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
    }
    assert_eq!(job_count(&env).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_transcode_becomes_its_clips_current_job() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    std::fs::create_dir_all(env.media_root.join("Batch/Series 1"))?;
    let production = env.production("Batch", 1, "Batch/Series 1", None).await?;
    let clip = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, card, size_bytes, mtime_ns) \
         VALUES ($1, $2, 'DAY01/A001C001.mov', 'A001C001.mov', 'A001', 1024, 0)",
    )
    .bind(clip)
    .bind(production["id"].as_str().context("production id")?.parse::<Uuid>()?)
    .execute(&env.db)
    .await?;
    let transcode = json!({ "kind": "transcode", "payload": { "clip_id": clip } });
    let (status, body) = env
        .post("/api/v1/jobs/batch", json!({ "jobs": [transcode, transcode] }))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids = ids(&body)?;
    let (current, state): (Option<Uuid>, String) =
        sqlx::query_as("SELECT transcode_job_id, transcode_state::text FROM clips WHERE id = $1")
            .bind(clip)
            .fetch_one(&env.db)
            .await?;
    assert_eq!(current, ids.last().copied(), "the last of the batch is the clip's job");
    assert_eq!(state, "queued");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rows_a_bulk_insert_builds_are_the_rows_stored() -> anyhow::Result<()> {
    use rushes_common::job::JobRecord;
    use rushes_common::job::store::{NewJob, Tx};

    let env = TestEnv::new().await?;
    let parent = env.sleep_job(0.0, None).await?;
    let mut probe = NewJob::by_name("sleep", json!({ "seconds": 0.5 }))
        .priority(100)
        .parent(parent)
        .requested_by("someone");
    probe.queue = Some(rushes_tests::QueueFamily::Transcribe);
    probe.max_attempts = Some(1);
    let jobs = vec![
        NewJob::by_name("sleep", json!({ "seconds": 0 })).check()?,
        probe.check()?,
    ];
    let mut tx = Tx::begin(&env.db).await?;
    let ids = tx.enqueue_checked(jobs).await?;
    let built = tx.commit_unpublished(&env.publisher).await?;
    assert_eq!(built.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    for job in built {
        let stored: JobRecord = sqlx::query_as(concat!(
            "SELECT ",
            rushes_common::job_columns!(),
            " FROM jobs WHERE id = $1"
        ))
        .bind(job.id)
        .fetch_one(&env.db)
        .await?;
        assert_eq!(serde_json::to_value(&job)?, serde_json::to_value(&stored)?);
    }
    Ok(())
}
