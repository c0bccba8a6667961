//! Stranded messages: queued jobs whose message the broker lost (here the queue is
//! purged with `rabbitmqctl purge_queue`) still run, each once, when the relay
//! re-publishes them; a queue that still holds its messages gets no duplicates.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use rushes_tests::{QueueFamily, TestEnv};
use uuid::Uuid;

const N: usize = 20;
const T: Duration = Duration::from_secs(30);

/// Ready messages in the test's maintenance queue.
async fn depth(env: &TestEnv) -> anyhow::Result<u32> {
    let stats = env.publisher.broker().queue_stats().await?;
    stats
        .iter()
        .find(|s| s.family == QueueFamily::Maintenance)
        .map(|s| s.messages)
        .context("no maintenance queue")
}

/// Waits until the maintenance queue holds at least `n` ready messages.
async fn wait_depth(env: &TestEnv, n: u32, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = depth(env).await?;
        if now >= n {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the maintenance queue holds {now} messages after {timeout:?}, not {n}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Published `queued` jobs in the database: the test's own, and any the scheduler's
/// built-in schedules (routine upkeep on the maintenance queue) enqueued meanwhile.
async fn published_queued(env: &TestEnv) -> anyhow::Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE state = 'queued' AND published_at IS NOT NULL AND queue = 'maintenance'",
    )
    .fetch_one(&env.db)
    .await?;
    Ok(u32::try_from(n)?)
}

/// Empties `queue` the way an operator (or a lost broker node) would: RabbitMQ's CLI.
fn purge(queue: &str) -> anyhow::Result<()> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "purge_queue", queue])
        .output()
        .context("this test needs RabbitMQ's `rabbitmqctl` on PATH to purge a queue")?;
    ensure!(
        output.status.success(),
        "rabbitmqctl purge_queue {queue} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_jobs_run_once_each_when_the_relay_publishes_them_again() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let mut ids: Vec<Uuid> = Vec::with_capacity(N);
    for _ in 0..N {
        ids.push(env.sleep_job(0.0, None).await?);
    }
    for id in &ids {
        env.wait_job(*id, T, |j| j["published_at"].is_string()).await?;
    }
    wait_depth(&env, N as u32, T).await?;

    // A leader whose stranded age is short: jobs waiting in a queue that still holds
    // their messages are left alone.
    let mut config = env.scheduler_config()?;
    config.stranded_after = Duration::from_secs(1);
    let _scheduler = env.spawn_scheduler(config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        depth(&env).await?,
        published_queued(&env).await?,
        "a queue holding every message gets no duplicates"
    );

    let queue = env.publisher.broker().topology().queue(QueueFamily::Maintenance);
    purge(&queue)?;
    // The relay sends each lost message once more, and not again while the broker holds
    // it. (A routine upkeep job the scheduler enqueued around the purge is lost and sent
    // again the same way: the queue holds one message per published job, whatever fired.)
    wait_depth(&env, N as u32, T)
        .await
        .context("the relay re-publishes the purged jobs")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        depth(&env).await?,
        published_queued(&env).await?,
        "re-published once, not every pass"
    );

    let worker = env.worker_config("maintenance=2")?;
    env.spawn_worker(worker);
    for id in &ids {
        let job = env.wait_state(*id, "succeeded", T).await?;
        assert_eq!(job["attempts"], 1, "ran once, on its first attempt: {job}");
    }
    Ok(())
}
