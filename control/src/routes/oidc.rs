//! `/api/v1/auth/oidc`: single sign-on with the configured OpenID Connect provider.
//!
//! `login` sends the browser to the provider with a fresh state, nonce and PKCE
//! challenge, and binds the sign-in to that browser with a short-lived cookie.
//! `callback` uses the state once (a replayed or forged one signs nobody in), trades the
//! code for tokens, checks the ID token, finds the user (by the provider account, else
//! by verified email, else creates one when allowed) and opens a session: the console's
//! cookie and, for a client that asks for JSON, the token in the body.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use rushes_common::accounts;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::session::{client, log_attempt, open_session};
use crate::audit::{self, Change};
use crate::auth::{Caller, new_token, token_digest};
use crate::console::session as cookies;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::oidc::{Provider, SsoError};
use crate::state::AppState;

/// The cookie that ties a sign-in to the browser that started it. `SameSite=Lax`: the
/// provider sends the browser back with a cross-site navigation, which `Strict` cookies
/// do not follow.
const BROWSER_COOKIE: &str = "rushes_oidc";
/// Minutes a sign-in may take at the provider.
const SIGN_IN_MINUTES: i32 = 10;

pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
}

fn provider(state: &AppState) -> ApiResult<&Provider> {
    state
        .sso
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("single sign-on is not configured (RUSHES_OIDC_ISSUER)".into()))
}

fn refused(err: SsoError) -> ApiError {
    match err {
        SsoError::Provider(message) => {
            tracing::warn!(error = %message, "single sign-on: the identity provider cannot be used");
            ApiError::Unavailable(format!("single sign-on is unavailable: {message}"))
        }
        other => {
            tracing::warn!(error = %other, "single sign-on refused");
            ApiError::Forbidden(format!("single sign-on refused: {other}"))
        }
    }
}

fn browser_cookie(value: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = match value {
        Some(value) => format!(
            "{BROWSER_COOKIE}={value}; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SIGN_IN_MINUTES * 60
        ),
        None => format!("{BROWSER_COOKIE}=; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("rushes_oidc=; Max-Age=0"))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    /// The console page to show once signed in.
    #[serde(default)]
    next: Option<String>,
}

/// Starts a sign-in: 303 to the provider's authorization endpoint.
async fn login(State(state): State<AppState>, Query(query): Query<LoginQuery>) -> ApiResult<Response> {
    let sso = provider(&state)?;
    let metadata = sso.metadata().await.map_err(refused)?;
    let (sign_in, nonce, browser) = (new_token(), new_token(), new_token());
    let verifier = format!("{}{}", new_token(), new_token());
    let location = sso
        .authorization_url(&metadata, &sign_in, &nonce, &verifier)
        .map_err(refused)?;
    let next = crate::console::local(query.next.as_deref().unwrap_or("/")).to_owned();
    sqlx::query("DELETE FROM oidc_logins WHERE expires_at < now() - interval '1 day'")
        .execute(&state.db)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_logins (state_digest, browser_digest, nonce, code_verifier, next_path, expires_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(mins => $6))",
    )
    .bind(token_digest(&sign_in))
    .bind(token_digest(&browser))
    .bind(&nonce)
    .bind(&verifier)
    .bind(&next)
    .bind(SIGN_IN_MINUTES)
    .execute(&state.db)
    .await?;
    let location = HeaderValue::from_str(&location)
        .map_err(|_| ApiError::Unavailable("the provider's authorization endpoint is not a usable URL".into()))?;
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        browser_cookie(Some(&browser), state.public_url.starts_with("https://")),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A sign-in under way, as its callback takes it.
#[derive(sqlx::FromRow)]
struct Pending {
    browser_digest: Vec<u8>,
    nonce: String,
    code_verifier: Option<String>,
    next_path: String,
    fresh: bool,
}

/// Uses the sign-in named by `sign_in` (its state): once only, whatever comes next.
async fn take_pending(state: &AppState, sign_in: &str) -> ApiResult<Pending> {
    let pending: Option<Pending> = sqlx::query_as(
        "WITH old AS (SELECT * FROM oidc_logins WHERE state_digest = $1 AND used_at IS NULL FOR UPDATE) \
         UPDATE oidc_logins o SET used_at = now(), code_verifier = NULL FROM old \
         WHERE o.state_digest = old.state_digest \
         RETURNING old.browser_digest, old.nonce, old.code_verifier, old.next_path, old.expires_at > now() AS fresh",
    )
    .bind(token_digest(sign_in))
    .fetch_optional(&state.db)
    .await?;
    pending.ok_or_else(|| {
        ApiError::Forbidden(
            "single sign-on refused: this sign-in is unknown or was already used; start again at \
             /api/v1/auth/oidc/login"
                .into(),
        )
    })
}

/// Finishes a sign-in.
async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> ApiResult<Response> {
    let sso = provider(&state)?;
    let secure = state.public_url.starts_with("https://");
    let Some(sign_in) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return Err(ApiError::BadRequest(
            "state: missing (the provider's answer is incomplete)".into(),
        ));
    };
    let pending = take_pending(&state, sign_in).await?;
    let browser = cookies::cookie(&headers, BROWSER_COOKIE).unwrap_or_default();
    if !bool::from(token_digest(&browser).ct_eq(&pending.browser_digest)) {
        return Err(ApiError::Forbidden(
            "single sign-on refused: this sign-in was started in another browser; start again".into(),
        ));
    }
    if !pending.fresh {
        return Err(ApiError::Forbidden(format!(
            "single sign-on refused: the sign-in took longer than {SIGN_IN_MINUTES} minutes; start again"
        )));
    }
    if let Some(error) = &query.error {
        let description = query.error_description.as_deref().unwrap_or_default();
        return Err(ApiError::Forbidden(crate::oidc::short(&format!(
            "the identity provider did not sign you in: {error} {description}"
        ))));
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err(ApiError::BadRequest(
            "code: missing (the provider's answer is incomplete)".into(),
        ));
    };
    let verifier = pending.code_verifier.unwrap_or_default();
    let metadata = sso.metadata().await.map_err(refused)?;
    let tokens = sso.exchange(&metadata, code, &verifier).await.map_err(refused)?;
    let verified = sso
        .verify(&metadata, &tokens.id_token, &pending.nonce, Utc::now().timestamp())
        .await
        .map_err(refused)?;
    let mut claims = verified.all;
    let groups_claim = sso.settings.groups_claim.as_deref();
    let lacking = !claims.contains_key("email") || groups_claim.is_some_and(|g| !claims.contains_key(g));
    if lacking && let Some(access) = &tokens.access_token {
        for (name, value) in sso
            .userinfo(&metadata, access, &verified.subject)
            .await
            .map_err(refused)?
        {
            claims.entry(name).or_insert(value);
        }
    }
    let remote = client(&state, &headers, peer);
    let identity = Identity::of(&sso.settings.issuer, &verified.subject, &claims, groups_claim);
    let (user, username) = match sign_in_user(&state, sso, &identity).await {
        Ok(found) => found,
        Err(err) => {
            let who = identity.email.as_deref().unwrap_or(&identity.subject);
            log_attempt(&state, who, None, Some(&format!("single sign-on: {err}")), &remote).await?;
            return Err(err);
        }
    };
    let (token, expires_at) = open_session(&state, user, &username, &remote).await?;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("text/html"));
    let mut response = if wants_json {
        axum::Json(json!({ "token": token, "expires_at": expires_at, "user_id": user })).into_response()
    } else {
        continue_page(&pending.next_path)
    };
    let set = response.headers_mut();
    set.append(
        header::SET_COOKIE,
        cookies::set_cookie(cookies::COOKIE, Some(&token), secure),
    );
    set.append(header::SET_COOKIE, browser_cookie(None, secure));
    set.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The page that takes a signed-in browser on to the console. A page, not a redirect:
/// the session cookie is `SameSite=Strict`, and a redirect at the end of the provider's
/// cross-site navigation would still be cross-site, so the console would not see it.
fn continue_page(next: &str) -> Response {
    let next = crate::console::local(next);
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(format!("0;url={next}"));
                title { "Signed in · Rushes" }
            }
            body { p { "Signed in. " a href=(next) { "Continue" } } }
        }
    };
    // The API's default policy sandboxes documents, and a sandboxed page may not
    // navigate: this one may, and nothing else.
    let policy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
    (
        [(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy))],
        Html(page.into_string()),
    )
        .into_response()
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
struct Identity {
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
    preferred_username: Option<String>,
    groups: Vec<String>,
}

impl Identity {
    fn of(issuer: &str, subject: &str, claims: &Map<String, Value>, groups_claim: Option<&str>) -> Self {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        // Some providers send the flag as a string.
        let email_verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(v)) if v == "true");
        let groups = match groups_claim.and_then(|name| claims.get(name)) {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(names)) => names
                .split([',', ' '])
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Self {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            email: text("email").map(str::to_owned),
            email_verified,
            preferred_username: text("preferred_username").map(str::to_owned),
            groups,
        }
    }

    /// Usernames to try for a new account: the provider's, then the email's local part.
    fn username_candidates(&self) -> Vec<String> {
        let clean = |name: &str| -> String {
            let kept: String = name
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
                .skip_while(|c| !c.is_alphanumeric())
                .take(accounts::MAX_USERNAME - 4)
                .collect();
            kept
        };
        [
            self.preferred_username.as_deref(),
            self.email.as_deref().and_then(|e| e.split('@').next()),
        ]
        .into_iter()
        .flatten()
        .map(clean)
        .filter(|name| accounts::username_problem(name).is_none() && !accounts::is_reserved(name))
        .collect()
    }
}

/// The caller an SSO sign-in's own changes are recorded under: the user signing in.
fn self_caller(user: Uuid, username: &str) -> Caller {
    Caller {
        name: username.to_owned(),
        user_id: Some(user),
        is_admin: false,
        impersonator_id: None,
        token_id: None,
        request_id: Uuid::now_v7(),
    }
}

#[derive(sqlx::FromRow)]
struct Account {
    id: Uuid,
    username: String,
    active: bool,
    deleted: bool,
}

/// The user an identity signs in as: linked before, else the account with its verified
/// email (linked now), else a new account when the settings allow it. Joins the groups
/// the groups claim names.
async fn sign_in_user(state: &AppState, sso: &Provider, identity: &Identity) -> ApiResult<(Uuid, String)> {
    let mut tx = state.db.begin().await?;
    let linked: Option<Account> = sqlx::query_as(
        "SELECT u.id, u.username, u.active, u.deleted_at IS NOT NULL AS deleted \
         FROM user_identities i JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(&mut *tx)
    .await?;
    let verified_email = identity.email.as_deref().filter(|_| identity.email_verified);
    let account = match (linked, verified_email) {
        (Some(account), _) => account,
        (None, None) if identity.email.is_some() => {
            return Err(ApiError::Forbidden(
                "single sign-on refused: the identity provider has not verified this account's email".into(),
            ));
        }
        (None, None) => {
            return Err(ApiError::Forbidden(
                "single sign-on refused: the identity provider gave no email to find the account by (ask for the \
                 `email` scope)"
                    .into(),
            ));
        }
        (None, Some(email)) => {
            let by_email: Option<Account> = sqlx::query_as(
                "SELECT id, username, active, false AS deleted FROM users \
                 WHERE lower(email) = lower($1) AND deleted_at IS NULL",
            )
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
            let (account, created) = match by_email {
                Some(account) => (account, false),
                None if sso.settings.create_users => (create_user(&mut tx, identity, email).await?, true),
                None => {
                    return Err(ApiError::Forbidden(
                        "single sign-on refused: no account has this email; an admin must create it first".into(),
                    ));
                }
            };
            sqlx::query("INSERT INTO user_identities (issuer, subject, user_id, email) VALUES ($1, $2, $3, $4)")
                .bind(&identity.issuer)
                .bind(&identity.subject)
                .bind(account.id)
                .bind(email)
                .execute(&mut *tx)
                .await?;
            audit::record(
                &mut *tx,
                &self_caller(account.id, &account.username),
                Change {
                    action: "user.sso_link",
                    target_type: "user",
                    target_id: Some(account.id.to_string()),
                    before: None,
                    after: Some(
                        json!({ "issuer": identity.issuer, "subject": identity.subject, "email": email,
                                        "created": created }),
                    ),
                },
            )
            .await?;
            account
        }
    };
    if account.deleted {
        return Err(ApiError::Forbidden(
            "single sign-on refused: the account it signs in as was deleted".into(),
        ));
    }
    if !account.active {
        return Err(ApiError::Forbidden("this account is deactivated".into()));
    }
    sqlx::query(
        "UPDATE user_identities SET last_login_at = now(), email = coalesce($3, email) WHERE issuer = $1 AND subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(verified_email)
    .execute(&mut *tx)
    .await?;
    if !identity.groups.is_empty() {
        let joined: Vec<String> = sqlx::query_scalar(
            "INSERT INTO group_members (group_id, user_id) SELECT id, $2 FROM groups WHERE name = ANY($1) \
             ON CONFLICT DO NOTHING RETURNING (SELECT name FROM groups g WHERE g.id = group_id)",
        )
        .bind(&identity.groups)
        .bind(account.id)
        .fetch_all(&mut *tx)
        .await?;
        if !joined.is_empty() {
            audit::record(
                &mut *tx,
                &self_caller(account.id, &account.username),
                Change {
                    action: "user.sso_groups",
                    target_type: "user",
                    target_id: Some(account.id.to_string()),
                    before: None,
                    after: Some(json!({ "joined": joined })),
                },
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok((account.id, account.username))
}

/// A new account for a verified email: no password (it signs in through the provider),
/// no rights beyond its groups.
async fn create_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    identity: &Identity,
    email: &str,
) -> ApiResult<Account> {
    let id = Uuid::now_v7();
    let bases = identity.username_candidates();
    let bases = if bases.is_empty() {
        vec!["user".to_owned()]
    } else {
        bases
    };
    // The first free name among the candidates, then the first with a number added.
    let tries = bases
        .iter()
        .cloned()
        .chain((2..100).map(|n| format!("{}{n}", bases[0])));
    for username in tries {
        let inserted =
            sqlx::query("INSERT INTO users (id, username, email) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(&username)
                .bind(email)
                .execute(&mut **tx)
                .await?;
        if inserted.rows_affected() == 1 {
            audit::record(
                &mut **tx,
                &self_caller(id, &username),
                Change {
                    action: "user.create",
                    target_type: "user",
                    target_id: Some(id.to_string()),
                    before: None,
                    after: Some(json!({ "username": username, "email": email, "via": "single sign-on" })),
                },
            )
            .await?;
            return Ok(Account {
                id,
                username,
                active: true,
                deleted: false,
            });
        }
    }
    Err(ApiError::Conflict(
        "single sign-on cannot create the account: every username tried is taken".into(),
    ))
}

/// Whether `user` has signed in through a provider (so may lose password sign-in).
pub(crate) async fn is_linked(state: &AppState, user: Uuid) -> ApiResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM user_identities WHERE user_id = $1)")
            .bind(user)
            .fetch_one(&state.db)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_read_their_claims() {
        let claims: Map<String, Value> = serde_json::from_value(json!({
            "email": " Alice@Example.com ", "email_verified": "true", "preferred_username": "-alice smith!",
            "groups": ["Editors", "Hub"], "roles": "a,b"
        }))
        .unwrap_or_default();
        let identity = Identity::of("https://idp", "s1", &claims, Some("groups"));
        assert_eq!(identity.email.as_deref(), Some("Alice@Example.com"));
        assert!(identity.email_verified);
        assert_eq!(identity.groups, ["Editors", "Hub"]);
        assert_eq!(identity.username_candidates(), ["alicesmith", "Alice"]);
        assert_eq!(Identity::of("i", "s", &claims, Some("roles")).groups, ["a", "b"]);
        assert!(Identity::of("i", "s", &claims, None).groups.is_empty());
        let unverified: Map<String, Value> =
            serde_json::from_value(json!({ "email": "a@b.c", "email_verified": false })).unwrap_or_default();
        assert!(!Identity::of("i", "s", &unverified, None).email_verified);
    }

    #[test]
    fn the_browser_cookie_survives_the_providers_redirect_and_no_longer() {
        let set = browser_cookie(Some("b"), true);
        let text = set.to_str().unwrap_or_default();
        assert!(text.contains("SameSite=Lax") && text.contains("HttpOnly") && text.contains("Secure"));
        assert!(text.contains("Path=/api/v1/auth/oidc") && text.contains("Max-Age=600"));
    }
}
