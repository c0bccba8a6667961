//! `rushesctl` against a real control plane, worker, PostgreSQL and RabbitMQ: tables and
//! `--json`, each command group changing what the API then reports, and exit codes that
//! say what failed (usage, unreachable, not found, refused, invalid) with the API's
//! message.

use std::process::Output;
use std::time::Duration;

use anyhow::Context as _;
use rushes_tests::{TOKEN, TestEnv, binary_path};
use serde_json::Value;

/// Runs `rushesctl` against `env` with `token` (none: unauthenticated).
async fn ctl(env: &TestEnv, token: Option<&str>, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = tokio::process::Command::new(binary_path("rushesctl-under-test")?);
    command
        .args(args)
        .env("RUSHES_URL", env.url(""))
        .env("HOME", &env.scratch)
        .env_remove("RUSHES_TOKEN")
        .env_remove("RUSHESCTL_CONFIG");
    if let Some(token) = token {
        command.env("RUSHES_TOKEN", token);
    }
    Ok(tokio::time::timeout(Duration::from_secs(60), command.output()).await??)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&output.stdout).with_context(|| format!("not JSON: {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rushesctl_operates_the_fleet_and_says_what_failed() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.spawn_worker(env.worker_config("maintenance=1")?);
    let admin = Some(TOKEN);

    // Queues: a table, then --json; pause and resume change what the API reports.
    let listed = ctl(&env, admin, &["queues", "list"]).await?;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let table = stdout(&listed);
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("maintenance")), "{table}");
    let paused = ctl(
        &env,
        admin,
        &["queues", "pause", "maintenance", "--reason", "disk swap"],
    )
    .await?;
    assert!(paused.status.success(), "{}", stderr(&paused));
    let queues = json(&ctl(&env, admin, &["queues", "list", "--json"]).await?)?;
    let maintenance = queues["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == "maintenance"))
        .context("the maintenance queue")?;
    assert_eq!(maintenance["paused"], true, "{maintenance}");
    assert!(
        ctl(&env, admin, &["queues", "resume", "maintenance"])
            .await?
            .status
            .success()
    );

    // Jobs: enqueue, show, list; cancel another; retry it.
    let enqueued = ctl(
        &env,
        admin,
        &["jobs", "enqueue", "sleep", "--payload", r#"{"seconds": 0}"#],
    )
    .await?;
    assert!(enqueued.status.success(), "{}", stderr(&enqueued));
    let id = stdout(&enqueued)
        .trim()
        .strip_prefix("enqueued ")
        .context("the enqueued job's id")?
        .to_owned();
    env.wait_state(id.parse()?, "succeeded", Duration::from_secs(30))
        .await?;
    let shown = stdout(&ctl(&env, admin, &["jobs", "show", &id]).await?);
    assert!(shown.lines().any(|l| l == "state: succeeded"), "{shown}");
    let listed = stdout(&ctl(&env, admin, &["jobs", "list", "--kind", "sleep"]).await?);
    assert!(listed.contains(&id), "{listed}");
    let long = json(
        &ctl(
            &env,
            admin,
            &["jobs", "enqueue", "sleep", "--payload", r#"{"seconds": 60}"#, "--json"],
        )
        .await?,
    )?;
    let long_id = long["id"].as_str().context("the long job")?.to_owned();
    env.wait_state(long_id.parse()?, "running", Duration::from_secs(30))
        .await?;
    assert!(ctl(&env, admin, &["jobs", "cancel", &long_id]).await?.status.success());
    env.wait_state(long_id.parse()?, "cancelled", Duration::from_secs(30))
        .await?;
    assert!(ctl(&env, admin, &["jobs", "retry", &long_id]).await?.status.success());

    // Schedules: created with an interval, listed, disabled, run now.
    let made = ctl(
        &env,
        admin,
        &[
            "schedules",
            "create",
            "nightly",
            "sleep",
            "--payload",
            r#"{"seconds": 0}"#,
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Europe/London",
        ],
    )
    .await?;
    assert!(made.status.success(), "{}", stderr(&made));
    let schedules = json(&ctl(&env, admin, &["schedules", "list", "--json"]).await?)?;
    let nightly = schedules["schedules"][0]["id"]
        .as_str()
        .context("the schedule")?
        .to_owned();
    assert_eq!(schedules["schedules"][0]["cron"]["timezone"], "Europe/London");
    assert!(
        ctl(&env, admin, &["schedules", "disable", &nightly])
            .await?
            .status
            .success()
    );
    assert!(
        ctl(&env, admin, &["schedules", "run", &nightly])
            .await?
            .status
            .success()
    );
    let (_, schedule) = env.get(&format!("/api/v1/schedules/{nightly}")).await?;
    assert_eq!(schedule["enabled"], false, "{schedule}");

    // Workers, dead letters, productions and users list.
    let workers = stdout(&ctl(&env, admin, &["workers", "list"]).await?);
    assert_eq!(workers.lines().count(), 2, "one worker under the heading: {workers}");
    for group in [["dead-letters", "list"], ["productions", "list"], ["users", "list"]] {
        let out = ctl(&env, admin, &group).await?;
        assert!(out.status.success(), "{group:?}: {}", stderr(&out));
    }

    // What failed, by exit code, with the API's message.
    let bad_json = ctl(&env, admin, &["jobs", "enqueue", "sleep", "--payload", "{"]).await?;
    assert_eq!(
        bad_json.status.code(),
        Some(2),
        "a payload that is not JSON is a usage error"
    );
    let no_flag = ctl(&env, admin, &["jobs", "list", "--no-such-flag"]).await?;
    assert_eq!(no_flag.status.code(), Some(2));
    let unknown = ctl(&env, admin, &["jobs", "show", "0190a5d0-0000-7000-8000-000000000000"]).await?;
    assert_eq!(unknown.status.code(), Some(4), "{}", stderr(&unknown));
    let refused = ctl(&env, None, &["queues", "list"]).await?;
    assert_eq!(refused.status.code(), Some(5), "{}", stderr(&refused));
    let invalid = ctl(
        &env,
        admin,
        &["schedules", "create", "bad", "sleep", "--cron", "every now and then"],
    )
    .await?;
    assert_eq!(invalid.status.code(), Some(6), "{}", stderr(&invalid));
    assert!(
        stderr(&invalid).contains("cron"),
        "the API's message: {}",
        stderr(&invalid)
    );
    // The config file: url and token from ~/.config/rushes/rushesctl.toml; a key it does
    // not know is a usage error that names the file.
    let config = env.scratch.join(".config/rushes");
    std::fs::create_dir_all(&config)?;
    std::fs::write(
        config.join("rushesctl.toml"),
        format!("url = \"{}\"\ntoken = \"{TOKEN}\"\n", env.url("")),
    )?;
    let from_file = tokio::process::Command::new(binary_path("rushesctl-under-test")?)
        .args(["queues", "list", "--json"])
        .env("HOME", &env.scratch)
        .env_remove("RUSHES_URL")
        .env_remove("RUSHES_TOKEN")
        .env_remove("RUSHESCTL_CONFIG")
        .output()
        .await?;
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert!(json(&from_file)?["queues"].is_array());
    std::fs::write(config.join("rushesctl.toml"), "tokn = \"typo\"\n")?;
    let typo = ctl(&env, admin, &["queues", "list"]).await?;
    assert_eq!(typo.status.code(), Some(2), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("rushesctl.toml"), "{}", stderr(&typo));

    let away = tokio::process::Command::new(binary_path("rushesctl-under-test")?)
        .args(["queues", "list"])
        .env("RUSHES_URL", format!("http://{}", rushes_tests::dead_port()?))
        .env("RUSHES_TOKEN", TOKEN)
        .output()
        .await?;
    assert_eq!(away.status.code(), Some(3), "{}", stderr(&away));
    Ok(())
}
