//! An admin's first morning with the fleet: paused queues and waiting jobs that say
//! why, every fleet action audited with who did it, dead letters readable and
//! discardable, job lists that refuse what they do not know, jobs refused when they
//! could not work, and a hand-enqueued transcode that transcodes.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::media::Clip;
use rushes_tests::{QueueFamily, TOKEN, TestEnv, job_id};
use serde_json::{Value, json};
use uuid::Uuid;

const T: Duration = Duration::from_secs(20);

/// The audit entries for `query` (`action=job.cancel&actor=ops`).
async fn audit(env: &TestEnv, query: &str) -> anyhow::Result<Vec<Value>> {
    let (status, body) = env.get(&format!("/api/v1/audit-log?{query}")).await?;
    anyhow::ensure!(status == StatusCode::OK, "audit log: {status} {body}");
    Ok(body["entries"].as_array().cloned().unwrap_or_default())
}

/// POSTs with no body at all, or with a JSON content type and an empty body.
async fn post_bodiless(env: &TestEnv, path: &str, typed: bool) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = env.http.post(env.url(path)).bearer_auth(TOKEN);
    if typed {
        request = request.header("content-type", "application/json");
    }
    TestEnv::answer(request).await
}

fn queue<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_queues_say_who_and_why_and_waiting_jobs_say_what_they_wait_for() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    // Not a no-op: after short jobs a worker holds a few deliveries ahead of its slot.
    let warmup = env.sleep_job(0.05, None).await?;
    env.wait_state(warmup, "succeeded", T).await?;

    // Behind the jobs ahead of it: one runs, two wait before the third.
    let blocker = env.sleep_job(60.0, None).await?;
    env.wait_state(blocker, "running", T).await?;
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(env.sleep_job(0.0, None).await?);
    }
    let third = env.job(queued[2]).await?;
    assert_eq!(third["jobs_ahead"], 2, "{third}");
    assert_eq!(
        third["wait_reason"], "behind 2 jobs in the `maintenance` queue",
        "{third}"
    );
    let first = env.job(queued[0]).await?;
    assert!(
        first["wait_reason"]
            .as_str()
            .is_some_and(|r| r.contains("next in the `maintenance` queue")),
        "{first}"
    );
    let (_, listed) = env.get("/api/v1/jobs?state=queued").await?;
    assert!(
        listed["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.len() == 3 && jobs.iter().all(|j| j["wait_reason"].is_string())),
        "{listed}"
    );
    let (status, _) = env.post(&format!("/api/v1/jobs/{blocker}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    for id in &queued {
        env.wait_state(*id, "succeeded", T).await?;
    }

    // Paused, with a reason: GET /queues, the dashboard and the job all say so.
    let (status, paused) = env
        .post(
            "/api/v1/queues/maintenance/pause",
            json!({ "reason": "swapping the scratch disk" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        (&paused["paused"], &paused["paused_by"], &paused["pause_reason"]),
        (&json!(true), &json!("admin"), &json!("swapping the scratch disk"))
    );
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(queue(&queues["queues"], "maintenance")["paused"], true, "{queues}");
    assert_eq!(queue(&queues["queues"], "email")["paused"], false, "{queues}");
    let (_, board) = env.get("/api/v1/dashboard").await?;
    let on_board = queue(&board["queues"], "maintenance");
    assert_eq!(
        (&on_board["paused"], &on_board["pause_reason"]),
        (&json!(true), &json!("swapping the scratch disk")),
        "{board}"
    );
    let waiting = env.sleep_job(0.0, None).await?;
    let job = env.job(waiting).await?;
    assert_eq!(
        job["wait_reason"], "queue `maintenance` is paused by admin: swapping the scratch disk",
        "{job}"
    );

    // No worker takes `transcribe` here.
    let stranded = env
        .enqueue(json!({"kind": "sleep", "queue": "transcribe", "payload": {"seconds": 0}}))
        .await?;
    let job = env.job(stranded).await?;
    assert_eq!(
        job["wait_reason"], "no worker online takes the `transcribe` queue",
        "{job}"
    );

    // Resume takes no body (nor does pause).
    let (status, resumed) = post_bodiless(&env, "/api/v1/queues/maintenance/resume", true).await?;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(
        (&resumed["paused"], &resumed["pause_reason"]),
        (&json!(false), &Value::Null)
    );
    env.wait_state(waiting, "succeeded", T).await?;
    let (status, body) = post_bodiless(&env, "/api/v1/queues/email/pause", false).await?;
    assert_eq!((status, &body["paused"]), (StatusCode::OK, &json!(true)), "{body}");
    let (status, body) = env
        .post("/api/v1/queues/email/pause", json!({ "reason": "x".repeat(501) }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let paused = audit(&env, "action=queue.pause").await?;
    assert_eq!(paused.len(), 2, "{paused:?}");
    let maintenance = paused
        .iter()
        .find(|e| e["target_id"] == "maintenance")
        .cloned()
        .unwrap_or_default();
    assert_eq!(maintenance["after"]["reason"], "swapping the scratch disk");
    assert_eq!(
        (
            &maintenance["actor"],
            &maintenance["actor_type"],
            &maintenance["actor_id"]
        ),
        (&json!("admin"), &json!("bootstrap_token"), &Value::Null)
    );
    assert_eq!(audit(&env, "action=queue.resume").await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_job_says_when_it_runs_next_and_every_error_stays_in_its_history() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    // Attempt 1 fails; attempt 2 (a second later) fails too, and is the last.
    let id = env
        .enqueue(json!({"kind": "sleep", "max_attempts": 2, "payload": {"seconds": 0, "fail_attempts": 5}}))
        .await?;
    let retrying = env.wait_state(id, "retrying", T).await?;
    assert!(retrying["retry_at"].is_string(), "{retrying}");
    assert!(
        retrying["wait_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("attempt 1 of 2 failed; the next is due at")),
        "{retrying}"
    );
    let dead = env.wait_state(id, "dead", T).await?;
    assert!(dead["retry_at"].is_null(), "{dead}");
    assert!(dead.get("wait_reason").is_none(), "{dead}");
    let history = dead["history"].as_array().cloned().unwrap_or_default();
    let events: Vec<(&str, i64)> = history
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap_or_default(),
                h["attempt"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(events, [("retrying", 1), ("dead", 2)], "{dead}");
    assert!(
        history
            .iter()
            .all(|h| h["error"].as_str().is_some_and(|e| e.contains("asked to fail")))
    );

    // A retry starts over; the error it clears stays in the history, with who retried.
    let (status, retried) = env.post(&format!("/api/v1/jobs/{id}/retry"), json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(
        (&retried["error"], &retried["retried_by"]),
        (&Value::Null, &json!("admin"))
    );
    let last = retried["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&last["event"], &last["state"], &last["by"]),
        (&json!("retried"), &json!("dead"), &json!("admin"))
    );
    assert!(
        last["error"].as_str().is_some_and(|e| e.contains("asked to fail")),
        "{last}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fleet_action_is_audited_and_the_token_is_told_apart_from_users() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.user("ops", json!({ "is_admin": true })).await?;
    let ops = env.login("ops").await?;
    let as_ops = |method: reqwest::Method, path: &str| env.http.request(method, env.url(path)).bearer_auth(&ops);

    let by_token = env.sleep_job(0.0, None).await?;
    let (status, job) = TestEnv::answer(
        as_ops(reqwest::Method::POST, "/api/v1/jobs").json(&json!({"kind": "sleep", "payload": {"seconds": 0}})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let by_ops = job_id(&job)?;
    // Cancel, with no body, as ops; retry as the token.
    let (status, cancelled) =
        TestEnv::answer(as_ops(reqwest::Method::POST, &format!("/api/v1/jobs/{by_ops}/cancel"))).await?;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["cancelled_by"], "ops");
    assert_eq!(cancelled["history"][0]["event"], "cancelled");
    let (status, retried) = post_bodiless(&env, &format!("/api/v1/jobs/{by_ops}/retry"), false).await?;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(
        (&retried["retried_by"], &retried["cancelled_by"]),
        (&json!("admin"), &json!("ops"))
    );

    let enqueued = audit(&env, "action=job.enqueue").await?;
    assert_eq!(enqueued.len(), 2, "{enqueued:?}");
    let token_entry = enqueued
        .iter()
        .find(|e| e["target_id"] == by_token.to_string())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            &token_entry["actor"],
            &token_entry["actor_type"],
            &token_entry["actor_id"]
        ),
        (&json!("admin"), &json!("bootstrap_token"), &Value::Null)
    );
    assert_eq!(token_entry["after"]["kind"], "sleep");
    let by_name = audit(&env, "actor=OPS").await?;
    let actions: Vec<&str> = by_name.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["job.cancel", "job.enqueue"], "newest first: {by_name:?}");
    assert!(
        by_name
            .iter()
            .all(|e| e["actor_type"] == "user" && e["actor_id"].is_string())
    );
    let by_token_name = audit(&env, "actor=admin&target_type=job").await?;
    let actions: Vec<&str> = by_token_name.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["job.retry", "job.enqueue"], "{by_token_name:?}");
    assert_eq!(
        audit(&env, "actor_type=bootstrap_token&action=job.retry").await?.len(),
        1
    );
    let (status, _) = env.get("/api/v1/audit-log?actor_type=robot").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A schedule run by hand and a scan are audited too.
    std::fs::create_dir_all(env.media_root.join("audited"))?;
    let production = env.production("Audited", 1, "audited", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    let (status, scan) = env.post(&format!("/api/v1/productions/{pid}/scan"), json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{scan}");
    let scans = audit(&env, "action=production.scan").await?;
    assert_eq!(
        (scans.len(), &scans[0]["target_id"], &scans[0]["after"]["job_id"]),
        (1, &json!(pid), &scan["id"])
    );
    let (status, schedule) = env
        .post(
            "/api/v1/schedules",
            json!({"name": "nap", "kind": "sleep", "payload": {"seconds": 0}, "interval": {"every": 1, "period": "days"}}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let sid = schedule["id"].as_str().unwrap_or_default();
    let (status, run) = post_bodiless(&env, &format!("/api/v1/schedules/{sid}/run"), true).await?;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let runs = audit(&env, "action=schedule.run").await?;
    assert_eq!((runs.len(), &runs[0]["target_id"]), (1, &run["id"]));

    // A body-less action whose body type has only defaults takes no body.
    let (status, body) = post_bodiless(&env, "/api/v1/users/purge-deleted", false).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post_bodiless(&env, "/api/v1/users/purge-deleted", true).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // One that needs fields names the first missing one.
    let (status, body) = post_bodiless(&env, "/api/v1/jobs", true).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("field `kind` is required")),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_show_readable_headers_and_the_dying_attempt_and_can_be_discarded() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    // Two attempts: the second comes back through a delay queue, which stamps `x-death`.
    let id = env
        .enqueue(json!({"kind": "sleep", "max_attempts": 2, "payload": {"seconds": 0, "fail_attempts": 9}}))
        .await?;
    let dead = env.wait_state(id, "dead", T).await?;
    let body = env
        .get_until("/api/v1/dead-letters", T, |b| {
            b["dead_letters"]
                .as_array()
                .is_some_and(|l| l.iter().any(|d| d["job_id"] == id.to_string()))
        })
        .await?;
    let letter = body["dead_letters"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["job_id"] == id.to_string()).cloned())
        .unwrap_or_default();
    assert_eq!(letter["attempt"], dead["attempts"], "{letter}");
    assert_eq!(letter["attempt"], 2);
    let deaths = letter["headers"]["x-death"].as_array().cloned().unwrap_or_default();
    assert!(!deaths.is_empty(), "x-death as a list: {letter}");
    for death in &deaths {
        assert!(death["count"].is_u64(), "{death}");
        assert!(
            death["queue"].as_str().is_some_and(|q| q.contains(".retry.")),
            "{death}"
        );
        let time = death["time"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{death}");
        assert!(death["routing-keys"].is_array(), "{death}");
    }
    assert!(!letter["headers"].to_string().contains("LongString"), "{letter}");

    // Discarded with no body: resolved, the job stays dead, nothing runs.
    let letter_id = letter["id"].as_str().unwrap_or_default();
    let (status, discarded) = post_bodiless(&env, &format!("/api/v1/dead-letters/{letter_id}/discard"), true).await?;
    assert_eq!(status, StatusCode::OK, "{discarded}");
    assert_eq!(
        (
            &discarded["discarded"],
            &discarded["discarded_by"],
            &discarded["requeued_at"]
        ),
        (&json!(true), &json!("admin"), &Value::Null)
    );
    assert!(discarded["discarded_at"].is_string());
    let (_, open) = env.get("/api/v1/dead-letters").await?;
    assert_eq!(open["dead_letters"], json!([]), "{open}");
    let (_, all) = env.get("/api/v1/dead-letters?all=true").await?;
    assert_eq!(all["dead_letters"][0]["id"], letter["id"]);
    for action in ["discard", "requeue"] {
        let (status, body) = env
            .post(&format!("/api/v1/dead-letters/{letter_id}/{action}"), json!({}))
            .await?;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
    }
    let job = env.job(id).await?;
    assert_eq!((&job["state"], &job["attempts"]), (&json!("dead"), &json!(2)));
    let discards = audit(&env, "action=dead_letter.discard").await?;
    assert_eq!((discards.len(), &discards[0]["target_id"]), (1, &letter["id"]));
    let (status, _) = env
        .post(&format!("/api/v1/dead-letters/{}/discard", Uuid::now_v7()), json!({}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A foreign letter requeued is audited with who did it.
    env.publish_raw(QueueFamily::Maintenance, b"not json at all").await?;
    let body = env
        .get_until("/api/v1/dead-letters", T, |b| {
            b["dead_letters"].as_array().is_some_and(|l| l.len() == 1)
        })
        .await?;
    let foreign = &body["dead_letters"][0];
    assert_eq!(foreign["attempt"], Value::Null);
    let (status, requeued) = env
        .post(
            &format!(
                "/api/v1/dead-letters/{}/requeue",
                foreign["id"].as_str().unwrap_or_default()
            ),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, &requeued["requeued_by"]),
        (StatusCode::OK, &json!("admin")),
        "{requeued}"
    );
    assert_eq!(audit(&env, "action=dead_letter.requeue").await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_lists_refuse_unknown_filters_leave_out_housekeeping_and_find_jobs_by_what_they_work_on()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for (query, needle) in [
        ("kind=sleeep", "unknown kind `sleeep` (known: sleep,"),
        ("queue=default", "unknown queue `default`"),
        (
            "state=queued,exploded",
            "valid: queued, running, succeeded, failed, retrying, cancelled, dead",
        ),
    ] {
        let (status, body) = env.get(&format!("/api/v1/jobs?{query}")).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{query}: {body}"
        );
    }

    let sleeper = env.sleep_job(0.0, None).await?;
    let reaper = env
        .enqueue(json!({"kind": "reap_workers", "payload": {"silent_for_s": 60}}))
        .await?;
    let ids = |body: &Value| -> Vec<String> {
        body["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|j| j["id"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, default) = env.get("/api/v1/jobs").await?;
    assert_eq!(ids(&default), [sleeper.to_string()], "housekeeping left out by default");
    let (_, with) = env.get("/api/v1/jobs?housekeeping=true").await?;
    assert_eq!(ids(&with), [reaper.to_string(), sleeper.to_string()]);
    let (_, by_kind) = env.get("/api/v1/jobs?kind=reap_workers").await?;
    assert_eq!(ids(&by_kind), [reaper.to_string()], "naming the kind includes it");
    let (_, states) = env.get("/api/v1/jobs?state=queued,retrying&housekeeping=false").await?;
    assert_eq!(ids(&states), [sleeper.to_string()]);

    // Jobs by the production and clip they work on.
    std::fs::create_dir_all(env.media_root.join("found"))?;
    let production = env.production("Found", 1, "found", None).await?;
    let pid: Uuid = production["id"].as_str().unwrap_or_default().parse()?;
    let clip = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns) VALUES ($1, $2, 'a.mov', 'a.mov', 1, 1)",
    )
    .bind(clip)
    .bind(pid)
    .execute(&env.db)
    .await?;
    let scan = env
        .enqueue(json!({"kind": "scan", "payload": {"production_id": pid}}))
        .await?;
    let transcode = env
        .enqueue(json!({"kind": "transcode", "payload": {"clip_id": clip}}))
        .await?;
    let (_, by_clip) = env.get(&format!("/api/v1/jobs?clip_id={clip}")).await?;
    assert_eq!(ids(&by_clip), [transcode.to_string()]);
    let (_, by_production) = env.get(&format!("/api/v1/jobs?production_id={pid}")).await?;
    assert_eq!(ids(&by_production), [transcode.to_string(), scan.to_string()]);
    let (_, other) = env
        .get(&format!("/api/v1/jobs?production_id={}", Uuid::now_v7()))
        .await?;
    assert_eq!(other["jobs"], json!([]));

    // /kinds publishes each payload's schema.
    let (_, kinds) = env.get("/api/v1/kinds").await?;
    let transcode_kind = kinds["kinds"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "transcode").cloned())
        .unwrap_or_default();
    assert_eq!(transcode_kind["payload_schema"]["required"], json!(["clip_id"]));
    assert_eq!(
        transcode_kind["payload_schema"]["properties"]["clip_id"]["format"],
        "uuid"
    );
    assert_eq!(transcode_kind["housekeeping"], false);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_could_not_work_are_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let nothing = Uuid::now_v7();
    for (job, needle) in [
        (
            json!({"kind": "transcode", "payload": {"clip_id": nothing}}),
            format!("clip_id `{nothing}` names no clip"),
        ),
        (
            json!({"kind": "scan", "payload": {"production_id": nothing}}),
            format!("production_id `{nothing}` names no production"),
        ),
        (
            json!({"kind": "transcode_upload", "payload": {"upload_id": nothing}}),
            format!("upload_id `{nothing}` names no upload"),
        ),
        (
            json!({"kind": "transcribe", "payload": {"transcript_id": nothing}}),
            format!("transcript_id `{nothing}` names no transcript"),
        ),
        (
            json!({"kind": "reap_workers", "queue": "email", "payload": {"silent_for_s": 60}}),
            "`reap_workers` jobs run on the `maintenance` queue, not `email`".to_owned(),
        ),
    ] {
        let (status, body) = env.post("/api/v1/jobs", job.clone()).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{job}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| m.contains(&needle)),
            "{job}: {body}"
        );
    }
    let (_, list) = env.get("/api/v1/jobs?housekeeping=true").await?;
    assert_eq!(list["jobs"], json!([]), "nothing was enqueued");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcode_enqueued_by_hand_transcodes_its_clip() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1").await?;
    Clip::default().write(&env.media_root.join("hand/A001/A001C001.mov"))?;
    let production = env.production("Hand", 1, "hand", None).await?;
    env.scan(&production["id"]).await?;
    let clip = env.clips(&production["id"]).await?.first().cloned().unwrap_or_default();
    let clip_id = clip["id"].as_str().unwrap_or_default().to_owned();
    env.get_until(&format!("/api/v1/clips/{clip_id}"), Duration::from_secs(60), |c| {
        c["transcode_state"] == "done"
    })
    .await?;

    // By hand: it becomes the clip's current transcode, and runs.
    let id = env
        .enqueue(json!({"kind": "transcode", "payload": {"clip_id": clip_id}}))
        .await?;
    let done = env.wait_state(id, "succeeded", Duration::from_secs(60)).await?;
    assert!(done["result"]["outputs"]["proxy"].is_string(), "{done}");
    assert!(done["result"].get("skipped").is_none(), "{done}");
    let (_, shown) = env.get(&format!("/api/v1/clips/{clip_id}")).await?;
    assert_eq!(
        (&shown["transcode_state"], &shown["transcode_job_id"]),
        (&json!("done"), &json!(id.to_string())),
        "{shown}"
    );

    // A transcode whose row was never made current (as another path might queue one)
    // takes over from the older current one rather than skipping.
    let stray = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, payload, max_attempts, published_at) \
         VALUES ($1, 'transcode', 'transcode', jsonb_build_object('clip_id', $2::text), 3, now())",
    )
    .bind(stray)
    .bind(&clip_id)
    .execute(&env.db)
    .await?;
    let message = json!({"v": 1, "id": stray, "kind": "transcode", "payload": {"clip_id": clip_id}, "attempt": 0});
    env.publish_raw(QueueFamily::Transcode, message.to_string().as_bytes())
        .await?;
    let done = env.wait_state(stray, "succeeded", Duration::from_secs(60)).await?;
    assert!(done["result"]["outputs"]["proxy"].is_string(), "{done}");
    let (_, shown) = env.get(&format!("/api/v1/clips/{clip_id}")).await?;
    assert_eq!(shown["transcode_job_id"], stray.to_string(), "{shown}");

    // Retranscoding answers with the jobs it started, and is audited.
    let (status, started) = env
        .post("/api/v1/clips/retranscode", json!({ "ids": [clip_id] }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["transcodes"], 1);
    let job = started["job_ids"][0].as_str().unwrap_or_default().parse::<Uuid>()?;
    let (_, shown) = env.get(&format!("/api/v1/clips/{clip_id}")).await?;
    assert_eq!(shown["transcode_job_id"], job.to_string());
    env.wait_state(job, "succeeded", Duration::from_secs(60)).await?;
    let entries = audit(&env, "action=clip.retranscode").await?;
    assert_eq!(
        (entries.len(), &entries[0]["target_id"], &entries[0]["after"]["job_ids"]),
        (1, &json!(clip_id), &started["job_ids"])
    );
    Ok(())
}
