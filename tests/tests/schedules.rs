//! Schedules: the API and its validation, the calendar logic with an injected clock,
//! a running scheduler picking up edits, and leader failover without double fires.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use rushes_scheduler::firing::{self, FireOutcome};
use rushes_tests::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const GRACE: Duration = Duration::from_secs(30);

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_default()
}

fn id_of(v: &Value) -> anyhow::Result<Uuid> {
    Ok(v["id"].as_str().unwrap_or_default().parse()?)
}

async fn create(env: &TestEnv, body: Value) -> anyhow::Result<Value> {
    let (status, schedule) = env.post("/api/v1/schedules", body).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "create answered {status}: {schedule}");
    Ok(schedule)
}

async fn jobs_of(env: &TestEnv, schedule: Uuid) -> anyhow::Result<Vec<Value>> {
    let (_, list) = env
        .get(&format!("/api/v1/jobs?kind=sleep&schedule_id={schedule}&limit=1000"))
        .await?;
    Ok(list["jobs"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_validates_schedules_and_shows_their_next_fires() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sleep = json!({"seconds": 0});
    let created = create(
        &env,
        json!({"name": "nightly", "kind": "sleep", "payload": sleep, "cron": {"expr": "30 1 * * *", "timezone": "Europe/London"}}),
    )
    .await?;
    assert_eq!(
        created["cron"],
        json!({"expr": "30 1 * * *", "timezone": "Europe/London"})
    );
    assert_eq!(created["next_fire_times"].as_array().map(Vec::len), Some(5));
    assert_eq!(created["next_fire_times"][0], created["next_run_at"]);
    assert_eq!(created["missed"], "skip");

    let cases = [
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "cron": {"expr": "61 * * * *", "timezone": "UTC"}}),
            "cron.expr",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "cron": {"expr": "every day at noon"}}),
            "cron.expr",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "cron": {"expr": "0 * * * *", "timezone": "Mars/Olympus"}}),
            "cron.timezone",
        ),
        (
            json!({"name": "a", "kind": "nope", "payload": {}, "interval": {"every": 5, "period": "seconds"}}),
            "unknown job kind",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": {"seconds": "x"}, "interval": {"every": 5, "period": "seconds"}}),
            "invalid payload",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "interval": {"every": 0, "period": "seconds"}}),
            "interval.every",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "interval": {"every": 5, "period": "fortnights"}}),
            "interval.period",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "clocked": {"at": "2030-01-01T09:00:00"}}),
            "clocked.at",
        ),
        (json!({"name": "a", "kind": "sleep", "payload": sleep}), "timing"),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "interval": {"every": 5, "period": "seconds"}, "clocked": {"at": "2030-01-01T09:00:00Z"}}),
            "timing",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "interval": {"every": 5, "period": "seconds"}, "missed": "sometimes"}),
            "missed",
        ),
        (
            json!({"name": "a", "kind": "sleep", "payload": sleep, "interval": {"every": 5, "period": "seconds"}, "priority": 101}),
            "priority",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = env.post("/api/v1/schedules", body.clone()).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message:?} should name {field:?}");
    }
    let (status, _) = env
        .post("/api/v1/schedules", json!({"name": "nightly", "kind": "sleep", "payload": sleep, "interval": {"every": 5, "period": "minutes"}}))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique");

    // Defaults installed by the migrations, visible and editable.
    let (_, defaults) = env.get("/api/v1/schedules?limit=100").await?;
    let names: Vec<&str> = defaults["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in [
        "scan-active-productions",
        "purge-finished-jobs",
        "reap-silent-workers",
        "nightly",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // The default scan schedule runs now that its kind exists.
    let (_, enabled) = env.get("/api/v1/schedules?enabled=true&kind=scan_all").await?;
    assert_eq!(enabled["schedules"][0]["name"], "scan-active-productions", "{enabled}");
    assert_eq!(
        enabled["schedules"][0]["interval"],
        json!({"every": 1, "period": "hours"})
    );

    // Edit, disable, enable, delete.
    let id = id_of(&created)?;
    let (status, edited) = env
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/schedules/{id}"),
            Some(json!({"interval": {"every": 2, "period": "hours"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert!(edited["cron"].is_null());
    assert_eq!(edited["interval"], json!({"every": 2, "period": "hours"}));
    let (_, off) = env.post(&format!("/api/v1/schedules/{id}/disable"), json!({})).await?;
    assert_eq!(
        (off["enabled"].as_bool(), off["next_run_at"].is_null()),
        (Some(false), true)
    );
    let (_, on) = env.post(&format!("/api/v1/schedules/{id}/enable"), json!({})).await?;
    assert!(on["next_run_at"].is_string());
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/schedules/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.get(&format!("/api/v1/schedules/{id}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Unknown ids and malformed edits.
    for (method, path) in [
        (reqwest::Method::PATCH, format!("/api/v1/schedules/{id}")),
        (reqwest::Method::DELETE, format!("/api/v1/schedules/{id}")),
        (reqwest::Method::POST, format!("/api/v1/schedules/{id}/run")),
        (reqwest::Method::POST, format!("/api/v1/schedules/{id}/enable")),
    ] {
        let body = (method != reqwest::Method::DELETE).then(|| json!({}));
        let (status, error) = env.call(method.clone(), &path, body).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
        assert_eq!(error["error"]["code"], "not_found");
    }
    let nightly2 = id_of(
        &create(
            &env,
            json!({"name": "n2", "kind": "sleep", "payload": sleep, "interval": {"every": 1, "period": "days"}}),
        )
        .await?,
    )?;
    let (status, _) = env
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/schedules/{nightly2}"),
            Some(json!({"interval": {"every": -1, "period": "days"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/schedules/{nightly2}"),
            Some(json!({"colour": "red"})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_logic_with_an_injected_clock() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let sleep = json!({"seconds": 0});
    let hourly = create(
        &env,
        json!({"name": "hourly", "kind": "sleep", "payload": sleep, "interval": {"every": 1, "period": "hours"},
               "start_time": "2030-01-01T00:00:00Z"}),
    )
    .await?;
    let hourly_id = id_of(&hourly)?;
    assert_eq!(
        hourly["next_run_at"], "2030-01-01T00:00:00Z",
        "a future start time waits"
    );

    // Before the start nothing fires; on time it fires once, and only once.
    let pass = firing::fire_due(&env.db, &env.publisher, at("2029-12-31T23:59:59Z"), GRACE).await?;
    assert!(pass.fires.iter().all(|f| f.schedule_id != hourly_id));
    let pass = firing::fire_due(&env.db, &env.publisher, at("2030-01-01T00:00:00.010Z"), GRACE).await?;
    let fire = pass.fires.iter().find(|f| f.schedule_id == hourly_id).cloned();
    assert_eq!(fire.as_ref().map(|f| f.outcome), Some(FireOutcome::Fired));
    assert_eq!(fire.and_then(|f| f.next), Some(at("2030-01-01T01:00:00Z")));
    assert_eq!(pass.jobs[0].scheduled_for, Some(at("2030-01-01T00:00:00Z")));
    let again = firing::fire_due(&env.db, &env.publisher, at("2030-01-01T00:00:00.020Z"), GRACE).await?;
    assert!(again.fires.is_empty(), "a due time fires once");

    // Down from 00:30 to 05:30: `skip` drops the five missed fires.
    let pass = firing::fire_due(&env.db, &env.publisher, at("2030-01-01T05:30:00Z"), GRACE).await?;
    let fire = pass.fires.iter().find(|f| f.schedule_id == hourly_id).cloned();
    assert_eq!(fire.as_ref().map(|f| f.outcome), Some(FireOutcome::SkippedMissed));
    assert_eq!(fire.and_then(|f| f.next), Some(at("2030-01-01T06:00:00Z")));
    assert!(pass.jobs.is_empty());

    // `run_once` fires once for all of them.
    let (status, _) = env
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/schedules/{hourly_id}"),
            Some(json!({"missed": "run_once"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let pass = firing::fire_due(&env.db, &env.publisher, at("2030-01-01T05:30:00Z"), GRACE).await?;
    assert_eq!(pass.jobs.len(), 1, "run once, not six times");
    assert_eq!(pass.fires[0].next, Some(at("2030-01-01T06:00:00Z")));
    assert_eq!(jobs_of(&env, hourly_id).await?.len(), 2);

    // Clocked: fires once and disables itself. One-off: likewise. Expires: never after.
    let clocked = id_of(
        &create(
            &env,
            json!({"name": "once", "kind": "sleep", "payload": sleep, "clocked": {"at": "2031-06-01T12:00:00+01:00"}}),
        )
        .await?,
    )?;
    let one_off = id_of(&create(&env, json!({"name": "one-off", "kind": "sleep", "payload": sleep, "one_off": true, "interval": {"every": 1, "period": "days"}, "start_time": "2031-06-01T11:00:00Z"})).await?)?;
    let expiring = id_of(&create(&env, json!({"name": "expiring", "kind": "sleep", "payload": sleep, "cron": {"expr": "0 * * * *", "timezone": "UTC"}, "start_time": "2031-06-01T09:00:00Z", "expires": "2031-06-01T11:00:00Z"})).await?)?;
    for hour in ["09", "10", "11", "12"] {
        firing::fire_due(&env.db, &env.publisher, at(&format!("2031-06-01T{hour}:00:01Z")), GRACE).await?;
    }
    firing::fire_due(&env.db, &env.publisher, at("2031-06-03T12:00:01Z"), GRACE).await?;
    for (id, runs) in [(clocked, 1), (one_off, 1), (expiring, 2)] {
        let (_, s) = env.get(&format!("/api/v1/schedules/{id}")).await?;
        assert_eq!(jobs_of(&env, id).await?.len(), runs, "{s}");
        assert_eq!(s["total_run_count"], runs);
        assert_eq!(s["enabled"], false, "finished schedules disable themselves: {s}");
        assert!(s["next_run_at"].is_null());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_scheduler_fires_and_picks_up_edits_live() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=2").await?;
    env.spawn_scheduler(env.scheduler_config()?);
    let sleep = json!({"seconds": 0});

    let every_second = id_of(
        &create(
            &env,
            json!({"name": "tick", "kind": "sleep", "payload": sleep, "interval": {"every": 1, "period": "seconds"}}),
        )
        .await?,
    )?;
    let yearly = id_of(&create(&env, json!({"name": "yearly", "kind": "sleep", "payload": sleep, "cron": {"expr": "0 0 1 1 *", "timezone": "UTC"}})).await?)?;
    let soon = (Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let clocked = id_of(
        &create(
            &env,
            json!({"name": "soon", "kind": "sleep", "payload": sleep, "clocked": {"at": soon}}),
        )
        .await?,
    )?;

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ticks = jobs_of(&env, every_second).await?;
    assert!(
        (2..=5).contains(&ticks.len()),
        "about one job a second: {}",
        ticks.len()
    );
    assert!(
        ticks
            .iter()
            .all(|j| j["enqueued_at"].is_string() && j["schedule_id"] == every_second.to_string())
    );
    assert_eq!(jobs_of(&env, clocked).await?.len(), 1);
    assert!(jobs_of(&env, yearly).await?.is_empty());

    // An edit takes effect without a restart.
    let edited_at = std::time::Instant::now();
    let (status, _) = env
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/schedules/{yearly}"),
            Some(json!({"cron": {"expr": "* * * * * *", "timezone": "UTC"}})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    loop {
        if !jobs_of(&env, yearly).await?.is_empty() {
            break;
        }
        assert!(
            edited_at.elapsed() < Duration::from_secs(3),
            "the edited schedule fired within its new second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Run now.
    let (status, job) = env.post(&format!("/api/v1/schedules/{clocked}/run"), json!({})).await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(job["schedule_id"], clocked.to_string());
    env.wait_state(rushes_tests::job_id(&job)?, "succeeded", Duration::from_secs(10))
        .await?;
    Ok(())
}

/// The leader's PostgreSQL session names its process.
async fn leader_pid(env: &TestEnv) -> anyhow::Result<Option<u32>> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(&env.db)
    .await?;
    Ok(name.and_then(|n| n.rsplit(' ').next().and_then(|p| p.parse().ok())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_never_fires_a_due_time_twice() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    for _ in 0..3 {
        env.spawn_scheduler_process(&[])?;
    }
    let id = id_of(&create(&env, json!({"name": "tick", "kind": "sleep", "payload": {"seconds": 0}, "interval": {"every": 1, "period": "seconds"}})).await?)?;

    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let Some(pid) = leader_pid(&env).await? else {
            anyhow::bail!("no leader")
        };
        env.signal(pid, 9)?;
        env.wait_process(pid, Duration::from_secs(5)).await?;
        env.spawn_scheduler_process(&[])?;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let fired: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT scheduled_for, enqueued_at FROM jobs WHERE schedule_id = $1 ORDER BY scheduled_for")
            .bind(id)
            .fetch_all(&env.db)
            .await?;
    assert!(fired.len() >= 6, "fired through the failovers: {}", fired.len());
    let mut dues: Vec<DateTime<Utc>> = fired.iter().map(|f| f.0).collect();
    dues.dedup();
    assert_eq!(dues.len(), fired.len(), "no due time fired twice");
    for pair in fired.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap <= chrono::Duration::seconds(5), "gap of {gap} between fires");
    }
    Ok(())
}
