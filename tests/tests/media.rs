//! Productions, scanning and transcoding end to end: media generated with ffmpeg,
//! a real worker running ffprobe/ffmpeg, outputs checked with ffprobe.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::media::{Clip, ffprobe, gray_frame};
use rushes_tests::{TestEnv, job_id};
use serde_json::{Value, json};

const ALL_MEDIA: &str = "scan=1,transcode=1,transcode_long=1,email=1";
const WAIT: Duration = Duration::from_secs(90);

fn by_path<'a>(clips: &'a [Value], path: &str) -> anyhow::Result<&'a Value> {
    clips
        .iter()
        .find(|c| c["path"] == path)
        .ok_or_else(|| anyhow::anyhow!("no clip {path} in {clips:?}"))
}

async fn transcode_jobs(env: &TestEnv) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'transcode'")
        .fetch_one(&env.db)
        .await?)
}

/// Waits until every present clip of the production is transcoded (and its extras made).
async fn wait_transcoded(env: &TestEnv, production: &Value) -> anyhow::Result<Vec<Value>> {
    let id = production["id"].as_str().unwrap_or_default();
    env.get_until(&format!("/api/v1/clips?production_id={id}&missing=false"), WAIT, |b| {
        b["clips"].as_array().is_some_and(|clips| {
            !clips.is_empty()
                && clips
                    .iter()
                    .all(|c| c["transcode_state"] == "done" && c["outputs"].get("sprite").is_some())
        })
    })
    .await?;
    env.clips(&production["id"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reads_clips_and_rescans_are_idempotent() -> anyhow::Result<()> {
    let env = TestEnv::with_worker(ALL_MEDIA).await?;
    let show = env.media_root.join("show");
    Clip::default().write(&show.join("A001/A001C001.mov"))?;
    Clip {
        fps: "30000/1001",
        timecode: Some("01:02:03;04"),
        audio_tracks: 1,
        ..Clip::default()
    }
    .write(&show.join("Día 2 card/clip ünï.mov"))?;
    std::fs::write(show.join("A001/notes.txt"), "call sheet")?;
    std::fs::write(show.join("A001/fake.mov"), "this is not a movie")?;
    let mut truncated = std::fs::read(show.join("A001/A001C001.mov"))?;
    truncated.truncate(truncated.len() / 3);
    std::fs::write(show.join("A001/truncated.mov"), truncated)?;
    std::fs::create_dir_all(env.media_root.join("../elsewhere"))?;
    Clip::default().write(&env.media_root.join("../elsewhere/secret.mov"))?;
    std::os::unix::fs::symlink(
        env.media_root.join("../elsewhere/secret.mov"),
        show.join("A001/leak.mov"),
    )?;

    let production = env.production("Scan Show", 1, "show", None).await?;
    let job = env.scan(&production["id"]).await?;
    let result = &job["result"];
    assert_eq!(result["new"], 2, "{result}");
    assert_eq!(result["not_media"], 1, "the notes: {result}");
    assert_eq!(result["broken"], 2, "fake and truncated look like media: {result}");
    assert_eq!(result["refused"][0]["path"], "A001/leak.mov", "{result}");
    assert_eq!(result["transcodes"], 2);

    let clips = env.clips(&production["id"]).await?;
    assert_eq!(clips.len(), 2, "{clips:?}");
    let first = by_path(&clips, "A001/A001C001.mov")?;
    assert_eq!(first["card"], "A001");
    assert_eq!(first["start_timecode"], "10:00:00:00");
    assert_eq!(first["frame_rate"], 25.0);
    assert_eq!(first["audio_tracks"], 2);
    assert_eq!(first["audio_channels"], json!([1, 1]));
    assert_eq!(first["width"], 320);
    assert!(
        (first["duration_s"].as_f64().unwrap_or(0.0) - 2.0).abs() < 0.05,
        "{first}"
    );
    let second = by_path(&clips, "Día 2 card/clip ünï.mov")?;
    assert_eq!(second["card"], "Día 2 card");
    assert_eq!(second["frame_rate"], 29.97);
    assert_eq!(second["frame_rate_rational"], "30000/1001");
    assert_eq!(second["start_timecode"], "01:02:03;04");
    assert_eq!(second["audio_tracks"], 1);

    wait_transcoded(&env, &production).await?;
    let before: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT path, updated_at FROM clips ORDER BY path")
            .fetch_all(&env.db)
            .await?;
    let jobs_before = transcode_jobs(&env).await?;
    let again = env.scan(&production["id"]).await?;
    assert_eq!(again["result"]["unchanged"], true, "{}", again["result"]);
    let after: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT path, updated_at FROM clips ORDER BY path")
            .fetch_all(&env.db)
            .await?;
    assert_eq!(before, after, "an unchanged rescan writes nothing");
    assert_eq!(transcode_jobs(&env).await?, jobs_before);

    // A changed file is re-probed and re-transcoded; a deleted one is marked missing.
    Clip {
        seconds: 3.0,
        ..Clip::default()
    }
    .write(&show.join("A001/A001C001.mov"))?;
    std::fs::remove_file(show.join("Día 2 card/clip ünï.mov"))?;
    let third = env.scan(&production["id"]).await?;
    assert_eq!(third["result"]["changed"], 1, "{}", third["result"]);
    assert_eq!(third["result"]["missing"], 1, "{}", third["result"]);
    assert_eq!(transcode_jobs(&env).await?, jobs_before + 1);
    let clips = env.clips(&production["id"]).await?;
    assert_eq!(by_path(&clips, "Día 2 card/clip ünï.mov")?["missing"], true);
    let changed = by_path(&clips, "A001/A001C001.mov")?;
    assert!(
        (changed["duration_s"].as_f64().unwrap_or(0.0) - 3.0).abs() < 0.05,
        "{changed}"
    );
    wait_transcoded(&env, &production).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcode_makes_playable_outputs_served_with_ranges() -> anyhow::Result<()> {
    let env = TestEnv::with_worker(ALL_MEDIA).await?;
    Clip {
        seconds: 12.0,
        width: 640,
        height: 360,
        ..Clip::default()
    }
    .write(&env.media_root.join("tx/B001/B001C001.mov"))?;
    let production = env.production("Transcode Show", 1, "tx", None).await?;
    env.scan(&production["id"]).await?;
    let clips = wait_transcoded(&env, &production).await?;
    let clip = &clips[0];
    let dir = env.data_dir.join("clips").join(clip["id"].as_str().unwrap_or_default());

    let proxy = ffprobe(&dir.join("proxy.mp4"))?;
    let video = proxy["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_type"] == "video"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["height"], 360, "never upscaled");
    let duration: f64 = proxy["format"]["duration"].as_str().unwrap_or("0").parse()?;
    assert!((duration - 12.0).abs() <= 0.04 + 0.03, "proxy lasts {duration}s");
    let audio = proxy["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["codec_type"] == "audio").count());
    assert_eq!(audio, Some(1), "the proxy carries the mix");
    let wav = ffprobe(&dir.join("audio.wav"))?;
    assert_eq!(wav["streams"][0]["sample_rate"], "16000");
    assert_eq!(wav["streams"][0]["channels"], 1);
    assert!(ffprobe(&dir.join("track_2.m4a")).is_ok());
    assert!(dir.join("poster.jpg").is_file());
    let vtt = std::fs::read_to_string(dir.join("sprite.vtt"))?;
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert_eq!(vtt.matches("sprite.jpg#xywh=").count(), 3, "one cue per 5 s: {vtt}");
    assert!(dir.join("sprite.jpg").is_file() && dir.join("waveform.png").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no staging folder remains");

    // Served with range requests, from the clip's folder only.
    let url = clip["outputs"]["proxy"].as_str().unwrap_or_default();
    let response = env
        .http
        .get(env.url(url))
        .bearer_auth(rushes_tests::TOKEN)
        .header("Range", "bytes=0-99")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await?.len(), 100);
    let id = clip["id"].as_str().unwrap_or_default();
    for bad in ["..%2F..%2Fetc%2Fpasswd", "secret.mov", "track_x.m4a"] {
        let (status, _) = env.get(&format!("/api/v1/clips/{id}/media/{bad}")).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    let (status, _) = env.get(&format!("/api/v1/clips/{id}/related")).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_paths_must_stay_inside_the_media_roots() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    std::fs::create_dir_all(env.media_root.join("inside"))?;
    std::fs::create_dir_all(env.media_root.join("../outside"))?;
    std::os::unix::fs::symlink(env.media_root.join("../outside"), env.media_root.join("escape"))?;
    let (status, base) = env.post("/api/v1/base-productions", json!({ "name": "Roots" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{base}");
    assert!(base["group_id"].is_string(), "a namesake group is created");
    let (status, _) = env.post("/api/v1/base-productions", json!({ "name": "Roots" })).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let outside = env.media_root.join("../outside").to_string_lossy().into_owned();
    let body = |path: &str, series: i64| json!({ "base_production_id": base["id"], "series": series, "friendly_name": "S", "path": path });
    for bad in ["inside/../inside", outside.as_str(), "escape", "missing-folder", "/etc"] {
        let (status, err) = env.post("/api/v1/productions", body(bad, 1)).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("path:"),
            "{err}"
        );
    }
    let (status, ok) = env.post("/api/v1/productions", body("inside", 1)).await?;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    assert_eq!(ok["name"], "Roots Series 1");
    assert_eq!(ok["priority"], 20);
    let (status, _) = env.post("/api/v1/productions", body("inside", 1)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "one production per series");
    let unknown_base =
        json!({ "base_production_id": uuid::Uuid::now_v7(), "series": 2, "friendly_name": "S", "path": "inside" });
    let (status, _) = env.post("/api/v1/productions", unknown_base).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .post("/api/v1/productions", json!({ "base_production_id": base["id"], "series": 3, "friendly_name": "S", "path": "inside", "priority": 101 }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let response = env
        .http
        .post(env.url("/api/v1/productions"))
        .bearer_auth(rushes_tests::TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let missing = uuid::Uuid::now_v7();
    let (status, _) = env
        .post(&format!("/api/v1/productions/{missing}/scan"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env.get(&format!("/api/v1/clips/{missing}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env.get("/api/v1/clips?transcode_state=bogus").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Archived productions leave the default list; inactive ones are not scanned.
    let id = ok["id"].as_str().unwrap_or_default();
    let (status, _) = env
        .patch(
            &format!("/api/v1/productions/{id}"),
            json!({ "archived": true, "active": false }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = env.get("/api/v1/productions").await?;
    assert_eq!(list["productions"].as_array().map(Vec::len), Some(0));
    let (_, list) = env.get("/api/v1/productions?include_archived=true").await?;
    assert_eq!(list["productions"].as_array().map(Vec::len), Some(1));
    let (status, _) = env.post(&format!("/api/v1/productions/{id}/scan"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_input_fails_once_with_ffmpegs_reason() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    let file = env.media_root.join("bad/C001.mov");
    Clip::default().write(&file)?;
    let production = env.production("Corrupt Show", 1, "bad", None).await?;
    env.scan(&production["id"]).await?;
    // The file turns to garbage after the scan: the transcode must fail, permanently.
    std::fs::write(&file, vec![0x55u8; 4096])?;
    let mut worker = env.worker_config("transcode=1")?;
    worker.transcode.video_hwaccel = "none".into();
    let mut env = env;
    env.spawn_worker(worker);
    let clips = env
        .get_until(
            &format!(
                "/api/v1/clips?production_id={}",
                production["id"].as_str().unwrap_or_default()
            ),
            WAIT,
            |b| b["clips"][0]["transcode_state"] == "failed",
        )
        .await?;
    let clip = &clips["clips"][0];
    let job = env
        .job(clip["transcode_job_id"].as_str().unwrap_or_default().parse()?)
        .await?;
    assert_eq!(job["state"], "failed");
    assert_eq!(job["attempts"], 1, "no retries for bad input");
    let reason = clip["transcode_error"].as_str().unwrap_or_default();
    assert!(reason.starts_with("ffmpeg: "), "{reason}");
    assert!(
        reason.contains("Invalid data") || reason.contains("moov"),
        "ffmpeg's own words: {reason}"
    );
    Ok(())
}

/// A clip long enough that its transcode is still running when the test acts.
fn long_clip(path: &Path) -> anyhow::Result<()> {
    Clip {
        seconds: 120.0,
        width: 640,
        height: 360,
        codec: "mpeg4",
        audio_tracks: 1,
        ..Clip::default()
    }
    .write(path)
}

/// Scans the production (one long clip) and waits until its transcode reports progress.
async fn scan_until_transcoding(env: &TestEnv, production: &Value) -> anyhow::Result<(Value, uuid::Uuid)> {
    env.scan(&production["id"]).await?;
    let clip = env.clips(&production["id"]).await?.remove(0);
    let job: uuid::Uuid = clip["transcode_job_id"].as_str().unwrap_or_default().parse()?;
    env.wait_job(job, WAIT, |j| {
        j["state"] == "running" && j["progress"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await?;
    Ok((clip, job))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_transcode_kills_ffmpeg_and_leaves_no_partial_file() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1").await?;
    long_clip(&env.media_root.join("long/L001.mov"))?;
    let production = env.production("Cancel Show", 1, "long", None).await?;
    let (clip, job) = scan_until_transcoding(&env, &production).await?;
    let (status, _) = env.post(&format!("/api/v1/jobs/{job}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    env.wait_state(job, "cancelled", Duration::from_secs(10)).await?;
    let dir = env.data_dir.join("clips").join(clip["id"].as_str().unwrap_or_default());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing half-written stays: {left:?}");
    let clips = env.clips(&production["id"]).await?;
    assert_eq!(clips[0]["transcode_state"], "cancelled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_transcode_completes_on_the_next_worker() -> anyhow::Result<()> {
    let mut env = TestEnv::with_worker("scan=1").await?;
    long_clip(&env.media_root.join("kill/K001.mov"))?;
    let production = env.production("Kill Show", 1, "kill", None).await?;
    let pid = env.spawn_worker_process("transcode=1", &[("RUSHES_VIDEO_HWACCEL", "none")])?;
    let (clip, job) = scan_until_transcoding(&env, &production).await?;
    env.signal(pid, 9)?;
    let worker = env.worker_config("transcode=1,transcode_long=1")?;
    env.spawn_worker(worker);
    let done = env.wait_state(job, "succeeded", Duration::from_secs(180)).await?;
    assert_eq!(done["attempts"], 2, "{done}");
    let clips = env.clips(&production["id"]).await?;
    assert_eq!(clips[0]["transcode_state"], "done");
    let dir = env.data_dir.join("clips").join(clip["id"].as_str().unwrap_or_default());
    let proxy = ffprobe(&dir.join("proxy.mp4"))?;
    let duration: f64 = proxy["format"]["duration"].as_str().unwrap_or("0").parse()?;
    assert!((duration - 120.0).abs() < 0.1, "{duration}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_production_overtakes_a_backlog() -> anyhow::Result<()> {
    let mut env = TestEnv::with_worker("scan=1").await?;
    for i in 0..6 {
        Clip {
            seconds: 1.0,
            audio_tracks: 0,
            ..Clip::default()
        }
        .write(&env.media_root.join(format!("backlog/C{i:03}.mov")))?;
    }
    Clip {
        seconds: 1.0,
        audio_tracks: 0,
        ..Clip::default()
    }
    .write(&env.media_root.join("urgent/U001.mov"))?;
    let backlog = env.production("Backlog", 1, "backlog", None).await?;
    let urgent = env.production("Urgent", 1, "urgent", Some(90)).await?;
    env.scan(&backlog["id"]).await?;
    env.scan(&urgent["id"]).await?;
    let worker = env.worker_config("transcode=1")?;
    env.spawn_worker(worker);
    env.get_until("/api/v1/clips?transcode_state=done", WAIT, |b| {
        b["clips"].as_array().map(Vec::len) == Some(7)
    })
    .await?;
    let order: Vec<(i16, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT priority, started_at FROM jobs WHERE kind = 'transcode' ORDER BY started_at")
            .fetch_all(&env.db)
            .await?;
    let urgent_at = order.iter().position(|(p, _)| *p == 90);
    // At most one backlog job can have been delivered before (the one slot's prefetch).
    assert!(urgent_at.is_some_and(|i| i <= 1), "{order:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_retries_while_smtp_is_down_and_rejected_addresses_fail() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let port = rushes_tests::dead_port()?.port();
    let mut worker = env.worker_config("scan=1,email=2")?;
    worker.smtp.smtp_port = port;
    env.spawn_worker(worker);
    let mail = |to: &str| {
        json!({ "kind": "email", "payload": {
            "to": [to], "subject": "Hello", "text": "plain", "html": "<p>html</p>" } })
    };
    let first = env.enqueue(mail("editor@example.com")).await?;
    env.wait_job(first, WAIT, |j| j["state"] == "retrying").await?;
    let sink = rushes_tests::media::SmtpSink::start(port, env.data_dir.join("mail")).await?;
    env.wait_state(first, "succeeded", WAIT).await?;
    let received = sink.wait_for(1, WAIT).await?;
    assert_eq!(received[0]["to"], json!(["editor@example.com"]));
    assert!(received[0]["data"].as_str().unwrap_or_default().contains("<p>html</p>"));

    let rejected = env.enqueue(mail("rejected@example.com")).await?;
    let job = env.wait_state(rejected, "failed", WAIT).await?;
    assert_eq!(job["attempts"], 1, "a 5xx is final: {job}");
    assert!(job["error"].as_str().unwrap_or_default().contains("550"), "{job}");
    let (status, _) = env.post("/api/v1/jobs", mail("not-an-address")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The production owner hears about new clips.
    let owner = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, username, email) VALUES ($1, 'owner', 'owner@example.com')")
        .bind(owner)
        .execute(&env.db)
        .await?;
    Clip::default().write(&env.media_root.join("mailed/M001.mov"))?;
    let production = env.production("Mailed Show", 1, "mailed", None).await?;
    let id = production["id"].as_str().unwrap_or_default();
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "owner_id": owner }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let scan = env.scan(&production["id"]).await?;
    assert_eq!(scan["result"]["owner_notified"], true, "{scan}");
    let received = sink.wait_for(2, WAIT).await?;
    let summary = received
        .iter()
        .find(|m| m["to"] == json!(["owner@example.com"]))
        .ok_or_else(|| anyhow::anyhow!("no summary in {received:?}"))?;
    assert!(summary["data"].as_str().unwrap_or_default().contains("M001.mov"));
    let _ = job_id(&scan)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_are_searched_edited_related_retranscoded_and_deleted() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    let short = Clip {
        seconds: 1.0,
        audio_tracks: 0,
        ..Clip::default()
    };
    short.write(&env.media_root.join("edit/A001/A001C001.mov"))?;
    short.write(&env.media_root.join("edit/B001/B001C001.mov"))?;
    let production = env.production("Edit Show", 1, "edit", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let clips = env.clips(&production["id"]).await?;
    let a = by_path(&clips, "A001/A001C001.mov")?["id"].clone();
    let b = by_path(&clips, "B001/B001C001.mov")?["id"].clone();

    // Bulk edit: empty fields leave values alone; bad input is refused whole.
    let patch = |body: Value| env.patch("/api/v1/clips", body);
    let (status, edited) =
        patch(json!({ "ids": [a, b], "shooter": "Ana", "shoot_date": "2026-05-01", "card": "" })).await?;
    assert_eq!((status, edited["updated"].clone()), (StatusCode::OK, json!(2)));
    let (status, _) = patch(json!({ "ids": [a], "shoot_date": "yesterday" })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = patch(json!({ "ids": [] })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, found) = env
        .get(&format!("/api/v1/clips?production_id={pid}&shooter=Ana&q=b001c"))
        .await?;
    assert_eq!(found["clips"].as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found["clips"][0]["card"], "B001", "an empty card leaves it unchanged");

    // Same day, same timecode range, same shooter on another card: related.
    let (status, related) = env
        .get(&format!("/api/v1/clips/{}/related", a.as_str().unwrap_or_default()))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(related["overlapping"][0]["id"], b, "{related}");
    assert_eq!(related["same_shooter_cards"], json!([{ "card": "B001", "clips": 1 }]));

    // Retranscode a card, a list, a production; nothing named → 422.
    let (status, card) = env
        .post(
            "/api/v1/clips/retranscode",
            json!({ "production_id": pid, "card": "A001" }),
        )
        .await?;
    assert_eq!((status, card["transcodes"].clone()), (StatusCode::ACCEPTED, json!(1)));
    let (_, listed) = env.post("/api/v1/clips/retranscode", json!({ "ids": [a, b] })).await?;
    assert_eq!(listed["transcodes"], 2);
    let (status, _) = env.post("/api/v1/clips/retranscode", json!({})).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .post("/api/v1/clips/retranscode", json!({ "ids": [uuid::Uuid::now_v7()] }))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let superseded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs j WHERE j.kind = 'transcode' \
         AND NOT EXISTS (SELECT 1 FROM clips c WHERE c.transcode_job_id = j.id)",
    )
    .fetch_one(&env.db)
    .await?;
    assert_eq!(superseded, 3, "each clip points at its newest transcode only");

    // Delete: our rows go, the original stays, and a rescan finds it again.
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/clips/{}", a.as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(env.media_root.join("edit/A001/A001C001.mov").is_file());
    let rescan = env.scan(&production["id"]).await?;
    assert_eq!(rescan["result"]["new"], 1, "{rescan}");
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/clips/{}", uuid::Uuid::now_v7()),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_all_scans_active_productions_only() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    std::fs::create_dir_all(env.media_root.join("on"))?;
    std::fs::create_dir_all(env.media_root.join("off"))?;
    let on = env.production("Scan All", 1, "on", None).await?;
    let off = env.production("Scan All", 2, "off", None).await?;
    let off_id = off["id"].as_str().unwrap_or_default();
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{off_id}"), json!({ "active": false }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let job = env.enqueue(json!({ "kind": "scan_all" })).await?;
    let done = env.wait_state(job, "succeeded", WAIT).await?;
    assert_eq!(done["result"]["scans"], 1, "{done}");
    let scanned: Vec<String> = sqlx::query_scalar("SELECT payload->>'production_id' FROM jobs WHERE kind = 'scan'")
        .fetch_all(&env.db)
        .await?;
    assert_eq!(scanned, vec![on["id"].as_str().unwrap_or_default().to_owned()]);
    Ok(())
}

/// The share of pixels in a region (fractions of the frame) that differ by more than 30
/// grey levels between two frames, and the mean difference there.
fn changed(a: &[u8], b: &[u8], width: usize, height: usize, region: [f64; 4]) -> (f64, f64) {
    let [x0, y0, x1, y1] = region.map(|f| f.clamp(0.0, 1.0));
    let (x0, x1) = ((x0 * width as f64) as usize, (x1 * width as f64) as usize);
    let (y0, y1) = ((y0 * height as f64) as usize, (y1 * height as f64) as usize);
    let (mut big, mut total, mut n) = (0usize, 0u64, 0usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let d = a[y * width + x].abs_diff(b[y * width + x]);
            big += usize::from(d > 30);
            total += u64::from(d);
            n += 1;
        }
    }
    (big as f64 / n.max(1) as f64, total as f64 / n.max(1) as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_watermark_is_burned_into_the_proxies_made_after_it() -> anyhow::Result<()> {
    let env = TestEnv::with_worker(ALL_MEDIA).await?;
    Clip {
        seconds: 3.0,
        width: 640,
        height: 360,
        ..Clip::default()
    }
    .write(&env.media_root.join("wm/A001/A001C001.mov"))?;
    Clip {
        seconds: 2.0,
        audio_tracks: 1,
        ..Clip::default()
    }
    .write(&env.media_root.join("wm/A001/A001C002.mov"))?;
    let production = env.production("Watermark Show", 1, "wm", None).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let clips = wait_transcoded(&env, &production).await?;
    let clip = by_path(&clips, "A001/A001C001.mov")?.clone();
    let dir = env.data_dir.join("clips").join(clip["id"].as_str().unwrap_or_default());
    let before = dir.join("before.mp4");
    std::fs::copy(dir.join("proxy.mp4"), &before)?;
    let poster_before = std::fs::read(dir.join("poster.jpg"))?;

    // Bad watermarks are refused, naming what is wrong; nothing is stored.
    for (bad, says) in [
        (json!({ "text": "{viewer}" }), "unknown placeholder"),
        (json!({ "text": "" }), "text: must not be empty"),
        (json!({ "text": "x", "opacity": 2 }), "opacity"),
        (json!({ "text": "x", "position": "middle" }), "position"),
        (json!({ "text": "x", "colour": "red" }), "colour"),
        (json!({ "opacity": 0.5 }), "text"),
        (json!("BARS"), "an object"),
    ] {
        let (status, body) = env
            .patch(&format!("/api/v1/productions/{id}"), json!({ "watermark": bad }))
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("watermark") && message.contains(says),
            "{bad}: {message}"
        );
    }
    assert_eq!(
        env.get(&format!("/api/v1/productions/{id}")).await?.1["watermark"],
        Value::Null
    );

    // Set: shown on the production, and every clip with a picture is transcoded again.
    let jobs_before = transcode_jobs(&env).await?;
    let mark = json!({ "text": "BARS {series}", "position": "center", "opacity": 1.0, "size": 0.12 });
    let (status, body) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "watermark": mark }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["watermark"]["text"], "BARS {series}");
    assert_eq!(transcode_jobs(&env).await?, jobs_before + 2, "both clips have pictures");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'clip.retranscode' AND after->'asked'->>'because' = 'the watermark changed'",
    )
    .fetch_one(&env.db)
    .await?;
    assert_eq!(audited, 1);
    let old_job = clip["transcode_job_id"].clone();
    env.get_until(&format!("/api/v1/clips?production_id={id}&missing=false"), WAIT, |b| {
        b["clips"].as_array().is_some_and(|clips| {
            clips
                .iter()
                .all(|c| c["transcode_job_id"] != old_job && c["transcode_state"] == "done")
        })
    })
    .await?;

    // The centre of a frame of the new proxy carries the mark; the corners are the same
    // picture as before (within what a second encode changes).
    let (w, h, old) = gray_frame(&before, 1.5)?;
    let (w2, h2, new) = gray_frame(&dir.join("proxy.mp4"), 1.5)?;
    assert_eq!((w, h), (w2, h2));
    let (centre, _) = changed(&old, &new, w, h, [0.3, 0.35, 0.7, 0.65]);
    let corners = [
        [0.0, 0.0, 0.15, 0.15],
        [0.85, 0.0, 1.0, 0.15],
        [0.0, 0.85, 0.15, 1.0],
        [0.85, 0.85, 1.0, 1.0],
    ]
    .map(|r| changed(&old, &new, w, h, r));
    let worst = corners
        .iter()
        .fold((0.0f64, 0.0f64), |acc, c| (acc.0.max(c.0), acc.1.max(c.1)));
    assert!(
        centre > 0.02,
        "the centre hardly changed: {:.2}% of pixels",
        centre * 100.0
    );
    assert!(worst.0 < 0.01 && worst.1 < 4.0, "the corners changed: {worst:?}");
    assert_ne!(
        std::fs::read(dir.join("poster.jpg"))?,
        poster_before,
        "the poster carries it too"
    );

    // A change of one field keeps the others; null removes the mark.
    let (status, body) = env
        .patch(
            &format!("/api/v1/productions/{id}"),
            json!({ "watermark": { "opacity": 0.4 } }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["watermark"]["text"], "BARS {series}");
    assert_eq!(body["watermark"]["opacity"], 0.4);
    let (status, body) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "watermark": null }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["watermark"], Value::Null);
    // An unchanged watermark remakes nothing.
    let jobs = transcode_jobs(&env).await?;
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "priority": 30 }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(transcode_jobs(&env).await?, jobs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_image_is_drawn_where_asked_and_nowhere_else() -> anyhow::Result<()> {
    let env = TestEnv::with_worker(ALL_MEDIA).await?;
    Clip {
        seconds: 3.0,
        width: 640,
        height: 360,
        audio_tracks: 1,
        ..Clip::default()
    }
    .write(&env.media_root.join("logo/A001/A001C001.mov"))?;
    let production = env.production("Logo Show", 1, "logo", None).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let clips = wait_transcoded(&env, &production).await?;
    let clip = by_path(&clips, "A001/A001C001.mov")?.clone();
    let dir = env.data_dir.join("clips").join(clip["id"].as_str().unwrap_or_default());
    let before = dir.join("before.mp4");
    std::fs::copy(dir.join("proxy.mp4"), &before)?;
    let image_path = format!("/api/v1/productions/{id}/watermark-image");
    let send = |bytes: Vec<u8>| {
        TestEnv::answer(
            env.http
                .put(env.url(&image_path))
                .bearer_auth(rushes_tests::TOKEN)
                .body(bytes),
        )
    };

    // No image yet: a watermark cannot draw one; a file that is no image is refused.
    let (status, body) = env
        .patch(
            &format!("/api/v1/productions/{id}"),
            json!({ "watermark": { "image": {} } }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("watermark.image"),
        "{body}"
    );
    let (status, body) = send(b"#EXTM3U\nfile:///etc/passwd\n".to_vec()).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = send(Vec::new()).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an empty body: {body}");
    let (status, _) = env.get(&image_path).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A white logo, twice as wide as high, sent and drawn top left at full strength.
    let logo = env.data_dir.join("logo-source.png");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=white:s=200x100",
        ])
        .args(["-frames:v", "1"])
        .arg(&logo)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make the logo");
    let (status, body) = send(std::fs::read(&logo)?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["proxies_remade"], 0, "not drawn yet");
    let served = env
        .http
        .get(env.url(&image_path))
        .bearer_auth(rushes_tests::TOKEN)
        .send()
        .await?;
    assert_eq!(served.status(), StatusCode::OK);
    assert!(served.bytes().await?.starts_with(b"\x89PNG"), "stored as a PNG");
    let jobs_before = transcode_jobs(&env).await?;
    let mark = json!({ "image": { "position": "top-left", "opacity": 1.0, "size": 0.3 } });
    let (status, body) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "watermark": mark }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["watermark"]["image"]["position"], "top-left", "{body}");
    assert_eq!(transcode_jobs(&env).await?, jobs_before + 1);
    let old_job = clip["transcode_job_id"].clone();
    env.get_until(&format!("/api/v1/clips?production_id={id}&missing=false"), WAIT, |b| {
        b["clips"].as_array().is_some_and(|clips| {
            clips
                .iter()
                .all(|c| c["transcode_job_id"] != old_job && c["transcode_state"] == "done")
        })
    })
    .await?;

    // 108 px high (0.3 of 360), 216 wide, 14 px in from the top left: there, the picture
    // is the logo; the other corners are the picture as before.
    let (w, h, old) = gray_frame(&before, 1.5)?;
    let (_, _, new) = gray_frame(&dir.join("proxy.mp4"), 1.5)?;
    let (logo_area, _) = changed(&old, &new, w, h, [0.05, 0.07, 0.3, 0.3]);
    assert!(
        logo_area > 0.3,
        "the logo's area hardly changed: {:.2}%",
        logo_area * 100.0
    );
    for region in [
        [0.7, 0.0, 1.0, 0.3],
        [0.0, 0.7, 0.3, 1.0],
        [0.7, 0.7, 1.0, 1.0],
        [0.4, 0.4, 0.6, 0.6],
    ] {
        let (moved, mean) = changed(&old, &new, w, h, region);
        assert!(moved < 0.01 && mean < 4.0, "{region:?} changed: {moved} {mean}");
    }

    // Drawn, it stays; a new one remakes the proxies; taken out of the watermark, it can go.
    let (status, body) = env.call(reqwest::Method::DELETE, &image_path, None).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = send(std::fs::read(&logo)?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["proxies_remade"], 1, "{body}");
    let (status, body) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "watermark": null }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = env.call(reqwest::Method::DELETE, &image_path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.call(reqwest::Method::DELETE, &image_path, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_for_a_named_viewer_serves_a_copy_with_their_name_and_never_the_bare_one() -> anyhow::Result<()> {
    let env = TestEnv::with_worker(ALL_MEDIA).await?;
    Clip {
        seconds: 3.0,
        width: 640,
        height: 360,
        audio_tracks: 1,
        ..Clip::default()
    }
    .write(&env.media_root.join("viewer/A001/A001C001.mov"))?;
    let production = env.production("Viewer Show", 1, "viewer", None).await?;
    env.scan(&production["id"]).await?;
    let clips = wait_transcoded(&env, &production).await?;
    let clip = by_path(&clips, "A001/A001C001.mov")?.clone();
    let clip_id = clip["id"].as_str().unwrap_or_default().to_owned();
    let dir = env.data_dir.join("clips").join(&clip_id);
    let share_path = format!("/api/v1/clips/{clip_id}/share");
    let share = |body: Value| env.post(&share_path, body);
    let http = env.http.clone();
    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let response = http.get(url).send().await?;
            let status = response.status();
            anyhow::Ok((status, response.bytes().await?))
        }
    };

    // A viewer's name is one line of 1 to 80 characters.
    for bad in [json!(""), json!("a\nb"), json!("x".repeat(81)), json!(7)] {
        let (status, body) = share(json!({ "viewer": bad })).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().contains("viewer"),
            "{body}"
        );
    }

    // With the transcode queue paused, the link's copy cannot be made: it serves nothing
    // rather than the bare proxy.
    let (status, _) = env.post("/api/v1/queues/transcode/pause", json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    env.get_until("/api/v1/queues/transcode", WAIT, |q| q["consumers"] == 0)
        .await?;
    let (status, made) = share(json!({ "viewer": "Jane Doe · Netflix" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["share"]["viewer"], "Jane Doe · Netflix");
    // The link as this test reaches the control plane (its public URL is not resolvable).
    let local = |made: &Value| {
        let url = made["url"].as_str().unwrap_or_default();
        env.url(url.find("/share/").map_or(url, |at| &url[at..]))
    };
    let url = local(&made);
    let (status, _) = fetch(format!("{url}/proxy.mp4")).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "never the unmarked proxy");
    let (status, poster) = fetch(format!("{url}/poster.jpg")).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(!poster.is_empty());

    // Resumed: the copy is made; its picture carries the name at the bottom, the rest is
    // the proxy's picture.
    let (status, _) = env.post("/api/v1/queues/transcode/resume", json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let share_id = made["share"]["id"].as_str().unwrap_or_default().to_owned();
    env.get_until(&format!("/api/v1/share-links?clip_id={clip_id}"), WAIT, |b| {
        b["share_links"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["id"] == share_id.as_str()).cloned())
            .is_some_and(|l| l["viewer_proxy"] == "succeeded")
    })
    .await?;
    let (status, marked) = fetch(format!("{url}/proxy.mp4")).await?;
    assert_eq!(status, StatusCode::OK);
    let copy = env.data_dir.join("viewer-copy.mp4");
    std::fs::write(&copy, &marked)?;
    let (w, h, bare) = gray_frame(&dir.join("proxy.mp4"), 1.5)?;
    let (w2, h2, named) = gray_frame(&copy, 1.5)?;
    assert_eq!((w, h), (w2, h2));
    let (bottom, _) = changed(&bare, &named, w, h, [0.2, 0.85, 0.8, 1.0]);
    assert!(bottom > 0.01, "the bottom hardly changed: {:.2}%", bottom * 100.0);
    let (top, mean) = changed(&bare, &named, w, h, [0.0, 0.0, 1.0, 0.6]);
    assert!(top < 0.01 && mean < 4.0, "the rest changed: {top} {mean}");
    assert_eq!(
        ffprobe(&copy)?["streams"].as_array().map(Vec::len),
        Some(2),
        "sound kept"
    );

    // A link for no one in particular serves the proxy itself.
    let (_, plain) = share(json!({})).await?;
    let (status, bytes) = fetch(format!("{}/proxy.mp4", local(&plain))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes.as_ref(), std::fs::read(dir.join("proxy.mp4"))?.as_slice());

    // Revoked, its copy goes.
    let own = dir.join("shares").join(&share_id);
    assert!(own.join("proxy.mp4").is_file());
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/share-links/{share_id}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!own.exists());
    Ok(())
}
