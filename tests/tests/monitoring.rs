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
