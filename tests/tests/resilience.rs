//! Failure modes: a worker killed mid-job, SIGTERM with jobs in flight, the broker
//! unreachable at enqueue, and RabbitMQ's consumer timeout under a long job.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_common::job::QueueFamily;
use rushes_tests::broker_node::BrokerNode;
use rushes_tests::proxy::Proxy;
use rushes_tests::{TestEnv, amqp_url, dead_port, job_id};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

/// A proxy in front of the test broker, `up` or not: a broker node that can go away.
async fn broker_proxy(up: bool) -> anyhow::Result<Proxy> {
    let rabbit = amqp_url().parse::<lapin::uri::AMQPUri>().map_err(anyhow::Error::msg)?;
    let target = format!("{}:{}", rabbit.authority.host, rabbit.authority.port).parse()?;
    Proxy::start(target, up).await
}
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_its_worker_being_killed() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let pid = env.spawn_worker_process("maintenance=1", &[])?;
    let id = env.sleep_job(2.0, None).await?;
    let running = env.wait_state(id, "running", T).await?;
    let first_worker = running["worker_id"].clone();

    env.signal(pid, SIGKILL)?;
    env.wait_process(pid, Duration::from_secs(5)).await?;
    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);

    let done = env.wait_state(id, "succeeded", T).await?;
    assert_eq!(
        done["attempts"], 2,
        "the killed attempt and the one that completed: {done}"
    );
    assert_ne!(done["worker_id"], first_worker, "completed on another worker");
    // Copies of the message still in flight (the broker's redelivery) change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = env.job(id).await?;
    assert_eq!(
        (later["state"].as_str(), later["attempts"].as_i64()),
        (Some("succeeded"), Some(2)),
        "{later}"
    );
    assert_eq!(later["finished_at"], done["finished_at"], "recorded once");
    Ok(())
}

/// A lease far longer than the test: only the dead worker's released liveness lock can
/// let its job run again in time.
const LONG_LEASE: [(&str, &str); 2] = [("RUSHES_STALE_AFTER", "120"), ("RUSHES_HEARTBEAT_INTERVAL", "2")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_restarts_elsewhere_without_waiting_for_the_lease() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let first = env.spawn_worker_process("maintenance=1", &LONG_LEASE)?;
    let id = env.sleep_job(8.0, None).await?;
    let running = env.wait_state(id, "running", T).await?;
    let _second = env.spawn_worker_process("maintenance=1", &LONG_LEASE)?;
    env.wait_consumers(QueueFamily::Maintenance, 2, T).await?;

    env.signal(first, SIGKILL)?;
    let killed = std::time::Instant::now();
    let again = env
        .wait_job(id, Duration::from_secs(20), |j| {
            j["attempts"] == 2 && j["state"] == "running"
        })
        .await?;
    let took = killed.elapsed();
    eprintln!("the job restarted on the other worker {took:?} after the kill");
    assert!(
        took < Duration::from_secs(10),
        "restarted {took:?} after the kill: sooner than the 120-s lease, but not at once"
    );
    assert_ne!(again["worker_id"], running["worker_id"], "on the other worker: {again}");
    let done = env.wait_state(id, "succeeded", T).await?;
    assert_eq!(done["attempts"], 2, "{done}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_requeues_in_flight_jobs() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let pid = env.spawn_worker_process("maintenance=2", &[("RUSHES_SHUTDOWN_GRACE", "1.5")])?;
    let short = env.sleep_job(0.8, None).await?;
    let long = env.sleep_job(4.0, None).await?;
    env.wait_state(short, "running", T).await?;
    env.wait_state(long, "running", T).await?;

    env.signal(pid, SIGTERM)?;
    let code = env.wait_process(pid, Duration::from_secs(15)).await?;
    assert_eq!(code, Some(0), "a drained worker exits 0");
    let short_job = env.job(short).await?;
    assert_eq!(
        short_job["state"], "succeeded",
        "finished within the grace period: {short_job}"
    );
    let long_job = env.job(long).await?;
    assert_eq!(long_job["state"], "queued", "requeued: {long_job}");
    assert_eq!(long_job["attempts"], 0, "the interrupted attempt does not count");
    let (_, workers) = env.get("/api/v1/workers?all=true").await?;
    assert!(workers["workers"][0]["stopped_at"].is_string(), "{workers}");

    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);
    let done = env.wait_state(long, "succeeded", T).await?;
    assert_eq!(done["attempts"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_while_the_broker_is_down_runs_once_it_is_back() -> anyhow::Result<()> {
    let proxy = broker_proxy(false).await?;
    let mut env = TestEnv::on_broker(&amqp_url(), &proxy.amqp_url()).await?;
    let worker = env.worker_config("maintenance=1")?;
    env.spawn_worker(worker);
    let mut relay = env.scheduler_config()?;
    relay.broker.amqp_url = rushes_common::config::Secret::new(proxy.amqp_url());
    env.spawn_scheduler(relay);

    let (status, created) = env
        .post("/api/v1/jobs", json!({"kind": "sleep", "payload": {"seconds": 0}}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["published_at"].is_null(), "not published: {created}");
    let id = job_id(&created)?;
    let ready = env.http.get(env.url("/readyz")).send().await?;
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "unready while the broker is unreachable"
    );
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(
        (body["database"].as_str(), body["broker"].as_str()),
        (Some("ok"), Some("unreachable")),
        "the unauthenticated probe names what is down, not the error text: {body}"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = env.job(id).await?;
    assert_eq!(waiting["state"], "queued", "waits, committed, while the broker is down");
    assert!(
        waiting["wait_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("not handed to the broker yet")),
        "an unpublished job older than its enqueuer's deferred stamp says so: {waiting}"
    );

    proxy.up();
    // `published_at` is recorded after the broker's confirm, which a fast worker can beat.
    let done = env
        .wait_job(id, T, |j| j["state"] == "succeeded" && j["published_at"].is_string())
        .await?;
    assert_eq!(done["attempts"], 1, "ran once: {done}");
    let ready = env.http.get(env.url("/readyz")).send().await?;
    assert_eq!(ready.status(), StatusCode::OK);
    Ok(())
}

/// RabbitMQ closes a channel whose delivery stays unacknowledged past
/// `consumer_timeout` (30 min by default). A private node with a 2-second timeout
/// (checked every 500 ms) shows a long job is neither lost nor run twice: its
/// redelivered message finds the job held by a live worker and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_consumer_timeout_runs_once() -> anyhow::Result<()> {
    if !BrokerNode::available() {
        eprintln!("skipped: no RabbitMQ server install to start a private node from");
        return Ok(());
    }
    let node = BrokerNode::start("consumer_timeout = 2000", "{channel_tick_interval, 500}").await?;
    let mut env = TestEnv::on_broker(&node.amqp_url(), &node.amqp_url()).await?;
    let metrics_addr = dead_port()?;
    let mut worker = env.worker_config("maintenance=2")?;
    worker.metrics_addr = metrics_addr;
    env.spawn_worker(worker);

    let long = env.sleep_job(8.0, Some(50)).await?;
    env.wait_state(long, "running", T).await?;
    // Traffic through the other slot keeps the channel awake, as on a busy node: an
    // idle channel hibernates and RabbitMQ skips its timeout check.
    let mut short = Vec::new();
    while env.job(long).await?["state"] == "running" {
        short.push(env.sleep_job(0.0, None).await?);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let done = env.wait_state(long, "succeeded", T).await?;
    assert_eq!(done["attempts"], 1, "never run twice: {done}");
    for id in short {
        env.wait_state(id, "succeeded", T).await?;
    }
    let metrics = env
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let rechecked = metrics
        .lines()
        .find(|l| l.starts_with("rushes_duplicate_deliveries_total") && l.contains("rechecked"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        rechecked >= 1.0,
        "the broker did time the delivery out and redeliver it:\n{metrics}"
    );
    Ok(())
}

/// After a broker outage a worker reconnects on its own, re-declares the topology and
/// consumes again; its readiness is red while it cannot consume (Celery's #2077, #3201).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_moves_to_the_next_broker_node_when_its_node_goes() -> anyhow::Result<()> {
    // Two nodes of one broker: a proxy in front of it, then the broker itself. A first
    // URL that answers nothing is passed over from the start.
    let proxy = broker_proxy(true).await?;
    let mut env = TestEnv::new().await?;
    let mut worker = env.worker_config("maintenance=1")?;
    let nowhere = format!("amqp://guest:guest@{}/%2f", dead_port()?);
    worker.broker.amqp_url =
        rushes_common::config::Secret::new(format!("{nowhere}, {},{}", proxy.amqp_url(), amqp_url()));
    env.spawn_worker(worker);
    let first = env.sleep_job(0.0, None).await?;
    env.wait_state(first, "succeeded", T).await?;
    assert!(proxy.connections() > 0, "the first node that answers is the one used");

    proxy.down();
    let after = env.sleep_job(0.0, None).await?;
    env.wait_state(after, "succeeded", T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reconnects_after_a_broker_outage() -> anyhow::Result<()> {
    let proxy = broker_proxy(true).await?;
    let mut env = TestEnv::new().await?;
    let metrics_addr = dead_port()?;
    let mut worker = env.worker_config("maintenance=1")?;
    worker.broker.amqp_url = rushes_common::config::Secret::new(proxy.amqp_url());
    worker.metrics_addr = metrics_addr;
    env.spawn_worker(worker);
    let readyz = format!("http://{metrics_addr}/readyz");
    let status = |env: &TestEnv| {
        let request = env.http.get(readyz.clone()).send();
        async move { request.await.map(|r| r.status()).ok() }
    };

    let first = env.sleep_job(0.0, None).await?;
    env.wait_state(first, "succeeded", T).await?;
    assert_eq!(status(&env).await, Some(StatusCode::OK));

    proxy.down();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&env).await != Some(StatusCode::SERVICE_UNAVAILABLE) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness turns red while disconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = env.sleep_job(0.0, None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.job(during).await?["state"],
        "queued",
        "not consumed while the worker is cut off"
    );

    proxy.up();
    env.wait_state(during, "succeeded", T).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status(&env).await != Some(StatusCode::OK) {
        assert!(tokio::time::Instant::now() < deadline, "ready again once reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stored system log has the outage and the reconnection, in that order.
    let logs = env
        .get_until("/api/v1/logs?service=worker&system=true&limit=100", T, |body| {
            body.to_string().contains("lost the broker")
                && body["lines"].as_array().is_some_and(|l| {
                    l.iter()
                        .filter(|line| {
                            line["message"]
                                .as_str()
                                .unwrap_or_default()
                                .contains("connected to the broker")
                        })
                        .count()
                        >= 2
                })
        })
        .await?;
    let messages: Vec<&str> = logs["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .filter(|m| m.contains("broker"))
        .collect();
    // Newest first: connected (again), lost, connected (at start).
    assert!(
        messages.len() >= 3
            && messages[0].contains("connected to the broker")
            && messages[1].contains("lost the broker"),
        "{messages:?}"
    );
    Ok(())
}
