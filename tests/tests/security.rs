//! Login abuse and share links under control: counted login and reset limits with a
//! backoff, the client address behind trusted proxies only, the login records'
//! retention, the reserved `admin` name, and share links that need the `share` policy,
//! are audited, take no password in the URL, limit wrong passwords, hand out grants,
//! and stop when their maker loses access.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use rushes_tests::{PASSWORD, TestEnv};
use serde_json::{Value, json};
use uuid::Uuid;

/// The built-in editor role (carries `share`).
const EDITOR_ROLE: &str = "00000000-0000-7000-8000-0000000000a2";

fn id(value: &Value) -> anyhow::Result<Uuid> {
    Ok(value.as_str().unwrap_or_default().parse()?)
}

/// Logs in at `base` (a control plane's URL) as `username`, claiming `forwarded` as the
/// client address; returns the status and body.
async fn login_at(
    env: &TestEnv,
    base: &str,
    username: &str,
    password: &str,
    forwarded: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = env
        .http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": password }));
    if let Some(address) = forwarded {
        request = request.header("x-forwarded-for", address);
    }
    TestEnv::answer(request).await
}

async fn throttle(env: &TestEnv, key: &str) -> anyhow::Result<Option<(i32, chrono::DateTime<chrono::Utc>)>> {
    Ok(sqlx::query_as("SELECT attempts, last_at FROM throttles WHERE key = $1")
        .bind(key)
        .fetch_optional(&env.db)
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_counted_one_by_one_and_back_off_without_extending() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.user("victim", json!({})).await?;
    let base = env.base_url.clone();

    // Twelve guesses at once: each is counted before it is checked, so exactly the five
    // free ones are checked (401) and the rest are refused (429) however they interleave.
    let guesses = (0..12).map(|_| login_at(&env, &base, "victim", "wrong guess", None));
    let mut statuses: Vec<StatusCode> = Vec::new();
    for answer in join_all(guesses).await {
        statuses.push(answer?.0);
    }
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 7), "{statuses:?}");

    // The right password waits too, and waiting does not push the wait further.
    let before = throttle(&env, "login:account:victim").await?;
    let (status, body) = login_at(&env, &base, "VICTIM", PASSWORD, None).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("try again in"),
        "{body}"
    );
    assert_eq!(
        throttle(&env, "login:account:victim").await?,
        before,
        "a refused attempt changes nothing"
    );
    assert_eq!(before.map(|b| b.0), Some(5));

    // Once the first wait (30 s) is over, the right password gets in and the count is forgotten.
    sqlx::query("UPDATE throttles SET last_at = last_at - interval '31 seconds' WHERE key = 'login:account:victim'")
        .execute(&env.db)
        .await?;
    let (status, body) = login_at(&env, &base, "victim", PASSWORD, None).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(throttle(&env, "login:account:victim").await?, None);

    // Unknown names cost a check and are counted like known ones.
    let (status, _) = login_at(&env, &base, "nobody", "whatever it is", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(throttle(&env, "login:account:nobody").await?.map(|t| t.0), Some(1));

    // Oversized fields are refused by name before any work.
    for (username, password, field) in [
        ("u".repeat(151), "x".to_owned(), "username"),
        ("victim".to_owned(), "p".repeat(1025), "password"),
    ] {
        let (status, body) = login_at(&env, &base, &username, &password, None).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().starts_with(field),
            "{body}"
        );
    }
    let (_, log) = env.get("/api/v1/login-log?username=victim&success=false").await?;
    let reasons: Vec<&str> = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "rate limited").count(),
        8,
        "{reasons:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_behind_trusted_proxies_and_addresses_are_limited() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.user("walker", json!({})).await?;
    let behind_proxy = env
        .spawn_control_with(|config| config.trusted_proxies = vec!["127.0.0.0/8".into()])
        .await?;
    let direct = env.base_url.clone();

    // Straight to the control plane: a claimed address is ignored.
    login_at(&env, &direct, "walker", "wrong guess", Some("203.0.113.7")).await?;
    // Through a trusted proxy: the forwarded client is the address.
    login_at(&env, &behind_proxy, "walker", "wrong guess", Some("203.0.113.7")).await?;
    let (_, log) = env.get("/api/v1/login-log?username=walker").await?;
    let remotes: Vec<&str> = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["remote"].as_str())
        .collect();
    assert_eq!(remotes, ["203.0.113.7", "127.0.0.1"], "newest first: {log}");

    // Twenty failures from one address, each for another name, then that address waits
    // whatever the name; another address does not.
    for n in 0..18 {
        let (status, _) = login_at(
            &env,
            &behind_proxy,
            &format!("guess{n}"),
            "wrong guess",
            Some("198.51.100.9"),
        )
        .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A success from that address is not counted against it.
    let (status, _) = login_at(&env, &behind_proxy, "walker", PASSWORD, Some("198.51.100.9")).await?;
    assert_eq!(status, StatusCode::OK);
    for n in 18..20 {
        let (status, _) = login_at(
            &env,
            &behind_proxy,
            &format!("guess{n}"),
            "wrong guess",
            Some("198.51.100.9"),
        )
        .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login_at(&env, &behind_proxy, "walker", PASSWORD, Some("198.51.100.9")).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the address waits");
    let (status, _) = login_at(&env, &behind_proxy, "walker", PASSWORD, Some("198.51.100.10")).await?;
    assert_eq!(status, StatusCode::OK, "another address does not");
    assert_eq!(
        throttle(&env, "login:address:198.51.100.9").await?.map(|t| t.0),
        Some(20),
        "refused attempts are not counted"
    );
    // The forged header straight to the control plane was counted against the peer.
    assert_eq!(throttle(&env, "login:address:127.0.0.1").await?.map(|t| t.0), Some(1));
    assert_eq!(throttle(&env, "login:address:203.0.113.7").await?.map(|t| t.0), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_requests_are_limited_per_address_and_per_account() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let forgetful = id(&env.user("forgetful", json!({})).await?["id"])?;
    let mails = || async {
        anyhow::Ok(
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM jobs WHERE kind = 'account_link' AND payload->>'user_id' = $1",
            )
            .bind(forgetful.to_string())
            .fetch_one(&env.db)
            .await?,
        )
    };
    // Five requests from one address: all answered alike, but the account gets three mails.
    for _ in 0..5 {
        let (status, _) = env
            .post("/api/v1/auth/password-reset", json!({ "user": "forgetful" }))
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(mails().await?, 3, "mails to one account are limited silently");
    let (status, body) = env
        .post("/api/v1/auth/password-reset", json!({ "user": "someone else" }))
        .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, _) = env
        .post("/api/v1/auth/password-reset", json!({ "user": "x".repeat(300) }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_logins_keeps_only_recent_login_records() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let user = id(&env.user("kept", json!({})).await?["id"])?;
    for (username, age_days) in [("old", 91), ("recent", 89)] {
        sqlx::query(
            "INSERT INTO login_log (id, username, success, remote, at) \
             VALUES ($1, $2, false, '127.0.0.1', now() - make_interval(days => $3))",
        )
        .bind(Uuid::now_v7())
        .bind(username)
        .bind(age_days)
        .execute(&env.db)
        .await?;
    }
    // Used 8 days ago, expired 8 days ago, used yesterday, still valid.
    for (name, used, expires) in [
        ("used-old", Some(8), -7),
        ("expired-old", None, -8),
        ("used-recent", Some(1), 0),
        ("valid", None, 1),
    ] {
        sqlx::query(
            "INSERT INTO password_resets (id, user_id, token_hash, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, now() - interval '9 days', now() + make_interval(days => $4), \
                     now() - make_interval(days => $5))",
        )
        .bind(Uuid::now_v7())
        .bind(user)
        .bind(name.as_bytes())
        .bind(expires)
        .bind(used)
        .execute(&env.db)
        .await?;
    }
    sqlx::query(
        "INSERT INTO throttles (key, attempts, last_at) VALUES \
         ('login:account:idle', 3, now() - interval '2 days'), ('login:account:busy', 3, now())",
    )
    .execute(&env.db)
    .await?;

    // The default schedule runs it daily.
    let (_, schedules) = env.get("/api/v1/schedules?kind=purge_logins").await?;
    assert_eq!(schedules["schedules"][0]["name"], "purge-login-records", "{schedules}");
    assert_eq!(schedules["schedules"][0]["enabled"], true);

    let job = env
        .enqueue(json!({ "kind": "purge_logins", "payload": { "login_log_days": 90, "resets_days": 7 } }))
        .await?;
    let done = env.wait_state(job, "succeeded", Duration::from_secs(20)).await?;
    assert_eq!(
        done["result"],
        json!({ "login_log": 1, "password_resets": 2, "counters": 1 }),
        "{done}"
    );
    let left: Vec<String> = sqlx::query_scalar("SELECT username FROM login_log ORDER BY username")
        .fetch_all(&env.db)
        .await?;
    assert_eq!(left, ["recent"]);
    let resets: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM password_resets ORDER BY token_hash")
        .fetch_all(&env.db)
        .await?;
    assert_eq!(resets, [b"used-recent".to_vec(), b"valid".to_vec()]);
    let (status, _) = env
        .post(
            "/api/v1/jobs",
            json!({ "kind": "purge_logins", "payload": { "login_log_days": 0 } }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_may_be_called_admin() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    for name in ["admin", "Admin", "ADMIN"] {
        let (status, body) = env
            .post(
                "/api/v1/users",
                json!({ "username": name, "email": "a@example.com", "password": PASSWORD }),
            )
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("reserved"),
            "{body}"
        );
    }
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "u".repeat(151), "email": "long@example.com", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, invitation) = env
        .post("/api/v1/invitations", json!({ "email": "invited@example.com" }))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    // The worker mints the link it mails; this test sets a token of its own instead.
    let token = "an invitation token of the test's";
    sqlx::query("UPDATE invitations SET token_hash = $1 WHERE id = $2")
        .bind(rushes_common::tokens::token_digest(token))
        .bind(id(&invitation["id"])?)
        .execute(&env.db)
        .await?;
    let (status, body) = env
        .post(
            "/api/v1/invitations/accept",
            json!({ "token": token, "username": "aDmIn", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = env
        .post(
            "/api/v1/invitations/accept",
            json!({ "token": token, "username": "invited", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "the invitation is still good");

    let import = env
        .http
        .post(env.url("/api/v1/users/import"))
        .bearer_auth(rushes_tests::TOKEN)
        .body("username,email\nAdmin,imported@example.com\nfine,fine@example.com\n");
    let (status, job) = TestEnv::answer(import).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = env
        .wait_state(rushes_tests::job_id(&job)?, "succeeded", Duration::from_secs(30))
        .await?;
    assert_eq!(done["result"]["applied"], false, "{done}");
    assert!(
        done["result"]["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("reserved"),
        "{done}"
    );
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(username) = 'admin'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(admins, 0);
    Ok(())
}

/// A production with one clip whose proxy is a 4 KiB file; returns (production, clip).
async fn clip_with_proxy(env: &TestEnv) -> anyhow::Result<(Uuid, Uuid)> {
    std::fs::create_dir_all(env.media_root.join("shared"))?;
    let production = id(&env.production("Shared", 1, "shared", None).await?["id"])?;
    let clip = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns, outputs) \
         VALUES ($1, $2, 'A001C001.mov', 'A001C001.mov', 1, 1, '{\"proxy\": \"proxy.mp4\"}')",
    )
    .bind(clip)
    .bind(production)
    .execute(&env.db)
    .await?;
    let dir = env.data_dir.join("clips").join(clip.to_string());
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("proxy.mp4"), vec![7u8; 4096])?;
    Ok((production, clip))
}

/// A group granted `production`, with these members and, if given, the role on it.
async fn group(
    env: &TestEnv,
    name: &str,
    production: Uuid,
    role: Option<&str>,
    members: &[Uuid],
) -> anyhow::Result<Uuid> {
    let (status, group) = env.post("/api/v1/groups", json!({ "name": name })).await?;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group = id(&group["id"])?;
    let (status, _) = env
        .post(
            &format!("/api/v1/groups/{group}/productions"),
            json!({ "production_id": production }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    if let Some(role) = role {
        let (status, body) = env
            .post(
                &format!("/api/v1/groups/{group}/roles"),
                json!({ "role_id": role, "scope_type": "production", "scope_id": production }),
            )
            .await?;
        assert!(status.is_success(), "{status} {body}");
    }
    for member in members {
        let (status, _) = env
            .post(&format!("/api/v1/groups/{group}/members"), json!({ "user_id": member }))
            .await?;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    Ok(group)
}

/// `POST /clips/{clip}/share` as the holder of `token`.
async fn share(env: &TestEnv, token: &str, clip: Uuid, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    TestEnv::answer(
        env.http
            .post(env.url(&format!("/api/v1/clips/{clip}/share")))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

/// A share URL on this test's control plane.
fn local(env: &TestEnv, made: &Value) -> String {
    made["url"]
        .as_str()
        .unwrap_or_default()
        .replace("http://rushes.test", &env.base_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_need_the_share_policy_and_die_with_their_makers_access() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (production, clip) = clip_with_proxy(&env).await?;
    let mut users = Vec::new();
    for name in ["looker", "leaver", "sleeper", "goner"] {
        users.push(id(&env.user(name, json!({})).await?["id"])?);
    }
    let (looker, leaver, sleeper, goner) = (users[0], users[1], users[2], users[3]);
    group(&env, "lookers", production, None, &[looker]).await?;
    let editors = group(
        &env,
        "editors",
        production,
        Some(EDITOR_ROLE),
        &[leaver, sleeper, goner],
    )
    .await?;

    // Seeing a clip is not enough to publish it.
    let looker_token = env.login("looker").await?;
    let (status, body) = share(&env, &looker_token, clip, json!({})).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("share"),
        "{body}"
    );

    // The editor role carries `share`: made, owned by the account, audited.
    let mut links = Vec::new();
    for name in ["leaver", "sleeper", "goner"] {
        let token = env.login(name).await?;
        let (status, made) = share(&env, &token, clip, json!({})).await?;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        links.push((made["share"]["id"].clone(), local(&env, &made)));
    }
    let (_, audit) = env
        .get("/api/v1/audit-log?target_type=share_link&action=share_link.create")
        .await?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 3, "{audit}");
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "leaver" && e["after"]["created_by_id"] == json!(leaver))
    );
    for (_, url) in &links {
        let response = env.http.get(format!("{url}/proxy.mp4")).send().await?;
        assert_eq!(response.status(), StatusCode::OK);
    }

    // Admins list links by production and by maker.
    let (_, listed) = env
        .get(&format!(
            "/api/v1/share-links?production_id={production}&created_by=leaver"
        ))
        .await?;
    let listed = listed["share_links"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["created_by_id"].clone(), listed[0]["active"].clone()),
        (json!(leaver), json!(true))
    );
    let (_, listed) = env.get(&format!("/api/v1/share-links?created_by_id={sleeper}")).await?;
    assert_eq!(listed["share_links"].as_array().map(Vec::len), Some(1));
    let (_, listed) = env
        .get(&format!("/api/v1/share-links?production_id={}", Uuid::now_v7()))
        .await?;
    assert_eq!(listed["share_links"].as_array().map(Vec::len), Some(0));

    // Leaving the group, deactivation and deletion each take the maker's link down.
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/groups/{editors}/members/{leaver}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env
        .patch(&format!("/api/v1/users/{sleeper}"), json!({ "active": false }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/users/{goner}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (_, url) in &links {
        assert_eq!(env.http.get(url).send().await?.status(), StatusCode::GONE, "{url}");
        let response = env.http.get(format!("{url}/proxy.mp4")).send().await?;
        assert_eq!(response.status(), StatusCode::GONE, "{url}: no file");
    }
    let (_, listed) = env
        .get(&format!("/api/v1/share-links?production_id={production}"))
        .await?;
    let listed = listed["share_links"].as_array().cloned().unwrap_or_default();
    assert!(listed.iter().all(|l| l["active"] == false), "{listed:?}");
    let revoked: Vec<&Value> = listed.iter().filter(|l| !l["revoked_at"].is_null()).collect();
    assert_eq!(
        revoked.len(),
        2,
        "deactivation and deletion revoke the rows: {listed:?}"
    );

    // Revoking is audited too.
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/share-links/{}", id(&links[0].0)?),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, audit) = env
        .get("/api/v1/audit-log?target_type=share_link&action=share_link.revoke")
        .await?;
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_passwords_stay_out_of_urls_are_limited_and_buy_a_grant() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (_, clip) = clip_with_proxy(&env).await?;
    let (status, body) = env
        .post(&format!("/api/v1/clips/{clip}/share"), json!({ "password": "seven!!" }))
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let secret = "a long secret";
    let mut urls = Vec::new();
    for _ in 0..2 {
        let (status, made) = env
            .post(&format!("/api/v1/clips/{clip}/share"), json!({ "password": secret }))
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        urls.push(local(&env, &made));
    }
    let (guessed, granted) = (&urls[0], &urls[1]);

    // Never in the URL.
    for url in [guessed.clone(), format!("{guessed}/proxy.mp4")] {
        let (status, body) = TestEnv::answer(env.http.get(format!("{url}?password={secret}"))).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("X-Share-Password")
        );
    }
    // Ten wrong passwords, then even the right one waits.
    for _ in 0..10 {
        let response = env
            .http
            .get(guessed)
            .header("x-share-password", "not the secret")
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let response = env.http.get(guessed).header("x-share-password", secret).send().await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another link has its own count.
    assert_eq!(env.http.get(granted).send().await?.status(), StatusCode::FORBIDDEN);

    // The right password in a POST body buys a grant: in the body and as a cookie.
    let response = env
        .http
        .post(granted)
        .json(&json!({ "password": secret }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let opened: Value = response.json().await?;
    let grant = opened["grant"]["token"].as_str().unwrap_or_default().to_owned();
    assert!(!grant.is_empty(), "{opened}");
    let path = granted.replace(&env.base_url, "");
    assert!(
        cookie.starts_with(&format!("rushes_share_grant={grant};")) && cookie.contains(&format!("Path={path}")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"));
    let proxy = env.url(opened["files"]["proxy"].as_str().unwrap_or_default());

    // Range requests with the grant (header or cookie) need no password.
    let ranged = env
        .http
        .get(&proxy)
        .header("x-share-grant", &grant)
        .header("range", "bytes=0-9")
        .send()
        .await?;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await?.len(), 10);
    let ranged = env
        .http
        .get(&proxy)
        .header("cookie", format!("rushes_share_grant={grant}"))
        .header("range", "bytes=100-199")
        .send()
        .await?;
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    // A grant opens only its own link, and only as signed.
    let guessed_proxy = format!("{guessed}/proxy.mp4");
    let other = env
        .http
        .get(&guessed_proxy)
        .header("x-share-grant", &grant)
        .send()
        .await?;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let forged = format!("{}0", &grant[..grant.len() - 1]);
    let forged = if forged == grant {
        format!("{}1", &grant[..grant.len() - 1])
    } else {
        forged
    };
    let response = env.http.get(&proxy).header("x-share-grant", forged).send().await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_links_expiry_and_password_can_change_and_old_grants_die_with_the_password() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (production, clip) = clip_with_proxy(&env).await?;
    let (status, made) = env
        .post(
            &format!("/api/v1/clips/{clip}/share"),
            json!({ "password": "the first secret", "expires_in_hours": 2 }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let url = local(&env, &made);
    let link = id(&made["share"]["id"])?;
    let path = format!("/api/v1/share-links/{link}");
    let opened: Value = env
        .http
        .post(&url)
        .json(&json!({ "password": "the first secret" }))
        .send()
        .await?
        .json()
        .await?;
    let grant = opened["grant"]["token"].as_str().unwrap_or_default().to_owned();
    assert!(!grant.is_empty(), "{opened}");

    // A new expiry, counted from now.
    let (status, longer) = env.patch(&path, json!({ "expires_in_hours": 48 })).await?;
    assert_eq!(status, StatusCode::OK, "{longer}");
    let expires = chrono::DateTime::parse_from_rfc3339(longer["expires_at"].as_str().unwrap_or_default())?;
    let hours = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((47.9..=48.0).contains(&hours), "{longer}");
    assert_eq!(longer["protected"], true);
    // The grant still opens it: the password did not change.
    let status = env
        .http
        .get(&url)
        .header("x-share-grant", &grant)
        .send()
        .await?
        .status();
    assert_eq!(status, StatusCode::OK);

    // A new password: the old one and the grants it bought stop working.
    let (status, body) = env.patch(&path, json!({ "password": "the second secret" })).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body.to_string().contains("second"),
        "no password in the answer: {body}"
    );
    let with = |header: &'static str, value: &str| env.http.get(&url).header(header, value.to_owned()).send();
    assert_eq!(with("x-share-grant", &grant).await?.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        with("x-share-password", "the first secret").await?.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with("x-share-password", "the second secret").await?.status(),
        StatusCode::OK
    );

    // No password at all.
    let (status, open) = env.patch(&path, json!({ "password": null })).await?;
    assert_eq!((status, open["protected"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(env.http.get(&url).send().await?.status(), StatusCode::OK);

    let audited: Vec<Value> = sqlx::query_scalar(
        "SELECT after FROM audit_log WHERE action = 'share_link.edit' AND target_id = $1 ORDER BY at",
    )
    .bind(link.to_string())
    .fetch_all(&env.db)
    .await?;
    assert_eq!(audited.len(), 3, "{audited:?}");
    assert!(
        !serde_json::to_string(&audited)?.contains("secret"),
        "no password in the audit log: {audited:?}"
    );

    // Refused: nonsense, someone else's link, a revoked one.
    for bad in [
        json!({}),
        json!({ "expires_in_hours": 0 }),
        json!({ "expires_in_hours": 100_000 }),
        json!({ "password": "short" }),
        json!({ "password": "x".repeat(1100) }),
        json!({ "revoked_at": null }),
    ] {
        let (status, body) = env.patch(&path, bad.clone()).await?;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {body}"
        );
    }
    let stranger = id(&env.user("stranger", json!({})).await?["id"])?;
    group(&env, "strangers", production, Some(EDITOR_ROLE), &[stranger]).await?;
    let token = env.login("stranger").await?;
    let (status, _) = TestEnv::answer(
        env.http
            .patch(env.url(&path))
            .bearer_auth(&token)
            .json(&json!({ "expires_in_hours": 1 })),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "not their link");
    env.call(reqwest::Method::DELETE, &path, None).await?;
    let (status, _) = env.patch(&path, json!({ "expires_in_hours": 1 })).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "a revoked link stays revoked");
    Ok(())
}
