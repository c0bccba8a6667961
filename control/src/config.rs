//! The control plane's settings and subcommands.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use rushes_common::config::{BrokerConfig, DatabaseConfig, Secret};
use rushes_common::media::MediaConfig;

/// The Rushes control plane: HTTP API and migrations.
#[derive(Debug, Parser)]
#[command(name = "rushes-control", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations and declare the broker topology, then exit.
    Migrate(MigrateConfig),
    /// Serve the HTTP API.
    Serve(Box<ControlConfig>),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
}

#[derive(Debug, Clone, Args)]
pub struct ControlConfig {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    /// Address the HTTP API listens on (port 0 picks a free one).
    #[arg(long, env = "RUSHES_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Bootstrap admin bearer token. When unset, a random one is generated and logged
    /// once at start-up.
    #[arg(long, env = "RUSHES_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    #[command(flatten)]
    pub media: MediaConfig,
    /// The API's URL as people reach it, for links in mails.
    #[arg(long, env = "RUSHES_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,
    /// Serve `/metrics` on this address instead of the API's (keeps the scrape endpoint
    /// off a public listener). Unset: `/metrics` is on `RUSHES_HTTP_ADDR`.
    #[arg(long, env = "RUSHES_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Largest file one upload (review file, audio for transcription) may be, in bytes
    /// (default 20 GiB).
    #[arg(long, env = "RUSHES_UPLOAD_MAX_BYTES", default_value_t = 20 << 30)]
    pub upload_max_bytes: u64,
    /// Most bytes of uploads one account may keep, in bytes (default 200 GiB; 0: no
    /// quota). The bootstrap token has none.
    #[arg(long, env = "RUSHES_UPLOAD_QUOTA_BYTES", default_value_t = 200 << 30)]
    pub upload_quota_bytes: u64,
    /// Proxies whose `X-Forwarded-For` names the client (login limits and the login
    /// log): IP addresses or CIDR ranges, comma separated. Empty: the peer is the client.
    #[arg(long, env = "RUSHES_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Key of the grants a share link's password buys (the same on every replica).
    /// When unset, a random key per process: a restart asks for the password again.
    #[arg(long, env = "RUSHES_SHARE_SECRET", hide_env_values = true)]
    pub share_secret: Option<Secret>,
    #[command(flatten)]
    pub oidc: OidcConfig,
}

/// Single sign-on through an OpenID Connect provider (authorization code with PKCE).
/// Off unless `RUSHES_OIDC_ISSUER` is set.
#[derive(Debug, Clone, Default, Args)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is
    /// `{issuer}/.well-known/openid-configuration`. Unset: no single sign-on.
    #[arg(long, env = "RUSHES_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// This application's client id at the provider (the ID tokens' audience).
    #[arg(long, env = "RUSHES_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The client's secret. Unset: a public client, protected by PKCE alone.
    #[arg(long, env = "RUSHES_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<Secret>,
    /// Where the provider sends the browser back (register it there). Default:
    /// `{RUSHES_PUBLIC_URL}/api/v1/auth/oidc/callback`.
    #[arg(long, env = "RUSHES_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// Scopes asked for, space separated (`openid` is always asked).
    #[arg(long, env = "RUSHES_OIDC_SCOPES", default_value = "openid email profile")]
    pub oidc_scopes: String,
    /// Create an account at the first sign-in of a verified email that no account has.
    /// Off: such a sign-in is refused until an admin creates the account.
    #[arg(long, env = "RUSHES_OIDC_CREATE_USERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_create_users: bool,
    /// A claim listing group names (e.g. `groups`): at each sign-in the user joins the
    /// existing groups it names.
    #[arg(long, env = "RUSHES_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Accounts that have signed in through the provider can no longer sign in with a
    /// password.
    #[arg(long, env = "RUSHES_OIDC_DISABLE_LOCAL_LOGIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub oidc_disable_local_login: bool,
}
