//! Test support: the real gateway on 127.0.0.1:0 with its own temp data dir,
//! and a small WebSocket client that keeps frames it was not asked for.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tether_gateway::Config;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), tether_gateway::GatewayError>>>,
    pub dir: tempfile::TempDir,
}

/// A config for tests: generous rate limits, everything else default.
pub fn test_config() -> Config {
    Config {
        rate_limit: 100_000,
        rate_burst: 100_000,
        node_id: "gw-test".into(),
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config();
        config.data_dir = dir.path().join("data");
        f(&mut config);
        Self::start_in(dir, config).await
    }

    /// Starts on an existing directory (restarts).
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(tether_gateway::run(listener, config, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            stop: Some(tx),
            join: Some(join),
            dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    pub async fn client_as(&self, client_id: &str) -> Client {
        Client::connect(&format!("{}?client_id={client_id}", self.ws_url())).await
    }

    /// Signals shutdown and waits for `run` to return; gives back the dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().expect("running").send(());
        let join = self.join.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), join)
            .await
            .expect("run returns within 15 s")
            .expect("run task")
            .expect("run ok");
        self.dir
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    pending: VecDeque<Value>,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Self::from_ws(ws).await
    }

    /// Wraps a connected socket and reads its welcome.
    pub async fn from_ws(ws: Ws) -> Client {
        let mut c = Client {
            ws,
            welcome: Value::Null,
            pending: VecDeque::new(),
            next_id: 0,
        };
        let w = c.recv().await;
        assert_eq!(w["type"], "welcome", "first frame is welcome: {w}");
        c.welcome = w["data"].clone();
        c
    }

    pub fn session(&self) -> String {
        self.welcome["session"].as_str().expect("session").to_owned()
    }

    pub fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("t{}", self.next_id)
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.expect("send");
    }

    /// The next frame from the wire (ignores control frames), bypassing pending.
    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("no read error");
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("server frames are JSON"),
                Message::Close(f) => panic!("unexpected close: {f:?}"),
                _ => {}
            }
        }
    }

    /// The next frame (pending first).
    pub async fn recv(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(v) => v,
            None => self.read().await,
        }
    }

    /// The first frame matching `pred`; others stay pending in order.
    pub async fn recv_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).expect("index");
        }
        loop {
            let v = self.read().await;
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// The reply (any type) to request `id`.
    pub async fn reply_to(&mut self, id: &str) -> Value {
        self.recv_where(|v| v["id"] == id && v["type"] != "event").await
    }

    /// Sends `v` and returns the reply to its id.
    pub async fn request(&mut self, v: Value) -> Value {
        let id = v["id"].as_str().expect("request has an id").to_owned();
        self.send(v).await;
        self.reply_to(&id).await
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        let id = self.fresh_id();
        let ack = self
            .request(json!({"type": "subscribe", "id": id, "channel": channel}))
            .await;
        assert_eq!(ack["type"], "ack", "subscribe acked: {ack}");
        ack
    }

    pub async fn subscribe_since(&mut self, channel: &str, since: Value) -> Value {
        let id = self.fresh_id();
        let ack = self
            .request(json!({"type": "subscribe", "id": id, "channel": channel, "since": since}))
            .await;
        assert_eq!(ack["type"], "ack", "subscribe acked: {ack}");
        ack
    }

    pub async fn publish(&mut self, channel: &str, data: Value) -> Value {
        let id = self.fresh_id();
        let ack = self
            .request(json!({"type": "publish", "id": id, "channel": channel, "data": data}))
            .await;
        assert_eq!(ack["type"], "ack", "publish acked: {ack}");
        ack
    }

    /// The next event on `channel`.
    pub async fn event(&mut self, channel: &str) -> Value {
        self.recv_where(|v| v["type"] == "event" && v["channel"] == channel)
            .await
    }

    /// Whether a frame matching `pred` arrives within `d` (leaves others pending).
    pub async fn maybe(&mut self, d: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(m) => m,
            };
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    if pred(&v) {
                        return Some(v);
                    }
                    self.pending.push_back(v);
                }
                Some(Ok(Message::Close(f))) => panic!("unexpected close: {f:?}"),
                Some(Ok(_)) => {}
                other => panic!("connection failed: {other:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code. Frames before it
    /// are kept in `pending`.
    pub async fn closed(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("close in time");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(Message::Text(t))) => self.pending.push_back(serde_json::from_str(t.as_str()).expect("json")),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// Notes a frame read directly from `ws` as an event in `pending`.
    pub fn count_event(&mut self) {
        self.pending.push_back(serde_json::json!({"type": "event"}));
    }

    /// Frames received but not consumed.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }
}

/// GET over plain HTTP/1.1 (loopback only); returns status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    http_request_with("GET", url, "", &[]).await
}

pub async fn http_post(url: &str, body: &str) -> (u16, String) {
    http_request_with("POST", url, body, &[]).await
}

pub async fn http_request_with(method: &str, url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_exchange(method, url, body, headers).await;
    (status, body)
}

/// One HTTP/1.1 request; the status, the response head (lower-cased) and the body.
pub async fn http_exchange(method: &str, url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(host))
        .await
        .expect("connect in time")
        .expect("connect");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head, body)
}

/// A chunked text body, joined; a binary body (read lossily, so its chunk
/// sizes no longer match) ends at the first chunk that does not fit.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.trim_start_matches("\r\n");
    }
    out
}
