//! Tracing set-up shared by every binary: `RUSHES_LOG` (or `RUST_LOG`) filters,
//! `RUSHES_LOG_FORMAT=json` switches to one JSON object per line for production.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. Safe to call more than once (tests).
pub fn init() {
    let filter = std::env::var("RUSHES_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info,sqlx=warn,lapin=warn".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("RUSHES_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
