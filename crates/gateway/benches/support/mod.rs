//! What both gateway benchmarks' clients share: connecting (with the
//! welcome), reading and sending JSON frames with timeouts, subscribing, and a
//! pipelined publisher that checks every ack. `mod support;` in each bench.

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
