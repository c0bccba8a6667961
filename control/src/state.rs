//! The control plane's shared state, passed to every handler through axum's `State`.

use std::sync::Arc;

use rushes_common::config::Secret;
use rushes_common::media::{MediaConfig, MediaRoots};
use rushes_common::queue::{Broker, Publisher};
use sqlx::PgPool;

use crate::metrics::ControlMetrics;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub publisher: Publisher,
    pub metrics: ControlMetrics,
    pub admin_token: Secret,
    pub media: Arc<MediaConfig>,
    pub roots: Arc<MediaRoots>,
    /// The API's URL as people reach it (links in mails).
    pub public_url: Arc<str>,
    /// Largest file one upload may be, in bytes.
    pub upload_max_bytes: u64,
    /// Most bytes of uploads one account may keep (0: unlimited).
    pub upload_quota_bytes: u64,
    /// What the API caches; cleared on every replica by NOTIFY.
    pub cache: Arc<crate::cache::Cache>,
    /// The stored system log.
    pub logs: rushes_common::logs::LogSink,
    /// This process's settings with secrets masked (`GET /system`).
    pub effective_config: Arc<serde_json::Value>,
    /// Image decodes (cover uploads) running at once: each may hold hundreds of MB.
    pub image_decodes: Arc<tokio::sync::Semaphore>,
    /// Whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<crate::client_addr::TrustedProxies>,
    /// Signs the grants a share link's password buys.
    pub share_grants: Arc<crate::share_grant::GrantKey>,
    /// The OpenID Connect provider, when single sign-on is configured.
    pub sso: Option<Arc<crate::oidc::Provider>>,
}

impl AppState {
    pub fn broker(&self) -> &Broker {
        self.publisher.broker()
    }
}
