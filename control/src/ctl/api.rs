//! The API client: the address and token (flag, variable, config file), one request
//! helper, and what a failure means for the exit code.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Why a command failed, with the exit code it ends with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the control plane at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
            Self::Api { status, .. } => match *status {
                StatusCode::NOT_FOUND => 4,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => 5,
                s if s.is_server_error() => 7,
                _ => 6,
            },
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    token: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// Flags and variables first, then the config file (`path`, else
    /// `~/.config/rushes/rushesctl.toml` when it exists).
    pub fn new(url: Option<String>, token: Option<String>, path: Option<&Path>) -> Result<Self, Failure> {
        let file = match path {
            Some(path) => Some(read_config(path)?),
            None => {
                let default = std::env::var_os("HOME")
                    .map(|home| Path::new(&home).join(".config/rushes/rushesctl.toml"))
                    .filter(|p| p.exists());
                default.as_deref().map(read_config).transpose()?
            }
        }
        .unwrap_or_default();
        let base = url.or(file.url).unwrap_or_else(|| DEFAULT_URL.to_owned());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::Usage(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.or(file.token),
        })
    }

    /// `method /api/v1{path}` with an optional JSON body; the answer's JSON (`Null` for none).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| Failure::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Failure::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(Failure::Api { status, message })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.call(Method::POST, path, body).await
    }
}

fn read_config(path: &Path) -> Result<ConfigFile, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

/// `text` made safe as one path segment (an id or a name typed by the user); `.` and
/// `..` would be resolved away by the URL, so they are encoded too.
pub fn segment(text: &str) -> String {
    if text == "." || text == ".." {
        return text.replace('.', "%2E");
    }
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
