//! Who may change whose account: a user manager cannot take over or make admins (on
//! every path: the API, invitations, "create like", CSV import and the import job
//! itself), impersonation cannot touch credentials, a new password ends other tokens,
//! tokens are listed and revoked, and no secret travels in a job payload.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rushes_tests::{PASSWORD, TestEnv};
use serde_json::{Value, json};
use uuid::Uuid;

/// The `hub` group (its members are admins) and the built-in user-manager role.
const HUB: &str = "00000000-0000-7000-8000-0000000000b1";
const USER_MANAGER_ROLE: &str = "00000000-0000-7000-8000-0000000000a4";

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap_or_default().to_owned()
}

/// `boss` (admin flag), `hubby` (member of `hub`), `um` (user manager through a group
/// role), `ordinary`; returns their ids and the user manager's session.
struct Cast {
    boss: String,
    hubby: String,
    um: String,
    ordinary: String,
    um_token: String,
}

async fn cast(env: &TestEnv) -> anyhow::Result<Cast> {
    let boss = id_of(&env.user("boss", json!({ "is_admin": true })).await?);
    let hubby = id_of(&env.user("hubby", json!({})).await?);
    env.post(&format!("/api/v1/groups/{HUB}/members"), json!({ "user_id": hubby }))
        .await?;
    let um = id_of(&env.user("um", json!({})).await?);
    let (_, managers) = env.post("/api/v1/groups", json!({ "name": "people" })).await?;
    let managers = id_of(&managers);
    env.post(
        &format!("/api/v1/groups/{managers}/roles"),
        json!({ "role_id": USER_MANAGER_ROLE }),
    )
    .await?;
    env.post(&format!("/api/v1/groups/{managers}/members"), json!({ "user_id": um }))
        .await?;
    let ordinary = id_of(&env.user("ordinary", json!({})).await?);
    let um_token = env.login("um").await?;
    Ok(Cast {
        boss,
        hubby,
        um,
        ordinary,
        um_token,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_manager_cannot_take_over_or_make_admins() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let cast = cast(&env).await?;
    let um = |method: Method, path: String, body: Option<Value>| {
        let token = cast.um_token.clone();
        let env = &env;
        async move { env.call_as(&token, method, &path, body).await }
    };

    for admin in [&cast.boss, &cast.hubby] {
        for (method, path, body) in [
            (
                Method::PATCH,
                format!("/api/v1/users/{admin}"),
                Some(json!({ "password": "taken over!" })),
            ),
            (
                Method::PATCH,
                format!("/api/v1/users/{admin}"),
                Some(json!({ "email": "me@evil.example" })),
            ),
            (
                Method::PATCH,
                format!("/api/v1/users/{admin}"),
                Some(json!({ "active": false })),
            ),
            (
                Method::POST,
                format!("/api/v1/users/{admin}/tokens"),
                Some(json!({ "name": "mine now" })),
            ),
            (
                Method::POST,
                format!("/api/v1/users/{admin}/password-reset"),
                Some(json!({})),
            ),
            (Method::DELETE, format!("/api/v1/users/{admin}"), None),
        ] {
            let (status, answer) = um(method.clone(), path.clone(), body).await?;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        }
    }
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "boss", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "the admin's password is unchanged");

    // Ordinary accounts stay manageable, but tokens are minted only for oneself.
    let (status, answer) = um(
        Method::PATCH,
        format!("/api/v1/users/{}", cast.ordinary),
        Some(json!({ "may_scan": true })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = um(
        Method::POST,
        format!("/api/v1/users/{}/tokens", cast.ordinary),
        Some(json!({ "name": "for them" })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Making admins: the flag, `hub` by invitation, "like" an admin, CSV.
    let (status, _) = um(
        Method::POST,
        "/api/v1/users".into(),
        Some(json!({ "username": "mole", "email": "mole@example.com", "password": PASSWORD, "is_admin": true })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = um(
        Method::POST,
        "/api/v1/users".into(),
        Some(json!({ "username": "mole", "email": "mole@example.com", "password": PASSWORD, "like_user_id": cast.hubby })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = um(
        Method::POST,
        "/api/v1/invitations".into(),
        Some(json!({ "email": "mole@example.com", "group_ids": [HUB] })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap_or_default().contains("hub"),
        "{answer}"
    );
    let (status, answer) = um(
        Method::POST,
        "/api/v1/invitations".into(),
        Some(json!({ "email": "fine@example.com" })),
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a plain invitation is still theirs to send: {answer}"
    );
    let mole: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username = 'mole'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(mole, 0);

    // A group whose role reaches a whole base production (its productions made later
    // too) is an admin's to grant.
    let (_, base) = env
        .post("/api/v1/base-productions", json!({ "name": "Wide Show" }))
        .await?;
    let (_, wide) = env.post("/api/v1/groups", json!({ "name": "wide-viewers" })).await?;
    let (status, body) = env
        .post(
            &format!("/api/v1/groups/{}/roles", id_of(&wide)),
            json!({ "role_id": "00000000-0000-7000-8000-0000000000a1", "scope_type": "base_production", "scope_id": base["id"] }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, answer) = um(
        Method::POST,
        "/api/v1/invitations".into(),
        Some(json!({ "email": "wide@example.com", "group_ids": [id_of(&wide)] })),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    Ok(())
}

/// Posts a CSV import as `token`, waits for the job, returns its result.
async fn import_as(env: &TestEnv, token: &str, csv: &str) -> anyhow::Result<Value> {
    let request = env
        .http
        .post(env.url("/api/v1/users/import"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned());
    let (status, job) = TestEnv::answer(request).await?;
    anyhow::ensure!(status == StatusCode::ACCEPTED, "import answered {status}: {job}");
    let done = env
        .wait_state(rushes_tests::job_id(&job)?, "succeeded", Duration::from_secs(30))
        .await?;
    Ok(done["result"].clone())
}

fn error_rows(report: &Value) -> Vec<String> {
    report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["error"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_imports_grant_only_what_their_requester_may_and_carry_no_passwords() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;
    let cast = cast(&env).await?;
    sqlx::query("UPDATE users SET deleted_at = now(), active = false WHERE username = 'ordinary'")
        .execute(&env.db)
        .await?;

    for (csv, why) in [
        (
            "username,email,is_admin\nmole,mole@example.com,true\n",
            "the admin flag",
        ),
        ("username,email,groups\nmole,mole@example.com,hub\n", "the hub group"),
        ("username,email\nboss,boss@evil.example\n", "an admin's address"),
        (
            "username,email\nordinary,back@example.com\n",
            "a deleted account's name",
        ),
    ] {
        let report = import_as(&env, &cast.um_token, csv).await?;
        assert_eq!(report["applied"], false, "{why}: {report}");
        assert_eq!(error_rows(&report).len(), 1, "{why}: {report}");
    }
    let errors = error_rows(&import_as(&env, &cast.um_token, "username,email\nordinary,back@example.com\n").await?);
    assert!(errors[0].contains("deleted account"), "{errors:?}");
    let boss_email: String = sqlx::query_scalar("SELECT email FROM users WHERE username = 'boss'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(boss_email, "boss@example.com");

    // The worker re-checks the requester named in the payload, whoever queued it.
    let forged = json!({
        "kind": "import_users",
        "payload": { "csv": "username,email,is_admin\nmole,mole@example.com,true\n", "requester": { "user": cast.um } },
    });
    let job = env.enqueue(forged).await?;
    let done = env.wait_state(job, "succeeded", Duration::from_secs(30)).await?;
    assert_eq!(done["result"]["applied"], false, "{done}");
    // A requester who lost the right to manage users by the time the job runs.
    sqlx::query("DELETE FROM group_members WHERE user_id = $1")
        .bind(cast.um.parse::<Uuid>()?)
        .execute(&env.db)
        .await?;
    let gone = json!({
        "kind": "import_users",
        "payload": { "csv": "username,email\nplain,plain@example.com\n", "requester": { "user": cast.um } },
    });
    let job = env.enqueue(gone).await?;
    let failed = env.wait_state(job, "failed", Duration::from_secs(30)).await?;
    assert!(
        failed["error"].as_str().unwrap_or_default().contains("requester"),
        "{failed}"
    );

    // An admin's import applies; the password never reaches the payload in clear.
    let csv = "username,email,is_admin,groups,password\nnewboss,newboss@example.com,true,hub,sekrit-passw0rd\n";
    let report = import_as(&env, rushes_tests::TOKEN, csv).await?;
    assert_eq!(report["applied"], true, "{report}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM jobs WHERE kind = 'import_users'")
        .fetch_all(&env.db)
        .await?;
    assert!(stored.iter().all(|p| !p.contains("sekrit")), "{stored:?}");
    let (_, listed) = env.get("/api/v1/jobs?kind=import_users&limit=100").await?;
    let listed = listed.to_string();
    assert!(!listed.contains("argon2") && !listed.contains("sekrit"), "{listed}");
    assert!(listed.contains("[redacted]"), "{listed}");
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "newboss", "password": "sekrit-passw0rd" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_cannot_touch_credentials_and_dies_with_its_admin() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let cast = cast(&env).await?;
    let boss = env.login("boss").await?;
    let (status, session) = env
        .call_as(
            &boss,
            Method::POST,
            &format!("/api/v1/users/{}/impersonate", cast.ordinary),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let acting = session["token"].as_str().unwrap_or_default().to_owned();
    let me = format!("/api/v1/users/{}", cast.ordinary);
    for body in [
        json!({ "password": "new password!", "current_password": PASSWORD }),
        json!({ "email": "other@example.com", "current_password": PASSWORD }),
    ] {
        let (status, answer) = env.call_as(&acting, Method::PATCH, &me, Some(body)).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    let (status, _) = env
        .call_as(
            &acting,
            Method::POST,
            &format!("{me}/tokens"),
            Some(json!({ "name": "keep" })),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(env.call_as(&acting, Method::GET, &me, None).await?.0, StatusCode::OK);

    // Demoting the admin ends the impersonation at once.
    env.patch(&format!("/api/v1/users/{}", cast.boss), json!({ "is_admin": false }))
        .await?;
    assert_eq!(
        env.call_as(&acting, Method::GET, &me, None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_needs_the_old_one_and_ends_every_other_token() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let ana = id_of(&env.user("ana", json!({})).await?);
    let (here, elsewhere) = (env.login("ana").await?, env.login("ana").await?);
    let me = format!("/api/v1/users/{ana}");
    let (status, minted) = env
        .call_as(
            &here,
            Method::POST,
            &format!("{me}/tokens"),
            Some(json!({ "name": "script" })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let script = minted["token"].as_str().unwrap_or_default().to_owned();
    let expires: chrono::DateTime<chrono::Utc> = minted["expires_at"].as_str().unwrap_or_default().parse()?;
    let days = (expires - chrono::Utc::now()).num_days();
    assert!((88..=90).contains(&days), "API tokens expire by default: {minted}");

    // Listed without secrets; the creation is audited.
    let (_, listed) = env.call_as(&here, Method::GET, &format!("{me}/tokens"), None).await?;
    let tokens = listed["tokens"].as_array().cloned().unwrap_or_default();
    assert_eq!(tokens.len(), 3, "{listed}");
    assert!(
        tokens
            .iter()
            .all(|t| t.get("token").is_none() && t.get("token_hash").is_none())
    );
    assert_eq!(tokens.iter().filter(|t| t["current"] == true).count(), 1);
    let (_, audit) = env.get("/api/v1/audit-log?action=token.create").await?;
    assert_eq!(audit["entries"][0]["target_id"], json!(ana), "{audit}");

    let change = |body: Value| env.call_as(&here, Method::PATCH, &me, Some(body));
    let (status, _) = change(json!({ "password": "brand new secret" })).await?;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the current password is required"
    );
    let (status, _) = change(json!({ "password": "brand new secret", "current_password": "wrong guess" })).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = change(json!({ "password": "brand new secret", "current_password": PASSWORD })).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    for (token, alive) in [(&here, true), (&elsewhere, false), (&script, false)] {
        let (status, _) = env.call_as(token, Method::GET, "/api/v1/auth/me", None).await?;
        assert_eq!(status == StatusCode::OK, alive, "{token}: {status}");
    }

    // One token revoked by id.
    let (_, listed) = env.call_as(&here, Method::GET, &format!("{me}/tokens"), None).await?;
    let current = listed["tokens"][0]["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("{me}/tokens/{current}");
    assert_eq!(env.call(Method::DELETE, &path, None).await?.0, StatusCode::NO_CONTENT);
    assert_eq!(env.call(Method::DELETE, &path, None).await?.0, StatusCode::NOT_FOUND);
    let (status, _) = env.call_as(&here, Method::GET, "/api/v1/auth/me", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Usernames are one whatever their case, and follow the character rules.
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "ANA", "email": "ana2@example.com", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = env
        .post(
            "/api/v1/users",
            json!({ "username": "<script>", "email": "x@example.com", "password": PASSWORD }),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_invitation_links_exist_only_in_the_mail() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let sink = rushes_tests::media::SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("email=2")?;
    worker.smtp.smtp_port = sink.port;
    env.spawn_worker(worker);
    let ana = id_of(&env.user("ana", json!({})).await?);
    let api_token = {
        let session = env.login("ana").await?;
        let (_, minted) = env
            .call_as(
                &session,
                Method::POST,
                &format!("/api/v1/users/{ana}/tokens"),
                Some(json!({ "name": "script" })),
            )
            .await?;
        minted["token"].as_str().unwrap_or_default().to_owned()
    };
    let (status, _) = env
        .post("/api/v1/auth/password-reset", json!({ "user": "ana" }))
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    env.post("/api/v1/invitations", json!({ "email": "new@example.com" }))
        .await?;
    let wait = Duration::from_secs(30);
    let reset = sink.wait_link("ana@example.com", 1, wait).await?;
    let invitation = sink.wait_link("new@example.com", 1, wait).await?;

    let everywhere: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text || coalesce(result::text, '') FROM jobs \
         UNION ALL SELECT convert_from(body, 'UTF8') FROM dead_letters",
    )
    .fetch_all(&env.db)
    .await?;
    for secret in [&reset, &invitation] {
        assert!(
            everywhere.iter().all(|p| !p.contains(secret.as_str())),
            "a link in a payload"
        );
    }
    let (_, jobs) = env.get("/api/v1/jobs?limit=100").await?;
    assert!(!jobs.to_string().contains("token="), "{jobs}");

    let (status, _) = env
        .post(
            "/api/v1/auth/password-reset/confirm",
            json!({ "token": reset, "password": "a new secret" }),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env.call_as(&api_token, Method::GET, "/api/v1/auth/me", None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a reset ends API tokens too");
    let (status, created) = env
        .post(
            "/api/v1/invitations/accept",
            json!({ "token": invitation, "username": "newbie", "password": "welcome aboard" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    Ok(())
}

/// The links of the reset and invitation mails open forms that work in a real browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailed_links_open_forms_that_work_in_a_browser() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let sink = rushes_tests::media::SmtpSink::start(0, env.data_dir.join("mail")).await?;
    let mut worker = env.worker_config("email=2")?;
    worker.smtp.smtp_port = sink.port;
    env.spawn_worker(worker);
    env.user("ana", json!({})).await?;
    env.post("/api/v1/auth/password-reset", json!({ "user": "ana" }))
        .await?;
    env.post("/api/v1/invitations", json!({ "email": "new@example.com" }))
        .await?;
    let wait = Duration::from_secs(30);
    let reset = sink.wait_link("ana@example.com", 1, wait).await?;
    let invitation = sink.wait_link("new@example.com", 1, wait).await?;
    let home = rushes_tests::browser::fill_form(&env.url("/"), &[]).await?;
    assert_eq!(home["title"], "Sign in · Rushes", "{home}");

    // The new password is set through the form; the used link then says so on the form.
    let reset_page = env.url(&format!("/reset-password?token={reset}"));
    let shown = rushes_tests::browser::fill_form(&reset_page, &[("password", "a new secret")]).await?;
    assert_eq!(shown["title"], "Rushes: password changed", "{shown}");
    assert_eq!(shown["csp_blocked"], json!([]), "{shown}");
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "ana", "password": "a new secret" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let again = rushes_tests::browser::fill_form(&reset_page, &[("password", "another secret")]).await?;
    assert!(
        again["text"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid, used or expired"),
        "{again}"
    );

    let accept_page = env.url(&format!("/accept-invitation?token={invitation}"));
    let shown =
        rushes_tests::browser::fill_form(&accept_page, &[("username", "admin"), ("password", "welcome aboard")])
            .await?;
    assert!(
        shown["text"].as_str().unwrap_or_default().contains("reserved"),
        "{shown}"
    );
    let shown =
        rushes_tests::browser::fill_form(&accept_page, &[("username", "newbie"), ("password", "welcome aboard")])
            .await?;
    assert_eq!(shown["title"], "Rushes: welcome", "{shown}");
    let (status, _) = env
        .post(
            "/api/v1/auth/login",
            json!({ "username": "newbie", "password": "welcome aboard" }),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
