//! `/api/v1/system` (admins): versions of Rushes, ffmpeg and PostgreSQL, RabbitMQ's reachability, the
//! Whisper model setting, and this control process's effective configuration with
//! secrets masked.

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

/// `scheme://user:secret@host/…` → `scheme://user:****@host/…`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
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
    let current = settings::load(&state.db).await?;
    Ok(axum::Json(json!({
        "rushes": rushes_common::VERSION,
        "ffmpeg": ffmpeg_version().await,
        "postgresql": postgres,
        "rabbitmq": { "reachable": broker_reachable },
        "whisper_model": current.get(settings::WHISPER_MODEL),
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
        assert_eq!(mask_url("not a url"), "not a url");
    }
}
