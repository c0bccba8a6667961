//! Untrusted input end to end: playlists (HLS, DASH) posing as media are refused by
//! every ffprobe and ffmpeg a worker runs, whatever their name and wherever they come
//! from (an upload, a review file, a production folder, a clip replaced after its
//! scan), and nothing they name is read; symlinks stay inside their production; files
//! with too many audio tracks are refused; a flood of malformed messages is
//! dead-lettered while the worker keeps working.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use rushes_common::queue::REASON_HEADER;
use rushes_tests::media::{Clip, Playlist, ffprobe, write_audio_tracks};
use rushes_tests::{QueueFamily, TestEnv, amqp_url, job_id};
use serde_json::{Value, json};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// A real clip outside the media roots and the data folder: what a playlist would leak.
fn secret(env: &TestEnv) -> anyhow::Result<PathBuf> {
    let path = env.scratch.join("outside/secret.mov");
    Clip::default().write(&path)?;
    Ok(path)
}

/// Writes `playlist` naming `target` at `path`, and checks that an ffprobe without the
/// allowlist does read `target` through it: the attack is real.
fn plant(path: &Path, playlist: Playlist, target: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, playlist.naming(target))?;
    let probed = ffprobe(path)?;
    anyhow::ensure!(
        probed["format"]["format_name"] == playlist.format()
            && probed["streams"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["codec_name"] == "h264")),
        "an unrestricted ffprobe reads the secret through {}: {probed}",
        path.display()
    );
    Ok(())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for item in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = item.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Checks a refused transcode job: failed at its first attempt, naming `format`.
fn assert_refused(job: &Value, format: &str) {
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "not retried: {job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("container format `{format}` is refused")),
        "the error names `{format}`: {job}"
    );
}

/// The only file an upload's folder holds after a refused transcode is its original.
fn assert_nothing_made(env: &TestEnv) {
    let made: Vec<PathBuf> = files_under(&env.data_dir)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "original"))
        .collect();
    assert!(made.is_empty(), "no proxy, WAV or poster: {made:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_uploaded_for_transcription_fail_naming_their_format() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1,transcribe=1").await?;
    let secret = secret(&env)?;
    for (playlist, name) in [
        (Playlist::Hls, "interview"),
        (Playlist::Hls, "interview.mov"),
        (Playlist::Dash, "interview.mp4"),
    ] {
        let file = env.scratch.join("to-upload").join(name);
        plant(&file, playlist, &secret)?;
        let form = Form::new()
            .part("file", Part::bytes(std::fs::read(&file)?).file_name(name.to_owned()))
            .text("title", name.to_owned());
        let (status, made) = env.upload("/api/v1/uploads", form).await?;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let job = env
            .wait_job(job_id(&made["job"])?, WAIT, |j| {
                j["state"] != "queued" && j["state"] != "running"
            })
            .await?;
        assert_refused(&job, playlist.format());

        let upload = made["upload"]["id"].as_str().unwrap_or_default();
        let (_, shown) = env.get(&format!("/api/v1/uploads/{upload}")).await?;
        assert_eq!(shown["transcode_state"], "failed", "{shown}");
        assert_eq!(shown["container"], Value::Null, "nothing was probed: {shown}");
        assert_eq!(shown["duration_s"], Value::Null, "{shown}");
        let transcript = made["transcript_id"].as_str().unwrap_or_default();
        let transcribed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'transcribe'")
            .fetch_one(&env.db)
            .await?;
        assert_eq!(transcribed, 0, "transcript {transcript} was never queued");
    }
    assert_nothing_made(&env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_uploaded_as_review_files_fail_naming_their_format() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1").await?;
    std::fs::create_dir_all(env.media_root.join("review"))?;
    let production = env.production("Review", 1, "review", None).await?;
    let pid = production["id"].as_str().unwrap_or_default();
    let secret = secret(&env)?;
    for (playlist, name) in [(Playlist::Hls, "cut v1.mov"), (Playlist::Dash, "cut v2.mp4")] {
        let file = env.scratch.join("to-upload").join(name);
        plant(&file, playlist, &secret)?;
        let form = Form::new().part("file", Part::bytes(std::fs::read(&file)?).file_name(name.to_owned()));
        let (status, made) = env
            .upload(&format!("/api/v1/productions/{pid}/review-files"), form)
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let job = env
            .wait_job(job_id(&made["job"])?, WAIT, |j| {
                j["state"] != "queued" && j["state"] != "running"
            })
            .await?;
        assert_refused(&job, playlist.format());
        let file_id = made["review_file"]["id"].as_str().unwrap_or_default();
        let (_, shown) = env.get(&format!("/api/v1/review-files/{file_id}")).await?;
        assert_eq!(shown["transcode_state"], "failed", "{shown}");
        assert!(
            shown["media"].get("proxy").is_none_or(Value::is_null),
            "no proxy: {shown}"
        );
    }
    assert_nothing_made(&env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlists_in_a_production_folder_are_skipped_naming_their_format() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    let secret = secret(&env)?;
    let show = env.media_root.join("show");
    Clip::default().write(&show.join("A001/A001C001.mov"))?;
    plant(&show.join("A001/A001C002.mov"), Playlist::Hls, &secret)?;
    plant(&show.join("A001/A001C003.mp4"), Playlist::Dash, &secret)?;

    let production = env.production("Playlists", 1, "show", None).await?;
    let job = env.scan(&production["id"]).await?;
    let result = &job["result"];
    assert_eq!(result["new"], 1, "only the real clip: {result}");
    assert_eq!(result["broken"], 2, "named like media, refused: {result}");
    assert_eq!(result["not_media"], 0, "{result}");
    assert_eq!(result["transcodes"], 1, "{result}");
    let skipped = result["skipped"].as_array().cloned().unwrap_or_default();
    for (path, format) in [("A001/A001C002.mov", "hls"), ("A001/A001C003.mp4", "dash")] {
        let skip = skipped
            .iter()
            .find(|s| s["path"] == path)
            .ok_or_else(|| anyhow::anyhow!("{path} skipped: {result}"))?;
        let reason = skip["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("container format `{format}` is refused")),
            "{path}: {reason}"
        );
    }
    let clips = env.clips(&production["id"]).await?;
    let paths: Vec<&str> = clips.iter().filter_map(|c| c["path"].as_str()).collect();
    assert_eq!(paths, ["A001/A001C001.mov"], "no clip for a playlist");
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM scan_skips WHERE path LIKE 'A001/A001C00%' ORDER BY path")
            .fetch_all(&env.db)
            .await?;
    assert_eq!(reasons.len(), 2, "recorded as skipped: {reasons:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_replaced_by_a_playlist_fails_its_transcode_naming_the_format() -> anyhow::Result<()> {
    let mut env = TestEnv::with_worker("scan=1").await?;
    let secret = secret(&env)?;
    let file = env.media_root.join("swap/C001.mov");
    Clip::default().write(&file)?;
    let production = env.production("Swap", 1, "swap", None).await?;
    env.scan(&production["id"]).await?;
    // After the scan, before the transcode: the clip becomes a playlist naming the secret.
    plant(&file, Playlist::Hls, &secret)?;
    let mut worker = env.worker_config("transcode=1")?;
    worker.transcode.video_hwaccel = "none".into();
    env.spawn_worker(worker);

    let pid = production["id"].as_str().unwrap_or_default();
    let clips = env
        .get_until(&format!("/api/v1/clips?production_id={pid}"), WAIT, |b| {
            b["clips"][0]["transcode_state"] == "failed"
        })
        .await?;
    let clip = &clips["clips"][0];
    let job = env
        .job(clip["transcode_job_id"].as_str().unwrap_or_default().parse()?)
        .await?;
    assert_refused(&job, "hls");
    let made = files_under(&env.data_dir);
    assert!(made.is_empty(), "no proxy, WAV or poster: {made:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_into_another_productions_folder_are_refused() -> anyhow::Result<()> {
    let mut env = TestEnv::with_worker("scan=1").await?;
    let (a, b) = (env.media_root.join("a"), env.media_root.join("b"));
    Clip::default().write(&a.join("own.mov"))?;
    Clip::default().write(&b.join("theirs.mov"))?;
    std::os::unix::fs::symlink(b.join("theirs.mov"), a.join("peek.mov"))?;
    std::os::unix::fs::symlink(a.join("own.mov"), a.join("alias.mov"))?;
    let first = env.production("Neighbours", 1, "a", None).await?;
    env.production("Neighbours", 2, "b", None).await?;

    let job = env.scan(&first["id"]).await?;
    let result = &job["result"];
    let refused = result["refused"].as_array().cloned().unwrap_or_default();
    assert_eq!(refused.len(), 1, "{result}");
    assert_eq!(refused[0]["path"], "peek.mov", "{result}");
    assert_eq!(
        refused[0]["reason"], "symlink leads outside the production's folder",
        "{result}"
    );
    let clips = env.clips(&first["id"]).await?;
    let mut paths: Vec<&str> = clips.iter().filter_map(|c| c["path"].as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["alias.mov", "own.mov"]);

    // The alias is turned towards the other production after the scan: its transcode refuses it.
    std::fs::remove_file(a.join("alias.mov"))?;
    std::os::unix::fs::symlink(b.join("theirs.mov"), a.join("alias.mov"))?;
    let alias = clips
        .iter()
        .find(|c| c["path"] == "alias.mov")
        .ok_or_else(|| anyhow::anyhow!("alias clip"))?;
    let transcode: Uuid = alias["transcode_job_id"].as_str().unwrap_or_default().parse()?;
    let mut worker = env.worker_config("transcode=1")?;
    worker.transcode.video_hwaccel = "none".into();
    env.spawn_worker(worker);
    let job = env.wait_state(transcode, "failed", WAIT).await?;
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("leads outside its production's folder")),
        "{job}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_with_more_than_64_audio_tracks_are_refused() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1").await?;
    let many = env.media_root.join("tracks/many.mov");
    write_audio_tracks(&many, 65)?;
    write_audio_tracks(&env.media_root.join("tracks/enough.mov"), 64)?;

    let form = Form::new().part("file", Part::bytes(std::fs::read(&many)?).file_name("many.mov"));
    let (status, made) = env.upload("/api/v1/uploads", form).await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let job = env
        .wait_job(job_id(&made["job"])?, WAIT, |j| {
            j["state"] != "queued" && j["state"] != "running"
        })
        .await?;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("65 audio tracks; at most 64")),
        "{job}"
    );

    let production = env.production("Tracks", 1, "tracks", None).await?;
    let job = env.scan(&production["id"]).await?;
    let result = &job["result"];
    assert_eq!(result["new"], 1, "64 tracks are fine: {result}");
    assert_eq!(result["skipped"][0]["path"], "many.mov", "{result}");
    assert!(
        result["skipped"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("65 audio tracks; at most 64")),
        "{result}"
    );
    Ok(())
}

/// One malformed message of variety `i % 8`: its body, content type and headers, and
/// what its dead letter's reason must say.
fn malformed(i: usize) -> (Vec<u8>, Option<&'static str>, FieldTable, &'static str) {
    let mut headers = FieldTable::default();
    let envelope = |v: Value, kind: &str| {
        json!({ "v": v, "id": Uuid::now_v7(), "kind": kind, "payload": {}, "attempt": 0 })
            .to_string()
            .into_bytes()
    };
    match i % 8 {
        0 => (format!("not json {i}").into_bytes(), None, headers, "malformed message"),
        1 => (
            envelope(json!(1), &format!("celery.task_{i}")),
            Some("application/json"),
            headers,
            "unknown job kind `celery.task_",
        ),
        2 => (
            envelope(json!(2 + i), "sleep"),
            Some("application/json"),
            headers,
            "unsupported envelope version",
        ),
        3 => (envelope(json!(1), "sleep"), None, headers, "no job"),
        4 => (
            envelope(json!(1), "sleep"),
            Some("application/x-python-serialize"),
            headers,
            "unsupported content type `application/x-python-serialize`",
        ),
        5 => (Vec::new(), None, headers, "malformed message"),
        6 => {
            headers.insert("x-evil".into(), AMQPValue::LongString(b"nul\0inside".to_vec().into()));
            (
                envelope(json!(1), "evil\0kind"),
                None,
                headers,
                "unknown job kind `evil",
            )
        }
        _ => (
            json!({ "v": "\u{0}", "id": 1 }).to_string().into_bytes(),
            None,
            headers,
            "malformed message",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_messages_on_every_queue_are_dead_lettered_and_the_worker_keeps_working()
-> anyhow::Result<()> {
    const MESSAGES: usize = 1000;
    let env = TestEnv::with_worker("scan=2,transcode=2,transcode_long=2,transcribe=1,email=2,maintenance=2").await?;
    let topology = env.publisher.broker().topology().clone();
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut confirms = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let family = QueueFamily::ALL[i % QueueFamily::ALL.len()];
        let (body, content_type, headers, _) = malformed(i);
        let mut properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        if let Some(content_type) = content_type {
            properties = properties.with_content_type(content_type.into());
        }
        let confirm = channel
            .basic_publish(
                topology.jobs_exchange().as_str().into(),
                family.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        anyhow::ensure!(confirm.await?.is_ack(), "the broker took every message");
    }

    // Every message is parked with a reason, from every queue.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&env.db)
            .await?;
        if parked == MESSAGES as i64 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{parked} of {MESSAGES} messages dead-lettered within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per_queue: Vec<(String, i64)> =
        sqlx::query_as("SELECT queue, count(*) FROM dead_letters WHERE reason <> '' GROUP BY queue ORDER BY queue")
            .fetch_all(&env.db)
            .await?;
    assert_eq!(per_queue.len(), QueueFamily::ALL.len(), "{per_queue:?}");
    assert_eq!(per_queue.iter().map(|(_, n)| n).sum::<i64>(), MESSAGES as i64);
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM dead_letters")
        .fetch_all(&env.db)
        .await?;
    for i in 0..8 {
        let (_, _, _, needle) = malformed(i);
        let count = reasons.iter().filter(|r| r.contains(needle)).count();
        assert!(count >= MESSAGES / 8, "{count} letters say {needle:?}");
    }
    let queues = env.publisher.broker().queue_stats().await?;
    assert!(queues.iter().all(|q| q.messages == 0), "job queues drained: {queues:?}");

    // The broker's dead-letter queue holds a copy of each, with the reason in its headers.
    let mut consumer = channel
        .basic_consume(
            topology.dead_letters().as_str().into(),
            "untrusted-test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut copies = 0;
    while copies < MESSAGES {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .map_err(|_| anyhow::anyhow!("{copies} of {MESSAGES} copies in the dead-letter queue"))?
            .ok_or_else(|| anyhow::anyhow!("dead-letter consumer ended"))??;
        let reason = delivery.properties.headers().as_ref().and_then(|h| {
            h.inner()
                .iter()
                .find(|(k, _)| k.as_str() == REASON_HEADER)
                .map(|(_, v)| v.clone())
        });
        assert!(
            matches!(&reason, Some(AMQPValue::LongString(r)) if !r.as_bytes().is_empty()),
            "a copy carries x-rushes-reason: {reason:?}"
        );
        copies += 1;
    }

    // And the worker still runs real work.
    let ok = env.sleep_job(0.0, None).await?;
    env.wait_state(ok, "succeeded", Duration::from_secs(20)).await?;
    Ok(())
}
