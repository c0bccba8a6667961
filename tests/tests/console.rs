//! The operator console in a real browser (Debian's chromium driven by Playwright for
//! Python, `support/console_flow.py`) against a real control plane, worker, PostgreSQL
//! and RabbitMQ: sign-in, the dashboard's live numbers, every page, enqueueing and
//! cancelling jobs, pausing a queue, a schedule's field error and its edit, a clip's
//! player with its transcript, scrub bar and audio tracks, an upload transcribed,
//! editing a production and sending its cover, a user made like another, CSRF, and
//! what a member and a deactivated user get.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use rushes_tests::{PASSWORD, TestEnv};
use serde_json::{Value, json};

/// The browser walk, with its configuration; what it saw.
async fn walk(config: Value) -> anyhow::Result<Value> {
    rushes_tests::browser::walk("console_flow.py", &config, Duration::from_secs(300)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_the_fleet_from_the_console() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let worker = env.worker_config("maintenance=2,scan=1,transcode=1,transcode_long=1,transcribe=1")?;
    env.spawn_worker(worker);
    env.user("boss", json!({ "is_admin": true })).await?;
    let mia = env.user("mia", json!({})).await?;
    let ivan = env.user("ivan", json!({})).await?;
    let ivan_id = ivan["id"].as_str().context("ivan's id")?;
    let (status, body) = env
        .patch(&format!("/api/v1/users/{ivan_id}"), json!({ "active": false }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen_folder = env.media_root.join("Seen");
    let hidden_folder = env.media_root.join("Hidden");
    std::fs::create_dir_all(&seen_folder)?;
    std::fs::create_dir_all(&hidden_folder)?;
    // A clip someone speaks in (after three seconds), transcoded, given its scrub
    // sprite and transcribed by the worker: the player, its tracks and its transcript.
    let mut readings = rushes_tests::speech::librivox()?.into_iter();
    let reading = readings.next().context("no recording")?;
    let spoken = readings.next().context("a second recording")?;
    rushes_tests::media::speaking_clip(&reading.wav, 3.0, &seen_folder.join("A001/A001C001.mov"))?;
    let seen = env
        .production("Console Seen", 1, &seen_folder.to_string_lossy(), None)
        .await?;
    env.scan(&seen["id"]).await?;
    let seen_id = seen["id"].as_str().context("production id")?;
    let clips = env
        .get_until(
            &format!("/api/v1/clips?production_id={seen_id}"),
            Duration::from_secs(120),
            |b| b["clips"][0]["transcode_state"] == "done",
        )
        .await?;
    let clip = clips["clips"][0]["id"].as_str().context("the clip")?.to_owned();
    env.get_until(&format!("/api/v1/clips/{clip}"), Duration::from_secs(120), |c| {
        c["outputs"]["sprite_vtt"].is_string()
    })
    .await?;
    let transcripts = env
        .get_until(
            &format!("/api/v1/transcripts?clip_id={clip}"),
            Duration::from_secs(180),
            |b| b["transcripts"][0]["state"] == "done",
        )
        .await?;
    let transcript = transcripts["transcripts"][0]["id"].as_str().context("the transcript")?;
    let (_, transcript) = env.get(&format!("/api/v1/transcripts/{transcript}")).await?;
    let said = transcript["segments"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let word = said
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| w.len() >= 4)
        .max_by_key(|w| w.len())
        .with_context(|| format!("a word in what the clip says: {transcript}"))?
        .to_lowercase();
    // A cover image for the production page's upload.
    let cover = env.scratch.join("cover.png");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:s=64x48",
            "-frames:v",
            "1",
        ])
        .arg(&cover)
        .status()?;
    assert!(made.success(), "ffmpeg makes the cover image");
    let hidden = env
        .production("Console Hidden", 1, &hidden_folder.to_string_lossy(), None)
        .await?;
    let (status, group) = env.post("/api/v1/groups", json!({ "name": "floor" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_id = group["id"].as_str().context("group id")?;
    let mia_id = mia["id"].as_str().context("mia's id")?;
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group_id}/members"),
            json!({ "user_id": mia_id }),
        )
        .await?;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group_id}/productions"),
            json!({ "production_id": seen["id"] }),
        )
        .await?;
    assert!(status.is_success(), "{status} {body}");

    // Without a browser: signed out, / leads to the login page; the page mails link to,
    // too, and it comes back there after signing in.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let response = plain.get(env.url("/")).send().await?;
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/login?next=%2F");
    let id = seen["id"].as_str().context("production id")?;
    let response = plain.get(env.url(&format!("/productions/{id}"))).send().await?;
    assert_eq!(
        response.headers()["location"].to_str()?,
        format!("/login?next=%2Fproductions%2F{id}")
    );

    // Kept under the target directory for a person to look at.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots)?;
    let saw = walk(json!({
        "base": env.url(""),
        "admin": ["boss", PASSWORD],
        "member": ["mia", PASSWORD],
        "inactive": ["ivan", PASSWORD],
        "visible": seen["name"],
        "hidden": hidden["name"],
        "clip": clip,
        "word": word,
        "speech": spoken.wav,
        "cover": cover,
        "like": mia_id,
        "production": seen_id,
        "shots": shots,
    }))
    .await?;
    println!("screenshots: {}", saw["shots"]);

    assert_eq!(
        saw["cookie"],
        json!({ "httpOnly": true, "sameSite": "Strict" }),
        "{saw}"
    );
    let progress = saw["progress"].as_array().context("the dashboard's progress bar")?;
    assert!(
        progress[1].as_f64() > progress[0].as_f64(),
        "a running job's progress moves on the dashboard without a reload: {saw}"
    );
    assert_eq!(saw["paused"], true, "{saw}");
    assert_eq!(saw["resumed"], true, "{saw}");
    assert_eq!(saw["csrf_refused"], 403, "{saw}");
    assert_eq!(saw["slots_wanted"]["maintenance"], 3, "set in the browser: {saw}");
    let played = saw["played"].as_array().context("the player's times")?;
    assert!(
        played[1].as_f64() > played[0].as_f64(),
        "the clip's video plays in the page: {saw}"
    );
    let seek = &saw["seek"];
    let start = seek["start"].as_f64().context("the segment's start")?;
    assert!(start >= 2.0, "the speech starts after the silence: {saw}");
    assert!(
        (seek["at"].as_f64().unwrap_or(-1.0) - start).abs() < 0.5,
        "clicking a segment seeks the player to its start: {saw}"
    );
    assert_eq!(seek["current"], true, "the segment being played is marked: {saw}");
    let word = &saw["word"];
    assert!(
        word["words"].as_u64().unwrap_or(0) >= 2,
        "the segment's words are timed: {saw}"
    );
    assert!(
        (word["at"].as_f64().unwrap_or(-1.0) - word["start"].as_f64().unwrap_or(-2.0)).abs() < 0.3,
        "clicking a word seeks the player to it: {saw}"
    );
    assert_eq!(
        word["spoken"],
        json!([word["text"].clone()]),
        "the word being spoken is marked, and only it: {saw}"
    );
    assert_eq!(
        saw["scrub_thumb"], true,
        "hovering the scrub bar shows a thumbnail: {saw}"
    );
    assert_eq!(
        saw["track_muted"], true,
        "another audio track mutes the proxy's own: {saw}"
    );
    assert!(
        saw["search_hits"].as_u64() >= Some(1),
        "the search finds the clip's words: {saw}"
    );
    assert!(
        saw["upload_said"].as_str().is_some_and(|t| !t.trim().is_empty()),
        "the uploaded file's transcript appears on its page: {saw}"
    );
    assert!(
        saw["import_error"].as_str().is_some_and(|e| !e.is_empty()),
        "a file that is no production document is refused on the page: {saw}"
    );
    assert!(saw["cron_error"].as_str().is_some_and(|e| e.contains("cron")), "{saw}");
    assert_eq!(
        saw["console_errors"],
        json!([]),
        "no errors in the browser console: {saw}"
    );
    assert_eq!(saw["shots"].as_array().map(Vec::len), Some(14), "{saw}");

    // What the browser did is what the API holds.
    let ran = saw["ran"].as_str().context("the job run from the form")?;
    let (_, job) = env.get(&format!("/api/v1/jobs/{ran}")).await?;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["requested_by"], "boss", "{job}");
    let cancelled = saw["cancelled"].as_str().context("the cancelled job")?;
    let (_, job) = env.get(&format!("/api/v1/jobs/{cancelled}")).await?;
    assert_eq!(job["state"], "cancelled", "{job}");
    let uploaded = saw["uploaded"].as_str().context("the upload sent from the page")?;
    let (status, upload) = env.get(&format!("/api/v1/uploads/{uploaded}")).await?;
    assert_eq!(status, StatusCode::OK, "{upload}");
    assert_eq!(upload["file_name"], "note.wav", "{upload}");
    assert_eq!(
        upload["size_bytes"],
        std::fs::metadata(&spoken.wav)?.len(),
        "every byte arrived: {upload}"
    );
    let (_, queue) = env.get("/api/v1/queues/maintenance").await?;
    assert_eq!(queue["paused"], false, "{queue}");
    let (_, schedules) = env.get("/api/v1/schedules").await?;
    let made = schedules["schedules"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "console nightly"))
        .context("the schedule made in the browser")?;
    assert_eq!(made["cron"]["expr"], "30 4 * * *", "edited in the browser: {made}");
    let (_, production) = env.get(&format!("/api/v1/productions/{seen_id}")).await?;
    let (_, reviewed) = env.get(&format!("/api/v1/clips/{clip}")).await?;
    assert_eq!(
        (
            reviewed["rating"].clone(),
            reviewed["review_status"].clone(),
            reviewed["colour_label"].clone()
        ),
        (json!(4), json!("selected"), json!("green")),
        "the clip page's review form"
    );
    assert_eq!(production["priority"], 70, "{production}");
    assert_eq!(
        production["watermark"],
        json!({ "text": "DRAFT {production}", "position": "bottom-right", "opacity": 0.4, "size": 0.06 }),
        "the watermark fields of the edit form"
    );
    assert_eq!(
        production["auto_transcribe"], false,
        "an unticked box is saved as off: {production}"
    );
    assert!(
        production["cover_image"].is_string(),
        "the cover sent from the page: {production}"
    );
    let (_, users) = env.get("/api/v1/users?q=nina").await?;
    let nina = users["users"][0]["id"].as_str().context("the user made like mia")?;
    let (_, floor) = env.get(&format!("/api/v1/groups/{group_id}")).await?;
    assert!(
        floor["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|u| u["id"] == nina)),
        "a user made like another joins their groups: {floor}"
    );
    Ok(())
}

/// Bad input to the console's own routes, without a browser: an unknown id shows the
/// API's refusal on the page, a form without the CSRF token is refused and changes
/// nothing, a form's way back never leaves the site, and a wrong password keeps the
/// visitor on the sign-in form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_bad_input_and_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.user("boss", json!({ "is_admin": true })).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let wrong = http
        .post(env.url("/login"))
        .form(&[("username", "boss"), ("password", "not the password"), ("next", "/")])
        .send()
        .await?;
    assert!(
        wrong.headers().get("set-cookie").is_none(),
        "no session for a wrong password"
    );
    assert!(wrong.text().await?.contains("Wrong username or password"));

    let signed_in = http
        .post(env.url("/login"))
        .form(&[
            ("username", "boss"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ])
        .send()
        .await?;
    assert_eq!(signed_in.headers()["location"], "/", "the way back stays on this site");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .context("the session cookie")?
        .to_owned();

    let page = http
        .get(env.url("/jobs/not-an-id"))
        .header("cookie", &cookie)
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await?;
    assert!(body.contains("role=\"alert\""), "the API's refusal is shown: {body}");

    let refused = http
        .post(env.url("/do/queues/maintenance/pause"))
        .header("cookie", &cookie)
        .form(&[("_back", "/queues")])
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (_, queue) = env.get("/api/v1/queues/maintenance").await?;
    assert_eq!(queue["paused"], false, "a refused form changes nothing: {queue}");
    Ok(())
}
