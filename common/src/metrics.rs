//! Prometheus helpers: one registry per process, metric constructors that register
//! as they build, and the small HTTP endpoint worker and scheduler serve.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;

/// Buckets (seconds) for job and request durations: 1 ms to 4 hours.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 14_400.0,
];

/// Builds and registers a counter family.
pub fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Builds and registers a gauge family.
pub fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Builds and registers a gauge family of floating-point values (ages in seconds).
pub fn float_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let metric = GaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Builds and registers a histogram family with [`DURATION_BUCKETS`].
pub fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<HistogramVec> {
    let metric = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
        labels,
    )?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// `rushes_jobs_enqueued_total{kind,queue}`: jobs inserted by this process, whichever
/// path enqueued them (API, scheduler, a job enqueueing the next). One per process,
/// registered in its registry and carried by its [`crate::queue::Publisher`], through
/// which every enqueue publishes. The default one is registered nowhere (tests, tools).
#[derive(Clone, Debug, Default)]
pub struct JobsEnqueued(Option<IntCounterVec>);

impl JobsEnqueued {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        counter(
            registry,
            "rushes_jobs_enqueued_total",
            "Jobs enqueued",
            &["kind", "queue"],
        )
        .map(|c| Self(Some(c)))
    }

    /// `n` jobs of one kind and queue.
    pub fn count_n(&self, kind: &str, queue: &str, n: u64) {
        if let Some(counter) = &self.0 {
            counter.with_label_values(&[kind, queue]).inc_by(n);
        }
    }
}

/// The text exposition of a registry.
pub fn render(registry: &Registry) -> impl IntoResponse + use<> {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// A readiness probe: resolves to `Err(reason)` when the process cannot do its work.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Probe {
    registry: Registry,
    ready: ReadyCheck,
}

/// The address Prometheus reaches a process's metrics at, as service discovery lists it:
/// the bound address, or `host:port` when bound to every interface (0.0.0.0 or ::).
pub fn advertised(bound: SocketAddr, host: &str) -> String {
    if bound.ip().is_unspecified() {
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|State(p): State<Probe>| async move { render(&p.registry) }),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok", "version": crate::VERSION})) }),
        )
        .route(
            "/readyz",
            get(|State(p): State<Probe>| async move {
                match (p.ready)().await {
                    Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))),
                    Err(reason) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({"status": "unready", "reason": reason})),
                    ),
                }
            }),
        )
        .with_state(Probe { registry, ready });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_bound_to_every_interface_are_reached_by_host_name() {
        let any: SocketAddr = ([0, 0, 0, 0], 9101).into();
        let local: SocketAddr = ([127, 0, 0, 1], 40123).into();
        assert_eq!(advertised(any, "gpu-7"), "gpu-7:9101");
        assert_eq!(advertised(local, "gpu-7"), "127.0.0.1:40123");
    }
}
