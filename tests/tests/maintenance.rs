//! The housekeeping kinds behind the default schedules, and the clean-ups admins run
//! (purge deleted items).

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

/// Uploads `name` as a transcription upload by the holder of `token`; its id.
async fn upload_as(env: &TestEnv, token: &str, name: &str) -> anyhow::Result<Uuid> {
    use reqwest::multipart::{Form, Part};
    let form = Form::new()
        .part(
            "file",
            Part::bytes(b"RIFF but not really".to_vec()).file_name(name.to_owned()),
        )
        .text("title", name.to_owned());
    let (status, made) = TestEnv::answer(
        env.http
            .post(env.url("/api/v1/uploads"))
            .bearer_auth(token)
            .multipart(form),
    )
    .await?;
    anyhow::ensure!(status == reqwest::StatusCode::CREATED, "upload: {status} {made}");
    Ok(made["upload"]["id"].as_str().unwrap_or_default().parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deleted_takes_what_is_gone_long_enough_and_a_dry_run_nothing() -> anyhow::Result<()> {
    use rushes_tests::media::Clip;
    let env = TestEnv::with_worker("maintenance=1,scan=1").await?;
    let data_dir = env.media_config().data_dir;

    // Two clips; one's rushes go missing.
    let folder = env.media_root.join("purge");
    Clip::default().write(&folder.join("A001/gone.mov"))?;
    Clip::default().write(&folder.join("A001/kept.mov"))?;
    let production = env.production("Purge Show", 1, "purge", None).await?;
    env.scan(&production["id"]).await?;
    std::fs::remove_file(folder.join("A001/gone.mov"))?;
    env.scan(&production["id"]).await?;
    let clips = env.clips(&production["id"]).await?;
    let clip_id = |name: &str| -> anyhow::Result<Uuid> {
        let clip = clips
            .iter()
            .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(name)))
            .ok_or_else(|| anyhow::anyhow!("no clip {name} in {clips:?}"))?;
        Ok(clip["id"].as_str().unwrap_or_default().parse()?)
    };
    let (gone_clip, kept_clip) = (clip_id("gone")?, clip_id("kept")?);
    let since: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT missing_since FROM clips WHERE id = $1")
            .bind(gone_clip)
            .fetch_one(&env.db)
            .await?;
    assert!(since.is_some(), "the scan that found it missing dated it");
    std::fs::create_dir_all(data_dir.join("clips").join(gone_clip.to_string()))?;
    std::fs::write(
        data_dir.join("clips").join(gone_clip.to_string()).join("proxy.mp4"),
        b"proxy",
    )?;

    // Users who upload for transcription; one is deleted long ago, one just now.
    let (_, role) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "transcriber", "policies": ["transcribe"] }),
        )
        .await?;
    let mut uploads = Vec::new();
    let mut users = Vec::new();
    for name in ["olduser", "newuser", "keeper"] {
        let user = env.user(name, json!({})).await?;
        let id: Uuid = user["id"].as_str().unwrap_or_default().parse()?;
        let (status, body) = env
            .post(&format!("/api/v1/users/{id}/roles"), json!({ "role_id": role["id"] }))
            .await?;
        anyhow::ensure!(status == reqwest::StatusCode::NO_CONTENT, "{body}");
        let token = env.login(name).await?;
        uploads.push(upload_as(&env, &token, &format!("{name}.wav")).await?);
        users.push(id);
    }
    for user in &users[..2] {
        let (status, _) = env
            .call(reqwest::Method::DELETE, &format!("/api/v1/users/{user}"), None)
            .await?;
        anyhow::ensure!(status.is_success(), "deleting {user}: {status}");
    }
    sqlx::query("UPDATE users SET deleted_at = now() - interval '40 days' WHERE id = $1")
        .bind(users[0])
        .execute(&env.db)
        .await?;
    sqlx::query("UPDATE clips SET missing_since = now() - interval '40 days' WHERE id = $1")
        .bind(gone_clip)
        .execute(&env.db)
        .await?;

    let purge =
        |dry_run: bool| json!({ "kind": "purge_deleted", "payload": { "deleted_days_ago": 30, "dry_run": dry_run } });
    let counts = |done: &serde_json::Value| {
        (
            done["result"]["users"].clone(),
            done["result"]["clips"].clone(),
            done["result"]["uploads"].clone(),
        )
    };
    let exists = |table: &'static str, id: Uuid| {
        sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
        )))
        .bind(id)
    };

    // A dry run counts and changes nothing.
    let dry = env.enqueue(purge(true)).await?;
    let done = env.wait_state(dry, "succeeded", T).await?;
    assert_eq!(counts(&done), (json!(1), json!(1), json!(1)), "{done}");
    assert_eq!(done["result"]["share_links_with_copies"], 0, "{done}");
    assert!(exists("clips", gone_clip).fetch_one(&env.db).await?);
    assert!(exists("users", users[0]).fetch_one(&env.db).await?);
    assert!(exists("uploads", uploads[0]).fetch_one(&env.db).await?);
    let purged_entries: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE '%.purge'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(purged_entries, 0);

    // The real one: what is gone long enough, with its folders; the rest stays.
    let real = env.enqueue(purge(false)).await?;
    let done = env.wait_state(real, "succeeded", T).await?;
    assert_eq!(counts(&done), (json!(1), json!(1), json!(1)), "{done}");
    assert!(!exists("clips", gone_clip).fetch_one(&env.db).await?);
    assert!(exists("clips", kept_clip).fetch_one(&env.db).await?);
    assert!(!data_dir.join("clips").join(gone_clip.to_string()).exists());
    assert!(!exists("users", users[0]).fetch_one(&env.db).await?);
    assert!(
        exists("users", users[1]).fetch_one(&env.db).await?,
        "deleted too recently"
    );
    assert!(!exists("uploads", uploads[0]).fetch_one(&env.db).await?);
    assert!(!data_dir.join("uploads").join(uploads[0].to_string()).exists());
    for kept in &uploads[1..] {
        assert!(exists("uploads", *kept).fetch_one(&env.db).await?);
    }
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE request_id = $1 AND action LIKE '%.purge' ORDER BY action",
    )
    .bind(real)
    .fetch_all(&env.db)
    .await?;
    assert_eq!(audited, ["clip.purge", "upload.purge", "user.purge"]);

    // An account purged outright orphans its uploads from that moment.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(users[1])
        .execute(&env.db)
        .await?;
    let orphaned: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT orphaned_at FROM uploads WHERE id = $1")
            .bind(uploads[1])
            .fetch_one(&env.db)
            .await?;
    assert!(orphaned.is_some());
    let again = env.enqueue(purge(false)).await?;
    let done = env.wait_state(again, "succeeded", T).await?;
    assert_eq!(
        counts(&done),
        (json!(0), json!(0), json!(0)),
        "orphaned too recently: {done}"
    );

    // Bad payloads are refused.
    for bad in [
        json!({ "items": [] }),
        json!({ "items": ["planets"] }),
        json!({ "deleted_days_ago": -1 }),
    ] {
        let (status, body) = env
            .post("/api/v1/jobs", json!({ "kind": "purge_deleted", "payload": bad }))
            .await?;
        assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    Ok(())
}
