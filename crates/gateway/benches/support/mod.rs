//! What both gateway benchmarks share: connecting (with the welcome), reading
//! and sending JSON frames with timeouts, subscribing, a pipelined publisher
//! that checks every ack, a subscriber that checks every seq, routine
//! deadlines, CPU time from `/proc` and a node's `/metrics` counters.
//! `mod support;` in each bench.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Unacknowledged publishes a publisher keeps in flight.
pub const WINDOW: u64 = 64;
/// Longest wait for any single frame before the run fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connect (TCP + upgrade + welcome) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `ws://addr/ws` and reads the `welcome` frame.
pub async fn connect(addr: SocketAddr) -> Ws {
    let url = format!("ws://{addr}/ws");
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    let welcome = next_json(&mut ws, "welcome").await;
    assert_eq!(welcome["type"], "welcome", "first frame: {welcome}");
    ws
}

/// The next text frame (control frames skipped), within [`READ_TIMEOUT`].
pub async fn next_text(ws: &mut Ws, what: &str) -> String {
    loop {
        let msg = tokio::time::timeout(READ_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within {READ_TIMEOUT:?} while waiting for {what}"))
            .unwrap_or_else(|| panic!("connection ended while waiting for {what}"))
            .unwrap_or_else(|e| panic!("read error while waiting for {what}: {e}"));
        match msg {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Close(c) => panic!("closed by the gateway while waiting for {what}: {c:?}"),
            Message::Binary(_) => panic!("unexpected binary frame while waiting for {what}"),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

pub async fn next_json(ws: &mut Ws, what: &str) -> Value {
    let text = next_text(ws, what).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
}

pub async fn send_json(ws: &mut Ws, v: &Value) {
    tokio::time::timeout(READ_TIMEOUT, ws.send(Message::text(v.to_string())))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Subscribes and returns the channel's current seq from the ack.
pub async fn subscribe(ws: &mut Ws, channel: &str) -> u64 {
    send_json(ws, &json!({"type": "subscribe", "id": "s1", "channel": channel})).await;
    let ack = next_json(ws, "the subscribe ack").await;
    assert_eq!(ack["type"], "ack", "subscribe reply: {ack}");
    assert_eq!(ack["id"], "s1", "subscribe reply: {ack}");
    ack["data"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("subscribe ack without seq: {ack}"))
}

/// One publishing connection on its own principal.
pub struct Publisher {
    pub ws: Ws,
    pub channel: String,
    /// Next publish id number (ids are `p<n>`, unique per connection).
    pub next_id: u64,
    /// Seq of the last acked publish on `channel` (this connection is its only
    /// publisher).
    pub last_seq: u64,
}

impl Publisher {
    pub async fn open(addr: SocketAddr, channel: String) -> Publisher {
        Publisher {
            ws: connect(addr).await,
            channel,
            next_id: 0,
            last_seq: 0,
        }
    }

    pub fn frame(&self, id: u64) -> Message {
        Message::text(
            json!({
                "type": "publish",
                "id": format!("p{id}"),
                "channel": self.channel,
                "data": {"n": id, "body": "benchmark payload of some sixty-four bytes...."},
            })
            .to_string(),
        )
    }

    /// Publishes `n` events, keeping up to [`WINDOW`] unacked, and returns once
    /// all `n` are acknowledged. Acks must come in order with contiguous seqs.
    pub async fn publish(&mut self, n: u64) {
        let first = self.next_id;
        let end = first + n;
        let mut sent = first;
        let mut acked = first;
        while acked < end {
            if sent < end && sent - acked < WINDOW {
                while sent < end && sent - acked < WINDOW {
                    let frame = self.frame(sent);
                    self.ws.feed(frame).await.expect("feed publish");
                    sent += 1;
                }
                tokio::time::timeout(READ_TIMEOUT, self.ws.flush())
                    .await
                    .expect("flush timed out")
                    .expect("flush failed");
            }
            let what = format!("the ack of p{acked} on {}", self.channel);
            let reply = next_json(&mut self.ws, &what).await;
            let expected_id = format!("p{acked}");
            if reply["type"] != "ack" || reply["id"] != expected_id.as_str() {
                panic!("expected the ack of {expected_id}, got {reply}");
            }
            let data = &reply["data"];
            let seq = data["seq"].as_u64().unwrap_or_default();
            if seq != self.last_seq + 1 || data.get("duplicate").is_some() {
                panic!(
                    "ack of {expected_id} on {}: expected seq {}, got {reply}",
                    self.channel,
                    self.last_seq + 1
                );
            }
            self.last_seq = seq;
            acked += 1;
        }
        self.next_id = end;
    }
}

/// Deadline of one timed routine: a fixed allowance plus this much per iteration.
pub const ROUTINE_BASE: Duration = Duration::from_secs(30);
/// See [`ROUTINE_BASE`].
pub const ROUTINE_PER_ITER: Duration = Duration::from_secs(2);

/// How long a timed routine of `iters` iterations may take before the run
/// fails as a hang.
pub fn routine_deadline(iters: u64) -> Duration {
    ROUTINE_BASE + ROUTINE_PER_ITER * u32::try_from(iters).unwrap_or(u32::MAX)
}

/// The top-level `seq` of an event frame, without a full JSON parse (the
/// gateway writes `type`, `channel`, `seq` first), to keep a thousand
/// clients' CPU from dominating a 2-core machine.
pub fn event_seq(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"{"type":"event","#)?;
    let at = rest.find(r#""seq":"#)? + r#""seq":"#.len();
    let digits: &str = &rest[at..];
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    digits[..len].parse().ok()
}

/// One subscribing connection; checks that seqs arrive contiguously.
pub struct Subscriber {
    pub index: usize,
    pub ws: Ws,
    pub last_seq: u64,
}

impl Subscriber {
    /// Reads exactly `n` events, each the next seq; `received(k)` is called
    /// after the k-th.
    pub async fn receive(&mut self, n: u64, mut received: impl FnMut(u64)) {
        let start = self.last_seq;
        let end = start + n;
        while self.last_seq < end {
            let what = format!(
                "event seq {} at subscriber {} ({} of {n} received)",
                self.last_seq + 1,
                self.index,
                self.last_seq - start
            );
            let text = next_text(&mut self.ws, &what).await;
            let seq = event_seq(&text).unwrap_or_else(|| panic!("not an event: {text}"));
            if seq != self.last_seq + 1 {
                panic!(
                    "subscriber {}: expected seq {}, got {seq} (gap or duplicate): {text}",
                    self.index,
                    self.last_seq + 1
                );
            }
            self.last_seq = seq;
            received(seq - start);
        }
    }
}

/// CPU seconds (user + system) of the process whose `stat` file is `path`
/// (`/proc/self/stat`, `/proc/<pid>/stat`); `None` where it does not exist.
pub fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// `GET path` over HTTP/1.1; the whole response (head and body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut body = String::new();
        tcp.read_to_string(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(READ_TIMEOUT, fetch).await.ok().flatten()
}

/// The counters the benchmarks print from a node's `GET /metrics`.
pub struct NodeMetrics {
    pub acks: f64,
    /// Mean publish receive-to-ack, ms.
    pub mean_ack_ms: f64,
    /// Share of acks within 10 ms, %.
    pub within_10ms_pct: f64,
    pub store_conflicts: f64,
    pub deliveries: f64,
    pub slow_consumer_closes: f64,
    pub error_frames: f64,
}

/// A node's [`NodeMetrics`]; `None` when `/metrics` could not be read.
pub async fn node_metrics(addr: SocketAddr) -> Option<NodeMetrics> {
    let body = http_get(addr, "/metrics").await?;
    let value = |metric: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
            .filter(|l| {
                let rest = &l[metric.len()..];
                rest.starts_with(' ') || rest.starts_with('{')
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let acks = value("tether_publish_ack_seconds_count");
    let ack_sum = value("tether_publish_ack_seconds_sum");
    let le_10ms = body
        .lines()
        .find(|l| l.starts_with("tether_publish_ack_seconds_bucket{le=\"0.01\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(NodeMetrics {
        acks,
        mean_ack_ms: if acks > 0.0 { 1000.0 * ack_sum / acks } else { 0.0 },
        within_10ms_pct: if acks > 0.0 { 100.0 * le_10ms / acks } else { 0.0 },
        store_conflicts: value("tether_store_conflicts_total"),
        deliveries: value("tether_deliveries_total"),
        slow_consumer_closes: value("tether_slow_consumer_closes_total"),
        error_frames: value("tether_errors_total"),
    })
}
