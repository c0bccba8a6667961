//! Helpers for end-to-end tests on real PostgreSQL and RabbitMQ. Each [`TestEnv`] owns
//! a database cloned from a migrated template and a queue prefix of its own, so tests
//! run in parallel; both are removed when the environment is dropped.

pub mod broker_node;
pub mod browser;
pub mod media;
pub mod proxy;
pub mod speech;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use rushes_common::config::{BrokerConfig, DatabaseConfig, LeaseConfig, Secret};
use rushes_common::media::MediaConfig;
use rushes_common::queue::{Broker, Outgoing, Publisher, QueueType};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use rushes_common::job::QueueFamily;

/// The Whisper model test workers use: the smallest real one.
pub const TEST_MODEL: &str = "tiny.en";

/// The password of every user [`TestEnv::user`] creates.
pub const PASSWORD: &str = "correct horse";

/// The upload limit of the test control plane: 8 MiB.
pub const UPLOAD_MAX_BYTES: u64 = 8 << 20;

/// PostgreSQL server the tests use (`RUSHES_TEST_PG`), without a database name.
pub fn pg_server() -> String {
    std::env::var("RUSHES_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// RabbitMQ the tests use (`RUSHES_TEST_AMQP`).
pub fn amqp_url() -> String {
    std::env::var("RUSHES_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub const TOKEN: &str = "test-admin-token";

/// Heartbeat and staleness short enough for tests to see takeovers within seconds.
pub fn test_lease() -> LeaseConfig {
    LeaseConfig {
        heartbeat_interval: Duration::from_millis(200),
        stale_after: Duration::from_secs(1),
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUSHES_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await.map(|_| ())
}

/// Creates the database `db_name` as a copy of the migrated template (made once per
/// migration set). The copy is made under the same lock as templates are made and
/// dropped, so a run of another checkout (another migration set) cannot drop the
/// template between its check and the copy.
async fn create_from_template(db_name: &str) -> anyhow::Result<()> {
    let digest: u64 = rushes_common::db::MIGRATOR
        .iter()
        .flat_map(|m| m.checksum.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let name = format!("rushes_tmpl_{:012x}", digest & 0xffff_ffff_ffff);
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_server())).await?;
    sqlx::query("SELECT pg_advisory_lock(4242)").execute(&mut admin).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await?;
    let outcome = async {
        if !exists {
            // Templates of earlier migration sets are of no further use.
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'rushes\\_tmpl\\_%' AND datname <> $1",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await?;
            for old in stale {
                drop_database(&mut admin, &old).await?;
            }
            let building = format!("{name}_building");
            drop_database(&mut admin, &building).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
                .execute(&mut admin)
                .await?;
            let mut conn = PgConnection::connect(&format!("{}/{building}", pg_server())).await?;
            rushes_common::db::MIGRATOR.run(&mut conn).await?;
            conn.close().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {building} RENAME TO {name}"
            )))
            .execute(&mut admin)
            .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {db_name} TEMPLATE {name}"
        )))
        .execute(&mut admin)
        .await
        .context("cannot create the test database")?;
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut admin)
        .await?;
    outcome
}

/// One test's world: database, queue prefix, control plane, workers.
pub struct TestEnv {
    pub db_name: String,
    /// The broker workers and the test's own publisher use (a cluster's node URLs,
    /// comma separated).
    pub amqp: String,
    /// The queues of this environment's topology.
    pub queue_type: QueueType,
    pub db: PgPool,
    pub prefix: String,
    pub base_url: String,
    pub http: reqwest::Client,
    pub publisher: Publisher,
    pub shutdown: CancellationToken,
    /// This test's media root (rushes go here) and data folder (outputs), both under
    /// one scratch folder removed on drop.
    pub media_root: PathBuf,
    pub data_dir: PathBuf,
    pub scratch: PathBuf,
    control: Option<JoinHandle<anyhow::Result<()>>>,
    replicas: Vec<JoinHandle<anyhow::Result<()>>>,
    workers: Vec<InProcessWorker>,
    processes: Vec<Child>,
}

/// A worker running inside the test process.
pub struct InProcessWorker {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
}

impl TestEnv {
    /// A fresh environment with a control plane talking to the real broker.
    pub async fn new() -> anyhow::Result<Self> {
        Self::on_broker(&amqp_url(), &amqp_url()).await
    }

    /// A fresh environment on the broker at `amqp`, whose control plane reaches the
    /// broker at `control_amqp` (a proxy that can be switched off, say).
    pub async fn on_broker(amqp: &str, control_amqp: &str) -> anyhow::Result<Self> {
        Self::on_broker_of_type(amqp, control_amqp, QueueType::Classic).await
    }

    /// A fresh environment on a RabbitMQ cluster (its nodes' URLs, comma separated),
    /// with the quorum topology.
    pub async fn on_cluster(urls: &str) -> anyhow::Result<Self> {
        Self::on_broker_of_type(urls, urls, QueueType::Quorum).await
    }

    async fn on_broker_of_type(amqp: &str, control_amqp: &str, queue_type: QueueType) -> anyhow::Result<Self> {
        init_tracing();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("rushes_test_{}", &id[..16]);
        let prefix = format!("t{}", &id[..12]);
        create_from_template(&db_name).await?;
        let db = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(rushes_common::db::connect_options(&format!(
                "{}/{db_name}",
                pg_server()
            ))?)
            .await?;
        let broker = Broker::new(&Self::broker_config_for(amqp, &prefix, queue_type), "rushes-tests")?;
        broker.declare_topology().await?;
        let shutdown = CancellationToken::new();
        let scratch = std::env::temp_dir().join(format!("rushes-test-{}", &id[..16]));
        let media_root = scratch.join("media");
        let data_dir = scratch.join("data");
        std::fs::create_dir_all(&media_root)?;
        std::fs::create_dir_all(&data_dir)?;
        let mut env = Self {
            db_name,
            amqp: amqp.to_owned(),
            queue_type,
            db,
            prefix,
            base_url: String::new(),
            http: reqwest::Client::new(),
            publisher: Publisher::new(broker),
            shutdown,
            media_root,
            data_dir,
            scratch,
            control: None,
            replicas: Vec::new(),
            workers: Vec::new(),
            processes: Vec::new(),
        };
        let (base_url, control) = env.start_control(control_amqp).await?;
        env.base_url = base_url;
        env.control = Some(control);
        env.ready().await?;
        Ok(env)
    }

    /// Starts a control plane on a free port; returns its base URL and task.
    async fn start_control(&self, amqp: &str) -> anyhow::Result<(String, JoinHandle<anyhow::Result<()>>)> {
        self.start_control_with(amqp, |_| ()).await
    }

    /// Starts a control plane with the test settings changed by `edit`.
    async fn start_control_with(
        &self,
        amqp: &str,
        edit: impl FnOnce(&mut rushes_control::ControlConfig),
    ) -> anyhow::Result<(String, JoinHandle<anyhow::Result<()>>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = rushes_control::ControlConfig {
            database: self.database_config(),
            broker: Self::broker_config_for(amqp, &self.prefix, self.queue_type),
            http_addr: addr,
            admin_token: Some(Secret::new(TOKEN)),
            media: self.media_config(),
            public_url: "http://rushes.test".to_owned(),
            upload_max_bytes: UPLOAD_MAX_BYTES,
            upload_quota_bytes: 0,
            metrics_addr: None,
            trusted_proxies: Vec::new(),
            share_secret: None,
            oidc: Default::default(),
        };
        edit(&mut config);
        let task = tokio::spawn(rushes_control::serve(config, listener, self.shutdown.child_token()));
        Ok((format!("http://{addr}"), task))
    }

    /// Another control replica with its settings changed by `edit`; returns its base URL
    /// once it answers `/healthz`.
    pub async fn spawn_control_with(
        &mut self,
        edit: impl FnOnce(&mut rushes_control::ControlConfig),
    ) -> anyhow::Result<String> {
        let amqp = self.amqp.clone();
        let (base_url, task) = self.start_control_with(&amqp, edit).await?;
        self.replicas.push(task);
        self.wait_healthy(&base_url).await?;
        Ok(base_url)
    }

    async fn wait_healthy(&self, base_url: &str) -> anyhow::Result<()> {
        for _ in 0..200 {
            if self.http.get(format!("{base_url}/healthz")).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("control plane at {base_url} did not start")
    }

    /// A second control replica on the same database and broker; returns its base URL.
    pub async fn spawn_control_replica(&mut self) -> anyhow::Result<String> {
        let amqp = self.amqp.clone();
        let (base_url, task) = self.start_control(&amqp).await?;
        self.replicas.push(task);
        self.wait_healthy(&base_url).await?;
        Ok(base_url)
    }

    /// A fresh environment with one in-process worker consuming `queues` (`"maintenance=1"`).
    pub async fn with_worker(queues: &str) -> anyhow::Result<Self> {
        let mut env = Self::new().await?;
        let worker = env.worker_config(queues)?;
        env.spawn_worker(worker);
        Ok(env)
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", pg_server(), self.db_name)
    }

    pub fn database_config(&self) -> DatabaseConfig {
        DatabaseConfig {
            database_url: Secret::new(self.database_url()),
            database_max_connections: 5,
        }
    }

    pub fn media_config(&self) -> MediaConfig {
        MediaConfig {
            media_roots: vec![self.media_root.clone()],
            data_dir: self.data_dir.clone(),
        }
    }

    pub fn broker_config(&self) -> BrokerConfig {
        Self::broker_config_for(&self.amqp, &self.prefix, self.queue_type)
    }

    fn broker_config_for(amqp: &str, prefix: &str, queue_type: QueueType) -> BrokerConfig {
        BrokerConfig {
            amqp_url: Secret::new(amqp),
            queue_prefix: prefix.to_owned(),
            queue_type,
        }
    }

    /// Worker settings consuming `queues` (e.g. `"maintenance=1"`) with short leases.
    pub fn worker_config(&self, queues: &str) -> anyhow::Result<rushes_worker::WorkerConfig> {
        let mut config: rushes_worker::WorkerConfig = rushes_common::config::parse_from(vec![
            "rushes-worker".into(),
            "--queues".into(),
            queues.into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--shutdown-grace".into(),
            "5".into(),
        ])?;
        config.database = self.database_config();
        config.broker = self.broker_config();
        config.lease = test_lease();
        config.media = self.media_config();
        // Transcription with the smallest real model, on the CPU.
        config.transcribe.whisper_model_dir = Some(speech::models_path());
        config.transcribe.whisper_model = TEST_MODEL.to_owned();
        config.transcribe.whisper_device = "cpu".to_owned();
        // Never the machine's own mail catcher (the quick start's, on 1025): a test that
        // sends mail starts its own sink and sets this port.
        config.smtp.smtp_port = dead_port()?.port();
        Ok(config)
    }

    /// Scheduler settings (relay every 200 ms, 500 ms grace) with short leases.
    pub fn scheduler_config(&self) -> anyhow::Result<rushes_scheduler::SchedulerConfig> {
        let mut config: rushes_scheduler::SchedulerConfig = rushes_common::config::parse_from(vec![
            "rushes-scheduler".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
            "--relay-interval".into(),
            "0.2".into(),
            "--relay-grace".into(),
            "0.5".into(),
        ])?;
        config.database = self.database_config();
        config.broker = self.broker_config();
        config.lease = test_lease();
        Ok(config)
    }

    /// Starts a scheduler inside this process.
    pub fn spawn_scheduler(&self, config: rushes_scheduler::SchedulerConfig) -> JoinHandle<anyhow::Result<()>> {
        tokio::spawn(rushes_scheduler::run(config, self.shutdown.child_token()))
    }

    /// Starts a worker inside this process.
    pub fn spawn_worker(&mut self, config: rushes_worker::WorkerConfig) -> usize {
        let shutdown = self.shutdown.child_token();
        let handle = tokio::spawn(rushes_worker::run(config, shutdown.clone()));
        self.workers.push(InProcessWorker { shutdown, handle });
        self.workers.len() - 1
    }

    /// Stops an in-process worker (as SIGTERM would) and waits for it to exit.
    pub async fn stop_worker(&mut self, index: usize) -> anyhow::Result<()> {
        let worker = &mut self.workers[index];
        worker.shutdown.cancel();
        (&mut worker.handle).await??;
        Ok(())
    }

    /// Starts the real worker binary with this environment's settings.
    pub fn spawn_worker_process(&mut self, queues: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<u32> {
        let mut env = vec![("RUSHES_QUEUES", queues)];
        env.extend_from_slice(extra_env);
        self.spawn_process("rushes-worker-under-test", &env)
    }

    /// Starts the real scheduler binary with this environment's settings.
    pub fn spawn_scheduler_process(&mut self, extra_env: &[(&str, &str)]) -> anyhow::Result<u32> {
        self.spawn_process("rushes-scheduler-under-test", extra_env)
    }

    fn spawn_process(&mut self, binary: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<u32> {
        let mut command = Command::new(binary_path(binary)?);
        command
            .env("RUSHES_DATABASE_URL", self.database_url())
            .env("RUSHES_AMQP_URL", &self.amqp)
            .env("RUSHES_QUEUE_PREFIX", &self.prefix)
            .env(
                "RUSHES_QUEUE_TYPE",
                match self.queue_type {
                    QueueType::Classic => "classic",
                    QueueType::Quorum => "quorum",
                },
            )
            .env("RUSHES_METRICS_ADDR", "127.0.0.1:0")
            .env("RUSHES_SMTP_PORT", dead_port()?.port().to_string())
            .env("RUSHES_HEARTBEAT_INTERVAL", "0.2")
            .env("RUSHES_STALE_AFTER", "1")
            .env("RUSHES_MEDIA_ROOTS", &self.media_root)
            .env("RUSHES_DATA_DIR", &self.data_dir)
            .env("RUSHES_WHISPER_MODEL_DIR", speech::models_path())
            .env("RUSHES_WHISPER_MODEL", TEST_MODEL)
            .env("RUSHES_WHISPER_DEVICE", "cpu")
            .env(
                "RUSHES_LOG",
                std::env::var("RUSHES_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().with_context(|| format!("cannot start {binary}"))?;
        let pid = child.id();
        self.processes.push(child);
        Ok(pid)
    }

    /// Waits until `count` consumers are subscribed to this environment's `family`
    /// queue (workers that started are really taking deliveries).
    pub async fn wait_consumers(&self, family: QueueFamily, count: u32, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.publisher.broker().queue_stats().await?;
            let consumers = stats.iter().find(|s| s.family == family).map_or(0, |s| s.consumers);
            if consumers >= count {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} has {consumers} consumers, not {count}",
                family.as_str()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` to a worker process started by [`Self::spawn_worker_process`].
    pub fn signal(&self, pid: u32, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(pid)?;
        let rc = send_signal(pid, signal);
        if rc != 0 {
            bail!("kill({pid}, {signal}) failed");
        }
        Ok(())
    }

    /// Waits for a worker process to exit and returns its exit code.
    pub async fn wait_process(&mut self, pid: u32, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let child = self
                .processes
                .iter_mut()
                .find(|c| c.id() == pid)
                .context("no such worker process")?;
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("worker process {pid} did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // ---- HTTP helpers ----

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends an authenticated request and returns the status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request).await
    }

    /// Sends a request as the holder of `token` (a user's session or API token); the
    /// status and JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request).await
    }

    /// Posts an authenticated multipart form (an upload); returns the status and JSON body.
    pub async fn upload(&self, path: &str, form: reqwest::multipart::Form) -> anyhow::Result<(StatusCode, Value)> {
        Self::answer(self.http.post(self.url(path)).bearer_auth(TOKEN).multipart(form)).await
    }

    /// Sends `request`; returns the status and the JSON body (Null if none, a string if not JSON).
    pub async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// Creates the user `name` (address `name@example.com`, password [`PASSWORD`]) with
    /// the fields of `extra` (`is_admin`, …) through the API; returns the new user.
    pub async fn user(&self, name: &str, extra: Value) -> anyhow::Result<Value> {
        let mut body =
            serde_json::json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let (status, user) = self.post("/api/v1/users", body).await?;
        if status != StatusCode::CREATED {
            bail!("creating user {name} answered {status}: {user}");
        }
        Ok(user)
    }

    /// Logs `name` in with [`PASSWORD`]; returns the bearer token.
    pub async fn login(&self, name: &str) -> anyhow::Result<String> {
        let (status, session) = self
            .post(
                "/api/v1/auth/login",
                serde_json::json!({ "username": name, "password": PASSWORD }),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("logging {name} in answered {status}: {session}");
        }
        Ok(session["token"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits for the control plane to answer `/healthz`.
    async fn ready(&self) -> anyhow::Result<()> {
        for _ in 0..100 {
            if self.http.get(self.url("/healthz")).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("control plane did not start")
    }

    /// Enqueues a job through the API and returns its id.
    pub async fn enqueue(&self, body: Value) -> anyhow::Result<Uuid> {
        let (status, job) = self.post("/api/v1/jobs", body).await?;
        if status != StatusCode::CREATED {
            bail!("enqueue answered {status}: {job}");
        }
        job_id(&job)
    }

    /// Enqueues a `sleep` job.
    pub async fn sleep_job(&self, seconds: f64, priority: Option<u8>) -> anyhow::Result<Uuid> {
        let mut body = json!({ "kind": "sleep", "payload": { "seconds": seconds } });
        if let Some(p) = priority {
            body["priority"] = json!(p);
        }
        self.enqueue(body).await
    }

    pub async fn job(&self, id: Uuid) -> anyhow::Result<Value> {
        let (status, job) = self.get(&format!("/api/v1/jobs/{id}")).await?;
        if status != StatusCode::OK {
            bail!("GET job answered {status}: {job}");
        }
        Ok(job)
    }

    /// Polls a job until `pred` holds, or fails after `timeout` showing the last state.
    pub async fn wait_job(&self, id: Uuid, timeout: Duration, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(id).await?;
            if pred(&job) {
                return Ok(job);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("job {id} did not reach the expected state within {timeout:?}; last: {job}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls `GET path` until `pred` holds for its body, or fails after `timeout` showing it.
    pub async fn get_until(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (_, body) = self.get(path).await?;
            if pred(&body) {
                return Ok(body);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("GET {path} did not reach the expected state within {timeout:?}; last: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the job is in `state`.
    pub async fn wait_state(&self, id: Uuid, state: &str, timeout: Duration) -> anyhow::Result<Value> {
        self.wait_job(id, timeout, |j| j["state"] == state).await
    }

    /// Waits until at least `n` of the jobs `ids` match `condition` (an SQL condition
    /// on `jobs`, e.g. `state = 'succeeded'`); returns how many do.
    pub async fn wait_jobs(&self, ids: &[Uuid], condition: &str, n: i64, timeout: Duration) -> anyhow::Result<i64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let query = format!("SELECT count(*) FROM jobs WHERE id = ANY($1) AND ({condition})");
        loop {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.clone()))
                .bind(ids)
                .fetch_one(&self.db)
                .await?;
            if count >= n {
                return Ok(count);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{count} of {} jobs have {condition}, not {n}, after {timeout:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates a base production (once per name) and a production over `folder`
    /// (relative to the media root). Returns the production.
    pub async fn production(
        &self,
        base: &str,
        series: i64,
        folder: &str,
        priority: Option<i64>,
    ) -> anyhow::Result<Value> {
        let (status, body) = self.get("/api/v1/base-productions").await?;
        anyhow::ensure!(status == StatusCode::OK, "base productions: {status} {body}");
        let existing = body["base_productions"]
            .as_array()
            .and_then(|all| all.iter().find(|b| b["name"] == base).cloned());
        let base = match existing {
            Some(b) => b,
            None => {
                let (status, b) = self.post("/api/v1/base-productions", json!({ "name": base })).await?;
                anyhow::ensure!(status == StatusCode::CREATED, "base production: {status} {b}");
                b
            }
        };
        let mut body = json!({
            "base_production_id": base["id"], "series": series, "friendly_name": format!("Series {series}"),
            "path": folder,
        });
        if let Some(p) = priority {
            body["priority"] = json!(p);
        }
        let (status, production) = self.post("/api/v1/productions", body).await?;
        anyhow::ensure!(status == StatusCode::CREATED, "production: {status} {production}");
        Ok(production)
    }

    /// Asks for a scan of a production and waits for it to succeed; returns the job.
    pub async fn scan(&self, production_id: &Value) -> anyhow::Result<Value> {
        let id = production_id.as_str().context("production id")?;
        let (status, job) = self.post(&format!("/api/v1/productions/{id}/scan"), json!({})).await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "scan: {status} {job}");
        self.wait_state(job_id(&job)?, "succeeded", Duration::from_secs(60))
            .await
    }

    /// The clips of a production, by path.
    pub async fn clips(&self, production_id: &Value) -> anyhow::Result<Vec<Value>> {
        let id = production_id.as_str().context("production id")?;
        let (status, body) = self
            .get(&format!("/api/v1/clips?production_id={id}&limit=1000"))
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "clips: {status} {body}");
        Ok(body["clips"].as_array().cloned().unwrap_or_default())
    }

    /// Publishes raw bytes onto a family's queue, as a foreign producer would.
    pub async fn publish_raw(&self, family: QueueFamily, body: &[u8]) -> anyhow::Result<()> {
        let message = Outgoing::raw(self.publisher.broker().topology(), family, body.to_vec());
        self.publisher.publish(&[message]).await?;
        Ok(())
    }
}

/// A binary of this package (the real entry points, built for process-level tests).
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(|d| d.parent()).context("no target directory")?;
    Ok(dir.join(name))
}

pub fn job_id(job: &Value) -> anyhow::Result<Uuid> {
    job["id"]
        .as_str()
        .context("job has no id")?
        .parse()
        .context("job id is not a UUID")
}

pub(crate) fn send_signal(pid: i32, signal: i32) -> i32 {
    // `kill` via the command line keeps this crate free of `unsafe`.
    match Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
    {
        Ok(status) if status.success() => 0,
        _ => -1,
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for worker in &self.workers {
            worker.handle.abort();
        }
        if let Some(control) = &self.control {
            control.abort();
        }
        for replica in &self.replicas {
            replica.abort();
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        let db_name = self.db_name.clone();
        let broker_config = self.broker_config();
        // Tear down on a thread of its own: Drop cannot await, and the test's runtime
        // may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                // A broker handle of this runtime's own: the test's connections die with its runtime.
                // Twice: a task of the test still winding down (a worker publishing a
                // retry) may declare the topology again just after the first pass.
                match Broker::new(&broker_config, "rushes-tests teardown") {
                    Ok(broker) => {
                        for pass in 0..2 {
                            if pass > 0 {
                                tokio::time::sleep(Duration::from_millis(750)).await;
                            }
                            if let Err(err) = broker.delete_topology().await {
                                eprintln!("cannot delete test queues: {err}");
                            }
                        }
                    }
                    Err(err) => eprintln!("cannot reach the broker for teardown: {err}"),
                }
                if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", pg_server())).await
                    && let Err(err) = drop_database(&mut admin, &db_name).await
                {
                    eprintln!("cannot drop test database {db_name}: {err}");
                }
            });
        })
        .join();
    }
}

/// Address of a local TCP port nobody listens on.
pub fn dead_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
