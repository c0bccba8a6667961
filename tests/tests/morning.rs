//! An admin's first morning: corrupt camera files are named (broken apart from not
//! media), the owner sees their production, production folders never nest, one scan of
//! a production at a time, every scan is recorded, and mail links open in a browser.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::media::{Clip, Playlist, SmtpSink};
use rushes_tests::{TestEnv, job_id};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// `len` bytes that look like nothing (xorshift; the same every run).
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A raw mail's text with quoted-printable soft breaks and `=3D` undone.
fn readable(raw: &str) -> String {
    raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
}

/// `GET path` with `token`.
async fn get_as(env: &TestEnv, token: &str, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    TestEnv::answer(env.http.get(env.url(path)).bearer_auth(token)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_camera_files_are_listed_as_broken_and_mailed_to_the_owner() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let sink = SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("scan=1,email=1")?;
    worker.smtp.smtp_port = sink.port;
    worker.smtp.public_url = env.base_url.clone();
    env.spawn_worker(worker);

    let show = env.media_root.join("morning");
    Clip::default().write(&show.join("A001/A001C001.mov"))?;
    std::fs::write(show.join("A001/notes.txt"), "call sheet")?;
    std::fs::create_dir_all(show.join("B001"))?;
    std::fs::write(show.join("B001/B001C099.mov"), noise(200_000))?;
    std::fs::write(
        show.join("B001/B001C100.mov"),
        Playlist::Hls.naming(&show.join("A001/A001C001.mov")),
    )?;

    let owner = env.user("owner", json!({})).await?;
    let owner_token = env.login("owner").await?;
    env.user("stranger", json!({})).await?;
    let stranger_token = env.login("stranger").await?;
    let production = env.production("Morning", 1, "morning", None).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "owner_id": owner["id"] }))
        .await?;
    assert_eq!(status, StatusCode::OK);

    let job = env.scan(&production["id"]).await?;
    let result = &job["result"];
    assert_eq!(result["new"], 1, "{result}");
    assert_eq!(result["broken"], 2, "the noise and the playlist: {result}");
    assert_eq!(result["not_media"], 1, "the notes: {result}");
    assert_eq!(
        result["skipped"][0]["kind"], "broken",
        "broken files come first: {result}"
    );

    // Whoever may view the production sees what was skipped and why: its owner too.
    let (status, listed) = get_as(&env, &owner_token, &format!("/api/v1/productions/{id}/skipped")).await?;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let rows = listed["skipped"].as_array().cloned().unwrap_or_default();
    let shape: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap_or_default(),
                r["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("A001/notes.txt", "not_media"),
            ("B001/B001C099.mov", "broken"),
            ("B001/B001C100.mov", "broken")
        ],
        "{listed}"
    );
    assert_eq!(rows[0]["reason"], "not a media file");
    assert_eq!(
        rows[1]["reason"], "Invalid data found when processing input",
        "{listed}"
    );
    assert!(
        rows[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("container format `hls` is refused")),
        "a playlist named .mov is broken, with the refusal: {listed}"
    );
    let (_, page) = env
        .get(&format!("/api/v1/productions/{id}/skipped?kind=broken&limit=1"))
        .await?;
    assert_eq!(page["skipped"][0]["path"], "B001/B001C099.mov", "{page}");
    assert_eq!(page["next_after"], "B001/B001C099.mov", "{page}");
    let (_, page) = env
        .get(&format!(
            "/api/v1/productions/{id}/skipped?kind=broken&limit=1&after=B001/B001C099.mov"
        ))
        .await?;
    assert_eq!(page["skipped"][0]["path"], "B001/B001C100.mov", "{page}");
    let (status, _) = get_as(&env, &stranger_token, &format!("/api/v1/productions/{id}/skipped")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "nobody else sees it");
    let (status, _) = env
        .get(&format!("/api/v1/productions/{id}/skipped?kind=corrupt"))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The owner's summary names the broken files with their reasons, and links to a page.
    let deadline = tokio::time::Instant::now() + WAIT;
    let summary = loop {
        let found = sink.messages()?.into_iter().find(|m| {
            m["to"] == json!(["owner@example.com"])
                && readable(m["data"].as_str().unwrap_or_default()).contains("broken")
        });
        if let Some(mail) = found {
            break readable(mail["data"].as_str().unwrap_or_default());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no scan summary mailed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(summary.contains("1 new clip, 2 broken files"), "{summary}");
    assert!(
        summary.contains("B001/B001C099.mov: Invalid data found when processing input"),
        "{summary}"
    );
    assert!(
        summary.contains("B001/B001C100.mov: container format `hls` is refused"),
        "{summary}"
    );
    assert!(!summary.contains("notes.txt"), "not media is not news: {summary}");
    assert!(!summary.contains("/api/v1/"), "no bearer-token API link: {summary}");
    let link = format!("{}/productions/{id}", env.base_url);
    assert!(summary.contains(&link), "{summary}");
    // A person opens it in a browser, without a session: the sign-in form, which leads
    // back to this production's page.
    let response = env.http.get(&link).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let html_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    assert!(html_type, "{:?}", response.headers());
    let body = response.text().await?;
    assert!(body.contains(&id) && body.contains("name=\"password\""), "{body}");
    assert!(
        !body.contains("Morning"),
        "signed out, the page shows nothing of it: {body}"
    );
    let _ = job_id(&job)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_rescan_still_records_when_it_ran() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    Clip::default().write(&env.media_root.join("hourly/A001C001.mov"))?;
    let production = env.production("Hourly", 1, "hourly", None).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let (_, first) = env.get(&format!("/api/v1/productions/{id}")).await?;
    let again = env.scan(&production["id"]).await?;
    assert_eq!(again["result"]["unchanged"], true, "{again}");
    let (_, second) = env.get(&format!("/api/v1/productions/{id}")).await?;
    let at = |p: &Value| {
        p["last_scan_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    assert!(at(&first).is_some(), "{first}");
    assert!(at(&second) > at(&first), "{first} then {second}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sees_their_production_and_only_theirs() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for folder in ["mine", "theirs"] {
        std::fs::create_dir_all(env.media_root.join(folder))?;
    }
    let owner = env.user("owner", json!({})).await?;
    let token = env.login("owner").await?;
    let mine = env.production("Owned", 1, "mine", None).await?;
    env.production("Owned", 2, "theirs", None).await?;
    let id = mine["id"].as_str().unwrap_or_default().to_owned();
    let (_, before) = get_as(&env, &token, "/api/v1/productions").await?;
    assert_eq!(before["productions"], json!([]), "{before}");
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{id}"), json!({ "owner_id": owner["id"] }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, listed) = get_as(&env, &token, "/api/v1/productions").await?;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["productions"]
        .as_array()
        .map(|all| all.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["Owned Series 1"], "{listed}");
    let (status, shown) = get_as(&env, &token, &format!("/api/v1/productions/{id}")).await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let (status, _) = get_as(&env, &token, &format!("/api/v1/clips?production_id={id}")).await?;
    assert_eq!(status, StatusCode::OK);
    // Viewing is not scanning.
    let (status, _) = TestEnv::answer(
        env.http
            .post(env.url(&format!("/api/v1/productions/{id}/scan")))
            .bearer_auth(&token)
            .json(&json!({})),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_folders_never_nest() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for folder in ["shows/a/sub", "shows/ab", "elsewhere"] {
        std::fs::create_dir_all(env.media_root.join(folder))?;
    }
    std::os::unix::fs::symlink(env.media_root.join("shows/a"), env.media_root.join("alias"))?;
    let first = env.production("Nest", 1, "shows/a", None).await?;
    let (_, base) = env.get("/api/v1/base-productions").await?;
    let base_id = base["base_productions"][0]["id"].clone();
    let create = |path: &str, series: i64| json!({ "base_production_id": base_id, "series": series, "friendly_name": "S", "path": path });
    for (path, relation) in [
        ("shows/a/sub", "is inside the folder of"),
        ("shows", "holds the folder of"),
        ("alias", "is the folder of"),
    ] {
        let (status, error) = env.post("/api/v1/productions", create(path, 2)).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("path:") && message.contains(relation) && message.contains("`Nest Series 1`"),
            "{path}: {message}"
        );
    }
    let (status, sibling) = env.post("/api/v1/productions", create("shows/ab", 2)).await?;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a name that merely starts the same: {sibling}"
    );
    let sibling_id = sibling["id"].as_str().unwrap_or_default();
    let (status, error) = env
        .patch(
            &format!("/api/v1/productions/{sibling_id}"),
            json!({ "path": "shows/a/sub" }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = env
        .patch(
            &format!("/api/v1/productions/{sibling_id}"),
            json!({ "path": "elsewhere" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);

    let first_id = first["id"].as_str().unwrap_or_default();
    let (status, mut document) = env.get(&format!("/api/v1/productions/{first_id}/export")).await?;
    assert_eq!(status, StatusCode::OK);
    document["production"]["series"] = json!(3);
    document["path"] = json!("shows/a/sub");
    let (status, error) = env.post("/api/v1/productions/import", document).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (_, all) = env.get("/api/v1/productions").await?;
    assert_eq!(
        all["productions"].as_array().map(Vec::len),
        Some(2),
        "nothing half-made: {all}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scan_request_gets_the_scan_already_pending() -> anyhow::Result<()> {
    // No worker: scans stay queued.
    let env = TestEnv::new().await?;
    for folder in ["once", "twice"] {
        std::fs::create_dir_all(env.media_root.join(folder))?;
    }
    let once = env.production("Once", 1, "once", None).await?;
    let path = format!("/api/v1/productions/{}/scan", once["id"].as_str().unwrap_or_default());
    let (status, first) = env.post(&path, json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, second) = env.post(&path, json!({})).await?;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["id"], first["id"]);

    // At the same moment: one scan, whoever asks first.
    let twice = env.production("Twice", 1, "twice", None).await?;
    let path = format!("/api/v1/productions/{}/scan", twice["id"].as_str().unwrap_or_default());
    let (a, b) = tokio::join!(env.post(&path, json!({})), env.post(&path, json!({})));
    let ((status_a, a), (status_b, b)) = (a?, b?);
    let mut statuses = [status_a, status_b];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::ACCEPTED], "{a} {b}");
    assert_eq!(a["id"], b["id"]);
    let scans: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'scan'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(scans, 2, "one per production");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_link_pages_open_without_a_token() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    // Signed out, the console's pages (what mails link to) open the sign-in form, which
    // leads back to the page asked for; they show nothing of the production itself.
    let response = env.http.get(env.url("/")).send().await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await?;
    assert!(
        body.contains("name=\"username\"") && body.contains("name=\"password\""),
        "{body}"
    );
    let id = uuid::Uuid::now_v7();
    for path in [format!("/productions/{id}"), format!("/transcripts/{id}")] {
        let response = env.http.get(env.url(&path)).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.url().path() == "/login", "{}", response.url());
        let body = response.text().await?;
        assert!(body.contains(&id.to_string()), "the form leads back to {path}: {body}");
    }
    Ok(())
}
