//! Private RabbitMQ nodes for tests that need broker settings the shared broker must
//! not get (a short `consumer_timeout`), or a cluster of several nodes. Started from
//! Debian's own RabbitMQ install, on free ports, with their data under a temporary
//! directory; stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Where Debian installs the RabbitMQ server scripts.
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

pub struct BrokerNode {
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
    /// The Erlang node name, `name@localhost`.
    pub node: String,
    child: Option<Child>,
}

impl BrokerNode {
    /// Whether a private node can be started here.
    pub fn available() -> bool {
        std::path::Path::new(RABBITMQ_BIN).join("rabbitmq-server").exists()
    }

    /// Starts a node whose `rabbitmq.conf` contains `conf` and whose `advanced.config`
    /// sets the `rabbit` application's `advanced` terms (Erlang syntax, may be empty).
    pub async fn start(conf: &str, advanced: &str) -> anyhow::Result<Self> {
        let mut node = Self::prepare(conf, advanced, None)?;
        node.boot().await?;
        Ok(node)
    }

    /// Writes a node's folder and settings; `cookie` is the Erlang cookie nodes of one
    /// cluster share (a node makes its own otherwise).
    fn prepare(conf: &str, advanced: &str, cookie: Option<&str>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dist_port = free_port()?;
        let dir = std::env::temp_dir().join(format!("rushes-rabbit-{port}-{}", std::process::id()));
        for sub in ["mnesia", "log", "home"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n{conf}\n"),
        )?;
        std::fs::write(dir.join("advanced.config"), format!("[{{rabbit, [{advanced}]}}].\n"))?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        if let Some(cookie) = cookie {
            use std::os::unix::fs::PermissionsExt as _;
            let file = dir.join("home/.erlang.cookie");
            std::fs::write(&file, cookie)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self {
            port,
            dist_port,
            node: format!("rushes-test-{port}@localhost"),
            dir,
            child: None,
        })
    }

    /// Starts the node's server (again, on the same data after [`Self::kill`]) and
    /// waits until it listens for AMQP.
    pub async fn boot(&mut self) -> anyhow::Result<()> {
        let dir = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))?;
        let child = Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server"))
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("vm.pid"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start rabbitmq-server")?;
        self.child = Some(child);
        for _ in 0..360 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "rabbitmq-server exited ({status}) before listening; see {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("private RabbitMQ node did not listen within 90 s")
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Runs `rabbitmqctl` against this node; its standard output.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl"))
            .env("HOME", self.dir.join("home"))
            .args(["-n", &self.node])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run rabbitmqctl")?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl {} on {}: {}",
                args.join(" "),
                self.node,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Kills the node's Erlang VM with SIGKILL: no goodbye to the cluster or clients.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("vm.pid"))
            .context("the node wrote no pid file")?
            .trim()
            .parse()
            .context("the node's pid file holds no pid")?;
        if crate::send_signal(pid, 9) != 0 {
            bail!("cannot kill the Erlang VM {pid}");
        }
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for BrokerNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.ctl(&["stop"]);
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Several private nodes joined into one cluster.
pub struct BrokerCluster {
    pub nodes: Vec<BrokerNode>,
}

impl BrokerCluster {
    /// Starts `size` nodes and joins them: the first boots alone, the others join it
    /// as they boot (peer discovery from a list naming the first).
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        let cookie = format!("rushes-test-{}", uuid::Uuid::new_v4().simple());
        let mut first = BrokerNode::prepare("", "", Some(&cookie))?;
        first.boot().await?;
        let join = format!(
            "cluster_formation.peer_discovery_backend = classic_config\n\
             cluster_formation.classic_config.nodes.1 = {}",
            first.node
        );
        let mut nodes = vec![first];
        let mut rest = Vec::new();
        for _ in 1..size {
            rest.push(BrokerNode::prepare(&join, "", Some(&cookie))?);
        }
        let booted = futures_util::future::join_all(rest.iter_mut().map(BrokerNode::boot)).await;
        for result in booted {
            result?;
        }
        nodes.extend(rest);
        let cluster = Self { nodes };
        cluster.wait_running(0, size, Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// The nodes' AMQP URLs, comma separated, starting with node `first`.
    pub fn amqp_urls_from(&self, first: usize) -> String {
        let n = self.nodes.len();
        (0..n)
            .map(|k| self.nodes[(first + k) % n].amqp_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node names running in the cluster, as node `asked` sees it.
    pub fn running(&self, asked: usize) -> anyhow::Result<Vec<String>> {
        let status: Value =
            serde_json::from_str(&self.nodes[asked].ctl(&["cluster_status", "--formatter", "json"])?)?;
        Ok(status["running_nodes"]
            .as_array()
            .context("cluster_status has no running_nodes")?
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect())
    }

    /// Waits until node `asked` sees `count` nodes running.
    pub async fn wait_running(&self, asked: usize, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running = self.running(asked).unwrap_or_default();
            if running.len() >= count {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the cluster has {} running nodes, not {count}: {running:?}",
                running.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Quorum queues whose names start with `prefix`, as node `asked` lists them:
    /// name, leader node, and the members online.
    pub fn quorum_queues(&self, asked: usize, prefix: &str) -> anyhow::Result<Vec<QuorumQueue>> {
        let listed: Value = serde_json::from_str(&self.nodes[asked].ctl(&[
            "list_queues",
            "name",
            "type",
            "leader",
            "online",
            "--formatter",
            "json",
        ])?)?;
        Ok(listed
            .as_array()
            .context("list_queues printed no list")?
            .iter()
            .filter(|q| q["type"] == "quorum" && q["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|q| QuorumQueue {
                name: q["name"].as_str().unwrap_or_default().to_owned(),
                leader: q["leader"].as_str().unwrap_or_default().to_owned(),
                online: q["online"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }
}

/// A quorum queue as `rabbitmqctl list_queues` shows it.
#[derive(Debug, Clone)]
pub struct QuorumQueue {
    pub name: String,
    pub leader: String,
    pub online: Vec<String>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
