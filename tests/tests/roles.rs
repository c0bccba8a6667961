//! Roles, complete: custom roles edited and deleted (built-in ones fixed), roles given
//! to a user directly in each scope, a user's effective policies explained, and the
//! production administrator who manages their production's members and nothing else.

use reqwest::{Method, StatusCode};
use rushes_tests::TestEnv;
use serde_json::{Value, json};

const VIEWER_ROLE: &str = "00000000-0000-7000-8000-0000000000a1";
const EDITOR_ROLE: &str = "00000000-0000-7000-8000-0000000000a2";
const OPERATOR_ROLE: &str = "00000000-0000-7000-8000-0000000000a3";
const PRODUCTION_ADMIN_ROLE: &str = "00000000-0000-7000-8000-0000000000a5";

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn message(body: &Value) -> String {
    text(&body["error"]["message"])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|all| all.iter().map(text).collect())
        .unwrap_or_default()
}

/// The ids of the productions `token`'s holder lists.
async fn listed(env: &TestEnv, token: &str) -> anyhow::Result<Vec<String>> {
    let (status, body) = env.call_as(token, Method::GET, "/api/v1/productions", None).await?;
    anyhow::ensure!(status == StatusCode::OK, "productions: {status} {body}");
    Ok(body["productions"]
        .as_array()
        .map(|all| all.iter().map(|p| text(&p["id"])).collect())
        .unwrap_or_default())
}

/// A production of base `base` on a new folder of the media root.
async fn production(env: &TestEnv, base: &str, series: i64, folder: &str) -> anyhow::Result<Value> {
    std::fs::create_dir_all(env.media_root.join(folder))?;
    env.production(base, series, folder, None).await
}

/// The entry for production `id` in a user's effective policies.
fn on<'a>(policies: &'a Value, id: &str) -> Option<&'a Value> {
    policies["productions"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["id"] == id))
}

/// The policies `token`'s holder has on production `id`, from `/auth/me`.
async fn my_policies(env: &TestEnv, token: &str, id: &str) -> anyhow::Result<Vec<String>> {
    let (status, me) = env.call_as(token, Method::GET, "/api/v1/auth/me", None).await?;
    anyhow::ensure!(status == StatusCode::OK, "me: {status} {me}");
    Ok(on(&me, id).map(|p| strings(&p["policies"])).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_are_edited_and_deleted_and_built_in_ones_are_fixed() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let production = production(&env, "Roles Show", 1, "roles-a").await?;
    let pid = text(&production["id"]);
    let (status, role) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "logger", "policies": ["view", "edit_metadata"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let rid = text(&role["id"]);
    let (status, body) = env
        .post("/api/v1/roles", json!({ "name": "logger", "policies": ["view"] }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("logger"), "{body}");

    // A group carries it on the production, a user directly: both are listed.
    let member = env.user("lou", json!({})).await?;
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "loggers" })).await?;
    let gid = text(&group["id"]);
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{gid}/members"),
            json!({ "user_id": member["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let scoped = json!({ "role_id": rid, "scope_type": "production", "scope_id": pid });
    let (status, body) = env.post(&format!("/api/v1/groups/{gid}/roles"), scoped.clone()).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let other = env.user("ola", json!({})).await?;
    let oid = text(&other["id"]);
    let (status, body) = env.post(&format!("/api/v1/users/{oid}/roles"), scoped).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, shown) = env.get(&format!("/api/v1/roles/{rid}")).await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let holders: Vec<(String, String)> = shown["assignments"]
        .as_array()
        .map(|all| all.iter().map(|a| (text(&a["holder"]), text(&a["name"]))).collect())
        .unwrap_or_default();
    assert_eq!(
        holders,
        [
            ("group".to_owned(), "loggers".to_owned()),
            ("user".to_owned(), "ola".to_owned())
        ]
    );

    // The role's production scope makes the production visible; new policies hold at once.
    let token = env.login("lou").await?;
    assert_eq!(listed(&env, &token).await?, std::slice::from_ref(&pid));
    let held = my_policies(&env, &token, &pid).await?;
    assert_eq!(held, ["edit_metadata", "view"]);
    let (status, changed) = env
        .patch(
            &format!("/api/v1/roles/{rid}"),
            json!({ "name": "Logger", "policies": ["view", "edit_metadata", "manage_tags", "view"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Logger");
    assert_eq!(strings(&changed["policies"]), ["view", "edit_metadata", "manage_tags"]);
    assert_eq!(
        my_policies(&env, &token, &pid).await?,
        ["edit_metadata", "manage_tags", "view"]
    );

    // Bad changes are refused and change nothing.
    for (body, field) in [
        (json!({ "policies": ["view", "fly"] }), "fly"),
        (json!({ "policies": [] }), "policies"),
        (json!({ "name": "  " }), "name"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let (status, answer) = env.patch(&format!("/api/v1/roles/{rid}"), body).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(message(&answer).contains(field), "{answer}");
    }
    let (status, answer) = env
        .patch(&format!("/api/v1/roles/{rid}"), json!({ "name": "editor" }))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, unchanged) = env.get(&format!("/api/v1/roles/{rid}")).await?;
    assert_eq!(unchanged["name"], "Logger");
    assert_eq!(
        strings(&unchanged["policies"]),
        ["view", "edit_metadata", "manage_tags"]
    );

    // Built-in roles are fixed; unknown ones are 404.
    for method in [Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({ "policies": ["view"] }));
        let (status, answer) = env.call(method, &format!("/api/v1/roles/{EDITOR_ROLE}"), body).await?;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert!(message(&answer).contains("built-in"), "{answer}");
    }
    let missing = uuid::Uuid::now_v7();
    let (status, _) = env.get(&format!("/api/v1/roles/{missing}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .call(Method::DELETE, &format!("/api/v1/roles/{missing}"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = env
        .call(Method::DELETE, &format!("/api/v1/roles/{rid}?force=maybe"), None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a force that is no boolean");

    // A carried role is kept unless forced; forcing takes it from everyone, audited.
    let (status, answer) = env.call(Method::DELETE, &format!("/api/v1/roles/{rid}"), None).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(message(&answer).contains("loggers"), "{answer}");
    let (status, _) = env.get(&format!("/api/v1/roles/{rid}")).await?;
    assert_eq!(status, StatusCode::OK, "still there");
    let (status, answer) = env
        .call(Method::DELETE, &format!("/api/v1/roles/{rid}?force=true"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = env.get(&format!("/api/v1/roles/{rid}")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, group) = env.get(&format!("/api/v1/groups/{gid}")).await?;
    assert_eq!(group["roles"], json!([]), "{group}");
    let (_, roles) = env.get(&format!("/api/v1/users/{oid}/roles")).await?;
    assert_eq!(roles["roles"], json!([]), "{roles}");
    assert!(
        listed(&env, &token).await?.is_empty(),
        "the production went with the role"
    );

    let (_, audit) = env
        .get(&format!("/api/v1/audit-log?target_type=role&target_id={rid}"))
        .await?;
    let actions: Vec<String> = audit["entries"]
        .as_array()
        .map(|all| all.iter().map(|e| text(&e["action"])).collect())
        .unwrap_or_default();
    for action in ["role.create", "role.update", "role.delete"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
    let deleted = audit["entries"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["action"] == "role.delete").cloned())
        .unwrap_or_default();
    assert_eq!(
        deleted["before"]["assignments"].as_array().map(Vec::len),
        Some(2),
        "{deleted}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_of_ones_own_hold_in_their_scope_and_effective_policies_say_why() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let first = production(&env, "Scope Show", 1, "scope-1").await?;
    let second = production(&env, "Scope Show", 2, "scope-2").await?;
    let elsewhere = production(&env, "Other Show", 1, "other-1").await?;
    let (s1, s2, o1) = (text(&first["id"]), text(&second["id"]), text(&elsewhere["id"]));
    let base = text(&first["base_production_id"]);
    let dana = env.user("dana", json!({})).await?;
    let did = text(&dana["id"]);
    let roles = format!("/api/v1/users/{did}/roles");

    // Viewer on the whole base production, operator on its first series.
    for body in [
        json!({ "role_id": VIEWER_ROLE, "scope_type": "base_production", "scope_id": base }),
        json!({ "role_id": OPERATOR_ROLE, "scope_type": "production", "scope_id": s1 }),
    ] {
        let (status, answer) = env.post(&roles, body.clone()).await?;
        assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
        let (status, answer) = env.post(&roles, body).await?;
        assert_eq!(status, StatusCode::NO_CONTENT, "given twice: {answer}");
    }
    // A global editor role through a group: what she may do where she sees, not a view of all.
    let (_, group) = env.post("/api/v1/groups", json!({ "name": "editors" })).await?;
    let gid = text(&group["id"]);
    env.post(&format!("/api/v1/groups/{gid}/members"), json!({ "user_id": did }))
        .await?;
    env.post(
        &format!("/api/v1/groups/{gid}/roles"),
        json!({ "role_id": EDITOR_ROLE }),
    )
    .await?;

    let token = env.login("dana").await?;
    let mut seen = listed(&env, &token).await?;
    seen.sort();
    let mut expected = vec![s1.clone(), s2.clone()];
    expected.sort();
    assert_eq!(seen, expected);
    let (status, _) = env
        .call_as(&token, Method::GET, &format!("/api/v1/productions/{o1}"), None)
        .await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a global role shows no production by itself"
    );
    let (status, _) = env
        .call_as(&token, Method::POST, &format!("/api/v1/productions/{o1}/scan"), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, policies) = env.get(&format!("/api/v1/users/{did}/policies")).await?;
    assert_eq!(status, StatusCode::OK, "{policies}");
    assert_eq!(policies["is_admin"], false);
    assert_eq!(
        strings(&policies["global_policies"]),
        ["download_originals", "edit_metadata", "manage_tags", "share", "view"]
    );
    assert!(on(&policies, &o1).is_none(), "{policies}");
    let series_one = on(&policies, &s1).cloned().unwrap_or_default();
    let held = strings(&series_one["policies"]);
    for policy in ["scan", "transcode", "transcribe", "download_originals", "view"] {
        assert!(held.iter().any(|p| p == policy), "{policy} on series 1: {series_one}");
    }
    let reasons = |entry: &Value| -> Vec<(String, String, String)> {
        entry["via"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|v| (text(&v["source"]), text(&v["role"]), text(&v["group"])))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut why = reasons(&series_one);
    why.sort();
    assert_eq!(
        why,
        [
            ("role".to_owned(), "editor".to_owned(), "editors".to_owned()),
            ("role".to_owned(), "operator".to_owned(), String::new()),
            ("role".to_owned(), "viewer".to_owned(), String::new()),
        ]
    );
    let series_two = on(&policies, &s2).cloned().unwrap_or_default();
    assert!(
        !strings(&series_two["policies"]).contains(&"scan".to_owned()),
        "{series_two}"
    );
    let (status, _) = env
        .call_as(&token, Method::POST, &format!("/api/v1/productions/{s2}/scan"), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Her roles, her own first; others may not read them, she may.
    let (status, mine) = env.call_as(&token, Method::GET, &roles, None).await?;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let listed_roles: Vec<(String, String, String)> = mine["roles"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|r| (text(&r["role"]), text(&r["scope_name"]), text(&r["group"])))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        listed_roles,
        [
            ("operator".to_owned(), "Scope Show Series 1".to_owned(), String::new()),
            ("viewer".to_owned(), "Scope Show".to_owned(), String::new()),
            ("editor".to_owned(), String::new(), "editors".to_owned()),
        ]
    );
    env.user("nosy", json!({})).await?;
    let nosy = env.login("nosy").await?;
    for path in [roles.clone(), format!("/api/v1/users/{did}/policies")] {
        let (status, _) = env.call_as(&nosy, Method::GET, &path, None).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, _) = env
        .call_as(&token, Method::GET, &format!("/api/v1/users/{did}/policies"), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env
        .call_as(
            &token,
            Method::POST,
            &roles,
            Some(json!({ "role_id": OPERATOR_ROLE, "scope_type": "production", "scope_id": s2 })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "no one gives themselves a role");

    // Bad input: a scope of the wrong type, an unknown role or user, a malformed scope.
    let unknown = uuid::Uuid::now_v7();
    for (body, field) in [
        (
            json!({ "role_id": VIEWER_ROLE, "scope_type": "production", "scope_id": base }),
            "scope_id",
        ),
        (
            json!({ "role_id": unknown, "scope_type": "production", "scope_id": s1 }),
            "role_id",
        ),
        (json!({ "role_id": VIEWER_ROLE, "scope_id": s1 }), "scope_type"),
        (
            json!({ "role_id": VIEWER_ROLE, "scope_type": "planet", "scope_id": s1 }),
            "scope_type",
        ),
        (json!({ "role_id": "not-an-id" }), "role_id"),
    ] {
        let (status, answer) = env.post(&roles, body).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(message(&answer).contains(field), "{field}: {answer}");
    }
    let (status, _) = env
        .post(
            &format!("/api/v1/users/{unknown}/roles"),
            json!({ "role_id": VIEWER_ROLE }),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env.get(&format!("/api/v1/users/{unknown}/policies")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Taken off in its scope: the second series goes, the first stays (operator sees it).
    let off = format!("{roles}/{VIEWER_ROLE}?scope_type=base_production&scope_id={base}");
    let (status, answer) = env.call(Method::DELETE, &off, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let (status, _) = env.call(Method::DELETE, &off, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(listed(&env, &token).await?, std::slice::from_ref(&s1));

    // Deleting the production takes the roles scoped to it.
    let (status, _) = env
        .call(Method::DELETE, &format!("/api/v1/productions/{s1}"), None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, mine) = env.get(&roles).await?;
    let scopes: Vec<String> = mine["roles"]
        .as_array()
        .map(|all| all.iter().map(|r| text(&r["scope_type"])).collect())
        .unwrap_or_default();
    assert_eq!(scopes, ["global"], "{mine}");
    let (_, audit) = env
        .get(&format!("/api/v1/audit-log?target_type=user&target_id={did}"))
        .await?;
    let actions: Vec<String> = audit["entries"]
        .as_array()
        .map(|all| all.iter().map(|e| text(&e["action"])).collect())
        .unwrap_or_default();
    assert_eq!(
        actions.iter().filter(|a| *a == "user.add_role").count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "user.remove_role").count(),
        1,
        "{actions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_administrator_manages_their_production_and_nothing_else() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mine = production(&env, "Admin Show", 1, "pa-1").await?;
    let theirs = production(&env, "Admin Show", 2, "pa-2").await?;
    let (p, q) = (text(&mine["id"]), text(&theirs["id"]));
    env.user("pam", json!({})).await?;
    let max = env.user("max", json!({})).await?;
    let max_id = text(&max["id"]);
    let members = format!("/api/v1/productions/{p}/members");

    // An admin makes Pam the production's administrator, by username.
    let (status, answer) = env
        .post(&members, json!({ "username": "PAM", "role_id": PRODUCTION_ADMIN_ROLE }))
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let pam = env.login("pam").await?;
    let (status, listing) = env.call_as(&pam, Method::GET, &members, None).await?;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let first = listing["members"][0].clone();
    assert_eq!(first["username"], "pam", "{listing}");
    assert_eq!(strings(&first["roles"]), ["production-admin"]);
    assert!(
        strings(&first["policies"]).contains(&"administer".to_owned()),
        "{first}"
    );

    // She adds Max as a viewer; he sees that production only.
    let (status, answer) = env
        .call_as(
            &pam,
            Method::POST,
            &members,
            Some(json!({ "user_id": max_id, "role_id": VIEWER_ROLE })),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let max_token = env.login("max").await?;
    assert_eq!(listed(&env, &max_token).await?, std::slice::from_ref(&p));
    let (status, _) = env.call_as(&max_token, Method::GET, &members, None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer does not administer");

    // She cannot give more than she holds, nor act outside her production.
    let (_, boss) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "boss", "policies": ["view", "manage_users"] }),
        )
        .await?;
    let (status, answer) = env
        .call_as(
            &pam,
            Method::POST,
            &members,
            Some(json!({ "user_id": max_id, "role_id": boss["id"] })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(message(&answer).contains("manage_users"), "{answer}");
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/productions/{q}/members"), None),
        (
            Method::POST,
            format!("/api/v1/productions/{q}/members"),
            Some(json!({ "user_id": max_id, "role_id": VIEWER_ROLE })),
        ),
        (Method::POST, format!("/api/v1/productions/{q}/scan"), None),
    ] {
        let (status, _) = env.call_as(&pam, method, &path, body).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: not revealed");
    }
    for scope in [
        json!({ "role_id": VIEWER_ROLE }),
        json!({ "role_id": VIEWER_ROLE, "scope_type": "base_production", "scope_id": mine["base_production_id"] }),
    ] {
        let (status, answer) = env
            .call_as(
                &pam,
                Method::POST,
                &format!("/api/v1/users/{max_id}/roles"),
                Some(scope),
            )
            .await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    for path in ["/api/v1/users", "/api/v1/groups", "/api/v1/roles"] {
        let (status, _) = env.call_as(&pam, Method::GET, path, None).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: not a global admin");
    }
    // Bad input: no member named, an unknown one.
    for (body, field) in [
        (json!({ "role_id": VIEWER_ROLE }), "username"),
        (json!({ "username": "nobody", "role_id": VIEWER_ROLE }), "nobody"),
        (
            json!({ "username": "max", "user_id": max_id, "role_id": VIEWER_ROLE }),
            "one of the two",
        ),
    ] {
        let (status, answer) = env.call_as(&pam, Method::POST, &members, Some(body)).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(message(&answer).contains(field), "{answer}");
    }

    let unknown = uuid::Uuid::now_v7();
    let (status, _) = env.get(&format!("/api/v1/productions/{unknown}/members")).await?;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an admin asking for a production there is not"
    );
    let (status, _) = env
        .post(
            &format!("/api/v1/productions/{unknown}/members"),
            json!({ "username": "max", "role_id": VIEWER_ROLE }),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A steward who administers with less than Pam holds cannot take Pam's role away.
    env.user("sam", json!({})).await?;
    let (_, steward) = env
        .post(
            "/api/v1/roles",
            json!({ "name": "steward", "policies": ["view", "administer"] }),
        )
        .await?;
    let (status, body) = env
        .post(&members, json!({ "username": "sam", "role_id": steward["id"] }))
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let sam = env.login("sam").await?;
    let pam_id = text(&first["user_id"]);
    let (status, answer) = env
        .call_as(&sam, Method::DELETE, &format!("{members}/{pam_id}"), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, listing) = env.call_as(&sam, Method::GET, &members, None).await?;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert!(
        listing.to_string().contains("production-admin"),
        "Pam keeps her role: {listing}"
    );

    // Scanning her production is hers to do.
    let (status, job) = env
        .call_as(&pam, Method::POST, &format!("/api/v1/productions/{p}/scan"), None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");

    // She takes Max off; he no longer sees it. Done twice: 404.
    let off = format!("{members}/{max_id}");
    let (status, answer) = env.call_as(&pam, Method::DELETE, &off, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert!(listed(&env, &max_token).await?.is_empty());
    let (status, _) = env.call_as(&pam, Method::DELETE, &off, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, audit) = env
        .get(&format!("/api/v1/audit-log?target_type=user&target_id={max_id}"))
        .await?;
    let by_pam: Vec<String> = audit["entries"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|e| e["actor"] == "pam")
                .map(|e| text(&e["action"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(by_pam.len(), 2, "{audit}");

    // Archived, the production is an admin's alone again.
    let (status, _) = env
        .patch(&format!("/api/v1/productions/{p}"), json!({ "archived": true }))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env.call_as(&pam, Method::GET, &members, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_managed_in_the_console() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    env.user("chief", json!({ "is_admin": true })).await?;
    let dana = env.user("dana", json!({})).await?;
    env.user("pam", json!({})).await?;
    env.user("max", json!({})).await?;
    let production = production(&env, "Console Show", 1, "console-roles").await?;
    let pid = text(&production["id"]);
    let (status, role) = env
        .post("/api/v1/roles", json!({ "name": "logger", "policies": ["view"] }))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let (status, body) = env
        .post(
            &format!("/api/v1/productions/{pid}/members"),
            json!({ "username": "pam", "role_id": PRODUCTION_ADMIN_ROLE }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let seen = rushes_tests::browser::walk(
        "roles_flow.py",
        &json!({
            "base": env.url(""),
            "admin": ["chief", rushes_tests::PASSWORD],
            "role": role["id"],
            "user": dana["id"],
            "production": [pid, production["name"]],
            "production_admin": ["pam", rushes_tests::PASSWORD],
            "member": "max",
        }),
        std::time::Duration::from_secs(180),
    )
    .await?;
    assert!(text(&seen["user_policies"]).contains("edit_metadata"), "{seen}");

    // What the pages did is what the API holds now.
    let (_, stored) = env.get(&format!("/api/v1/roles/{}", text(&role["id"]))).await?;
    assert_eq!(strings(&stored["policies"]), ["view", "edit_metadata"]);
    assert_eq!(stored["assignments"], json!([]), "the role was taken back");
    let (_, members) = env.get(&format!("/api/v1/productions/{pid}/members")).await?;
    let names: Vec<String> = members["members"]
        .as_array()
        .map(|all| all.iter().map(|m| text(&m["username"])).collect())
        .unwrap_or_default();
    assert_eq!(names, ["pam"], "max was added, then removed");
    Ok(())
}
