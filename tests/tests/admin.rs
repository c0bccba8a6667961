//! Admin operations: typed settings, the dashboard, the API cache cleared on every
//! replica, system information.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::TestEnv;
use rushes_tests::media::{Clip, ffprobe};
use serde_json::{Value, json};
use uuid::Uuid;

fn setting<'a>(settings: &'a Value, key: &str) -> &'a Value {
    field(settings, key, "value")
}

fn field<'a>(settings: &'a Value, key: &str, name: &str) -> &'a Value {
    settings["settings"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == key))
        .map_or(&Value::Null, |s| &s[name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_typed_validated_and_audited() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (status, settings) = env.get("/api/v1/settings").await?;
    assert_eq!(status, StatusCode::OK);
    // No worker transcribes and no admin chose: no model is claimed.
    assert_eq!(setting(&settings, "whisper_model"), &Value::Null, "{settings}");
    assert_eq!(field(&settings, "whisper_model", "in_use"), &json!([]), "{settings}");
    assert_eq!(field(&settings, "whisper_model", "set"), false, "{settings}");
    assert_eq!(setting(&settings, "cache_ttl_seconds"), 600);

    let (status, updated) = env
        .patch(
            "/api/v1/settings",
            json!({ "proxy_height": 720, "scan_interval_minutes": 30 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(setting(&updated, "proxy_height"), 720);
    let (_, schedules) = env.get("/api/v1/schedules?kind=scan_all").await?;
    assert_eq!(
        schedules["schedules"][0]["interval"],
        json!({ "every": 30, "period": "minutes" })
    );

    for bad in [
        json!({ "proxy_height": 721, "whisper_model": "huge" }),
        json!({ "proxy_height": 10 }),
        json!({ "proxy_height": "tall" }),
        json!({ "no_such_setting": 1 }),
        json!({}),
    ] {
        let (status, error) = env.patch("/api/v1/settings", bad.clone()).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {error}");
    }
    let (_, after) = env.get("/api/v1/settings").await?;
    assert_eq!(setting(&after, "proxy_height"), 720, "a refused edit changes nothing");
    let (_, audit) = env
        .get("/api/v1/audit-log?target_type=setting&target_id=proxy_height")
        .await?;
    assert_eq!(audit["entries"][0]["before"], 540);
    assert_eq!(audit["entries"][0]["after"], 720);
    assert_eq!(field(&after, "proxy_height", "set"), true);

    // A Whisper model no online worker has is refused, unless forced (with a warning).
    let (status, error) = env
        .patch("/api/v1/settings", json!({ "whisper_model": "base" }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no online worker has `base`") && message.contains("\"force\": true"),
        "{message}"
    );
    let (status, _) = env
        .patch("/api/v1/settings", json!({ "whisper_model": "base", "force": "yes" }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, forced) = env
        .patch("/api/v1/settings", json!({ "whisper_model": "base", "force": true }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{forced}");
    assert_eq!(setting(&forced, "whisper_model"), "base");
    assert!(
        forced["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("no online worker has `base`")),
        "{forced}"
    );

    // `null` puts a setting back to its default.
    let (status, reset) = env
        .patch(
            "/api/v1/settings",
            json!({ "whisper_model": null, "proxy_height": null, "scan_interval_minutes": null }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(setting(&reset, "whisper_model"), &Value::Null, "{reset}");
    assert_eq!(setting(&reset, "proxy_height"), 540, "{reset}");
    assert_eq!(field(&reset, "proxy_height", "set"), false, "{reset}");
    assert!(reset.get("warnings").is_none(), "{reset}");
    let (_, schedules) = env.get("/api/v1/schedules?kind=scan_all").await?;
    assert_eq!(
        schedules["schedules"][0]["interval"],
        json!({ "every": 60, "period": "minutes" })
    );
    let (_, audit) = env
        .get("/api/v1/audit-log?target_type=setting&target_id=proxy_height")
        .await?;
    assert_eq!(audit["entries"][0]["action"], "setting.reset", "{audit}");
    assert_eq!(audit["entries"][0]["after"], 540, "{audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_cache_on_one_replica_clears_every_replica() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let replica = env.spawn_control_replica().await?;
    let dashboard = |base: String| {
        let http = env.http.clone();
        async move {
            let body: Value = http
                .get(format!("{base}/api/v1/dashboard"))
                .bearer_auth(rushes_tests::TOKEN)
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(body)
        }
    };
    let first = dashboard(replica.clone()).await?;
    assert_eq!(first["clips_transcoded"], 0, "{first}");

    std::fs::create_dir_all(env.media_root.join("cached"))?;
    let production = env.production("Cached", 1, "cached", None).await?;
    let id: Uuid = production["id"].as_str().unwrap_or_default().parse()?;
    // Rows written with triggers off (as a bulk restore might) do not announce
    // themselves: the cached counts stay until a clear.
    let mut tx = env.db.begin().await?;
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    for i in 0..3 {
        sqlx::query(
            "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, transcode_state) \
             VALUES ($1, $2, $3, $3, 1, 1, 'done')",
        )
        .bind(Uuid::now_v7())
        .bind(id)
        .bind(format!("c{i}.mov"))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    assert_eq!(
        dashboard(replica.clone()).await?["clips_transcoded"],
        0,
        "counts are cached"
    );
    let (status, _) = env.post("/api/v1/cache/clear", json!({})).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = dashboard(replica.clone()).await?;
        if now["clips_transcoded"] == 3 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the replica kept its cache: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, audit) = env.get("/api/v1/audit-log?action=cache.clear").await?;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1));

    // An ordinary change drops the cached counts on every replica by itself.
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, transcode_state) \
         VALUES ($1, $2, 'c3.mov', 'c3.mov', 1, 1, 'done')",
    )
    .bind(Uuid::now_v7())
    .bind(id)
    .execute(&env.db)
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = dashboard(replica.clone()).await?;
        if now["clips_transcoded"] == 4 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the counts stayed cached after a change: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_scan_and_transcode_and_settings_reach_workers() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1,transcode_long=1").await?;
    let (status, _) = env
        .patch(
            "/api/v1/settings",
            json!({ "cache_ttl_seconds": 0, "proxy_height": 144 }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    for name in ["A001C001", "A001C002"] {
        Clip::default().write(&env.media_root.join(format!("dash/A001/{name}.mov")))?;
    }
    let production = env.production("Dashboard", 1, "dash", None).await?;
    env.scan(&production["id"]).await?;
    let board = env
        .get_until("/api/v1/dashboard", Duration::from_secs(90), |b| {
            b["clips_transcoded"] == 2
        })
        .await?;
    assert_eq!(board["clips_waiting_transcode"], 0, "{board}");
    assert_eq!(board["clips_waiting_transcribe"], 2);
    assert_eq!(board["clips_transcribed"], 0);
    assert!(board["running_jobs"].is_array() && board["queues"].as_array().map(Vec::len) == Some(6));
    let workers = board["workers_online"].as_array().cloned().unwrap_or_default();
    assert_eq!(workers.len(), 1, "{board}");
    assert_eq!(workers[0]["capabilities"]["video"]["encoder"], "libx264");
    assert!(board["users_online"].is_number());

    let clips = env.clips(&production["id"]).await?;
    let proxy = env
        .data_dir
        .join("clips")
        .join(clips[0]["id"].as_str().unwrap_or_default())
        .join("proxy.mp4");
    let probe = ffprobe(&proxy)?;
    assert_eq!(
        probe["streams"][0]["height"], 144,
        "the proxy_height setting reached the worker"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_info_shows_versions_and_masks_secrets() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    // Once the worker has registered.
    let info = env
        .get_until("/api/v1/system", Duration::from_secs(30), |i| {
            i["workers"].as_array().is_some_and(|w| !w.is_empty())
        })
        .await?;
    let worker = &info["workers"][0];
    assert_eq!(worker["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert!(
        worker["ffmpeg"]
            .as_str()
            .is_some_and(|v| v.starts_with("ffmpeg version")),
        "the ffmpeg the worker runs: {worker}"
    );
    assert_eq!(worker["gpus"], json!([]));
    let node = &info["rabbitmq"]["nodes"][0];
    assert!(
        node["version"].as_str().is_some_and(|v| v.starts_with("RabbitMQ 3.")),
        "the broker's own version: {node}"
    );
    for crate_name in ["lapin", "sqlx", "axum", "tokio", "candle-core"] {
        assert!(
            info["dependencies"][crate_name].is_string(),
            "{crate_name}: {}",
            info["dependencies"]
        );
    }
    assert_eq!(info["rushes"], env!("CARGO_PKG_VERSION"));
    assert!(info["postgresql"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(info["rabbitmq"]["reachable"], true);
    assert_eq!(
        info["whisper_model"],
        Value::Null,
        "no worker transcribes, none chosen: {info}"
    );
    assert_eq!(info["whisper_models_in_use"], json!([]), "{info}");
    assert_eq!(info["config"]["admin_token"], "****");
    let amqp = info["config"]["amqp_url"].as_str().unwrap_or_default();
    assert!(amqp.contains(":****@") && !amqp.contains("guest@"), "{amqp}");
    assert!(!info.to_string().contains(rushes_tests::TOKEN));
    Ok(())
}

/// The fields that must survive an export and import.
fn clip_facts(clips: &[Value]) -> Vec<Value> {
    let mut facts: Vec<Value> = clips
        .iter()
        .map(|c| {
            json!([
                c["path"],
                c["card"],
                c["duration_s"],
                c["frame_rate"],
                c["start_timecode"],
                c["audio_tracks"],
                c["audio_channels"],
                c["shooter"],
                c["hidden"]
            ])
        })
        .collect();
    facts.sort_by_key(|f| f.to_string());
    facts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_exported_deleted_and_imported_elsewhere_keeps_its_clips() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1").await?;
    for name in ["A001/A001C001.mov", "B001/B001C001.mov"] {
        Clip::default().write(&env.media_root.join("show").join(name))?;
    }
    let production = env.production("Travelling Show", 2, "show", Some(70)).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    env.scan(&production["id"]).await?;
    let clips = env
        .get_until(
            &format!("/api/v1/clips?production_id={id}"),
            Duration::from_secs(90),
            |b| {
                b["clips"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["transcode_state"] == "done"))
            },
        )
        .await?["clips"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = clips[0]["id"].as_str().unwrap_or_default().to_owned();
    env.patch(
        "/api/v1/clips",
        json!({ "ids": [first], "shooter": "Ana", "hidden": true }),
    )
    .await?;
    let (_, tag) = env.post("/api/v1/tags", json!({ "name": "Selects" })).await?;
    let (status, _) = env
        .post(&format!("/api/v1/clips/{first}/tags"), json!({ "tag_id": tag["id"] }))
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env
        .post(
            &format!("/api/v1/clips/{first}/markers"),
            json!({ "at_s": 1.0, "label": "clap" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let clips = env.clips(&production["id"]).await?;

    let (status, document) = env.get(&format!("/api/v1/productions/{id}/export")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (document["format"].clone(), document["version"].clone()),
        (json!("rushes.production"), json!(1))
    );
    assert_eq!(document["clips"].as_array().map(Vec::len), Some(2));

    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/productions/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        env.media_root.join("show/A001/A001C001.mov").is_file(),
        "rushes are never touched"
    );
    assert!(
        !env.data_dir.join("clips").join(&first).exists(),
        "our outputs go with it"
    );
    let (status, _) = env.get(&format!("/api/v1/productions/{id}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another instance: its own database, its rushes under another root.
    let other = TestEnv::new().await?;
    for name in ["A001/A001C001.mov", "B001/B001C001.mov"] {
        let to = other.media_root.join("moved/show").join(name);
        std::fs::create_dir_all(to.parent().unwrap_or(&other.media_root))?;
        std::fs::copy(env.media_root.join("show").join(name), to)?;
    }
    let mut body = document.clone();
    body["path"] = json!("moved/show");
    let (status, imported) = other.post("/api/v1/productions/import", body.clone()).await?;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    let (status, _) = other.post("/api/v1/productions/import", body.clone()).await?;
    assert_eq!(status, StatusCode::CONFLICT, "the series exists now");
    let (_, shown) = other
        .get(&format!(
            "/api/v1/productions/{}",
            imported["id"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(
        (shown["name"].clone(), shown["priority"].clone()),
        (json!("Travelling Show Series 2"), json!(70))
    );
    assert!(
        shown["path"].as_str().is_some_and(|p| p.ends_with("moved/show")),
        "{shown}"
    );
    let moved = other.clips(&imported["id"]).await?;
    assert_eq!(clip_facts(&moved), clip_facts(&clips));
    assert!(
        moved
            .iter()
            .all(|c| c["transcode_state"] == "pending" && c["id"] != clips[0]["id"])
    );
    let tagged = moved
        .iter()
        .find(|c| c["tags"] == json!(["Selects"]))
        .cloned()
        .unwrap_or_default();
    let (_, marks) = other
        .get(&format!(
            "/api/v1/clips/{}/markers",
            tagged["id"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(marks["markers"][0]["at_s"], json!(1.0), "{marks}");
    assert_eq!(marks["markers"][0]["label"], json!("clap"));

    for (bad, why) in [
        (json!({ "format": "other" }), "a foreign document"),
        (
            {
                let mut b = body.clone();
                b["format"] = json!("something.else");
                b
            },
            "another format",
        ),
        (
            {
                let mut b = body.clone();
                b["version"] = json!(99);
                b
            },
            "a newer version",
        ),
        (
            {
                let mut b = body.clone();
                b["path"] = json!("/etc");
                b["production"]["series"] = json!(9);
                b
            },
            "a path outside the roots",
        ),
    ] {
        let (status, error) = other.post("/api/v1/productions/import", bad).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {error}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_draft_is_previewed_scheduled_and_received_by_its_recipients() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let sink = rushes_tests::media::SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("email=2")?;
    worker.smtp.smtp_port = sink.port;
    env.spawn_worker(worker);
    let scheduler = env.scheduler_config()?;
    let _scheduler = env.spawn_scheduler(scheduler);

    let mut ids = Vec::new();
    for name in ["cam", "sound", "edit", "outsider"] {
        ids.push(env.user(name, json!({})).await?["id"].clone());
    }
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "crew" })).await?;
    for id in &ids[..2] {
        env.post(
            &format!("/api/v1/groups/{}/members", group["id"].as_str().unwrap_or_default()),
            json!({ "user_id": id }),
        )
        .await?;
    }
    // Account mails went out already; count from here.
    let before = sink.wait_for(4, Duration::from_secs(60)).await?.len();

    let send_at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (status, draft) = env
        .post(
            "/api/v1/emails",
            json!({
                "subject": "Wrap party",
                "html": "<p>Friday <b>8pm</b><img src=\"https://example.com/map.png\"><script>alert(1)</script></p>",
                "recipients": { "user_ids": [ids[2]], "group_ids": [group["id"]] },
                "send_at": send_at,
            }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    assert!(
        !draft["html"].as_str().unwrap_or_default().contains("script"),
        "sanitised: {draft}"
    );
    let id = draft["id"].as_str().unwrap_or_default().to_owned();
    let (_, preview) = env.get(&format!("/api/v1/emails/{id}/preview")).await?;
    assert_eq!(
        preview["recipients"],
        json!(["cam@example.com", "edit@example.com", "sound@example.com"])
    );
    assert!(
        preview["text"].as_str().unwrap_or_default().contains("Friday 8pm"),
        "{preview}"
    );
    let (status, sent) = env.post(&format!("/api/v1/emails/{id}/send"), json!({})).await?;
    assert_eq!(
        (status, sent["state"].clone()),
        (StatusCode::ACCEPTED, json!("scheduled"))
    );
    let (status, _) = env.post(&format!("/api/v1/emails/{id}/send"), json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT);

    let received = sink.wait_for(before + 3, Duration::from_secs(60)).await?;
    let mut to: Vec<String> = received
        .iter()
        .filter(|m| m["data"].as_str().is_some_and(|d| d.contains("Wrap party")))
        .filter_map(|m| m["to"][0].as_str().map(str::to_owned))
        .collect();
    to.sort();
    assert_eq!(to, ["cam@example.com", "edit@example.com", "sound@example.com"]);
    let (_, shown) = env.get(&format!("/api/v1/emails/{id}")).await?;
    assert_eq!(
        (shown["state"].clone(), shown["recipients"].clone()),
        (json!("sent"), json!(3))
    );
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/emails/{id}"), None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "a sent mail-out stays on record");

    let (status, _) = env
        .post(
            "/api/v1/emails",
            json!({ "subject": "x", "html": "y", "recipients": {} }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .post(
            "/api/v1/emails",
            json!({ "subject": "x", "html": "y", "recipients": { "user_ids": [Uuid::now_v7()] } }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_need_manage_tags_to_define_but_only_sight_to_apply() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    std::fs::create_dir_all(env.media_root.join("tagged"))?;
    let production = env.production("Tagged", 1, "tagged", None).await?;
    let pid: Uuid = production["id"].as_str().unwrap_or_default().parse()?;
    let clip = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, duration_s) \
         VALUES ($1, $2, 'A001/c.mov', 'c.mov', 1, 1, 10.0)",
    )
    .bind(clip)
    .bind(pid)
    .execute(&env.db)
    .await?;
    let viewer = env.user("viewer", json!({})).await?;
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "viewers" })).await?;
    let gid = group["id"].as_str().unwrap_or_default().to_owned();
    env.post(
        &format!("/api/v1/groups/{gid}/members"),
        json!({ "user_id": viewer["id"] }),
    )
    .await?;
    env.post(
        &format!("/api/v1/groups/{gid}/productions"),
        json!({ "production_id": pid }),
    )
    .await?;
    let token = env.login("viewer").await?;
    let as_viewer = |method: reqwest::Method, path: String, body: Value| {
        let request = env.http.request(method, env.url(&path)).bearer_auth(&token).json(&body);
        async move { anyhow::Ok(request.send().await?.status()) }
    };

    let denied = as_viewer(
        reqwest::Method::POST,
        "/api/v1/tags".into(),
        json!({ "name": "b-roll" }),
    )
    .await?;
    assert_eq!(denied, StatusCode::FORBIDDEN);
    let (status, tag) = env.post("/api/v1/tags", json!({ "name": "B-roll" })).await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = env.post("/api/v1/tags", json!({ "name": "b-ROLL" })).await?;
    assert_eq!(status, StatusCode::CONFLICT, "names are case-insensitive");
    let tid = tag["id"].as_str().unwrap_or_default().to_owned();
    let applied = as_viewer(
        reqwest::Method::POST,
        format!("/api/v1/clips/{clip}/tags"),
        json!({ "tag_id": tid }),
    )
    .await?;
    assert_eq!(applied, StatusCode::NO_CONTENT, "applying needs only sight of the clip");
    // A clip the viewer cannot see carries the tag too: their count leaves it out.
    std::fs::create_dir_all(env.media_root.join("secret"))?;
    let secret = env.production("Secret", 1, "secret", None).await?;
    let hidden = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, duration_s) \
         VALUES ($1, $2, 'A001/h.mov', 'h.mov', 1, 1, 10.0)",
    )
    .bind(hidden)
    .bind(secret["id"].as_str().unwrap_or_default().parse::<Uuid>()?)
    .execute(&env.db)
    .await?;
    env.post(&format!("/api/v1/clips/{hidden}/tags"), json!({ "tag_id": tid }))
        .await?;
    let (_, everyone) = env.get("/api/v1/tags").await?;
    assert_eq!(everyone["tags"][0]["clips"], 2, "{everyone}");
    let seen: Value = env
        .http
        .get(env.url("/api/v1/tags"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen["tags"][0]["clips"], 1, "counts only what the viewer sees: {seen}");
    let (_, found) = env
        .get(&format!("/api/v1/clips?production_id={pid}&tag=b-roll"))
        .await?;
    assert_eq!(found["clips"][0]["tags"], json!(["B-roll"]));
    let marked = as_viewer(
        reqwest::Method::POST,
        format!("/api/v1/clips/{clip}/markers"),
        json!({ "at_s": 4.5, "label": "laugh" }),
    )
    .await?;
    assert_eq!(marked, StatusCode::CREATED);
    let late = as_viewer(
        reqwest::Method::POST,
        format!("/api/v1/clips/{clip}/markers"),
        json!({ "at_s": 11.0 }),
    )
    .await?;
    assert_eq!(late, StatusCode::UNPROCESSABLE_ENTITY, "a marker sits inside the clip");
    let (status, _) = env
        .post(
            &format!("/api/v1/clips/{clip}/tags"),
            json!({ "tag_id": Uuid::now_v7() }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // The editor role (global) brings manage_tags.
    let (_, roles) = env.get("/api/v1/roles").await?;
    let editor = roles["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "editor")
        .cloned()
        .unwrap_or_default();
    env.post(
        &format!("/api/v1/groups/{gid}/roles"),
        json!({ "role_id": editor["id"] }),
    )
    .await?;
    let renamed = as_viewer(
        reqwest::Method::PATCH,
        format!("/api/v1/tags/{tid}"),
        json!({ "name": "Cutaways" }),
    )
    .await?;
    assert_eq!(renamed, StatusCode::OK);
    let (_, shown) = env.get(&format!("/api/v1/clips/{clip}")).await?;
    assert_eq!(shown["tags"], json!(["Cutaways"]));
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/tags/{tid}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, shown) = env.get(&format!("/api/v1/clips/{clip}")).await?;
    assert_eq!(shown["tags"], json!([]));
    let (_, audit) = env.get("/api/v1/audit-log?target_type=tag").await?;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(3),
        "create, rename, delete"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_daily_series() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    env.user("s1", json!({})).await?;
    let job = env.sleep_job(0.0, None).await?;
    env.wait_state(job, "succeeded", Duration::from_secs(30)).await?;
    let (status, stats) = env.get("/api/v1/stats").await?;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let days = stats["days"].as_array().cloned().unwrap_or_default();
    assert_eq!(days.len(), 30);
    let today = days.last().cloned().unwrap_or_default();
    assert_eq!(today["users_added"], 1, "{today}");
    assert_eq!(today["users_total"], 1);
    assert!(today["jobs_succeeded"].as_i64().unwrap_or(0) >= 1, "{today}");
    let (status, _) = env.get("/api/v1/stats?from=2026-01-10&to=2026-01-01").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env.get("/api/v1/stats?from=2020-01-01&to=2026-01-01").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = env.get("/api/v1/stats?from=yesterday").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_snapshots_outlive_purges_and_count_each_productions_users() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    std::fs::create_dir_all(env.media_root.join("snap"))?;
    let production = env.production("Snap", 1, "snap", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    let (_, bases) = env.get("/api/v1/base-productions").await?;
    let group = bases["base_productions"][0]["group_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sam = env.user("sam", json!({})).await?;
    let (status, _) = env
        .post(
            &format!("/api/v1/groups/{group}/members"),
            json!({ "user_id": sam["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    env.login("sam").await?;
    let (status, _) = env
        .post("/api/v1/auth/login", json!({ "username": "sam", "password": "not it" }))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        let job = env.sleep_job(0.0, None).await?;
        env.wait_state(job, "succeeded", Duration::from_secs(30)).await?;
    }
    let (_, schedules) = env.get("/api/v1/schedules").await?;
    assert!(
        schedules.to_string().contains("snapshot-daily-stats"),
        "the nightly schedule is there by default"
    );

    // Today's figures recorded (the nightly schedule records yesterday's).
    let today = chrono::Utc::now().date_naive().to_string();
    let (status, body) = env
        .post(
            "/api/v1/jobs",
            json!({ "kind": "snapshot_stats", "payload": { "day": today } }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let done = env
        .wait_state(rushes_tests::job_id(&body)?, "succeeded", Duration::from_secs(30))
        .await?;
    assert_eq!(done["result"]["recorded"]["jobs"]["sleep"]["succeeded"], 2, "{done}");
    let (status, body) = env
        .post(
            "/api/v1/jobs",
            json!({ "kind": "snapshot_stats", "payload": { "day": "soon" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The job rows and the user go; the recorded day keeps them.
    sqlx::query("DELETE FROM jobs WHERE kind = 'sleep'")
        .execute(&env.db)
        .await?;
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/{}", sam["id"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, stats) = env.get(&format!("/api/v1/stats?from={today}&to={today}")).await?;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let day = &stats["days"][0];
    assert_eq!(day["recorded"], true, "{day}");
    assert_eq!(day["jobs_by_kind"]["sleep"]["succeeded"], 2, "{day}");
    assert_eq!(day["jobs_succeeded"], 2, "{day}");
    assert_eq!(
        (day["logins"].clone(), day["failed_logins"].clone()),
        (json!(1), json!(1)),
        "{day}"
    );
    assert_eq!(
        (day["active_users"].clone(), day["users_total"].clone()),
        (json!(1), json!(1)),
        "{day}"
    );
    let (status, series) = env
        .get(&format!("/api/v1/stats/productions/{pid}?from={today}&to={today}"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{series}");
    assert_eq!(
        series["days"][0],
        json!({ "date": today, "recorded": true, "active_users": 1 })
    );
    let (status, _) = env
        .get(&format!("/api/v1/stats/productions/{}", Uuid::now_v7()))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .get(&format!(
            "/api/v1/stats/productions/{pid}?from=2026-01-10&to=2026-01-01"
        ))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_serve_one_clip_until_they_expire_or_are_revoked() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,transcode=1").await?;
    Clip::default().write(&env.media_root.join("shared/A001/A001C001.mov"))?;
    let production = env.production("Shared", 1, "shared", None).await?;
    env.scan(&production["id"]).await?;
    let id = production["id"].as_str().unwrap_or_default().to_owned();
    let clips = env
        .get_until(
            &format!("/api/v1/clips?production_id={id}"),
            Duration::from_secs(90),
            |b| b["clips"][0]["transcode_state"] == "done",
        )
        .await?;
    let clip = clips["clips"][0]["id"].as_str().unwrap_or_default().to_owned();

    let (status, made) = env
        .post(
            &format!("/api/v1/clips/{clip}/share"),
            json!({ "expires_in_hours": 2, "password": "rushes!!" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let url = made["url"]
        .as_str()
        .unwrap_or_default()
        .replace("http://rushes.test", &env.base_url);
    let get = |url: String, password: Option<&'static str>| {
        let mut request = env.http.get(url);
        if let Some(p) = password {
            request = request.header("x-share-password", p);
        }
        async move { anyhow::Ok(request.send().await?) }
    };
    assert_eq!(get(url.clone(), None).await?.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(url.clone(), Some("guess")).await?.status(), StatusCode::FORBIDDEN);
    let opened: Value = get(url.clone(), Some("rushes!!")).await?.json().await?;
    let proxy = opened["files"]["proxy"].as_str().unwrap_or_default().to_owned();
    assert!(proxy.ends_with("/proxy.mp4"), "{opened}");
    let ranged = env
        .http
        .get(env.url(&proxy))
        .header("x-share-password", "rushes!!")
        .header("Range", "bytes=0-9")
        .send()
        .await?;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    for other in ["audio.wav", "..%2Fproxy.mp4", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"] {
        let response = get(format!("{url}/{other}"), Some("rushes!!")).await?;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{other}");
    }
    assert_eq!(
        get(format!("{}/share/not-a-token", env.base_url), None).await?.status(),
        StatusCode::NOT_FOUND
    );
    let (_, links) = env.get(&format!("/api/v1/share-links?clip_id={clip}")).await?;
    assert_eq!(links["share_links"][0]["views"], 1, "{links}");

    let share = made["share"]["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/share-links/{share}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(get(url.clone(), Some("rushes!!")).await?.status(), StatusCode::GONE);

    let (_, open_link) = env.post(&format!("/api/v1/clips/{clip}/share"), json!({})).await?;
    let open_url = open_link["url"]
        .as_str()
        .unwrap_or_default()
        .replace("http://rushes.test", &env.base_url);
    assert_eq!(
        get(open_url.clone(), None).await?.status(),
        StatusCode::OK,
        "no password needed"
    );
    sqlx::query("UPDATE share_links SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(open_link["share"]["id"].as_str().unwrap_or_default().parse::<Uuid>()?)
        .execute(&env.db)
        .await?;
    assert_eq!(get(open_url, None).await?.status(), StatusCode::GONE);
    let (status, _) = env
        .post(&format!("/api/v1/clips/{clip}/share"), json!({ "expires_in_hours": 0 }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_keep_their_own_log_lines_beside_the_system_log() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("scan=1,maintenance=1").await?;
    Clip::default().write(&env.media_root.join("logged/A001/A001C001.mov"))?;
    let production = env.production("Logged", 1, "logged", None).await?;
    let scan = env.scan(&production["id"]).await?;
    let id = scan["id"].as_str().unwrap_or_default().to_owned();
    let lines = env
        .get_until(&format!("/api/v1/jobs/{id}/logs"), Duration::from_secs(10), |b| {
            b["lines"].as_array().map(Vec::len) == Some(2)
        })
        .await?;
    let messages: Vec<&str> = lines["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages[0].contains("1 new") && messages[1] == "succeeded",
        "{messages:?}"
    );
    assert_eq!(lines["lines"][1]["fields"]["attempt"], 1);

    let failing = env
        .enqueue(json!({ "kind": "sleep", "payload": { "seconds": 0, "fail_attempts": 5 }, "max_attempts": 1 }))
        .await?;
    env.wait_job(failing, Duration::from_secs(30), |j| {
        j["state"] == "dead" || j["state"] == "failed"
    })
    .await?;
    let errors = env
        .get_until("/api/v1/logs?level=warn", Duration::from_secs(10), |b| {
            b["lines"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["job_id"] == json!(failing)))
        })
        .await?;
    assert!(
        errors["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|l| l["level"] != "info"),
        "{errors}"
    );
    let system = env
        .get_until(
            "/api/v1/logs?system=true&service=worker",
            Duration::from_secs(10),
            |b| b["lines"].as_array().is_some_and(|l| !l.is_empty()),
        )
        .await?;
    assert!(
        system["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["message"].as_str().unwrap_or_default().contains("started")),
        "{system}"
    );
    let (status, _) = env.get("/api/v1/logs?level=loud").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_draft_is_editable_until_it_is_sent() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let first = env.user("first", json!({})).await?;
    let second = env.user("second", json!({})).await?;
    let (status, draft) = env
        .post(
            "/api/v1/emails",
            json!({ "subject": "Call sheet", "html": "<p>Monday</p>", "recipients": { "user_ids": [first["id"]] } }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{draft}");
    let id = draft["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/emails/{id}");

    let (status, edited) = env
        .patch(
            &path,
            json!({
                "subject": "  Call sheet (moved)  ",
                "html": "<p>Tuesday<script>alert(1)</script></p>",
                "recipients": { "user_ids": [second["id"]] },
            }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["subject"], "Call sheet (moved)");
    assert!(
        edited["html"]
            .as_str()
            .is_some_and(|h| h.contains("Tuesday") && !h.contains("script")),
        "sanitised as on create: {edited}"
    );
    let (_, preview) = env.get(&format!("{path}/preview")).await?;
    assert_eq!(preview["recipients"], json!(["second@example.com"]), "{preview}");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let (status, timed) = env.patch(&path, json!({ "send_at": later })).await?;
    assert_eq!(status, StatusCode::OK, "{timed}");
    assert!(timed["send_at"].is_string(), "{timed}");
    let (_, untimed) = env.patch(&path, json!({ "send_at": null })).await?;
    assert!(untimed["send_at"].is_null(), "null clears it: {untimed}");
    assert_eq!(
        untimed["subject"], "Call sheet (moved)",
        "an absent field is kept: {untimed}"
    );

    for bad in [
        json!({ "subject": "   " }),
        json!({ "recipients": {} }),
        json!({ "recipients": { "user_ids": [Uuid::now_v7()] } }),
        json!({ "recipients": { "group_ids": [Uuid::now_v7()] } }),
        json!({ "send_at": "tomorrow" }),
        json!({ "state": "sent" }),
        json!({}),
    ] {
        let (status, body) = env.patch(&path, bad.clone()).await?;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {body}"
        );
    }
    let (status, _) = env
        .patch(&format!("/api/v1/emails/{}", Uuid::now_v7()), json!({ "subject": "x" }))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let edits: Vec<Value> =
        sqlx::query_scalar("SELECT after FROM audit_log WHERE action = 'email.edit' AND target_id = $1 ORDER BY at")
            .bind(&id)
            .fetch_all(&env.db)
            .await?;
    assert_eq!(edits.len(), 3, "{edits:?}");
    assert_eq!(edits[0]["subject"], "Call sheet (moved)");

    // A scheduled mail-out: its words and recipients still change, its time is the
    // schedule's.
    let (_, scheduled) = env
        .post(
            "/api/v1/emails",
            json!({ "subject": "Later", "html": "<p>x</p>", "recipients": { "everyone": true }, "send_at": later }),
        )
        .await?;
    let scheduled = format!("/api/v1/emails/{}", scheduled["id"].as_str().unwrap_or_default());
    let (status, _) = env.post(&format!("{scheduled}/send"), json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = env.patch(&scheduled, json!({ "subject": "Later still" })).await?;
    assert_eq!(
        (status, body["subject"].clone()),
        (StatusCode::OK, json!("Later still"))
    );
    let (status, body) = env.patch(&scheduled, json!({ "send_at": null })).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Once sent, it stays on record as it went out.
    env.spawn_worker(env.worker_config("email=1")?);
    let (status, _) = env.post(&format!("{path}/send"), json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    env.get_until(&path, Duration::from_secs(30), |d| d["state"] == "sent")
        .await?;
    let (status, body) = env.patch(&path, json!({ "subject": "Too late" })).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, shown) = env.get(&path).await?;
    assert_eq!(shown["subject"], "Call sheet (moved)");
    Ok(())
}
