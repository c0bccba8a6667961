//! Single sign-on with OpenID Connect against providers run here: oidc-provider-mock (a
//! real provider, its sign-in page driven by HTTP and by chromium) and a forger that
//! follows the same protocol but signs wrong ID tokens on purpose. Every defect signs
//! nobody in; a replayed or forged state, or a callback in another browser, neither.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use rushes_common::config::Secret;
use rushes_tests::TestEnv;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use url::Url;

const CLIENT_ID: &str = "rushes-test";

/// The Python that has oidc-provider-mock (`RUSHES_TEST_OIDC_PYTHON`; the test
/// bootstrap installs it in a virtualenv of its own). Missing is a failure.
fn oidc_python() -> String {
    std::env::var("RUSHES_TEST_OIDC_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/rushes/oidc-venv/bin/python")
    })
}

/// A provider process; stops when dropped.
struct Provider {
    issuer: String,
    _child: Child,
}

impl Provider {
    /// `kind`: `mock` or `forger` (see `support/oidc_provider.py`). `host` is how
    /// control and the browser reach it (`localhost` makes it another site than the
    /// control plane's 127.0.0.1).
    async fn start(kind: &str, host: &str) -> anyhow::Result<Self> {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/oidc_provider.py");
        let mut child = Command::new(oidc_python())
            .arg(script)
            .arg(kind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run the OIDC provider (deploy/test.sh installs oidc-provider-mock)")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the OIDC provider did not start in 30 s")??
            .context("the OIDC provider exited before it started")?;
        let url = Url::parse(first.trim())?;
        let port = url.port().context("no port")?;
        Ok(Self {
            issuer: format!("http://{host}:{port}"),
            _child: child,
        })
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let answer = reqwest::Client::new()
            .put(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await?;
        ensure!(answer.status().is_success(), "PUT {path} answered {}", answer.status());
        Ok(())
    }
}

/// A control replica signing in through `issuer`, with its settings changed by `edit`.
async fn sso_control(
    env: &mut TestEnv,
    issuer: &str,
    edit: impl FnOnce(&mut rushes_control::OidcConfig) + Send,
) -> anyhow::Result<String> {
    let issuer = issuer.to_owned();
    env.spawn_control_with(move |config| {
        config.public_url = format!("http://{}", config.http_addr);
        config.oidc = rushes_control::OidcConfig {
            oidc_issuer: Some(issuer),
            oidc_client_id: Some(CLIENT_ID.into()),
            oidc_client_secret: Some(Secret::new("test client secret")),
            oidc_redirect_url: None,
            oidc_scopes: "openid email profile".into(),
            oidc_create_users: false,
            oidc_groups_claim: Some("groups".into()),
            oidc_disable_local_login: false,
        };
        edit(&mut config.oidc);
    })
    .await
}

/// An HTTP client that shows redirects instead of following them.
fn browser() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn location(response: &reqwest::Response) -> anyhow::Result<String> {
    Ok(response
        .headers()
        .get(LOCATION)
        .context("no Location")?
        .to_str()?
        .to_owned())
}

/// A sign-in started at `control`: the provider's authorization URL and the browser's
/// binding cookie.
async fn start(http: &reqwest::Client, control: &str) -> anyhow::Result<(Url, String)> {
    let answer = http.get(format!("{control}/api/v1/auth/oidc/login")).send().await?;
    ensure!(
        answer.status() == StatusCode::SEE_OTHER,
        "login answered {}",
        answer.status()
    );
    let cookie = set_cookie(&answer, "rushes_oidc").context("no binding cookie")?;
    Ok((Url::parse(&location(&answer)?)?, cookie))
}

/// Signs `subject` in on oidc-provider-mock's page; the callback URL it sends back.
async fn authorize_at_mock(http: &reqwest::Client, authorize: &Url, subject: &str) -> anyhow::Result<String> {
    let page = http.get(authorize.clone()).send().await?;
    ensure!(
        page.status() == StatusCode::OK,
        "the provider's page answered {}",
        page.status()
    );
    let answer = http.post(authorize.clone()).form(&[("sub", subject)]).send().await?;
    ensure!(
        answer.status().is_redirection(),
        "the provider answered {}",
        answer.status()
    );
    location(&answer)
}

struct Callback {
    status: StatusCode,
    body: String,
    session: Option<String>,
}

async fn callback(http: &reqwest::Client, url: &str, cookie: Option<&str>, accept: &str) -> anyhow::Result<Callback> {
    let mut request = http.get(url).header(reqwest::header::ACCEPT, accept);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, format!("rushes_oidc={cookie}"));
    }
    let answer = request.send().await?;
    let status = answer.status();
    let session = set_cookie(&answer, "rushes_session").filter(|s| !s.is_empty());
    Ok(Callback {
        status,
        session,
        body: answer.text().await?,
    })
}

/// Who a bearer token signs in as (`GET /auth/me`), or the status it gets.
async fn me(control: &str, token: &str) -> anyhow::Result<Result<Value, StatusCode>> {
    let answer = reqwest::Client::new()
        .get(format!("{control}/api/v1/auth/me"))
        .bearer_auth(token)
        .send()
        .await?;
    Ok(if answer.status() == StatusCode::OK {
        Ok(answer.json().await?)
    } else {
        Err(answer.status())
    })
}

#[tokio::test]
async fn a_real_provider_signs_in_the_account_with_its_verified_email() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let provider = Provider::start("mock", "127.0.0.1").await?;
    let control = sso_control(&mut env, &provider.issuer, |_| ()).await?;
    let alice = env.user("alice", json!({})).await?;
    let (status, editors) = env.post("/api/v1/groups", json!({ "name": "Editors" })).await?;
    ensure!(status == StatusCode::CREATED, "group: {status} {editors}");
    provider
        .put(
            "/users/sub-alice",
            json!({ "email": "ALICE@example.com", "email_verified": true, "groups": ["Editors", "No Such Group"] }),
        )
        .await?;
    let http = browser()?;

    // The authorization request: code flow, PKCE S256, state and nonce.
    let (authorize, cookie) = start(&http, &control).await?;
    let asked: std::collections::HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    assert_eq!(asked.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(asked.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(asked.get("code_challenge_method").map(String::as_str), Some("S256"));
    assert_eq!(
        asked.get("redirect_uri").cloned(),
        Some(format!("{control}/api/v1/auth/oidc/callback"))
    );
    for name in ["state", "nonce", "code_challenge"] {
        assert!(asked.get(name).is_some_and(|v| v.len() >= 40), "{name}: {asked:?}");
    }
    let back = authorize_at_mock(&http, &authorize, "sub-alice").await?;
    ensure!(back.starts_with(&control), "the provider sent the browser to {back}");

    // The callback: a session for alice (matched by her verified email, case aside).
    let signed = callback(&http, &back, Some(&cookie), "text/html").await?;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    assert!(
        signed.body.contains("url=/"),
        "the page continues to the console: {}",
        signed.body
    );
    let token = signed.session.context("no session cookie")?;
    let who = me(&control, &token)
        .await?
        .map_err(|s| anyhow::anyhow!("the session answers {s}"))?;
    assert_eq!(who["user_id"], alice["id"]);
    let (_, user) = env
        .get(&format!("/api/v1/users/{}", alice["id"].as_str().unwrap_or_default()))
        .await?;
    assert_eq!(
        user["groups"],
        json!(["Editors"]),
        "joined the groups the claim names that exist"
    );
    let linked: i64 = sqlx::query_scalar("SELECT count(*) FROM user_identities WHERE subject = 'sub-alice'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(linked, 1);
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM login_log WHERE username = 'alice' AND success")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(logged, 1);
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE target_id = $1 AND action LIKE 'user.sso%' ORDER BY id")
            .bind(alice["id"].as_str().unwrap_or_default())
            .fetch_all(&env.db)
            .await?;
    assert_eq!(audited, ["user.sso_link", "user.sso_groups"]);
    // Nothing secret is kept once used.
    let verifiers: i64 = sqlx::query_scalar("SELECT count(*) FROM oidc_logins WHERE code_verifier IS NOT NULL")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(verifiers, 0);

    // The same callback again (state and code used): nobody.
    let replayed = callback(&http, &back, Some(&cookie), "text/html").await?;
    assert_eq!(replayed.status, StatusCode::FORBIDDEN, "{}", replayed.body);
    assert!(
        replayed.session.is_none() && replayed.body.contains("already used"),
        "{}",
        replayed.body
    );

    // A forged state: nobody.
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-alice").await?;
    let mut forged = Url::parse(&back)?;
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("forged{v}")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = callback(&http, forged.as_str(), Some(&cookie), "text/html").await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.session.is_none());

    // The real callback of a sign-in started in another browser (no binding cookie):
    // nobody, and the sign-in is spent.
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-alice").await?;
    let elsewhere = callback(&http, &back, None, "text/html").await?;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "{}", elsewhere.body);
    assert!(elsewhere.body.contains("another browser"), "{}", elsewhere.body);
    assert_eq!(
        callback(&http, &back, Some(&cookie), "text/html").await?.status,
        StatusCode::FORBIDDEN
    );

    // An API client asks for JSON: the token in the body.
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-alice").await?;
    let signed = callback(&http, &back, Some(&cookie), "application/json").await?;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let body: Value = serde_json::from_str(&signed.body)?;
    assert_eq!(body["user_id"], alice["id"]);
    assert!(me(&control, body["token"].as_str().unwrap_or_default()).await?.is_ok());

    // A provider account whose email no account has: refused (no account is created
    // unless the settings say so), and the login log says why.
    provider
        .put(
            "/users/sub-nobody",
            json!({ "email": "nobody@example.com", "email_verified": true }),
        )
        .await?;
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-nobody").await?;
    let refused = callback(&http, &back, Some(&cookie), "text/html").await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("no account has this email"), "{}", refused.body);
    let reason: Option<String> =
        sqlx::query_scalar("SELECT reason FROM login_log WHERE username = 'nobody@example.com' AND NOT success")
            .fetch_optional(&env.db)
            .await?;
    assert!(reason.is_some_and(|r| r.contains("single sign-on")));
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'nobody@example.com'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(users, 0);

    // Password sign-in still works for alice here; a replica that turns it off for
    // accounts linked to the provider refuses it, and keeps it for the others.
    env.user("bob", json!({})).await?;
    assert!(env.login("alice").await.is_ok());
    let strict = sso_control(&mut env, &provider.issuer, |oidc| oidc.oidc_disable_local_login = true).await?;
    let password = |name: &str| {
        let url = format!("{strict}/api/v1/auth/login");
        let body = json!({ "username": name, "password": rushes_tests::PASSWORD });
        async move { anyhow::Ok(reqwest::Client::new().post(url).json(&body).send().await?.status()) }
    };
    assert_eq!(password("alice").await?, StatusCode::FORBIDDEN);
    assert_eq!(password("bob").await?, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn accounts_are_created_on_first_sign_in_only_when_allowed() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let provider = Provider::start("mock", "127.0.0.1").await?;
    let control = sso_control(&mut env, &provider.issuer, |oidc| oidc.oidc_create_users = true).await?;
    env.user("carol", json!({})).await?; // takes the name the provider suggests
    provider
        .put(
            "/users/sub-carol",
            json!({ "email": "carol.new@example.com", "email_verified": true, "preferred_username": "carol" }),
        )
        .await?;
    provider
        .put(
            "/users/sub-dave",
            json!({ "email": "dave@example.com", "email_verified": false }),
        )
        .await?;
    let http = browser()?;
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-carol").await?;
    let signed = callback(&http, &back, Some(&cookie), "text/html").await?;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let who = me(&control, &signed.session.context("no session")?)
        .await?
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let (_, user) = env
        .get(&format!(
            "/api/v1/users/{}",
            who["user_id"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(user["email"], "carol.new@example.com");
    assert_eq!(user["username"], "carol.new", "the taken name gives way to the email's");
    assert_eq!(user["is_admin"], false);
    let no_password: bool =
        sqlx::query_scalar("SELECT password_hash IS NULL FROM users WHERE email = 'carol.new@example.com'")
            .fetch_one(&env.db)
            .await?;
    assert!(no_password, "an account made by single sign-on has no password");
    // Signing in again finds the same account through the link.
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-carol").await?;
    let again = callback(&http, &back, Some(&cookie), "application/json").await?;
    let body: Value = serde_json::from_str(&again.body)?;
    assert_eq!(body["user_id"], who["user_id"]);
    // An email the provider has not verified finds and creates nothing.
    let (authorize, cookie) = start(&http, &control).await?;
    let back = authorize_at_mock(&http, &authorize, "sub-dave").await?;
    let refused = callback(&http, &back, Some(&cookie), "text/html").await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("not verified"), "{}", refused.body);
    let daves: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'dave@example.com'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(daves, 0);
    Ok(())
}

#[tokio::test]
async fn wrong_id_tokens_sign_nobody_in() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let provider = Provider::start("forger", "127.0.0.1").await?;
    let control = sso_control(&mut env, &provider.issuer, |_| ()).await?;
    let erin = env.user("erin", json!({})).await?;
    let http = browser()?;
    let sign_in = |mode: &'static str| {
        let (http, control, provider) = (http.clone(), control.clone(), &provider);
        async move {
            provider
                .put(
                    "/mode",
                    json!({ "mode": mode, "sub": "sub-erin", "email": "erin@example.com" }),
                )
                .await?;
            let (authorize, cookie) = start(&http, &control).await?;
            let answer = http.get(authorize).send().await?;
            let back = location(&answer)?;
            callback(&http, &back, Some(&cookie), "application/json").await
        }
    };
    for (mode, why) in [
        ("wrong_signature", "signature does not verify"),
        ("wrong_audience", "not meant for this client"),
        ("expired", "expired"),
        ("wrong_nonce", "nonce"),
        ("wrong_issuer", "not by the configured issuer"),
        ("alg_none", "not accepted"),
        ("hs256", "not accepted"),
        ("unverified_email", "not verified"),
    ] {
        let refused = sign_in(mode).await?;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{mode}: {}", refused.body);
        assert!(refused.body.contains(why), "{mode}: {}", refused.body);
        assert!(refused.session.is_none(), "{mode}");
    }
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE kind = 'session'")
        .fetch_one(&env.db)
        .await?;
    assert_eq!(sessions, 0, "no defect opened a session");
    // The same provider signing correctly is believed: the refusals were the defects'.
    let signed = sign_in("good").await?;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let body: Value = serde_json::from_str(&signed.body)?;
    assert_eq!(body["user_id"], erin["id"]);
    Ok(())
}

#[tokio::test]
async fn without_a_provider_single_sign_on_says_why() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // Not configured: 404 with the setting to set.
    for path in ["/api/v1/auth/oidc/login", "/api/v1/auth/oidc/callback?state=x&code=y"] {
        let (status, body) = env.get(path).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("RUSHES_OIDC_ISSUER")
        );
    }
    // Configured, but the provider is down: 503, and control is up all the same.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let control = sso_control(&mut env, &format!("http://{closed}"), |_| ()).await?;
    let answer = browser()?
        .get(format!("{control}/api/v1/auth/oidc/login"))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = answer.json().await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("discovery document")
    );
    // A callback without a state, or with one nobody issued.
    let answer = browser()?
        .get(format!("{control}/api/v1/auth/oidc/callback?code=y"))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let answer = browser()?
        .get(format!(
            "{control}/api/v1/auth/oidc/callback?code=y&state=nobody-issued-this"
        ))
        .send()
        .await?;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn the_console_signs_in_through_the_provider_in_a_browser() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // `localhost` is another site than the control plane's 127.0.0.1, so the browser
    // treats the provider's redirect back as the cross-site navigation it is in production.
    let provider = Provider::start("mock", "localhost").await?;
    let control = sso_control(&mut env, &provider.issuer, |_| ()).await?;
    env.user("frank", json!({})).await?;
    provider
        .put(
            "/users/sub-frank",
            json!({ "email": "frank@example.com", "email_verified": true }),
        )
        .await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/sso_flow.py");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(rushes_tests::browser::python())
            .arg(script)
            .arg(&control)
            .arg("sub-frank")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the browser took longer than 120 s")??;
    if !output.status.success() {
        bail!("the browser failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let seen: Value = serde_json::from_slice(&output.stdout)?;
    let provider_url = seen["provider_url"].as_str().unwrap_or_default();
    assert!(
        provider_url.starts_with(&provider.issuer),
        "the button led to {provider_url}"
    );
    assert_eq!(seen["url"], format!("{control}/"), "{seen}");
    let text = seen["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("frank") && text.contains("Sign out"),
        "the console, signed in as frank: {text}"
    );
    Ok(())
}
