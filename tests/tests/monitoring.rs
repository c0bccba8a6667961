//! Monitoring: Prometheus finds every worker and scheduler through the control plane's
//! HTTP service discovery (each at the address it actually bound), and the control
//! plane's scrape carries what the alert rules read: the oldest queued job's age per
//! queue, whether PostgreSQL and RabbitMQ answer, and each worker's heartbeat age.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use rushes_tests::TestEnv;
use serde_json::Value;

/// The discovery document's targets with their `service` label.
fn targets(document: &Value) -> Vec<(String, String)> {
    document
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| {
            let service = group["labels"]["service"].as_str().unwrap_or_default().to_owned();
            group["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| t.as_str().map(|t| (t.to_owned(), service.clone())))
        })
        .collect()
}

/// The value of the first sample of `series` (a name with its labels, as rendered) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_the_fleet_and_the_control_plane_reports_what_alerts_read() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // A queued job no worker takes (no `maintenance` consumer): the oldest queued job ages.
    let waiting = env.sleep_job(0.1, None).await?;
    let first = env.spawn_worker(env.worker_config("transcode=1")?);
    env.spawn_worker(env.worker_config("scan=1")?);
    env.spawn_scheduler(env.scheduler_config()?);

    let discovered = env
        .get_until("/api/v1/prometheus/targets", Duration::from_secs(30), |d| {
            targets(d).len() == 3
        })
        .await?;
    let found = targets(&discovered);
    assert_eq!(found.iter().filter(|(_, s)| s == "worker").count(), 2, "{discovered}");
    assert_eq!(
        found.iter().filter(|(_, s)| s == "scheduler").count(),
        1,
        "{discovered}"
    );
    for (target, service) in &found {
        let scrape = env
            .http
            .get(format!("http://{target}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        assert!(
            scrape.contains("rushes_"),
            "the {service} at {target} serves its metrics: {scrape}"
        );
    }
    let worker_group = discovered
        .as_array()
        .and_then(|g| g.iter().find(|g| g["labels"]["queues"] == "scan"))
        .context("the scan worker's group")?;
    assert_eq!(worker_group["labels"]["gpus"], "0", "{worker_group}");
    assert!(worker_group["labels"]["host"].is_string(), "{worker_group}");

    // One scrape job's targets; a service that is not one is refused.
    let (status, workers) = env.get("/api/v1/prometheus/targets?service=worker").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(targets(&workers).iter().all(|(_, s)| s == "worker"), "{workers}");
    assert_eq!(targets(&workers).len(), 2, "{workers}");
    let (status, body) = env.get("/api/v1/prometheus/targets?service=database").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A worker that stops is no longer a target.
    env.stop_worker(first).await?;
    env.get_until(
        "/api/v1/prometheus/targets?service=worker",
        Duration::from_secs(10),
        |d| targets(d).len() == 1,
    )
    .await?;

    // What the alert rules read, from the control plane's own scrape.
    let mut scrape = String::new();
    for _ in 0..50 {
        scrape = env.http.get(env.url("/metrics")).send().await?.text().await?;
        if sample(&scrape, "rushes_queue_oldest_queued_seconds{queue=\"maintenance\"}").is_some_and(|age| age > 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sample(&scrape, "rushes_queue_oldest_queued_seconds{queue=\"maintenance\"}").is_some_and(|age| age > 0.0),
        "job {waiting} waits in the maintenance queue: {scrape}"
    );
    assert_eq!(
        sample(&scrape, "rushes_queue_oldest_queued_seconds{queue=\"scan\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&scrape, "rushes_dependency_up{dependency=\"postgres\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&scrape, "rushes_dependency_up{dependency=\"rabbitmq\"}"),
        Some(1.0)
    );
    let beats = scrape
        .lines()
        .filter(|l| l.starts_with("rushes_worker_heartbeat_age_seconds{"))
        .count();
    assert_eq!(
        beats, 1,
        "the running worker's heartbeat age, not the stopped one's: {scrape}"
    );
    Ok(())
}

/// Grafana's variables and interval macros as the panel check fills them: every value.
fn fill(expr: &str) -> String {
    let mut out = expr.replace("$__rate_interval", "1m");
    for name in ["host", "queue", "kind"] {
        out = out.replace(&format!("\"${name}\""), "\".*\"");
    }
    out
}

/// Every panel of the dashboard with its queries.
fn panels(dashboard: &Value) -> Vec<(String, Vec<String>)> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let exprs = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(fill))
                .collect();
            (p["title"].as_str().unwrap_or_default().to_owned(), exprs)
        })
        .collect()
}

/// Debian's Prometheus with the project's config (its copy: this fleet's control plane,
/// token file and rules, scraping every second), killed when dropped.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
}

impl Prometheus {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = env.scratch.join("prometheus");
        std::fs::create_dir_all(dir.join("data"))?;
        let token = dir.join("token");
        std::fs::write(&token, rushes_tests::TOKEN)?;
        let control = env
            .url("")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let alerts = project.join("deploy/prometheus/alerts.yml").canonicalize()?;
        let config = std::fs::read_to_string(project.join("deploy/prometheus/prometheus.yml"))?
            .replace("127.0.0.1:8080", &control)
            .replace("/var/lib/rushes/admin-token", &token.to_string_lossy())
            .replace("- alerts.yml", &format!("- {}", alerts.display()))
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("refresh_interval: 30s", "refresh_interval: 1s");
        std::fs::write(dir.join("prometheus.yml"), config)?;
        let listen = rushes_tests::dead_port()?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run prometheus (deploy/test.sh installs Debian's)")?;
        let prometheus = Self {
            child,
            url: format!("http://{listen}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..150 {
            if http
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(prometheus);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("Prometheus did not become ready")
    }

    async fn api(&self, http: &reqwest::Client, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let answer: Value = http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(answer["status"] == "success", "Prometheus {path}: {answer}");
        Ok(answer["data"].clone())
    }

    /// How many series `expr` returns now.
    async fn count(&self, http: &reqwest::Client, expr: &str) -> anyhow::Result<usize> {
        let data = self.api(http, "query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A real workload (a scan, a transcode, a transcription, sleeps, a failing job, a
/// schedule firing) scraped by a real Prometheus through service discovery: every
/// Grafana panel's query returns data (those about GPUs excepted: there is none here),
/// and every alert rule evaluates without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_shows_data_from_a_real_workload() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.spawn_worker(env.worker_config("maintenance=2,scan=1,transcode=1,transcode_long=1,transcribe=1")?);
    env.spawn_scheduler(env.scheduler_config()?);
    let prometheus = Prometheus::start(&env).await?;
    let http = reqwest::Client::new();

    let reading = rushes_tests::speech::librivox()?
        .into_iter()
        .next()
        .context("a recording")?;
    rushes_tests::media::speaking_clip(&reading.wav, 0.5, &env.media_root.join("Show/A001/A001C001.mov"))?;
    let production = env.production("Monitored", 1, "Show", None).await?;
    env.scan(&production["id"]).await?;
    for _ in 0..10 {
        env.sleep_job(0.2, None).await?;
    }
    env.enqueue(
        serde_json::json!({ "kind": "sleep", "payload": { "seconds": 0, "fail_attempts": 5 }, "max_attempts": 2 }),
    )
    .await?;
    let (status, schedule) = env
        .post(
            "/api/v1/schedules",
            serde_json::json!({ "name": "tick", "kind": "sleep", "payload": { "seconds": 0 }, "interval": { "every": 1, "period": "seconds" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let id = production["id"].as_str().context("the production")?;
    env.get_until(
        &format!("/api/v1/transcripts?production_id={id}"),
        Duration::from_secs(180),
        |b| b["transcripts"][0]["state"] == "done",
    )
    .await?;

    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        project.join("deploy/grafana/rushes-fleet.json"),
    )?)?;
    let all = panels(&dashboard);
    assert!(all.len() >= 15, "the dashboard's panels: {all:?}");
    let mut empty = Vec::new();
    for _ in 0..60 {
        empty.clear();
        for (title, exprs) in &all {
            if title.contains("GPU") {
                continue;
            }
            let mut series = 0;
            for expr in exprs {
                series += prometheus.count(&http, expr).await?;
            }
            if series == 0 {
                empty.push(title.clone());
            }
        }
        if empty.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(empty, Vec::<String>::new(), "panels without data");

    let targets = prometheus.api(&http, "targets", &[]).await?;
    let up: Vec<&str> = targets["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["health"] == "up")
        .filter_map(|t| t["labels"]["job"].as_str())
        .collect();
    for job in ["rushes-control", "rushes-worker", "rushes-scheduler"] {
        assert!(up.contains(&job), "{job} is scraped: {targets}");
    }
    let rules = prometheus.api(&http, "rules", &[]).await?;
    let erring: Vec<&Value> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["health"] == "err")
        .collect();
    let loaded = rules["groups"].as_array().map_or(0, Vec::len);
    assert!(loaded > 0, "the alert rules are loaded: {rules}");
    assert!(erring.is_empty(), "rules that fail to evaluate: {erring:?}");
    Ok(())
}
