//! `/api/v1/system` (admins): versions of Rushes, ffmpeg and PostgreSQL, RabbitMQ's reachability, the
//! Whisper model in effect (the setting, else what the online workers use) and the models
//! in use, and this control process's effective configuration with secrets masked.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use rushes_common::settings;
use serde_json::{Value, json};

use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/system", get(info))
}

/// Query parameters whose values are secrets (`?password=…`, `?sslpassword=…`).
fn secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "key"].iter().any(|s| name.contains(s))
}

/// A connection URL fit to show: the password (and secret query parameters) as `****`.
/// Parsed as a URL, so a password holding `@` or `:` is masked whole; text that does not
/// parse is not shown at all.
pub fn mask_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return "**** (not a URL)".to_owned();
    };
    if url.password().is_some() && url.set_password(Some("****")).is_err() {
        return "**** (a URL without a host)".to_owned();
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_parameter(&k) {
                    "****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// First line of `ffmpeg -version` on this host, if it has one.
async fn ffmpeg_version() -> Option<String> {
    let run = tokio::process::Command::new("ffmpeg")
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(5), run).await.ok()?.ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

async fn info(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let postgres: String = sqlx::query_scalar("SHOW server_version").fetch_one(&state.db).await?;
    let broker_reachable = state.broker().ping().await.is_ok();
    let mut current = settings::load(&state.db).await?;
    let fleet = super::settings::whisper_fleet(&state).await?;
    let whisper_model = super::settings::effective_whisper_model(current.get(settings::WHISPER_MODEL), &fleet);
    current.insert(settings::WHISPER_MODEL, whisper_model.clone());
    Ok(axum::Json(json!({
        "rushes": rushes_common::VERSION,
        "ffmpeg": ffmpeg_version().await,
        "postgresql": postgres,
        "rabbitmq": { "reachable": broker_reachable },
        "whisper_model": whisper_model,
        "whisper_models_in_use": fleet.in_use,
        "settings": current,
        "config": state.effective_config,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            mask_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            mask_url("postgres://postgres@127.0.0.1/rushes"),
            "postgres://postgres@127.0.0.1/rushes"
        );
        assert_eq!(
            mask_url("postgres://app:p@ss:w0rd@db.example:5432/rushes?sslmode=require&sslpassword=x"),
            "postgres://app:****@db.example:5432/rushes?sslmode=require&sslpassword=****"
        );
        assert!(!mask_url("not a url").contains("not a url"));
    }
}
