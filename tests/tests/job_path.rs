//! The job path at speed keeps its guarantees: no worker hoards work another could
//! start, an urgent job overtakes a draining backlog, a worker killed mid-drain
//! loses nothing and records nothing twice, an urgent claim does not wait for a claim
//! batch stuck on a lock, and a dead worker's job is taken over as soon as its database
//! session ends (a live one's never before its lease). The store's shortcuts keep the
//! rows right: an enqueue's answer is the rows as stored, and a
//! claim stamps `published_at` where the enqueuer's deferred stamp has not landed.
//! A quick claim writes nothing, yet every claim respects it, its outcome lands once
//! and only on the job still waiting for it, and a job that runs long under it is
//! claimed the ordinary way.

use std::collections::HashSet;
use std::time::Duration;

use rushes_common::job::audit;
use rushes_common::job::sleep::Sleep;
use rushes_common::job::store::{self, Attempt, Claim, NewJob, Outcome, QuickClaim, enqueue};
use rushes_common::job::{JobRecord, JobState, QueueFamily};
use rushes_tests::TestEnv;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const SIGKILL: i32 = 9;
const T: Duration = Duration::from_secs(60);

/// `n` `sleep 0` jobs at `priority`, committed and published in batches.
async fn backlog(env: &TestEnv, n: usize, priority: u8) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let jobs = chunk
            .iter()
            .map(|_| NewJob::of(&Sleep::seconds(0.0)).priority(priority))
            .collect();
        ids.extend(enqueue(&env.db, &env.publisher, jobs).await?.into_iter().map(|j| j.id));
    }
    Ok(ids)
}

/// Waits until none of `ids` is queued, running or retrying.
async fn wait_settled(env: &TestEnv, ids: &[Uuid], timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let active: i64 = audit::active(&env.db, ids).await?;
        if active == 0 {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{active} jobs still active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn at(job: &Value, field: &str) -> anyhow::Result<chrono::DateTime<chrono::FixedOffset>> {
    let text = job[field].as_str().unwrap_or_default();
    chrono::DateTime::parse_from_rfc3339(text).map_err(|e| anyhow::anyhow!("{field} {text:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_fed_short_jobs_do_not_hoard_long_ones() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    for _ in 0..2 {
        let worker = env.worker_config("maintenance=2")?;
        env.spawn_worker(worker);
    }
    // Both consume before the backlog: a worker alone drains 400 short jobs in moments.
    env.wait_consumers(QueueFamily::Maintenance, 2, T).await?;
    // Short jobs first: both workers now hold work ahead of their slots.
    let warm = backlog(&env, 400, 20).await?;
    wait_settled(&env, &warm, T).await?;
    let ran_on: Vec<i64> = sqlx::query_scalar("SELECT count(DISTINCT worker_id) FROM jobs WHERE id = ANY($1)")
        .bind(&warm)
        .fetch_all(&env.db)
        .await?;
    assert_eq!(ran_on, [2], "both workers ran the short jobs");

    let mut long = Vec::new();
    for _ in 0..4 {
        long.push(env.sleep_job(3.0, None).await?);
    }
    let mut jobs = Vec::new();
    for id in &long {
        jobs.push(env.wait_state(*id, "succeeded", T).await?);
    }
    // All four ran at the same time: each started before any of them finished.
    let last_start = jobs
        .iter()
        .map(|j| at(j, "started_at"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_end = jobs
        .iter()
        .map(|j| at(j, "finished_at"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (Some(last_start), Some(first_end)) = (last_start.iter().max(), first_end.iter().min()) else {
        anyhow::bail!("no jobs");
    };
    assert!(
        last_start < first_end,
        "a long job waited for another to finish (last start {last_start}, first end {first_end}): {jobs:?}"
    );
    let mut workers: Vec<String> = jobs.iter().map(|j| j["worker_id"].to_string()).collect();
    workers.sort();
    workers.dedup();
    assert_eq!(workers.len(), 2, "both workers ran long jobs: {jobs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_job_overtakes_a_draining_backlog() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // The control plane's publisher is warm (its first publish declares the topology).
    env.sleep_job(0.0, None).await?;
    let low = backlog(&env, 3000, 0).await?;
    let worker = env.worker_config("maintenance=2")?;
    env.spawn_worker(worker);
    // The drain is under way…
    env.wait_jobs(&low, "state = 'succeeded'", 1, T).await?;
    let mut urgent = Vec::new();
    for _ in 0..5 {
        urgent.push(env.sleep_job(0.0, Some(100)).await?);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for id in &urgent {
        let job = env.wait_state(*id, "succeeded", T).await?;
        // Backlog jobs that started after the urgent one was enqueued and before it
        // started: at most the ones already held by the worker when it arrived.
        let overtook: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND started_at > $2::timestamptz AND started_at < $3::timestamptz",
        )
        .bind(&low)
        .bind(at(&job, "enqueued_at")?)
        .bind(at(&job, "started_at")?)
        .fetch_one(&env.db)
        .await?;
        let after: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND started_at > $2::timestamptz")
                .bind(&low)
                .bind(at(&job, "started_at")?)
                .fetch_one(&env.db)
                .await?;
        assert!(
            after > 0,
            "the backlog was drained before the urgent job started: not under load"
        );
        assert!(
            overtook <= 2 * 2 + 256,
            "{overtook} backlog jobs started between the urgent job's enqueue and its start: {job}"
        );
    }
    wait_settled(&env, &low, T).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_drain_loses_nothing_and_records_nothing_twice() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let ids = backlog(&env, 2000, 20).await?;
    let pid = env.spawn_worker_process("maintenance=2", &[])?;
    // Killed while it drains: some jobs done, some claimed, some outcomes in flight.
    env.wait_jobs(&ids, "state = 'succeeded'", 300, T).await?;
    env.signal(pid, SIGKILL)?;
    env.wait_process(pid, Duration::from_secs(5)).await?;
    let at_kill: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, finished_at FROM jobs WHERE id = ANY($1) AND state = 'succeeded'")
            .bind(&ids)
            .fetch_all(&env.db)
            .await?;
    assert!(at_kill.len() < ids.len(), "killed after the drain: nothing to check");

    let worker = env.worker_config("maintenance=2")?;
    env.spawn_worker(worker);
    wait_settled(&env, &ids, T).await?;
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state::text, count(*) FROM jobs WHERE id = ANY($1) GROUP BY 1")
            .bind(&ids)
            .fetch_all(&env.db)
            .await?;
    assert_eq!(states, [("succeeded".to_owned(), 2000)], "every job succeeded");
    // What the killed worker had recorded stands: no outcome was written twice.
    let rewritten: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN unnest($1::uuid[], $2::timestamptz[]) AS k(id, finished_at) \
         ON j.id = k.id WHERE j.finished_at <> k.finished_at",
    )
    .bind(at_kill.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(at_kill.iter().map(|(_, at)| *at).collect::<Vec<_>>())
    .fetch_one(&env.db)
    .await?;
    assert_eq!(rewritten, 0, "outcomes recorded before the kill were recorded again");
    let max_attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM jobs WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&env.db)
        .await?;
    assert!(
        max_attempts <= 2,
        "a job ran more than once after the kill: {max_attempts} attempts"
    );
    Ok(())
}

/// A worker row as a worker registers it; `liveness_lock` as a build that takes the lock says.
async fn register_worker(env: &TestEnv, liveness_lock: bool) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO workers (id, host, pid, version, queues, slots, liveness_lock) \
         VALUES ($1, 'test', 1, 'test', '{\"maintenance\": 1}', 1, $2)",
    )
    .bind(id)
    .bind(liveness_lock)
    .execute(&env.db)
    .await?;
    Ok(id)
}

async fn claim_one(env: &TestEnv, worker: Uuid, job: Uuid) -> anyhow::Result<Claim> {
    let mut claims = store::claim(&env.db, worker, Duration::from_secs(120), vec![job]).await?;
    claims.pop().ok_or_else(|| anyhow::anyhow!("no answer for {job}"))
}

/// Closes the holder's `session` and claims `job` for `worker` once PostgreSQL has
/// ended it (and released its locks, a moment after the close).
async fn claim_once_it_ends(
    env: &TestEnv,
    session: PgConnection,
    worker: Uuid,
    job: Uuid,
) -> anyhow::Result<Box<JobRecord>> {
    session.close().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match claim_one(env, worker, job).await? {
            Claim::Claimed(job) => return Ok(job),
            Claim::HeldElsewhere if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            claim => anyhow::bail!("the holder's session ended, yet the claim found {claim:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_taken_over_when_its_workers_session_ends_and_not_while_it_lives() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let holder = register_worker(&env, false).await?;
    let mut session = PgConnection::connect(&env.database_url()).await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(worker_lock_key($1))")
        .bind(holder)
        .fetch_one(&mut session)
        .await?;
    assert!(taken, "nobody else holds a new worker's lock");
    sqlx::query("UPDATE workers SET liveness_lock = true WHERE id = $1")
        .bind(holder)
        .execute(&mut session)
        .await?;
    let [job] = backlog(&env, 1, 0).await?[..] else {
        anyhow::bail!("one job was enqueued")
    };
    assert!(matches!(claim_one(&env, holder, job).await?, Claim::Claimed(_)));

    let other = register_worker(&env, true).await?;
    assert!(
        matches!(claim_one(&env, other, job).await?, Claim::HeldElsewhere),
        "the holder's session lives and its heartbeat is fresh: not taken over"
    );
    let claimed = claim_once_it_ends(&env, session, other, job).await?;
    assert_eq!((claimed.attempts, claimed.worker_id), (2, Some(other)));

    // A worker of a build without the lock never took one: its missing lock says nothing.
    let old_build = register_worker(&env, false).await?;
    let [job] = backlog(&env, 1, 0).await?[..] else {
        anyhow::bail!("one job was enqueued")
    };
    assert!(matches!(claim_one(&env, old_build, job).await?, Claim::Claimed(_)));
    assert!(matches!(claim_one(&env, other, job).await?, Claim::HeldElsewhere));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_stamps_a_job_its_enqueuer_has_not_stamped_yet() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let worker = register_worker(&env, false).await?;
    // Committed, never published by this process: no deferred stamp will land.
    let mut tx = store::Tx::begin(&env.db).await?;
    let job = tx.enqueue_one(NewJob::of(&Sleep::seconds(0.0))).await?.id;
    tx.commit_unpublished(&env.publisher).await?;
    let published_at = async || -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        Ok(sqlx::query_scalar("SELECT published_at FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&env.db)
            .await?)
    };
    assert_eq!(published_at().await?, None, "nothing stamped the job before its claim");

    let Claim::Claimed(claimed) = claim_one(&env, worker, job).await? else {
        anyhow::bail!("a queued job is claimed")
    };
    let stored = published_at().await?;
    assert!(stored.is_some(), "the claim wrote published_at: the job was delivered");
    assert_eq!(claimed.published_at, stored, "the claim returns the row it wrote");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_returns_the_rows_as_stored() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let jobs = vec![
        NewJob::of(&Sleep::seconds(0.5)).priority(70),
        NewJob::of(&Sleep::seconds(0.0)),
    ];
    let mut returned = enqueue(&env.db, &env.publisher, jobs).await?;
    returned.sort_by_key(|j| j.id);
    let ids: Vec<Uuid> = returned.iter().map(|j| j.id).collect();
    let stored: Vec<JobRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM jobs WHERE id = ANY($1) ORDER BY id",
        rushes_common::job::JOB_COLUMNS
    )))
    .bind(&ids)
    .fetch_all(&env.db)
    .await?;
    assert_eq!(stored.len(), 2, "both rows are committed");
    for (returned, stored) in returned.iter().zip(&stored) {
        assert!(returned.published_at.is_some(), "returned once published");
        // Stamped in the row a moment later (or by the claim): the one field that may differ.
        let (mut returned, mut stored) = (serde_json::to_value(returned)?, serde_json::to_value(stored)?);
        for row in [&mut returned, &mut stored] {
            row.as_object_mut().map(|o| o.remove("published_at"));
        }
        assert_eq!(returned, stored);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_claim_does_not_wait_for_the_claim_batch_in_flight() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let worker = env.worker_config("maintenance=2")?;
    env.spawn_worker(worker);
    env.wait_consumers(QueueFamily::Maintenance, 1, T).await?;
    // A job whose row another session holds: the worker's claim of it waits on the lock.
    let mut tx = store::Tx::begin(&env.db).await?;
    tx.enqueue_one(NewJob::of(&Sleep::seconds(0.0)).priority(0)).await?;
    let mut held = tx.commit_unpublished(&env.publisher).await?;
    let id = held
        .first()
        .map(|job| job.id)
        .ok_or_else(|| anyhow::anyhow!("no job"))?;
    let mut locker = PgConnection::connect(&env.database_url()).await?;
    let mut lock = locker.begin().await?;
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *lock)
        .await?;
    // Published without the relay's synchronous stamp, which would wait on the lock too.
    store::publish_or_leave_to_relay(&env.db, &env.publisher, &mut held).await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&env.db)
        .await?;
        if waiting > 0 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the worker never tried to claim the held job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The claim batch in flight is stuck; an urgent job is claimed beside it.
    let urgent = env.sleep_job(0.0, Some(100)).await?;
    env.wait_state(urgent, "succeeded", T).await?;
    let state: String = sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db)
        .await?;
    assert_eq!(state, "queued", "the stuck batch still waits for the lock");
    lock.rollback().await?;
    env.wait_state(id, "succeeded", T).await?;
    Ok(())
}

/// A quick claim of `job` in `session` for `worker`.
async fn claim_quick_one(session: &mut PgConnection, worker: Uuid, job: Uuid) -> anyhow::Result<QuickClaim> {
    let mut claims = store::claim_quick(session, worker, &[], &[job], &HashSet::new()).await?;
    claims.pop().ok_or_else(|| anyhow::anyhow!("no answer for {job}"))
}

/// Records that the quick-claimed `job` succeeded; whether it landed.
async fn succeed_quick(env: &TestEnv, worker: Uuid, job: &JobRecord) -> anyhow::Result<bool> {
    let outcome = (
        job.id,
        Attempt::quick(job),
        job.started_at,
        Outcome::Succeeded(Value::Null),
    );
    let landed = store::record_outcomes(&env.db, worker, vec![outcome]).await?;
    Ok(landed == [true])
}

/// Claim locks held in this test's database (of `job`, or of any job).
async fn claim_locks(env: &TestEnv, job: Option<Uuid>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 \
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND ($2::uuid IS NULL OR objid::int4 = hashtext($2::text))",
    )
    .bind(store::CLAIM_LOCK_CLASS)
    .bind(job)
    .fetch_one(&env.db)
    .await?)
}

async fn state_and_attempts(env: &TestEnv, job: Uuid) -> anyhow::Result<(String, i32)> {
    Ok(sqlx::query_as("SELECT state::text, attempts FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&env.db)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_claim_writes_nothing_and_every_claim_respects_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (worker, other) = (register_worker(&env, false).await?, register_worker(&env, false).await?);
    let [job] = backlog(&env, 1, 0).await?[..] else {
        anyhow::bail!("one job was enqueued")
    };
    let mut session = PgConnection::connect(&env.database_url()).await?;
    let QuickClaim::Claimed(claimed) = claim_quick_one(&mut session, worker, job).await? else {
        anyhow::bail!("a queued job is quick-claimed")
    };
    assert_eq!(
        (claimed.state, claimed.attempts),
        (JobState::Running, 1),
        "the attempt it runs"
    );
    assert!(claimed.started_at.is_some());
    assert_eq!(
        state_and_attempts(&env, job).await?,
        ("queued".to_owned(), 0),
        "nothing written"
    );

    // Held: by an ordinary claim, a quick one in another session, and this session's own.
    assert!(matches!(claim_one(&env, other, job).await?, Claim::HeldElsewhere));
    let mut elsewhere = PgConnection::connect(&env.database_url()).await?;
    let again = claim_quick_one(&mut elsewhere, other, job).await?;
    assert!(matches!(again, QuickClaim::Answered(Claim::HeldElsewhere)), "{again:?}");
    let mine = store::claim_quick(&mut session, worker, &[], &[job], &HashSet::from([job])).await?;
    assert!(
        matches!(mine[..], [QuickClaim::Answered(Claim::HeldElsewhere)]),
        "{mine:?}"
    );

    // The outcome is the one row version: queued → succeeded, attempt 1, once.
    assert!(succeed_quick(&env, worker, &claimed).await?, "the outcome lands");
    assert!(!succeed_quick(&env, worker, &claimed).await?, "and never twice");
    let (state, attempts, by, started): (String, i32, Option<Uuid>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT state::text, attempts, worker_id, started_at FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&env.db)
            .await?;
    assert_eq!((state.as_str(), attempts, by), ("succeeded", 1, Some(worker)));
    assert_eq!(started, claimed.started_at, "started when claimed");

    store::unlock(&mut session, &[job]).await?;
    assert!(matches!(
        claim_one(&env, other, job).await?,
        Claim::Settled(JobState::Succeeded)
    ));
    let settled = claim_quick_one(&mut elsewhere, other, job).await?;
    assert!(
        matches!(settled, QuickClaim::Answered(Claim::Settled(JobState::Succeeded))),
        "{settled:?}"
    );
    let missing = claim_quick_one(&mut elsewhere, other, Uuid::now_v7()).await?;
    assert!(matches!(missing, QuickClaim::Answered(Claim::Missing)), "{missing:?}");
    // Answers that claimed nothing hold no lock: only the jobs claimed are locked.
    let locks = claim_locks(&env, None).await?;
    assert_eq!(locks, 0, "no claim lock is left behind");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_claim_yields_to_a_cancel_a_requeue_a_running_claim_and_its_sessions_end() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (worker, other) = (register_worker(&env, false).await?, register_worker(&env, false).await?);
    let jobs = backlog(&env, 4, 0).await?;
    let [cancelled, requeued, orphaned, running] = jobs[..] else {
        anyhow::bail!("four jobs were enqueued")
    };
    let mut session = PgConnection::connect(&env.database_url()).await?;
    let mut claimed = Vec::new();
    for job in [cancelled, requeued, orphaned] {
        match claim_quick_one(&mut session, worker, job).await? {
            QuickClaim::Claimed(job) => claimed.push(*job),
            claim => anyhow::bail!("a queued job is quick-claimed, not {claim:?}"),
        }
    }

    // Cancelled while it ran: its outcome does not land.
    let mut tx = env.db.begin().await?;
    store::cancel(&mut tx, cancelled, "admin").await?;
    tx.commit().await?;
    assert!(!succeed_quick(&env, worker, &claimed[0]).await?);
    assert_eq!(state_and_attempts(&env, cancelled).await?, ("cancelled".to_owned(), 0));

    // Cancelled and requeued by an admin meanwhile: queued again at attempt 0, yet not ours.
    let mut tx = env.db.begin().await?;
    store::cancel(&mut tx, requeued, "admin").await?;
    tx.commit().await?;
    let mut tx = store::Tx::begin(&env.db).await?;
    store::requeue(&mut tx, requeued, "admin").await?;
    tx.commit(&env.publisher).await?;
    assert_eq!(state_and_attempts(&env, requeued).await?, ("queued".to_owned(), 0));
    assert!(
        !succeed_quick(&env, worker, &claimed[1]).await?,
        "the requeued job waits for a new claim"
    );

    // The holder's session ends (its process died): the job is claimed again.
    let retaken = claim_once_it_ends(&env, session, other, orphaned).await?;
    assert_eq!((retaken.attempts, retaken.worker_id), (1, Some(other)));
    assert!(
        !succeed_quick(&env, worker, &claimed[2]).await?,
        "the dead holder's outcome does not land"
    );

    // A job claimed the ordinary way is left to the ordinary claim, which decides.
    assert!(matches!(claim_one(&env, other, running).await?, Claim::Claimed(_)));
    let mut fresh = PgConnection::connect(&env.database_url()).await?;
    let ordinary = claim_quick_one(&mut fresh, worker, running).await?;
    assert!(matches!(ordinary, QuickClaim::Ordinary), "{ordinary:?}");
    let locks = claim_locks(&env, None).await?;
    assert_eq!(locks, 0, "a job not taken is not left locked");
    Ok(())
}

/// A worker of `maintenance=2` whose claims are quick: it has run 50 `sleep 0` jobs
/// (returned), so the queue's jobs are short.
async fn quick_lane(env: &mut TestEnv) -> anyhow::Result<Vec<Uuid>> {
    let worker = env.worker_config("maintenance=2")?;
    env.spawn_worker(worker);
    let warm = backlog(env, 50, 20).await?;
    wait_settled(env, &warm, T).await?;
    Ok(warm)
}

/// Waits until the claim locks of `job` in this test's database number `want`.
async fn wait_claim_locks(env: &TestEnv, job: Uuid, want: i64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while claim_locks(env, Some(job)).await? != want {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "job {job} never had {want} claim locks"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_claimed_job_cancelled_while_it_runs_stops_and_stays_cancelled() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    quick_lane(&mut env).await?;
    let job = env.sleep_job(30.0, None).await?;
    wait_claim_locks(&env, job, 1, T).await?;
    let (status, _) = env
        .post(&format!("/api/v1/jobs/{job}/cancel"), serde_json::json!({}))
        .await?;
    assert!(status.is_success(), "cancel answered {status}");
    // The run stops (far sooner than its 30 s) and its lock goes once it is settled.
    wait_claim_locks(&env, job, 0, Duration::from_secs(10)).await?;
    let (state, _) = state_and_attempts(&env, job).await?;
    assert_eq!(state, "cancelled", "no outcome overwrote the cancel");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_claimed_job_that_runs_long_is_claimed_the_ordinary_way() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let warm = quick_lane(&mut env).await?;
    let attempts: Vec<(String, i32, bool)> = sqlx::query_as(
        "SELECT state::text, attempts, worker_id IS NOT NULL FROM jobs WHERE id = ANY($1) GROUP BY 1, 2, 3",
    )
    .bind(&warm)
    .fetch_all(&env.db)
    .await?;
    assert_eq!(
        attempts,
        [("succeeded".to_owned(), 1, true)],
        "one attempt each, by the worker"
    );

    let long = env.sleep_job(1.5, None).await?;
    // Quick-claimed first (its claim lock taken, its row still queued), then promoted.
    let deadline = tokio::time::Instant::now() + T;
    let mut seen_locked = false;
    let row = loop {
        let locked = claim_locks(&env, Some(long)).await? > 0;
        let (state, attempts, beat): (String, i32, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as("SELECT state::text, attempts, heartbeat_at FROM jobs WHERE id = $1")
                .bind(long)
                .fetch_one(&env.db)
                .await?;
        seen_locked |= locked && state == "queued";
        if state != "queued" {
            break (state, attempts, beat);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the long job never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(seen_locked, "the long job was quick-claimed");
    assert_eq!(row.0, "running", "promoted while it runs");
    assert_eq!(row.1, 1);
    assert!(row.2.is_some(), "and heartbeating");
    let done = env.wait_state(long, "succeeded", T).await?;
    assert_eq!(done["attempts"], 1);
    Ok(())
}
