//! A private RabbitMQ node for tests that need broker settings the shared broker must
//! not get (a short `consumer_timeout`). Started from Debian's own RabbitMQ install,
//! on free ports, with its data under a temporary directory; stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

pub struct BrokerNode {
    pub port: u16,
    dir: PathBuf,
    node: String,
    child: Child,
}

/// Where Debian installs the RabbitMQ server scripts.
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

impl BrokerNode {
    /// Whether a private node can be started here.
    pub fn available() -> bool {
        std::path::Path::new(RABBITMQ_BIN).join("rabbitmq-server").exists()
    }

    /// Starts a node whose `rabbitmq.conf` contains `conf` and whose `advanced.config`
    /// sets the `rabbit` application's `advanced` terms (Erlang syntax, may be empty).
    pub async fn start(conf: &str, advanced: &str) -> anyhow::Result<Self> {
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
        let node = format!("rushes-test-{port}@localhost");
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = Command::new(format!("{RABBITMQ_BIN}/rabbitmq-server"))
            .current_dir(&dir)
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start rabbitmq-server")?;
        let mut node = Self { port, dir, node, child };
        for _ in 0..240 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(node);
            }
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "rabbitmq-server exited ({status}) before listening; see {}",
                    node.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("private RabbitMQ node did not listen within 60 s")
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for BrokerNode {
    fn drop(&mut self) {
        let _ = Command::new(format!("{RABBITMQ_BIN}/rabbitmqctl"))
            .env("HOME", self.dir.join("home"))
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
