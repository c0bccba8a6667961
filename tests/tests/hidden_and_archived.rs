//! Hidden and archived mean hidden: a hidden clip, and everything of an archived
//! production, disappear for everyone but admins — lists, single reads, outputs,
//! related clips, transcripts, share links, counts — and come back when shown again.
//! Admins see them with a filter.

use reqwest::StatusCode;
use rushes_tests::TestEnv;
use rushes_tests::media::Clip;
use serde_json::{Value, json};

/// What `token` (a user's session) gets at `path`: the status and JSON body.
async fn as_user(env: &TestEnv, token: &str, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    TestEnv::answer(env.http.get(env.url(path)).bearer_auth(token)).await
}

/// The ids of the items of list `key` the user gets at `path`.
async fn ids(env: &TestEnv, token: &str, path: &str, key: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = as_user(env, token, path).await?;
    anyhow::ensure!(status == StatusCode::OK, "{path}: {status} {body}");
    Ok(body[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["id"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_clips_and_archived_productions_are_for_admins_only() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1").await?;
    for name in ["A001/A001C001.mov", "A001/A001C002.mov"] {
        Clip {
            seconds: 1.0,
            audio_tracks: 1,
            ..Clip::default()
        }
        .write(&env.media_root.join("quiet").join(name))?;
    }
    let production = env.production("Quiet Show", 1, "quiet", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let clips = env.clips(&production["id"]).await?;
    let id_of = |path: &str| {
        clips
            .iter()
            .find(|c| c["path"] == path)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (secret, open) = (id_of("A001/A001C001.mov"), id_of("A001/A001C002.mov"));

    // A member of the base production's group sees the production and its clips.
    let (_, bases) = env.get("/api/v1/base-productions").await?;
    let group = bases["base_productions"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["id"] == production["base_production_id"]))
        .map(|b| b["group_id"].clone())
        .unwrap_or_default();
    let member = env.user("member", json!({})).await?;
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{}/members", group.as_str().unwrap_or_default()),
            json!({ "user_id": member["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let token = env.login("member").await?;
    let (status, queued) = env
        .post("/api/v1/clips/transcribe", json!({ "production_id": pid }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let (_, listed) = env.get(&format!("/api/v1/transcripts?production_id={pid}")).await?;
    let transcript_of = |clip: &str| {
        listed["transcripts"]
            .as_array()
            .and_then(|all| all.iter().find(|t| t["clip_id"] == clip))
            .and_then(|t| t["id"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let secret_transcript = transcript_of(&secret);
    let (status, share) = env.post(&format!("/api/v1/clips/{secret}/share"), json!({})).await?;
    assert_eq!(status, StatusCode::CREATED, "{share}");
    let share_url = share["url"]
        .as_str()
        .unwrap_or_default()
        .replace("http://rushes.test", &env.base_url);
    let share_status = || async { anyhow::Ok(env.http.get(share_url.clone()).send().await?.status()) };
    assert_eq!(share_status().await?, StatusCode::OK);
    let clips_path = format!("/api/v1/clips?production_id={pid}");
    let transcripts_path = format!("/api/v1/transcripts?production_id={pid}");
    assert_eq!(ids(&env, &token, &clips_path, "clips").await?.len(), 2);

    // Hidden: gone for the member everywhere; there for admins, with a filter.
    let (status, body) = env
        .patch("/api/v1/clips", json!({ "ids": [secret], "hidden": true }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&env, &token, &clips_path, "clips").await?, [open.as_str()]);
    assert!(
        ids(&env, &token, &format!("{clips_path}&hidden=true"), "clips")
            .await?
            .is_empty()
    );
    for path in [
        format!("/api/v1/clips/{secret}"),
        format!("/api/v1/clips/{secret}/media/poster.jpg"),
        format!("/api/v1/clips/{secret}/related"),
        format!("/api/v1/transcripts/{secret_transcript}"),
    ] {
        assert_eq!(as_user(&env, &token, &path).await?.0, StatusCode::NOT_FOUND, "{path}");
    }
    // Nor can anything be done to it by id.
    let edited = env
        .http
        .patch(env.url("/api/v1/clips"))
        .bearer_auth(&token)
        .json(&json!({ "ids": [secret], "hidden": false }))
        .send()
        .await?;
    assert_eq!(
        edited.status(),
        StatusCode::NOT_FOUND,
        "a member cannot unhide what they cannot see"
    );
    let transcripts = ids(&env, &token, &transcripts_path, "transcripts").await?;
    assert!(
        !transcripts.contains(&secret_transcript) && transcripts.len() == 1,
        "{transcripts:?}"
    );
    let (_, shown) = as_user(&env, &token, &format!("/api/v1/productions/{pid}")).await?;
    assert_eq!(shown["clips"], 1, "the count leaves it out: {shown}");
    assert_eq!(share_status().await?, StatusCode::GONE, "no link shares a hidden clip");
    let (_, all) = env.get(&format!("{clips_path}&hidden=true")).await?;
    assert_eq!(all["clips"][0]["id"], secret.as_str(), "admins see it with the filter");
    assert_eq!(env.get(&format!("/api/v1/clips/{secret}")).await?.0, StatusCode::OK);

    // Shown again: back for the member, and the link serves again.
    let (status, _) = env
        .patch("/api/v1/clips", json!({ "ids": [secret], "hidden": false }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&env, &token, &clips_path, "clips").await?.len(), 2);
    assert_eq!(
        as_user(&env, &token, &format!("/api/v1/transcripts/{secret_transcript}"))
            .await?
            .0,
        StatusCode::OK
    );
    assert_eq!(share_status().await?, StatusCode::OK);

    // Archived: the production and all it holds are gone for the member.
    let (status, body) = env
        .patch(&format!("/api/v1/productions/{pid}"), json!({ "archived": true }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        ids(&env, &token, "/api/v1/productions?include_archived=true", "productions")
            .await?
            .is_empty()
    );
    for path in [
        format!("/api/v1/productions/{pid}"),
        format!("/api/v1/clips/{open}"),
        format!("/api/v1/transcripts/{secret_transcript}"),
    ] {
        assert_eq!(as_user(&env, &token, &path).await?.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(ids(&env, &token, &clips_path, "clips").await?.is_empty());
    assert!(ids(&env, &token, &transcripts_path, "transcripts").await?.is_empty());
    let (_, me) = as_user(&env, &token, "/api/v1/auth/me").await?;
    assert_eq!(me["productions"], json!([]), "{me}");
    assert_eq!(
        share_status().await?,
        StatusCode::GONE,
        "no link shares an archived production's clip"
    );
    assert_eq!(
        ids(
            &env,
            rushes_tests::TOKEN,
            "/api/v1/productions?include_archived=true",
            "productions"
        )
        .await?,
        [pid.as_str()]
    );
    assert!(
        ids(&env, rushes_tests::TOKEN, "/api/v1/productions", "productions")
            .await?
            .is_empty(),
        "admins ask for them"
    );

    // Unarchived: all back.
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{pid}"), json!({ "archived": false }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&env, &token, "/api/v1/productions", "productions").await?,
        [pid.as_str()]
    );
    assert_eq!(ids(&env, &token, &clips_path, "clips").await?.len(), 2);
    assert_eq!(share_status().await?, StatusCode::OK);
    Ok(())
}
