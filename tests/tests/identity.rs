//! Identity and access: users, sessions, groups granting productions, policies,
//! impersonation and the audit trail, checked through one authorization matrix.

use reqwest::{Method, StatusCode};
use rushes_tests::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

/// A caller of the matrix: a bearer token, or none.
struct Who {
    name: &'static str,
    token: Option<String>,
}

async fn call(
    env: &TestEnv,
    who: &Who,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = env.http.request(method, env.url(path));
    if let Some(token) = &who.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn user(env: &TestEnv, username: &str, extra: Value) -> anyhow::Result<Uuid> {
    Ok(env.user(username, extra).await?["id"]
        .as_str()
        .unwrap_or_default()
        .parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_kind_of_caller_as_the_table_says() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    std::fs::create_dir_all(env.media_root.join("granted"))?;
    std::fs::create_dir_all(env.media_root.join("hidden"))?;
    let granted = env.production("Access", 1, "granted", None).await?;
    let hidden = env.production("Access", 2, "hidden", None).await?;
    let p1 = granted["id"].as_str().unwrap_or_default().to_owned();
    let p2 = hidden["id"].as_str().unwrap_or_default().to_owned();
    let clip = Uuid::now_v7();
    sqlx::query("INSERT INTO clips (id, production_id, path, name, size_bytes, mtime_ns) VALUES ($1, $2, 'a.mov', 'a.mov', 1, 1)")
        .bind(clip)
        .bind(p1.parse::<Uuid>()?)
        .execute(&env.db)
        .await?;

    let admin = user(&env, "boss", json!({ "is_admin": true })).await?;
    let with = user(&env, "with", json!({})).await?;
    let without = user(&env, "without", json!({})).await?;
    let gone = user(&env, "gone", json!({})).await?;
    let (status, group) = env.post("/api/v1/groups", json!({ "name": "crew" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let crew = group["id"].as_str().unwrap_or_default().to_owned();
    let (_, other) = env.post("/api/v1/groups", json!({ "name": "others" })).await?;
    let others = other["id"].as_str().unwrap_or_default().to_owned();
    for (group, member) in [(&crew, with), (&crew, gone), (&others, without)] {
        let (status, _) = env
            .post(&format!("/api/v1/groups/{group}/members"), json!({ "user_id": member }))
            .await?;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, _) = env
        .post(
            &format!("/api/v1/groups/{crew}/productions"),
            json!({ "production_id": p1 }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let admin_token = env.login("boss").await?;
    let gone_token = env.login("gone").await?;
    let (status, _) = env
        .patch(&format!("/api/v1/users/{gone}"), json!({ "active": false }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let admin_who = Who {
        name: "admin",
        token: Some(admin_token.clone()),
    };
    let (status, imp) = call(
        &env,
        &admin_who,
        Method::POST,
        &format!("/api/v1/users/{with}/impersonate"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{imp}");
    let callers = [
        admin_who,
        Who {
            name: "member with access",
            token: Some(env.login("with").await?),
        },
        Who {
            name: "member without access",
            token: Some(env.login("without").await?),
        },
        Who {
            name: "deactivated",
            token: Some(gone_token),
        },
        Who {
            name: "anonymous",
            token: None,
        },
        Who {
            name: "impersonating admin",
            token: imp["token"].as_str().map(str::to_owned),
        },
    ];

    use StatusCode as S;
    const OK: S = S::OK;
    const NO: S = S::FORBIDDEN;
    const HIDDEN: S = S::NOT_FOUND;
    const ANON: S = S::UNAUTHORIZED;
    let missing = Uuid::now_v7();
    // method, path, body, expected: admin, with access, without, deactivated, anonymous, impersonating.
    let table: Vec<(Method, String, Option<Value>, [S; 6])> = vec![
        (
            Method::GET,
            "/api/v1/productions".into(),
            None,
            [OK, OK, OK, ANON, ANON, OK],
        ),
        (
            Method::GET,
            format!("/api/v1/productions/{p1}"),
            None,
            [OK, OK, HIDDEN, ANON, ANON, OK],
        ),
        (
            Method::GET,
            format!("/api/v1/productions/{p2}"),
            None,
            [OK, HIDDEN, HIDDEN, ANON, ANON, HIDDEN],
        ),
        (
            Method::POST,
            format!("/api/v1/productions/{p1}/scan"),
            None,
            [S::ACCEPTED, NO, HIDDEN, ANON, ANON, NO],
        ),
        (
            Method::PATCH,
            format!("/api/v1/productions/{p1}"),
            Some(json!({ "priority": 30 })),
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::POST,
            "/api/v1/productions".into(),
            Some(json!({})),
            [S::UNPROCESSABLE_ENTITY, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            format!("/api/v1/productions/{p1}/review-files"),
            None,
            [OK, OK, HIDDEN, ANON, ANON, OK],
        ),
        (
            Method::DELETE,
            format!("/api/v1/productions/{p1}/cover"),
            None,
            [S::NO_CONTENT, NO, HIDDEN, ANON, ANON, NO],
        ),
        (
            Method::GET,
            format!("/api/v1/clips?production_id={p1}"),
            None,
            [OK, OK, OK, ANON, ANON, OK],
        ),
        (
            Method::GET,
            format!("/api/v1/clips/{clip}"),
            None,
            [OK, OK, HIDDEN, ANON, ANON, OK],
        ),
        (
            Method::GET,
            format!("/api/v1/clips/{clip}/related"),
            None,
            [OK, OK, HIDDEN, ANON, ANON, OK],
        ),
        (
            Method::PATCH,
            "/api/v1/clips".into(),
            Some(json!({ "ids": [clip], "shooter": "Ana" })),
            [OK, NO, HIDDEN, ANON, ANON, NO],
        ),
        (
            Method::DELETE,
            format!("/api/v1/clips/{missing}"),
            None,
            [HIDDEN, NO, NO, ANON, ANON, NO],
        ),
        (Method::GET, "/api/v1/jobs".into(), None, [OK, NO, NO, ANON, ANON, NO]),
        (Method::GET, "/api/v1/queues".into(), None, [OK, NO, NO, ANON, ANON, NO]),
        (
            Method::GET,
            "/api/v1/workers".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            "/api/v1/schedules".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            "/api/v1/dead-letters".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (Method::GET, "/api/v1/users".into(), None, [OK, NO, NO, ANON, ANON, NO]),
        (
            Method::GET,
            format!("/api/v1/users/{with}"),
            None,
            [OK, OK, NO, ANON, ANON, OK],
        ),
        (
            Method::POST,
            "/api/v1/groups".into(),
            Some(json!({})),
            [S::UNPROCESSABLE_ENTITY, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            "/api/v1/audit-log".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (Method::GET, "/api/v1/roles".into(), None, [OK, NO, NO, ANON, ANON, NO]),
        (
            Method::GET,
            "/api/v1/settings".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            "/api/v1/dashboard".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (Method::GET, "/api/v1/system".into(), None, [OK, NO, NO, ANON, ANON, NO]),
        (
            Method::GET,
            "/api/v1/prometheus/targets".into(),
            None,
            [OK, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::PATCH,
            "/api/v1/settings".into(),
            Some(json!({})),
            [S::UNPROCESSABLE_ENTITY, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::POST,
            "/api/v1/cache/clear".into(),
            None,
            [S::NO_CONTENT, NO, NO, ANON, ANON, NO],
        ),
        (
            Method::GET,
            "/api/v1/auth/me".into(),
            None,
            [OK, OK, OK, ANON, ANON, OK],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &table {
        for (who, want) in callers.iter().zip(expected) {
            let (got, answer) = call(&env, who, method.clone(), path, body.as_ref()).await?;
            if got != *want {
                wrong.push(format!("{method} {path} as {}: {got} (want {want}) {answer}", who.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Lists show exactly what groups grant.
    let listed = |token: &Option<String>, path: &str| {
        let who = Who {
            name: "",
            token: token.clone(),
        };
        let path = path.to_owned();
        let env = &env;
        async move { call(env, &who, Method::GET, &path, None).await }
    };
    let (_, mine) = listed(&callers[1].token, "/api/v1/productions").await?;
    let ids: Vec<&str> = mine["productions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, vec![p1.as_str()]);
    let (_, none) = listed(&callers[2].token, &format!("/api/v1/clips?production_id={p1}")).await?;
    assert_eq!(none["clips"].as_array().map(Vec::len), Some(0));
    let (_, all) = listed(&callers[0].token, "/api/v1/productions").await?;
    assert_eq!(all["productions"].as_array().map(Vec::len), Some(2));

    // A flag grants scanning on what the user can see, nothing more.
    let (status, _) = env
        .patch(&format!("/api/v1/users/{with}"), json!({ "may_scan": true }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &env,
        &callers[1],
        Method::POST,
        &format!("/api/v1/productions/{p1}/scan"),
        None,
    )
    .await?;
    // Allowed; the scan the admin asked for above is still queued, so it is the answer.
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &env,
        &callers[1],
        Method::POST,
        &format!("/api/v1/productions/{p2}/scan"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Impersonation is logged; logging out ends it and revokes the token.
    let (_, log) = call(&env, &callers[0], Method::GET, "/api/v1/impersonation-log", None).await?;
    let events: Vec<&str> = log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(
        events.contains(&"start") && events.iter().filter(|e| **e == "request").count() >= table.len(),
        "{log}"
    );
    let (status, _) = call(&env, &callers[5], Method::POST, "/api/v1/auth/logout", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&env, &callers[5], Method::GET, "/api/v1/auth/me", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, log) = call(
        &env,
        &callers[0],
        Method::GET,
        &format!("/api/v1/impersonation-log?user_id={with}"),
        None,
    )
    .await?;
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.iter().filter(|e| e["event"] == "stop").count(), 1, "{log}");
    assert!(entries.iter().any(|e| e["path"] == "/api/v1/auth/logout"), "{log}");

    // Admin changes are audited with before and after.
    let (_, audit) = env.get("/api/v1/audit-log?target_type=user").await?;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"user.create") && actions.contains(&"user.update"),
        "{actions:?}"
    );
    let deactivation = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["target_id"] == json!(gone.to_string()) && e["action"] == "user.update")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (
            deactivation["before"]["active"].clone(),
            deactivation["after"]["active"].clone()
        ),
        (json!(true), json!(false))
    );
    for (target, action) in [
        ("group", "group.grant_production"),
        ("production", "production.update"),
        ("production", "production.create"),
    ] {
        let (_, entries) = env
            .get(&format!("/api/v1/audit-log?target_type={target}&action={action}"))
            .await?;
        assert!(
            !entries["entries"].as_array().is_none_or(Vec::is_empty),
            "{action} audited"
        );
    }
    let _ = admin;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_logged_rate_limited_and_sessions_revocable() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let id = user(&env, "editor", json!({})).await?;
    let mailed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'email' AND payload->'to' ? 'editor@example.com'")
            .fetch_one(&env.db)
            .await?;
    assert_eq!(mailed, 1, "the new user is mailed their account details");
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "editor", "email": "x@example.com", "password": "correct horse" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "short", "email": "s@example.com", "password": "abc" }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "bad", "email": "nope", "password": "correct horse" }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let token = env.login("editor").await?;
    let me = Who {
        name: "editor",
        token: Some(token),
    };
    let (status, body) = call(&env, &me, Method::GET, "/api/v1/auth/me", None).await?;
    assert_eq!((status, body["user_id"].clone()), (StatusCode::OK, json!(id)));
    let (status, api) = call(
        &env,
        &me,
        Method::POST,
        &format!("/api/v1/users/{id}/tokens"),
        Some(&json!({ "name": "script" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{api}");
    let script = Who {
        name: "script",
        token: api["token"].as_str().map(str::to_owned),
    };
    assert_eq!(
        call(&env, &script, Method::GET, "/api/v1/auth/me", None).await?.0,
        StatusCode::OK
    );
    let (_, users) = env.get("/api/v1/users").await?;
    let editor = users["users"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["username"] == "editor")
        .cloned();
    assert_eq!(editor.map(|u| u["online"].clone()), Some(json!(true)), "{users}");
    assert_eq!(users["online_window_minutes"], 5);
    // Who is online: those seen within the window, and nobody who never signed in.
    let names = |list: &Value| -> Vec<String> {
        list["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u["username"].as_str().map(str::to_owned))
            .collect()
    };
    env.user("absent", json!({})).await?;
    let (status, online) = env.get("/api/v1/users?online=true").await?;
    assert_eq!(status, StatusCode::OK, "{online}");
    assert_eq!(names(&online), ["editor"], "a user never seen is not online: {online}");
    // Search by username or email, in any case; the text is literal (no wildcards).
    let (_, found) = env.get("/api/v1/users?q=EDIT").await?;
    assert_eq!(names(&found), ["editor"], "{found}");
    // Each user's groups, by name.
    let (status, group) = env.post("/api/v1/groups", json!({ "name": "night shift" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let editor_id = found["users"][0]["id"].clone();
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{}/members", group["id"].as_str().unwrap_or_default()),
            json!({ "user_id": editor_id }),
        )
        .await?;
    assert!(status.is_success(), "{body}");
    let (_, found) = env.get("/api/v1/users?q=editor").await?;
    assert_eq!(found["users"][0]["groups"], json!(["night shift"]), "{found}");
    let (_, found) = env.get("/api/v1/users?q=%25").await?;
    assert_eq!(names(&found), Vec::<String>::new(), "{found}");
    let (status, _) = call(&env, &me, Method::POST, "/api/v1/auth/logout", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&env, &me, Method::GET, "/api/v1/auth/me", None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    // Deleting the user revokes every token it had.
    let (status, _) = env.call(Method::DELETE, &format!("/api/v1/users/{id}"), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        call(&env, &script, Method::GET, "/api/v1/auth/me", None).await?.0,
        StatusCode::UNAUTHORIZED
    );

    user(&env, "victim", json!({})).await?;
    for _ in 0..5 {
        let (status, _) = env
            .post(
                "/api/v1/auth/login",
                json!({ "username": "victim", "password": "guess" }),
            )
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "victim", "password": "correct horse" }),
        )
        .await?;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "five failures lock the name for a while"
    );
    let (status, _) = env
        .post("/api/v1/auth/login", json!({ "username": "nobody", "password": "x" }))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, log) = env.get("/api/v1/login-log?username=victim&success=false").await?;
    assert_eq!(log["entries"].as_array().map(Vec::len), Some(6));
    assert_eq!(log["entries"][0]["reason"], "rate limited");
    assert_eq!(log["entries"][0]["remote"], "127.0.0.1");
    let (status, _) = env.post("/api/v1/auth/login", json!({ "username": "victim" })).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_resets_and_invitations_work_once() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // Links are minted by the worker and exist only in the mail it sends.
    let sink = rushes_tests::media::SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("email=2")?;
    worker.smtp.smtp_port = sink.port;
    env.spawn_worker(worker);
    let wait = std::time::Duration::from_secs(30);
    user(&env, "forgetful", json!({})).await?;
    let old_session = Who {
        name: "forgetful",
        token: Some(env.login("forgetful").await?),
    };
    let (status, _) = env
        .post(
            "/api/v1/auth/password-reset",
            json!({ "user": "forgetful@example.com" }),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = env
        .post("/api/v1/auth/password-reset", json!({ "user": "nobody" }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "the answer does not reveal accounts");
    let token = sink.wait_link("forgetful@example.com", 1, wait).await?;
    let confirm = json!({ "token": token, "password": "a new secret" });
    let (status, _) = env.post("/api/v1/auth/password-reset/confirm", confirm.clone()).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.post("/api/v1/auth/password-reset/confirm", confirm).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "single use");
    assert_eq!(
        call(&env, &old_session, Method::GET, "/api/v1/auth/me", None).await?.0,
        StatusCode::UNAUTHORIZED,
        "a reset ends existing sessions"
    );
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "forgetful", "password": "a new secret" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);

    let (_, group) = env.post("/api/v1/groups", json!({ "name": "invited crew" })).await?;
    let (status, invitation) = env
        .post(
            "/api/v1/invitations",
            json!({ "email": "new@example.com", "group_ids": [group["id"]] }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let (status, _) = env
        .post("/api/v1/invitations", json!({ "email": "new@example.com" }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "one pending invitation per address");
    let (status, _) = env
        .post("/api/v1/invitations", json!({ "email": "forgetful@example.com" }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "members are not invited");
    let first = sink.wait_link("new@example.com", 1, wait).await?;
    let id = invitation["id"].as_str().unwrap_or_default();
    let (status, _) = env.post(&format!("/api/v1/invitations/{id}/resend"), json!({})).await?;
    assert_eq!(status, StatusCode::OK);
    let second = sink.wait_link("new@example.com", 2, wait).await?;
    assert_ne!(first, second);
    let accept = |token: &str| json!({ "token": token, "username": "newbie", "password": "welcome aboard" });
    let (status, _) = env.post("/api/v1/invitations/accept", accept(&first)).await?;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a resent invitation's old link is dead"
    );
    let (_, pending) = env.get("/api/v1/invitations").await?;
    assert_eq!(pending["invitations"].as_array().map(Vec::len), Some(1));
    let (status, accepted) = env.post("/api/v1/invitations/accept", accept(&second)).await?;
    assert_eq!(status, StatusCode::CREATED, "{accepted}");
    let (_, members) = env
        .get(&format!("/api/v1/groups/{}", group["id"].as_str().unwrap_or_default()))
        .await?;
    assert_eq!(members["members"][0]["username"], "newbie");
    let (_, pending) = env.get("/api/v1/invitations").await?;
    assert_eq!(pending["invitations"].as_array().map(Vec::len), Some(0));
    let (_, revoked) = env
        .post("/api/v1/invitations", json!({ "email": "later@example.com" }))
        .await?;
    let rid = revoked["id"].as_str().unwrap_or_default();
    let later = sink.wait_link("later@example.com", 1, wait).await?;
    let (status, _) = env
        .call(Method::DELETE, &format!("/api/v1/invitations/{rid}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.post("/api/v1/invitations/accept", accept(&later)).await?;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a revoked invitation cannot be accepted"
    );

    // Schedule changes are audited too, one request's changes under one request id.
    let (_, schedule) = env
        .post(
            "/api/v1/schedules",
            json!({ "name": "audited", "kind": "sleep", "payload": { "seconds": 0 }, "interval": { "every": 1, "period": "hours" } }),
        )
        .await?;
    let sid = schedule["id"].as_str().unwrap_or_default();
    env.post(&format!("/api/v1/schedules/{sid}/disable"), json!({})).await?;
    env.call(Method::DELETE, &format!("/api/v1/schedules/{sid}"), None)
        .await?;
    let (_, audit) = env
        .get(&format!("/api/v1/audit-log?target_type=schedule&target_id={sid}"))
        .await?;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["schedule.delete", "schedule.disable", "schedule.create"]);
    Ok(())
}

/// Posts a CSV import and waits for its job; returns the job's result.
async fn import(env: &TestEnv, csv: &str, dry_run: bool) -> anyhow::Result<Value> {
    let response = env
        .http
        .post(env.url(&format!("/api/v1/users/import?dry_run={dry_run}")))
        .bearer_auth(rushes_tests::TOKEN)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == StatusCode::ACCEPTED,
        "import: {}",
        response.status()
    );
    let job: Value = response.json().await?;
    let done = env
        .wait_state(
            rushes_tests::job_id(&job)?,
            "succeeded",
            std::time::Duration::from_secs(30),
        )
        .await?;
    Ok(done["result"].clone())
}

async fn count_users(env: &TestEnv) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM users WHERE deleted_at IS NULL")
            .fetch_one(&env.db)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_account_tasks_run_as_audited_jobs() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let ana = user(&env, "ana", json!({})).await?;
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "crew" })).await?;
    let crew = group["id"].as_str().unwrap_or_default().to_owned();
    env.post(&format!("/api/v1/groups/{crew}/members"), json!({ "user_id": ana }))
        .await?;

    let template = env
        .http
        .get(env.url("/api/v1/users/import/template"))
        .bearer_auth(rushes_tests::TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        template.starts_with("username,email,is_admin,active,may_scan,may_transcode,groups,password\n"),
        "{template}"
    );
    assert!(
        template.contains("ana,ana@example.com,false,true,false,false,crew,"),
        "{template}"
    );

    // Errors anywhere: nothing is applied, each bad row is named.
    let before = count_users(&env).await?;
    let bad = "username,email,groups\nbea,bea@example.com,crew\ncid,bea@example.com,\ndan,not-an-email,\neve,ana@example.com,\nfay,fay@example.com,nosuchgroup\n";
    let report = import(&env, bad, false).await?;
    assert_eq!(report["applied"], false, "{report}");
    let rows: Vec<u64> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["row"].as_u64())
        .collect();
    assert_eq!(rows, [3, 4, 5, 6], "{report}");
    assert_eq!(count_users(&env).await?, before, "nothing half-applied");

    // A dry run reports, the real run applies, in one audited job.
    let good = "username,email,may_scan,groups,password\nana,ana@example.com,yes,crew,\nbea,bea@example.com,,crew,long enough pw\n";
    let dry = import(&env, good, true).await?;
    assert_eq!(
        (dry["applied"].clone(), dry["created"][0]["username"].clone()),
        (json!(false), json!("bea")),
        "{dry}"
    );
    assert_eq!(
        dry["updated"][0]["changes"]["may_scan"],
        json!({ "from": false, "to": true }),
        "{dry}"
    );
    assert_eq!(count_users(&env).await?, before);
    let applied = import(&env, good, false).await?;
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(count_users(&env).await?, before + 1);
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "bea", "password": "long enough pw" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, audit) = env.get("/api/v1/audit-log?target_type=user&action=user.create").await?;
    assert!(
        audit["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["after"]["username"] == "bea"),
        "{audit}"
    );

    // Group-wide disable revokes sessions; enable restores; remove empties the group.
    let (_, session) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "bea", "password": "long enough pw" }),
        )
        .await?;
    let bea_session = Who {
        name: "bea",
        token: session["token"].as_str().map(str::to_owned),
    };
    let run = |action: &'static str| {
        let path = format!("/api/v1/groups/{crew}/users/{action}");
        let env = &env;
        async move {
            let (status, job) = env.post(&path, json!({})).await?;
            anyhow::ensure!(status == StatusCode::ACCEPTED, "{action}: {status} {job}");
            env.wait_state(
                rushes_tests::job_id(&job)?,
                "succeeded",
                std::time::Duration::from_secs(30),
            )
            .await
        }
    };
    assert_eq!(run("disable").await?["result"]["users"], 2);
    assert_eq!(
        call(&env, &bea_session, Method::GET, "/api/v1/auth/me", None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "bea", "password": "long enough pw" }),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(run("enable").await?["result"]["users"], 2);
    assert_eq!(run("remove").await?["result"]["users"], 2);
    let (_, shown) = env.get(&format!("/api/v1/groups/{crew}")).await?;
    assert_eq!(shown["members"].as_array().map(Vec::len), Some(0));
    let (status, _) = env
        .post(&format!("/api/v1/groups/{crew}/users/explode"), json!({}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Purge deletes soft-deleted users for good.
    env.call(Method::DELETE, &format!("/api/v1/users/{ana}"), None).await?;
    let (status, job) = env.post("/api/v1/users/purge-deleted", json!({})).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = env
        .wait_state(
            rushes_tests::job_id(&job)?,
            "succeeded",
            std::time::Duration::from_secs(30),
        )
        .await?;
    assert_eq!(done["result"]["purged"], 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(ana)
        .fetch_one(&env.db)
        .await?;
    assert_eq!(left, 0);
    Ok(())
}
