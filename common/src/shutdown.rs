//! One shutdown signal per process: SIGINT or SIGTERM cancels a token that every
//! long-running task watches.

use std::future::Future;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// Runs a service on a multi-threaded runtime until it returns; the token it is given
/// is cancelled on SIGINT or SIGTERM. The `main` of every binary. `threads` sets the
/// runtime's threads (default: one per core).
pub fn block_on_service<F, Fut>(threads: Option<usize>, service: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    runtime(threads)?.block_on(async move { service(on_signal()).await })
}

/// A service's multi-threaded runtime with `threads` threads (default: one per core;
/// at least one).
pub fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime.enable_all().build().context("cannot start the async runtime")
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
