//! The control plane's metrics: HTTP requests by route and status, jobs enqueued, and
//! gauges read from the broker and the database when Prometheus scrapes.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};
use rushes_common::job::QueueFamily;
use rushes_common::metrics::{JobsEnqueued, counter, float_gauge, gauge, histogram, render};

use crate::routes::queues::ActiveCounts;
use crate::state::AppState;

#[derive(Clone)]
pub struct ControlMetrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Carried by the process's publisher, which counts every enqueue.
    pub jobs_enqueued: JobsEnqueued,
    queue_depth: IntGaugeVec,
    queue_consumers: IntGaugeVec,
    jobs_active: IntGaugeVec,
    workers_online: IntGaugeVec,
    oldest_queued: GaugeVec,
    dependency_up: IntGaugeVec,
    heartbeat_age: GaugeVec,
}

impl ControlMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        Ok(Self {
            http_requests: counter(
                &r,
                "rushes_http_requests_total",
                "HTTP requests",
                &["method", "route", "status"],
            )?,
            http_duration: histogram(
                &r,
                "rushes_http_request_duration_seconds",
                "HTTP request duration",
                &["method", "route"],
            )?,
            jobs_enqueued: JobsEnqueued::register(&r)?,
            queue_depth: gauge(&r, "rushes_queue_depth", "Messages ready in each queue", &["queue"])?,
            queue_consumers: gauge(&r, "rushes_queue_consumers", "Consumers of each queue", &["queue"])?,
            jobs_active: gauge(
                &r,
                "rushes_jobs_active",
                "Jobs queued, running or retrying",
                &["queue", "state"],
            )?,
            workers_online: gauge(
                &r,
                "rushes_workers_online",
                "Workers seen recently, by version",
                &["version"],
            )?,
            oldest_queued: float_gauge(
                &r,
                "rushes_queue_oldest_queued_seconds",
                "Age of the oldest job still queued in each queue (0 when none is)",
                &["queue"],
            )?,
            dependency_up: gauge(
                &r,
                "rushes_dependency_up",
                "1 when PostgreSQL or RabbitMQ answered at this scrape",
                &["dependency"],
            )?,
            heartbeat_age: float_gauge(
                &r,
                "rushes_worker_heartbeat_age_seconds",
                "Seconds since each worker that has not stopped last heartbeated",
                &["host", "worker"],
            )?,
            registry: r,
        })
    }
}

/// Counts and times every request by its route template (never by raw path).
pub async fn track_http(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[method.as_str(), route.as_str(), response.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if response.status().is_server_error() {
        // The cause is in the process log (logged once, by ApiError); the system log
        // keeps that it happened, where.
        let fields = serde_json::json!({ "method": method, "route": route, "status": response.status().as_u16() });
        state.logs.log(
            rushes_common::logs::Level::Error,
            None,
            format!("API error {} on {method} {route}", response.status().as_u16()),
            fields,
        );
    }
    response
}

/// The oldest queued job's enqueue time per queue: one index probe each (`min` over
/// `jobs_queued_published_idx`, and the relay's index for jobs not yet published).
const OLDEST_QUEUED_SQL: &str = "SELECT q, EXTRACT(EPOCH FROM now() - LEAST( \
        (SELECT min(published_at) FROM jobs WHERE state = 'queued' AND published_at IS NOT NULL AND queue = q), \
        (SELECT min(enqueued_at) FROM jobs WHERE state = 'queued' AND published_at IS NULL AND queue = q)))::float8 \
     FROM unnest($1::text[]) AS q";

/// Workers that have not stopped, with the seconds since their last heartbeat.
const HEARTBEAT_AGE_SQL: &str = "SELECT host, id::text, EXTRACT(EPOCH FROM now() - last_seen_at)::float8 \
     FROM workers WHERE stopped_at IS NULL";

/// `GET /metrics`: refreshes the scrape-time gauges, then renders the registry.
pub async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    // Bounded: with PostgreSQL away every read would wait out the pool's acquire timeout
    // and the scrape would outlast Prometheus's, so the 0 would never be seen; the other
    // reads of the database are skipped then.
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.db),
    );
    let database_up = matches!(probe.await, Ok(Ok(_)));
    m.dependency_up
        .with_label_values(&["postgres"])
        .set(i64::from(database_up));
    if database_up {
        database_gauges(&state).await;
    }
    let stats = state.broker().queue_stats().await;
    m.dependency_up
        .with_label_values(&["rabbitmq"])
        .set(i64::from(stats.is_ok()));
    match stats {
        Ok(stats) => {
            for s in stats {
                m.queue_depth
                    .with_label_values(&[s.family.as_str()])
                    .set(i64::from(s.messages));
                m.queue_consumers
                    .with_label_values(&[s.family.as_str()])
                    .set(i64::from(s.consumers));
            }
        }
        Err(err) => tracing::debug!(error = %err, "broker unreachable at scrape"),
    }
    render(&m.registry)
}

/// The gauges read from PostgreSQL: queued ages, heartbeats, active jobs, workers online.
async fn database_gauges(state: &AppState) {
    let m = &state.metrics;
    let queues: Vec<&str> = QueueFamily::ALL.iter().map(|f| f.as_str()).collect();
    if let Ok(rows) = sqlx::query_as::<_, (String, Option<f64>)>(OLDEST_QUEUED_SQL)
        .bind(&queues)
        .fetch_all(&state.db)
        .await
    {
        for (queue, age) in rows {
            m.oldest_queued
                .with_label_values(&[queue.as_str()])
                .set(age.unwrap_or(0.0).max(0.0));
        }
    }
    if let Ok(rows) = sqlx::query_as::<_, (String, String, f64)>(HEARTBEAT_AGE_SQL)
        .fetch_all(&state.db)
        .await
    {
        m.heartbeat_age.reset();
        for (host, worker, age) in rows {
            m.heartbeat_age
                .with_label_values(&[host.as_str(), worker.as_str()])
                .set(age);
        }
    }
    if let Ok(counts) = ActiveCounts::read(&state.db).await {
        for family in QueueFamily::ALL {
            for st in ActiveCounts::STATES {
                m.jobs_active
                    .with_label_values(&[family.as_str(), st])
                    .set(counts.get(family, st));
            }
        }
    }
    if let Ok(rows) = sqlx::query_as::<_, (String, i64)>(crate::routes::workers::ONLINE_COUNT_SQL)
        .fetch_all(&state.db)
        .await
    {
        m.workers_online.reset();
        for (version, n) in rows {
            m.workers_online.with_label_values(&[version.as_str()]).set(n);
        }
    }
}
