//! Runs the real `tether` binary and talks to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

pub struct Gateway {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Gateway {
    /// `tether serve --listen 127.0.0.1:0 --data-dir DIR EXTRA…`, waiting for the
    /// `listening on` line.
    pub fn spawn(dir: &Path, extra: &[&str]) -> Gateway {
        Self::spawn_env(dir, extra, &[])
    }

    pub fn spawn_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        Self::spawn_with(dir, extra, env, Stdio::null())
    }

    /// Like `spawn_env`, with stderr (the logs) going to `stderr`.
    pub fn spawn_with(dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Gateway {
        Self::spawn_at("127.0.0.1:0", dir, extra, env, stderr)
    }

    /// Listens on `listen` (e.g. the address of a gateway that was stopped).
    pub fn spawn_at(listen: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Gateway {
        let mut cmd = Command::new(BIN);
        cmd.env("RUST_LOG", "warn");
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(dir)
            .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn tether");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("bad first line: {line:?}"))
            .to_owned();
        Gateway { child, addr }
    }

    pub fn ws(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then the exit status within `limit`.
    pub fn term(mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        let rc = send_signal(pid, 15);
        assert_eq!(rc, 0, "kill -TERM");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tether did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_signal(pid: i32, sig: i32) -> i32 {
    // The workspace forbids `unsafe`, so no libc::kill: the kill(1) command.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill command");
    if status.success() {
        0
    } else {
        -1
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and consumes the welcome; returns it too.
pub async fn connect(url: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    let welcome = next_json(&mut ws).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome");
    (ws, welcome)
}

/// The next text frame as JSON; `None` once the connection is gone.
pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok()?? {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).expect("json")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

pub async fn send(ws: &mut Ws, v: &Value) -> bool {
    ws.send(Message::text(v.to_string())).await.is_ok()
}

/// Minimal HTTP/1.1 GET/POST on loopback.
pub async fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).expect("path");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}
