//! `/api/v1/system` (admins): versions of Rushes, ffmpeg and PostgreSQL, RabbitMQ's reachability, the
//! Whisper model in effect (the setting, else what the online workers use) and the models
//! in use, and this control process's effective configuration with secrets masked.

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

/// What each live worker runs: its Rushes, the ffmpeg it calls, its GPUs and their
/// driver, the Whisper models it has and the one it uses.
#[derive(Debug, serde::Serialize, sqlx::FromRow)]
struct WorkerVersions {
    id: uuid::Uuid,
    host: String,
    version: String,
    ffmpeg: Option<String>,
    gpus: Value,
    cuda_driver: Option<String>,
    whisper_model: Option<String>,
    whisper_models_installed: Option<Value>,
}

async fn info(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let postgres: String = sqlx::query_scalar("SHOW server_version").fetch_one(&state.db).await?;
    let broker_reachable = state.broker().ping().await.is_ok();
    let nodes: Vec<Value> = state
        .broker()
        .server_versions()
        .await
        .into_iter()
        .map(|(node, version)| match version {
            Ok(version) => json!({ "node": node, "version": version }),
            Err(why) => json!({ "node": node, "version": null, "error": why }),
        })
        .collect();
    let workers: Vec<WorkerVersions> = sqlx::query_as(concat!(
        "SELECT w.id, w.host, w.version, w.capabilities ->> 'ffmpeg' AS ffmpeg, w.gpus, \
                w.capabilities ->> 'cuda_driver' AS cuda_driver, \
                w.capabilities -> 'transcribe' ->> 'model' AS whisper_model, \
                w.capabilities -> 'transcribe' -> 'installed' AS whisper_models_installed \
         FROM workers w WHERE ",
        super::workers::online!(),
        " ORDER BY w.host, w.started_at"
    ))
    .fetch_all(&state.db)
    .await?;
    let dependencies: serde_json::Map<String, Value> =
        rushes_common::dependencies()
            .into_iter()
            .fold(serde_json::Map::new(), |mut all, (name, version)| {
                let shown = match all.get(name).and_then(Value::as_str) {
                    Some(before) => format!("{before}, {version}"),
                    None => version.to_owned(),
                };
                all.insert(name.to_owned(), Value::String(shown));
                all
            });
    let mut current = settings::load(&state.db).await?;
    let fleet = super::settings::whisper_fleet(&state).await?;
    let whisper_model = super::settings::effective_whisper_model(current.get(settings::WHISPER_MODEL), &fleet);
    current.insert(settings::WHISPER_MODEL, whisper_model.clone());
    Ok(axum::Json(json!({
        "rushes": rushes_common::VERSION,
        "ffmpeg": rushes_common::media::tool_version(std::path::Path::new("ffmpeg")).await,
        "postgresql": postgres,
        "rabbitmq": { "reachable": broker_reachable, "nodes": nodes },
        "workers": workers,
        "dependencies": dependencies,
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
