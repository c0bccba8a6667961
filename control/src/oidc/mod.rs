//! Single sign-on with an OpenID Connect provider: the authorization-code flow with
//! PKCE (S256), a state bound to the browser that started the sign-in and used once,
//! and a nonce checked in the ID token. This module knows the provider (its discovery
//! document, keys and token endpoint) and checks what it answers; the routes that run
//! the flow and sign the user in are in [`crate::routes::oidc`].

pub mod id_token;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::config::OidcConfig;
pub use id_token::{Claims, TokenError};

/// How long the discovery document and the key set are trusted before they are fetched
/// again.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// A token naming an unknown key fetches the key set again, at most this often (key
/// rotation without letting forged key ids hammer the provider).
const REFETCH_KEYS_AFTER: Duration = Duration::from_secs(10);
/// Each call to the provider gives up after this long.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the identity provider cannot be used: {0}")]
    Provider(String),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What the provider's discovery document says (OpenID Connect Discovery §3).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
}

/// The settings in force (from [`OidcConfig`], checked).
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<rushes_common::config::Secret>,
    pub redirect_url: String,
    pub scopes: String,
    pub create_users: bool,
    pub groups_claim: Option<String>,
    pub disable_local_login: bool,
}

impl Settings {
    /// The settings, or `None` when single sign-on is not configured.
    pub fn from_config(config: &OidcConfig, public_url: &str) -> anyhow::Result<Option<Self>> {
        let Some(issuer) = config.oidc_issuer.as_deref().map(str::trim).filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        let issuer_url = url::Url::parse(issuer)
            .map_err(|err| anyhow::anyhow!("RUSHES_OIDC_ISSUER {issuer:?} is not a URL: {err}"))?;
        if !matches!(issuer_url.scheme(), "https" | "http") {
            anyhow::bail!("RUSHES_OIDC_ISSUER must be an https URL, not {issuer:?}");
        }
        if issuer_url.scheme() == "http" {
            tracing::warn!(issuer, "RUSHES_OIDC_ISSUER is not https: use this only for testing");
        }
        let client_id = config
            .oidc_client_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| anyhow::anyhow!("RUSHES_OIDC_ISSUER is set but RUSHES_OIDC_CLIENT_ID is not"))?;
        let redirect_url = match config
            .oidc_redirect_url
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            Some(url) => url.to_owned(),
            None => format!("{}/api/v1/auth/oidc/callback", public_url.trim_end_matches('/')),
        };
        url::Url::parse(&redirect_url)
            .map_err(|err| anyhow::anyhow!("RUSHES_OIDC_REDIRECT_URL {redirect_url:?} is not a URL: {err}"))?;
        let mut scopes: Vec<&str> = config.oidc_scopes.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        Ok(Some(Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: config
                .oidc_client_secret
                .clone()
                .filter(|secret| !secret.expose().is_empty()),
            redirect_url,
            scopes: scopes.join(" "),
            create_users: config.oidc_create_users,
            groups_claim: config
                .oidc_groups_claim
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned),
            disable_local_login: config.oidc_disable_local_login,
        }))
    }
}

#[derive(Default)]
struct Cache {
    metadata: Option<(Metadata, Instant)>,
    keys: Option<(id_token::KeySet, Instant)>,
}

/// The configured provider.
pub struct Provider {
    pub settings: Settings,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

/// The PKCE challenge (S256) of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Provider {
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .user_agent(concat!("rushes-control/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            settings,
            http,
            cache: Mutex::new(Cache::default()),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, SsoError> {
        let answer = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| SsoError::Provider(format!("{what} ({url}): {err}")))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(SsoError::Provider(format!("{what} ({url}) answered {status}")));
        }
        answer
            .json()
            .await
            .map_err(|err| SsoError::Provider(format!("{what} ({url}) is not what OpenID Connect expects: {err}")))
    }

    /// The discovery document, fetched when first needed and again after an hour.
    pub async fn metadata(&self) -> Result<Metadata, SsoError> {
        let mut cache = self.cache.lock().await;
        if let Some((metadata, at)) = &cache.metadata
            && at.elapsed() < CACHE_FOR
        {
            return Ok(metadata.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.get_json(&url, "the discovery document").await?;
        // Discovery §4.3: the document must name the issuer it was fetched for.
        if metadata.issuer != self.settings.issuer {
            return Err(SsoError::Provider(format!(
                "the discovery document names issuer {:?}, not {:?}",
                metadata.issuer, self.settings.issuer
            )));
        }
        cache.metadata = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// The provider's keys; fetched again when `kid` names a key not among them (rotation).
    async fn keys(&self, metadata: &Metadata, kid: Option<&str>) -> Result<id_token::KeySet, SsoError> {
        let mut cache = self.cache.lock().await;
        if let Some((keys, at)) = &cache.keys {
            let known = kid.is_none_or(|kid| keys.has_kid(kid));
            if at.elapsed() < CACHE_FOR && (known || at.elapsed() < REFETCH_KEYS_AFTER) {
                return Ok(keys.clone());
            }
        }
        let keys: id_token::KeySet = self.get_json(&metadata.jwks_uri, "the key set").await?;
        cache.keys = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// Where to send the browser to sign in.
    pub fn authorization_url(
        &self,
        metadata: &Metadata,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, SsoError> {
        let mut url = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|err| SsoError::Provider(format!("the authorization endpoint is not a URL: {err}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_url)
            .append_pair("scope", &self.settings.scopes)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce_challenge(verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Trades the authorization code for tokens (with the PKCE verifier and, for a
    /// confidential client, its secret: HTTP Basic unless the provider takes only
    /// `client_secret_post`).
    pub async fn exchange(&self, metadata: &Metadata, code: &str, verifier: &str) -> Result<Tokens, SsoError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self.http.post(&metadata.token_endpoint);
        match &self.settings.client_secret {
            Some(secret) => {
                let post_only = metadata
                    .token_endpoint_auth_methods_supported
                    .as_ref()
                    .is_some_and(|methods| {
                        !methods.iter().any(|m| m == "client_secret_basic")
                            && methods.iter().any(|m| m == "client_secret_post")
                    });
                if post_only {
                    form.push(("client_id", &self.settings.client_id));
                    form.push(("client_secret", secret.expose()));
                } else {
                    // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                    request = request.basic_auth(encode(&self.settings.client_id), Some(encode(secret.expose())));
                }
            }
            None => form.push(("client_id", &self.settings.client_id)),
        }
        let answer = request
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|err| SsoError::Provider(format!("the token endpoint: {err}")))?;
        let status = answer.status();
        let body: Value = answer
            .json()
            .await
            .map_err(|err| SsoError::Provider(format!("the token endpoint answered {status} without JSON: {err}")))?;
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("error");
            let description = body["error_description"].as_str().unwrap_or_default();
            return Err(SsoError::Refused(short(&format!("{error} {description}"))));
        }
        serde_json::from_value(body)
            .map_err(|err| SsoError::Provider(format!("the token endpoint's answer has no ID token: {err}")))
    }

    /// Checks an ID token: signature with the provider's keys, issuer, audience, time and nonce.
    pub async fn verify(&self, metadata: &Metadata, token: &str, nonce: &str, now: i64) -> Result<Claims, SsoError> {
        let keys = self.keys(metadata, id_token::key_id(token).as_deref()).await?;
        let expected = id_token::Expected {
            issuer: &self.settings.issuer,
            client_id: &self.settings.client_id,
            nonce,
            now,
        };
        Ok(id_token::verify(token, &keys, &expected)?)
    }

    /// The user-info claims for `subject` (checked to be the same subject, Core §5.3.2).
    pub async fn userinfo(
        &self,
        metadata: &Metadata,
        access_token: &str,
        subject: &str,
    ) -> Result<Map<String, Value>, SsoError> {
        let Some(endpoint) = &metadata.userinfo_endpoint else {
            return Ok(Map::new());
        };
        let answer = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| SsoError::Provider(format!("the user-info endpoint: {err}")))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(SsoError::Provider(format!("the user-info endpoint answered {status}")));
        }
        let claims: Map<String, Value> = answer
            .json()
            .await
            .map_err(|err| SsoError::Provider(format!("the user-info answer is not a JSON object: {err}")))?;
        if claims.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(SsoError::Provider(
                "the user-info answer is about another subject".into(),
            ));
        }
        Ok(claims)
    }
}

/// A provider's message, cut to a readable length without control characters.
pub fn short(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    fn config(issuer: Option<&str>, client: Option<&str>) -> OidcConfig {
        OidcConfig {
            oidc_issuer: issuer.map(str::to_owned),
            oidc_client_id: client.map(str::to_owned),
            oidc_scopes: "email profile".into(),
            ..OidcConfig::default()
        }
    }

    #[test]
    fn settings_need_an_issuer_url_and_a_client() {
        assert!(matches!(
            Settings::from_config(&config(None, None), "http://x"),
            Ok(None)
        ));
        assert!(Settings::from_config(&config(Some("https://idp"), None), "http://x").is_err());
        assert!(Settings::from_config(&config(Some("not a url"), Some("c")), "http://x").is_err());
        assert!(Settings::from_config(&config(Some("ftp://idp"), Some("c")), "http://x").is_err());
        let settings = Settings::from_config(&config(Some("https://idp"), Some("c")), "https://rushes.example/")
            .ok()
            .flatten();
        let Some(settings) = settings else {
            panic!("settings refused")
        };
        assert_eq!(
            settings.redirect_url,
            "https://rushes.example/api/v1/auth/oidc/callback"
        );
        assert_eq!(settings.scopes, "openid email profile");
    }
}
