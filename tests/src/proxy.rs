//! A TCP proxy a test can switch off and on, to make a service unreachable for one
//! component without touching the shared server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Connections forwarded so far.
    forwarded: Arc<AtomicUsize>,
    /// Cancelled to cut every open connection when the proxy goes down.
    cut: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Listens on a free local port and forwards to `target` while up.
    pub async fn start(target: SocketAddr, up: bool) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let proxy = Self {
            addr,
            up: Arc::new(AtomicBool::new(up)),
            forwarded: Arc::new(AtomicUsize::new(0)),
            cut: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (flag, cut, stop) = (proxy.up.clone(), proxy.cut.clone(), proxy.stop.clone());
        let forwarded = proxy.forwarded.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else { continue };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the peer sees the connection close at once
                    continue;
                }
                forwarded.fetch_add(1, Ordering::SeqCst);
                let token = cut.lock().map(|t| t.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut token) = self.cut.lock() {
            token.cancel();
            *token = CancellationToken::new();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// An AMQP URL through this proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.down();
    }
}
