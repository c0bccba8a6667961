//! Uploaded files: review files of a production (streamed upload under a size limit,
//! transcoded, listed, shared, retranscoded, deleted) and production cover images.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use rushes_tests::media::{Clip, ffprobe};
use rushes_tests::{TestEnv, UPLOAD_MAX_BYTES};
use serde_json::{Value, json};

fn file_part(path: &Path, name: &str) -> anyhow::Result<Part> {
    Ok(Part::bytes(std::fs::read(path)?).file_name(name.to_owned()))
}

fn id(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// A production whose (empty) folder exists; returns its id.
async fn production(env: &TestEnv, name: &str) -> anyhow::Result<String> {
    let folder = name.to_lowercase();
    std::fs::create_dir_all(env.media_root.join(&folder))?;
    Ok(id(&env.production(name, 1, &folder, None).await?["id"]))
}

/// Folders left under the data directory's `uploads/`.
fn upload_folders(env: &TestEnv) -> usize {
    std::fs::read_dir(env.data_dir.join("uploads")).map_or(0, |dir| dir.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_files_are_transcoded_shared_retranscoded_and_deleted() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1").await?;
    let pid = production(&env, "Review").await?;
    let cut = env.scratch.join("cut v3.mov");
    Clip::default().write(&cut)?;

    let form = Form::new()
        .part("file", file_part(&cut, "../../cut v3.mov")?)
        .text("title", "Episode 1 — cut 3");
    let (status, made) = env
        .upload(&format!("/api/v1/productions/{pid}/review-files"), form)
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let file = id(&made["review_file"]["id"]);
    assert_eq!(made["review_file"]["title"], "Episode 1 — cut 3");
    assert_eq!(made["review_file"]["file_name"], "cut v3.mov", "no folder part is kept");
    assert_eq!(made["review_file"]["size_bytes"], std::fs::metadata(&cut)?.len());
    env.wait_state(
        rushes_tests::job_id(&made["job"])?,
        "succeeded",
        Duration::from_secs(90),
    )
    .await?;

    let (status, shown) = env.get(&format!("/api/v1/review-files/{file}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["transcode_state"], "done", "{shown}");
    assert_eq!(shown["video_codec"], "h264");
    assert_eq!(shown["audio_tracks"], 2);
    assert_eq!(shown["start_timecode"], "10:00:00:00");
    let proxy = id(&shown["media"]["proxy"]);
    assert!(
        proxy.ends_with(&format!("/review-files/{file}/media/proxy.mp4")),
        "{shown}"
    );
    let fetched = env
        .http
        .get(env.url(&proxy))
        .bearer_auth(rushes_tests::TOKEN)
        .send()
        .await?;
    assert_eq!(fetched.status(), StatusCode::OK);
    let local = env.scratch.join("fetched.mp4");
    std::fs::write(&local, fetched.bytes().await?)?;
    assert_eq!(ffprobe(&local)?["streams"][0]["codec_name"], "h264");
    let original = env
        .http
        .get(env.url(&format!("/api/v1/review-files/{file}/media/original")))
        .bearer_auth(rushes_tests::TOKEN)
        .send()
        .await?;
    assert_eq!(original.status(), StatusCode::NOT_FOUND, "only outputs are served");

    let (_, listed) = env.get(&format!("/api/v1/productions/{pid}/review-files")).await?;
    assert_eq!(listed["review_files"].as_array().map(Vec::len), Some(1), "{listed}");

    // A share link to the review file serves its proxy and nothing else.
    let (status, share) = env
        .post(
            &format!("/api/v1/review-files/{file}/share"),
            json!({ "expires_in_hours": 1 }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    assert_eq!(share["share"]["upload_id"], json!(file));
    let url = id(&share["url"]).replace("http://rushes.test", &env.base_url);
    let opened: Value = env.http.get(&url).send().await?.json().await?;
    assert_eq!(opened["name"], "Episode 1 — cut 3", "{opened}");
    let shared_proxy = id(&opened["files"]["proxy"]);
    assert_eq!(
        env.http.get(env.url(&shared_proxy)).send().await?.status(),
        StatusCode::OK
    );
    for other in ["original", "audio.wav", "..%2F..%2Fclips", "%2E%2E%2Foriginal"] {
        let response = env.http.get(format!("{url}/{other}")).send().await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{other}");
    }

    let (status, again) = env
        .post(&format!("/api/v1/review-files/{file}/retranscode"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    env.wait_state(
        rushes_tests::job_id(&again["job"])?,
        "succeeded",
        Duration::from_secs(90),
    )
    .await?;

    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/review-files/{file}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(upload_folders(&env), 0, "the folder goes with the row");
    assert_eq!(env.http.get(&url).send().await?.status(), StatusCode::NOT_FOUND);
    let (status, _) = env.get(&format!("/api/v1/review-files/{file}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing_behind() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("transcode=1").await?;
    let path = format!("/api/v1/productions/{}/review-files", production(&env, "Refuse").await?);

    // Not multipart at all.
    let (status, body) = env.post(&path, json!({ "file": "x" })).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    // No file part; an unknown part; an empty file.
    let (status, body) = env.upload(&path, Form::new().text("title", "t")).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("file"),
        "{body}"
    );
    let form = Form::new()
        .part("file", Part::bytes(vec![1u8; 10]).file_name("a.mov"))
        .text("colour", "red");
    let (status, body) = env.upload(&path, form).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let form = Form::new().part("file", Part::bytes(Vec::new()).file_name("a.mov"));
    let (status, _) = env.upload(&path, form).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Just over the limit: 413, and the partial file is gone.
    let size = usize::try_from(UPLOAD_MAX_BYTES)? + 1024;
    let form = Form::new().part("file", Part::bytes(vec![0u8; size]).file_name("big.mov"));
    let (status, body) = env.upload(&path, form).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // An unknown production.
    let form = Form::new().part("file", Part::bytes(vec![1u8; 10]).file_name("a.mov"));
    let (status, _) = env
        .upload(
            &format!("/api/v1/productions/{}/review-files", uuid::Uuid::new_v4()),
            form,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(upload_folders(&env), 0, "refused uploads leave no folder");

    // Accepted bytes that are not media: the transcode fails once, with ffprobe's reason.
    let form = Form::new().part(
        "file",
        Part::bytes(b"just some text, not a film".to_vec()).file_name("notes.mov"),
    );
    let (status, made) = env.upload(&path, form).await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let job = env
        .wait_state(rushes_tests::job_id(&made["job"])?, "failed", Duration::from_secs(60))
        .await?;
    assert_eq!(job["attempts"], 1, "{job}");
    assert!(
        job["error"].as_str().unwrap_or_default().contains("not a media file"),
        "{job}"
    );
    let (_, shown) = env
        .get(&format!("/api/v1/review-files/{}", id(&made["review_file"]["id"])))
        .await?;
    assert_eq!(shown["transcode_state"], "failed", "{shown}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_images_are_validated_thumbnailed_and_reset() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let pid = production(&env, "Covers").await?;
    let path = format!("/api/v1/productions/{pid}/cover");
    let png = env.scratch.join("cover.png");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=1600x900",
            "-frames:v",
            "1",
        ])
        .arg(&png)
        .status()?;
    anyhow::ensure!(made.success(), "ffmpeg could not make a PNG");

    let put = |body: Vec<u8>| {
        let request = env.http.put(env.url(&path)).bearer_auth(rushes_tests::TOKEN).body(body);
        TestEnv::answer(request)
    };
    let (status, body) = put(std::fs::read(&png)?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = id(&body["cover_image"]);
    assert!(url.starts_with(&path), "{body}");
    let (_, shown) = env.get(&format!("/api/v1/productions/{pid}")).await?;
    assert_eq!(shown["cover_image"], json!(url), "{shown}");

    let served = env
        .http
        .get(env.url(&url))
        .bearer_auth(rushes_tests::TOKEN)
        .send()
        .await?;
    assert_eq!(served.status(), StatusCode::OK);
    let thumb = env.scratch.join("thumb.jpg");
    std::fs::write(&thumb, served.bytes().await?)?;
    let probed = ffprobe(&thumb)?;
    assert_eq!(probed["streams"][0]["codec_name"], "mjpeg", "{probed}");
    assert_eq!(probed["streams"][0]["width"], 640);
    assert_eq!(probed["streams"][0]["height"], 360);

    // Not an image, a truncated image, nothing, too large: refused; the cover stays.
    let bytes = std::fs::read(&png)?;
    for bad in [
        b"<html>not an image</html>".to_vec(),
        bytes[..bytes.len() / 3].to_vec(),
        Vec::new(),
    ] {
        let (status, body) = put(bad).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (status, _) = put(vec![0u8; (10 << 20) + 1]).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (_, shown) = env.get(&format!("/api/v1/productions/{pid}")).await?;
    assert_eq!(shown["cover_image"], json!(url));

    let (status, _) = env.call(reqwest::Method::DELETE, &path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = env.get(&format!("/api/v1/productions/{pid}")).await?;
    assert_eq!(shown["cover_image"], Value::Null);
    let (status, _) = env.get(&path).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = env.get("/api/v1/audit-log?action=production.cover_reset").await?;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
    Ok(())
}

/// A non-admin who may transcribe (a global role through a group); returns its id.
async fn transcriber(env: &TestEnv, group: &str, name: &str) -> anyhow::Result<String> {
    let user = env.user(name, json!({})).await?;
    let (status, _) = env
        .post(
            &format!("/api/v1/groups/{group}/members"),
            json!({ "user_id": user["id"] }),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::NO_CONTENT);
    Ok(id(&user["id"]))
}

async fn get_as(env: &TestEnv, token: &str, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    TestEnv::answer(env.http.get(env.url(path)).bearer_auth(token)).await
}

/// No worker runs here: the uploads' jobs stay queued, so what deleting does to them shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcription_uploads_belong_to_their_uploaders_account_and_deleting_one_cancels_its_jobs()
-> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (_, role) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "transcriber", "policies": ["transcribe"] }),
        )
        .await?;
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "transcribers" })).await?;
    let group = id(&group["id"]);
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group}/roles"),
            json!({ "role_id": role["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let first = transcriber(&env, &group, "ana").await?;
    let token = env.login("ana").await?;

    let form = || {
        Form::new().part(
            "file",
            Part::bytes(b"RIFF but not really".to_vec()).file_name("take.wav"),
        )
    };
    let (status, made) = TestEnv::answer(
        env.http
            .post(env.url("/api/v1/uploads"))
            .bearer_auth(&token)
            .multipart(form().text("title", "Interview")),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let upload = id(&made["upload"]["id"]);
    let transcript = id(&made["transcript_id"]);
    let job = rushes_tests::job_id(&made["job"])?;
    let (status, _) = get_as(&env, &token, &format!("/api/v1/uploads/{upload}")).await?;
    assert_eq!(status, StatusCode::OK);
    let (_, mine) = get_as(&env, &token, "/api/v1/uploads").await?;
    assert_eq!(mine["uploads"].as_array().map(Vec::len), Some(1), "{mine}");

    // Ana's account is purged and someone new takes the name: the uploads stay with
    // the old account, not the name.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(first.parse::<uuid::Uuid>()?)
        .execute(&env.db)
        .await?;
    transcriber(&env, &group, "ana").await?;
    let token = env.login("ana").await?;
    for path in [
        format!("/api/v1/uploads/{upload}"),
        format!("/api/v1/transcripts/{transcript}"),
    ] {
        let (status, body) = get_as(&env, &token, &path).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, mine) = get_as(&env, &token, "/api/v1/uploads").await?;
    assert_eq!(mine["uploads"], json!([]), "{mine}");
    let (_, theirs) = get_as(&env, &token, "/api/v1/transcripts").await?;
    assert_eq!(theirs["transcripts"], json!([]), "{theirs}");

    // Retranscribing waits for the transcode, and refuses one that will not come.
    let (status, body) = env
        .post(&format!("/api/v1/transcripts/{transcript}/retranscribe"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = env.post(&format!("/api/v1/jobs/{job}/cancel"), json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = env
        .post(&format!("/api/v1/transcripts/{transcript}/retranscribe"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("retranscode it first"),
        "{body}"
    );

    // Deleting an upload cancels its queued transcode with it: no job is left to fail
    // on a row that is gone.
    let (status, made) = env
        .upload("/api/v1/uploads", form().text("title", "Second take"))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let job = rushes_tests::job_id(&made["job"])?;
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/uploads/{}", id(&made["upload"]["id"])),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let job = env.job(job).await?;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["error"], "its upload was deleted", "{job}");
    let (status, _) = env
        .get(&format!("/api/v1/transcripts/{}", id(&made["transcript_id"])))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "its transcript went with it");
    Ok(())
}

/// An account's uploads are held to `RUSHES_UPLOAD_QUOTA_BYTES`; the bootstrap token is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_held_to_a_quota_per_account() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let limited = env.spawn_control_with(|c| c.upload_quota_bytes = 1000).await?;
    let (_, role) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "transcriber", "policies": ["transcribe"] }),
        )
        .await?;
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "transcribers" })).await?;
    let group = id(&group["id"]);
    env.post(
        &format!("/api/v1/groups/{group}/roles"),
        json!({ "role_id": role["id"] }),
    )
    .await?;
    transcriber(&env, &group, "ana").await?;
    let token = env.login("ana").await?;
    let send = |bytes: usize, bearer: &str| {
        let form = Form::new().part("file", Part::bytes(vec![7u8; bytes]).file_name("take.wav"));
        TestEnv::answer(
            env.http
                .post(format!("{limited}/api/v1/uploads"))
                .bearer_auth(bearer)
                .multipart(form),
        )
    };
    let (status, first) = send(600, &token).await?;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, over) = send(600, &token).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{over}");
    assert!(
        over["error"]["message"].as_str().unwrap_or_default().contains("quota"),
        "{over}"
    );
    let (status, fits) = send(400, &token).await?;
    assert_eq!(status, StatusCode::CREATED, "what is left still fits: {fits}");
    let (status, _) = send(1, &token).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "the quota is used up");
    let (status, _) = send(600, rushes_tests::TOKEN).await?;
    assert_eq!(status, StatusCode::CREATED, "the bootstrap token has no quota");
    // The refused upload left no folder behind (removed off the async threads).
    for _ in 0..100 {
        if upload_folders(&env) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upload_folders(&env), 3);
    Ok(())
}
