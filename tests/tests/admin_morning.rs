//! An admin's first morning, the rest: readable errors, paging with strict limits,
//! schedules that can never fire refused, and roles and base productions kept tidy.

use reqwest::StatusCode;
use rushes_tests::TestEnv;
use serde_json::{Value, json};

fn message(body: &Value) -> String {
    body["error"]["message"].as_str().unwrap_or_default().to_owned()
}

/// No serde or Rust internals in a 4xx message.
fn assert_readable(body: &Value, field: &str) {
    let text = message(body);
    for internal in [
        "line 1",
        "column",
        "i32",
        "i64",
        "u32",
        "index",
        "Failed to deserialize",
        "struct ",
    ] {
        assert!(!text.contains(internal), "{internal:?} leaks in {text:?}");
    }
    assert!(text.contains(field), "{text:?} should name {field:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_speak_the_callers_words() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    // A body field of the wrong type, well into the body.
    let (status, body) = env
        .post(
            "/api/v1/jobs",
            json!({"kind": "sleep", "payload": {"seconds": 0}, "priority": "very high, please, thank you"}),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_readable(&body, "field `priority`");
    // A query value of the wrong type.
    let (status, body) = env.get("/api/v1/jobs?limit=ten").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_readable(&body, "`limit`");
    assert!(message(&body).contains("integer"), "{body}");
    // A path parameter that is not a UUID names the parameter.
    let (status, body) = env.get("/api/v1/jobs/not-a-uuid").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_readable(&body, "in the path");
    // Not JSON at all: 400 without a position.
    let (status, body) = TestEnv::answer(
        env.http
            .post(env.url("/api/v1/jobs"))
            .bearer_auth(rushes_tests::TOKEN)
            .header("content-type", "application/json")
            .body("{\"kind\": \"sleep\",, }"),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_readable(&body, "not valid JSON");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_token_may_not_impersonate() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let user = env.user("imp-target", json!({})).await?;
    let id = user["id"].as_str().unwrap_or_default();
    let (status, body) = env.post(&format!("/api/v1/users/{id}/impersonate"), json!({})).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("bootstrap token"), "{body}");
    Ok(())
}

async fn schedule(env: &TestEnv, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    env.post("/api/v1/schedules", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_that_can_never_fire_are_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let job = |extra: Value| {
        let mut body = json!({"name": "s", "kind": "sleep", "payload": {"seconds": 0}});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    };
    let refused = [
        (json!({"clocked": {"at": "2020-01-01T09:00:00Z"}}), "clocked.at"),
        (json!({"cron": {"expr": "0 0 30 2 *"}}), "cron.expr"),
        (json!({"cron": {"expr": "61 * * * *"}}), "minute must be 0–59"),
        (
            json!({"interval": {"every": 1, "period": "hours"}, "expires": "2020-01-01T00:00:00Z"}),
            "expires",
        ),
        (
            json!({"interval": {"every": 1, "period": "hours"}, "start_time": "2031-01-02T00:00:00Z", "expires": "2031-01-01T00:00:00Z"}),
            "expires",
        ),
        (
            json!({"cron": {"expr": "0 0 1 1 *"}, "expires": "2031-01-01T00:00:00Z", "start_time": "2030-01-02T00:00:00Z"}),
            "expires",
        ),
        (
            json!({"interval": {"every": 1, "period": "hours"}, "start_time": "soon"}),
            "start_time",
        ),
    ];
    for (extra, field) in refused {
        let (status, body) = schedule(&env, job(extra.clone())).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {body}");
        assert!(message(&body).contains(field), "{extra}: {body}");
    }

    // A clocked schedule by hand: a date alone is midnight UTC, and it is a one-off
    // that still fires if the scheduler was down at its time.
    let (status, clocked) = schedule(&env, job(json!({"name": "once", "clocked": {"at": "2031-03-01"}}))).await?;
    assert_eq!(status, StatusCode::CREATED, "{clocked}");
    assert_eq!(clocked["clocked"]["at"], "2031-03-01T00:00:00Z");
    assert_eq!(clocked["one_off"], true);
    assert_eq!(clocked["missed"], "run_once");

    // A cron in its zone: next fires in UTC and in the zone; the zone changes alone.
    let (status, cron) = schedule(
        &env,
        job(
            json!({"name": "nightly", "cron": {"expr": "30 1 * * *", "timezone": "Asia/Tokyo"},
                   "start_time": "2031-01-01T00:00:00Z", "expires": "2032-01-01T00:00:00Z"}),
        ),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{cron}");
    assert_eq!(cron["next_fire_times"][0], "2031-01-01T16:30:00Z", "{cron}");
    assert_eq!(cron["next_fire_times_local"][0], "2031-01-02T01:30:00+09:00", "{cron}");
    let id = cron["id"].as_str().unwrap_or_default();
    let (status, moved) = env
        .patch(&format!("/api/v1/schedules/{id}"), json!({"cron": {"timezone": "UTC"}}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["cron"], json!({"expr": "30 1 * * *", "timezone": "UTC"}));
    assert_eq!(moved["next_fire_times"][0], "2031-01-01T01:30:00Z", "{moved}");
    // null clears the window; an absent field keeps it.
    let (status, cleared) = env
        .patch(&format!("/api/v1/schedules/{id}"), json!({"expires": null}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["expires"], Value::Null);
    assert_eq!(cleared["start_time"], "2031-01-01T00:00:00Z");
    let (status, cleared) = env
        .patch(&format!("/api/v1/schedules/{id}"), json!({"start_time": null}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["start_time"], Value::Null);

    // Intervals fire on whole seconds.
    let (status, every) = schedule(
        &env,
        job(json!({"name": "often", "interval": {"every": 7, "period": "seconds"}})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{every}");
    let times = every["next_fire_times"].as_array().cloned().unwrap_or_default();
    assert!(!times.is_empty(), "{every}");
    for t in times {
        let t: chrono::DateTime<chrono::Utc> = t.as_str().unwrap_or_default().parse()?;
        assert_eq!(chrono::Timelike::nanosecond(&t), 0, "{every}");
    }
    Ok(())
}

/// Walks a list by `next_before`, `limit` at a time; returns every id seen.
async fn walk(env: &TestEnv, path: &str, key: &str, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(before) => format!("{path}{sep}limit={limit}&before={before}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, page) = env.get(&url).await?;
        anyhow::ensure!(status == StatusCode::OK, "{url}: {status} {page}");
        let rows = page[key].as_array().cloned().unwrap_or_default();
        anyhow::ensure!(rows.len() <= limit, "{url}: more than {limit}");
        seen.extend(rows.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)));
        match page["next_before"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(seen),
        }
    }
    anyhow::bail!("{path} did not end")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_and_refuse_limits_out_of_range() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for name in ["pa", "pb", "pc", "pd", "pe"] {
        env.user(name, json!({})).await?;
        let (status, body) = env.post("/api/v1/groups", json!({ "name": name })).await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = env
            .post(
                "/api/v1/emails",
                json!({ "subject": name, "html": "<p>hi</p>", "recipients": { "everyone": true } }),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (path, key) in [
        ("/api/v1/users", "users"),
        ("/api/v1/groups", "groups"),
        ("/api/v1/emails", "emails"),
        ("/api/v1/share-links", "share_links"),
    ] {
        let (_, all) = env.get(&format!("{path}?limit=1000")).await?;
        let mut every: Vec<String> = all[key]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut paged = walk(&env, path, key, 2).await?;
        assert_eq!(paged, every, "{path}: pages in the same order as one page");
        every.sort();
        paged.sort();
        paged.dedup();
        assert_eq!(paged, every, "{path}: no row twice or missed");
        for bad in ["0", "1001", "-3"] {
            let (status, body) = env.get(&format!("{path}?limit={bad}")).await?;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}?limit={bad}: {body}");
            assert!(message(&body).contains("limit"), "{body}");
        }
    }
    let (status, body) = env.get("/api/v1/jobs?limit=5000").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_one_object_from_post_and_get() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (status, created) = env.post("/api/v1/groups", json!({ "name": "same" })).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap_or_default();
    let (status, shown) = env.get(&format!("/api/v1/groups/{id}")).await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(created, shown);
    for key in ["members", "productions", "roles"] {
        assert!(shown[key].is_array(), "{key}: {shown}");
    }
    Ok(())
}

/// Whether `group` is granted production `pid`.
async fn group_sees(env: &TestEnv, group: &str, pid: &str) -> anyhow::Result<bool> {
    let (_, shown) = env.get(&format!("/api/v1/groups/{group}")).await?;
    Ok(shown["productions"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["id"] == pid)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_come_off_and_base_productions_rename_and_go() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    std::fs::create_dir_all(env.media_root.join("seen"))?;
    let production = env.production("Morning", 1, "seen", None).await?;
    let pid = production["id"].as_str().unwrap_or_default().to_owned();
    let base = production["base_production_id"].as_str().unwrap_or_default().to_owned();
    let (_, bases) = env.get("/api/v1/base-productions").await?;
    let group = bases["base_productions"]
        .as_array()
        .and_then(|all| all.iter().find(|b| b["id"] == base.as_str()))
        .map(|b| b["group_id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let (status, role) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "uploader", "policies": ["view", "share"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let role = role["id"].as_str().unwrap_or_default().to_owned();

    // A scope id must name an object of its type.
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group}/roles"),
            json!({ "role_id": role, "scope_type": "production", "scope_id": base }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(message(&body).contains("scope_id"), "{body}");
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group}/roles"),
            json!({ "role_id": role, "scope_type": "production", "scope_id": pid }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A member sees the production and their rights on it in /auth/me.
    let member = env.user("morning-member", json!({})).await?;
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{group}/members"),
            json!({ "user_id": member["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let token = env.login("morning-member").await?;
    let (status, me) = TestEnv::answer(env.http.get(env.url("/api/v1/auth/me")).bearer_auth(&token)).await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    let mine = me["productions"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["id"] == pid.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(mine["name"], "Morning Series 1", "{me}");
    let held: Vec<&str> = mine["policies"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(held.contains(&"share"), "{me}");

    // The role comes off in its scope, named in the query string.
    let path = format!("/api/v1/groups/{group}/roles/{role}?scope_type=production&scope_id={pid}");
    let (status, body) = env.call(reqwest::Method::DELETE, &path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = env.call(reqwest::Method::DELETE, &path, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, shown) = env.get(&format!("/api/v1/groups/{group}")).await?;
    assert_eq!(shown["roles"], json!([]), "{shown}");

    // Rename: the base and its namesake group; the namesake cannot go while the base is.
    let (status, renamed) = env
        .patch(
            &format!("/api/v1/base-productions/{base}"),
            json!({ "name": "Evening" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Evening");
    let (_, shown) = env.get(&format!("/api/v1/groups/{group}")).await?;
    assert_eq!(shown["name"], "Evening", "{shown}");

    // Moved to another group: that group sees its productions, the one it left no longer;
    // the member of the old group loses sight of them. Then back.
    let (_, crew) = env.post("/api/v1/groups", json!({ "name": "Night crew" })).await?;
    let crew = crew["id"].as_str().unwrap_or_default().to_owned();
    for (bad, says) in [
        (json!({}), "name a new"),
        (json!({ "group_id": uuid::Uuid::nil() }), "group_id"),
    ] {
        let (status, body) = env.patch(&format!("/api/v1/base-productions/{base}"), bad).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or_default().contains(says),
            "{body}"
        );
    }
    let (status, moved) = env
        .patch(&format!("/api/v1/base-productions/{base}"), json!({ "group_id": crew }))
        .await?;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["group_id"], crew.as_str());
    assert!(group_sees(&env, &crew, &pid).await? && !group_sees(&env, &group, &pid).await?);
    let (_, shown) = env.get(&format!("/api/v1/groups/{crew}")).await?;
    assert_eq!(shown["name"], "Night crew", "a group a base moves to keeps its name");
    let (status, _) = TestEnv::answer(
        env.http
            .get(env.url(&format!("/api/v1/productions/{pid}")))
            .bearer_auth(&token),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the old group's member no longer sees it"
    );
    let (status, back) = env
        .patch(
            &format!("/api/v1/base-productions/{base}"),
            json!({ "group_id": group }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert!(group_sees(&env, &group, &pid).await? && !group_sees(&env, &crew, &pid).await?);
    let (status, body) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/groups/{group}"), None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A base with a production stays; an empty one goes, and then its group may.
    let (status, body) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/base-productions/{base}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    sqlx::query("DELETE FROM productions WHERE id = $1")
        .bind(pid.parse::<uuid::Uuid>()?)
        .execute(&env.db)
        .await?;
    let (status, body) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/base-productions/{base}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = env
        .call(reqwest::Method::DELETE, &format!("/api/v1/groups/{group}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    Ok(())
}
