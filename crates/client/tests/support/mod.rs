//! Test support: the real gateway in-process on loopback (restartable on the
//! same port and data dir), and a plain HTTP GET.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tether_gateway::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    join: JoinHandle<Result<(), tether_gateway::GatewayError>>,
}

/// The test configuration: data in `dir`, rate limits out of the way.
pub fn config(dir: &Path, node: &str) -> Config {
    Config {
        data_dir: dir.to_owned(),
        rate_limit: 100_000,
        rate_burst: 100_000,
        node_id: node.into(),
        ..Config::default()
    }
}

/// Starts a gateway with `config` on `addr` (port 0 for any).
pub async fn start_with(config: Config, addr: &str) -> Gateway {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = oneshot::channel::<()>();
    let join = tokio::spawn(tether_gateway::run(listener, config, async move {
        let _ = rx.await;
    }));
    Gateway { addr, stop, join }
}

/// Starts a gateway with data in `dir` on `addr`, named `node`.
pub async fn start(dir: &Path, addr: &str, node: &str) -> Gateway {
    start_with(config(dir, node), addr).await
}

impl Gateway {
    /// Its WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Shuts it down (1001 to clients) and returns the address it had.
    pub async fn stop(self) -> SocketAddr {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.join)
            .await
            .expect("stops in time")
            .expect("join")
            .expect("run ok");
        self.addr
    }
}

/// GET over plain HTTP/1.1 on loopback; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("response");
    (
        head.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status"),
        body.to_owned(),
    )
}
