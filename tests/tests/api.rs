//! The control API: the happy path, authentication and bad input.

use std::time::Duration;

use reqwest::StatusCode;
use rushes_tests::{TOKEN, TestEnv};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_runs_to_success_with_progress_and_result() -> anyhow::Result<()> {
    let env = TestEnv::with_worker("maintenance=1").await?;

    let (status, created) = env
        .post("/api/v1/jobs", json!({"kind": "sleep", "payload": {"seconds": 1.5}}))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "queued");
    assert_eq!(created["priority"], 20);
    assert_eq!(created["queue"], "maintenance");
    assert!(created["published_at"].is_string(), "published at once: {created}");
    let id = rushes_tests::job_id(&created)?;

    let running = env
        .wait_job(id, Duration::from_secs(10), |j| {
            j["state"] == "running" && j["progress"].as_f64().is_some_and(|p| p > 0.0)
        })
        .await?;
    assert_eq!(running["attempts"], 1);
    assert!(running["worker_id"].is_string());

    let done = env.wait_state(id, "succeeded", Duration::from_secs(10)).await?;
    assert_eq!(done["progress"], 1.0);
    assert_eq!(done["result"], json!({"slept_s": 1.5}));
    assert!(done["finished_at"].is_string());
    assert_eq!(done["attempts"], 1);

    let (status, list) = env.get("/api/v1/jobs?kind=sleep&state=succeeded&limit=10").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(1));
    assert!(list["jobs"][0]["enqueued_at"].is_string());

    let (status, workers) = env.get("/api/v1/workers").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workers["workers"][0]["queues"], json!({"maintenance": 1}));
    assert_eq!(workers["workers"][0]["online"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_missing_or_wrong_tokens() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    for auth in [None, Some("Bearer nope"), Some("Basic dGVzdA=="), Some(TOKEN)] {
        let mut request = env.http.get(env.url("/api/v1/jobs"));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "auth {auth:?}");
        assert_eq!(
            response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body: serde_json::Value = response.json().await?;
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // Probes and documents need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let response = env.http.get(env.url(path)).send().await?;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // Every answer, files included, is what its type says and runs nothing.
    for path in ["/openapi.json", "/api/v1/jobs", "/share/nosuchtoken/proxy.mp4"] {
        let response = env.http.get(env.url(path)).bearer_auth(TOKEN).send().await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            header("content-security-policy").contains("default-src 'none'"),
            "{path}"
        );
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    Ok(())
}

/// `RUSHES_METRICS_ADDR` moves `/metrics` off the API's listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_a_listener_of_their_own() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    let metrics = rushes_tests::dead_port()?;
    let api = env.spawn_control_with(|c| c.metrics_addr = Some(metrics)).await?;
    let scrape = env.http.get(format!("http://{metrics}/metrics")).send().await?;
    assert_eq!(scrape.status(), StatusCode::OK, "metrics on their own listener");
    let on_api = env.http.get(format!("{api}/metrics")).send().await?;
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND, "and not on the API's");
    let healthz = env.http.get(format!("{api}/healthz")).send().await?;
    assert_eq!(healthz.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_creates_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let cases = [
        (
            json!({"kind": "no_such_kind"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown job kind",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": 1}, "priority": 101}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "priority",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": 1}, "priority": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "priority",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": "soon"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid payload",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": -3}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "seconds",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": 1, "colour": "red"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": 1}, "queue": "default"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown queue",
        ),
        (
            json!({"kind": "sleep", "payload": {"seconds": 1}, "max_attempts": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "max_attempts",
        ),
        (json!({"payload": {}}), StatusCode::UNPROCESSABLE_ENTITY, "kind"),
        (
            json!({"kind": "sleep", "surprise": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "surprise",
        ),
    ];
    for (body, expected, needle) in cases {
        let (status, error) = env.post("/api/v1/jobs", body.clone()).await?;
        assert_eq!(status, expected, "{body} → {error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{body}: message {message:?} should mention {needle:?}"
        );
        assert!(error["error"]["code"].is_string());
    }

    // Malformed JSON and a wrong content type.
    let response = env
        .http
        .post(env.url("/api/v1/jobs"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"kind\": ")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await?;
    assert_eq!(body["error"]["code"], "bad_request");
    let response = env
        .http
        .post(env.url("/api/v1/jobs"))
        .bearer_auth(TOKEN)
        .body("kind=sleep")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Unknown and malformed ids, bad filters, unknown routes and queues.
    let (status, body) = env.get(&format!("/api/v1/jobs/{}", uuid::Uuid::now_v7())).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = env.get("/api/v1/jobs/not-a-uuid").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (status, _) = env
        .post(&format!("/api/v1/jobs/{}/cancel", uuid::Uuid::now_v7()), json!({}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env
        .post(
            &format!("/api/v1/dead-letters/{}/requeue", uuid::Uuid::now_v7()),
            json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = env.get("/api/v1/jobs?state=exploded").await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = env.get("/api/v1/jobs?limit=many").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = env.get("/api/v1/nothing-here").await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = env.post("/api/v1/queues/celery/pause", json!({})).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = env.call(reqwest::Method::DELETE, "/api/v1/jobs", None).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    // Just over the 2 MiB limit: the rest fits the socket buffers, so the client finishes
    // writing before the server answers and closes (a far larger body can meet a reset).
    let huge = json!({"kind": "sleep", "payload": {"seconds": 1, "pad": "x".repeat((2 << 20) + 1024)}});
    let (status, body) = env.post("/api/v1/jobs", huge).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    let (_, list) = env.get("/api/v1/jobs").await?;
    assert_eq!(list["jobs"], json!([]), "no bad request created a job");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_and_page() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(env.sleep_job(0.0, Some(i * 10)).await?);
    }
    let (_, page1) = env.get("/api/v1/jobs?limit=2").await?;
    let first: Vec<&str> = page1["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(first, vec![ids[4].to_string(), ids[3].to_string()], "newest first");
    let next = page1["next_before"].as_str().unwrap_or_default().to_owned();
    let (_, page2) = env.get(&format!("/api/v1/jobs?limit=2&before={next}")).await?;
    let second: Vec<&str> = page2["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(second, vec![ids[2].to_string(), ids[1].to_string()]);
    let (_, queued) = env
        .get("/api/v1/jobs?state=queued&queue=maintenance&kind=sleep")
        .await?;
    assert_eq!(queued["jobs"].as_array().map(Vec::len), Some(5));
    let (_, none) = env.get("/api/v1/jobs?kind=scan").await?;
    assert_eq!(none["jobs"], json!([]));

    let (status, kinds) = env.get("/api/v1/kinds").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        kinds["kinds"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|k| k["name"] == "sleep")
    );

    let openapi: serde_json::Value = env.http.get(env.url("/openapi.json")).send().await?.json().await?;
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}/cancel",
        "/api/v1/queues/{name}/pause",
        "/api/v1/dead-letters/{id}/requeue",
        "/api/v1/dead-letters/{id}/discard",
    ] {
        assert!(openapi["paths"][path].is_object(), "openapi documents {path}");
    }
    let metrics = env.http.get(env.url("/metrics")).send().await?.text().await?;
    assert!(
        metrics.contains("rushes_jobs_enqueued_total{kind=\"sleep\",queue=\"maintenance\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("rushes_http_requests_total"));
    assert!(
        metrics.contains("rushes_queue_depth{queue=\"maintenance\"} 5"),
        "{metrics}"
    );
    Ok(())
}
