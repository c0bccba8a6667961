//! The Rushes control plane: a thin HTTP API over PostgreSQL and RabbitMQ.

pub mod audit;
pub mod auth;
pub mod cache;
pub mod client_addr;
pub mod config;
pub mod console;
pub mod ctl;
pub mod error;
pub mod extract;
pub mod headers;
pub mod mail;
pub mod metadata;
pub mod metrics;
pub mod oidc;
pub mod passwords;
pub mod readable;
pub mod roles;
pub mod routes;
pub mod share_grant;
pub mod state;
pub mod throttle;
pub mod transcript_export;
pub mod upload;

use anyhow::Context as _;
use rushes_common::config::Secret;
use rushes_common::queue::{Broker, Publisher};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::{Cli, Command, ControlConfig, MigrateConfig, OidcConfig};
use crate::state::AppState;

/// Entry point of the `rushes-control` binary.
pub fn main_entry() -> anyhow::Result<()> {
    let cli: Cli = rushes_common::config::parse()?;
    rushes_common::telemetry::init();
    rushes_common::shutdown::block_on_service(None, |shutdown| async move {
        match cli.command {
            Command::Migrate(config) => migrate(&config).await,
            Command::Serve(config) => {
                let listener = TcpListener::bind(config.http_addr)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.http_addr))?;
                serve(*config, listener, shutdown).await
            }
        }
    })
}

/// Applies migrations and declares the broker topology.
pub async fn migrate(config: &MigrateConfig) -> anyhow::Result<()> {
    if rushes_common::db::create_if_missing(&config.database)
        .await
        .context("cannot reach PostgreSQL")?
    {
        tracing::info!("database created");
    }
    let db = rushes_common::db::pool(&config.database).context("invalid database settings")?;
    rushes_common::db::migrate(&db).await.context("migrations failed")?;
    tracing::info!("database migrated");
    let broker = Broker::new(&config.broker, "rushes-control migrate").context("invalid broker settings")?;
    match broker.declare_topology().await {
        Ok(()) => tracing::info!(prefix = broker.topology().prefix(), "broker topology declared"),
        // Every consumer and publisher declares it again on connect, so this is not fatal.
        Err(err) => tracing::warn!(error = %err, "broker unreachable; topology will be declared on first connect"),
    }
    Ok(())
}

/// Builds the application state from settings.
pub fn state(config: &ControlConfig) -> anyhow::Result<AppState> {
    let db = rushes_common::db::pool(&config.database).context("invalid database settings")?;
    let broker = Broker::new(&config.broker, "rushes-control").context("invalid broker settings")?;
    let admin_token = match &config.admin_token {
        Some(token) if !token.expose().trim().is_empty() => token.clone(),
        _ => {
            let token = generate_token();
            let file = config.media.data_dir.join("bootstrap-admin-token");
            write_secret_file(&file, token.expose())
                .with_context(|| format!("cannot write the generated admin token to {}", file.display()))?;
            tracing::warn!(
                file = %file.display(),
                "RUSHES_ADMIN_TOKEN is not set; generated a bootstrap admin token for this run (readable only by \
                 this account, in the file named here)"
            );
            token
        }
    };
    let trusted_proxies = client_addr::TrustedProxies::parse(&config.trusted_proxies).map_err(anyhow::Error::msg)?;
    if config.share_secret.is_none() {
        tracing::info!("RUSHES_SHARE_SECRET is not set; share-link grants hold only on this process");
    }
    let metrics = metrics::ControlMetrics::new().context("cannot register metrics")?;
    let sso = oidc::Settings::from_config(&config.oidc, &config.public_url)
        .context("invalid single sign-on settings")?
        .map(oidc::Provider::new)
        .transpose()?
        .map(std::sync::Arc::new);
    Ok(AppState {
        db: db.clone(),
        publisher: Publisher::new(broker).counting(metrics.jobs_enqueued.clone()),
        metrics,
        admin_token,
        roots: std::sync::Arc::new(rushes_common::media::MediaRoots::new(&config.media.media_roots)),
        media: std::sync::Arc::new(config.media.clone()),
        public_url: config.public_url.trim_end_matches('/').into(),
        upload_max_bytes: config.upload_max_bytes,
        upload_quota_bytes: config.upload_quota_bytes,
        cache: std::sync::Arc::new(cache::Cache::default()),
        logs: rushes_common::logs::LogSink::spawn(db.clone(), "control"),
        image_decodes: std::sync::Arc::new(tokio::sync::Semaphore::new(routes::covers::DECODES_AT_ONCE)),
        effective_config: std::sync::Arc::new(serde_json::json!({
            "http_addr": config.http_addr.to_string(),
            "database_url": routes::system_info::mask_url(config.database.database_url.expose()),
            "database_max_connections": config.database.database_max_connections,
            "amqp_url": config.broker.amqp_url.expose().split(',').map(|url| routes::system_info::mask_url(url.trim())).collect::<Vec<_>>().join(","),
            "queue_prefix": config.broker.queue_prefix,
            "admin_token": "****",
            "media_roots": config.media.media_roots,
            "data_dir": config.media.data_dir,
            "public_url": config.public_url,
            "upload_max_bytes": config.upload_max_bytes,
            "upload_quota_bytes": config.upload_quota_bytes,
            "trusted_proxies": config.trusted_proxies,
            "share_secret": config.share_secret.as_ref().map(|_| "****"),
            "oidc_issuer": config.oidc.oidc_issuer,
            "oidc_client_id": config.oidc.oidc_client_id,
            "oidc_client_secret": config.oidc.oidc_client_secret.as_ref().map(|_| "****"),
            "oidc_redirect_url": sso.as_ref().map(|sso| sso.settings.redirect_url.clone()),
            "oidc_scopes": config.oidc.oidc_scopes,
            "oidc_create_users": config.oidc.oidc_create_users,
            "oidc_groups_claim": config.oidc.oidc_groups_claim,
            "oidc_disable_local_login": config.oidc.oidc_disable_local_login,
        })),
        sso,
        trusted_proxies: std::sync::Arc::new(trusted_proxies),
        share_grants: std::sync::Arc::new(
            share_grant::GrantKey::new(config.share_secret.as_ref()).context("cannot key share-link grants")?,
        ),
    })
}

/// Serves the API on `listener` until `shutdown`, then drains in-flight requests.
pub async fn serve(config: ControlConfig, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = state(&config)?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "control plane listening");
    state.logs.system(
        rushes_common::logs::Level::Info,
        format!("control plane started on {addr}"),
    );
    let logs = state.logs.clone();
    // The hash unknown usernames are checked against, made once before the first login.
    tokio::spawn(passwords::warm_up());
    tokio::spawn(cache::listen(
        state.db.clone(),
        state.cache.clone(),
        shutdown.child_token(),
    ));
    if let Some(metrics_addr) = config.metrics_addr {
        let metrics = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} (RUSHES_METRICS_ADDR)"))?;
        tracing::info!(addr = %metrics.local_addr()?, "metrics listening");
        let app = routes::metrics_app(state.clone());
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            let served = axum::serve(metrics, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "metrics listener failed");
            }
        });
    }
    let app =
        routes::app(state, config.metrics_addr.is_some()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("HTTP server failed")?;
    logs.system(
        rushes_common::logs::Level::Info,
        format!("control plane on {addr} stopped"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tracing::info!("control plane stopped");
    Ok(())
}

fn generate_token() -> Secret {
    let bytes: [u8; 24] = rand::random();
    Secret::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Writes `secret` to `path`, readable and writable by this account only (0600), the
/// folder made if missing.
fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode on open: narrow it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_private() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("rushes-secret-{}", uuid::Uuid::now_v7()));
        let path = dir.join("nested").join("token");
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        std::fs::write(&path, "old")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        write_secret_file(&path, "s3cret")?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&path)?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(mode, 0o600);
        assert_eq!(text, "s3cret\n");
        Ok(())
    }
}
