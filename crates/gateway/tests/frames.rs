//! Bad input, size limits, heartbeat, batches and rate limits on the real
//! gateway: every bad frame gets `bad_request` and the connection keeps working.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn still_works(c: &mut common::Client) {
    let id = c.fresh_id();
    let pong = c.request(json!({"type": "ping", "id": id})).await;
    assert_eq!(pong["type"], "pong", "connection still answers: {pong}");
    assert!(pong["ts"].as_u64().is_some());
}

fn assert_bad_request(v: &Value, id: Option<&str>) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    assert_eq!(v["error"]["retryable"], false, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    match id {
        Some(id) => assert_eq!(v["id"], id, "{v}"),
        None => assert_eq!(v["id"], Value::Null, "{v}"),
    }
}

#[tokio::test]
async fn welcome_announces_the_limits() {
    let server = TestServer::start().await;
    let c = server.client().await;
    let w = &c.welcome;
    assert_eq!(w["node"], "gw-test");
    assert_eq!(w["protocol"], 1);
    assert_eq!(w["heartbeat_interval_ms"], 30000);
    assert_eq!(w["heartbeat_timeout_ms"], 10000);
    assert_eq!(w["max_message_bytes"], 65536);
    assert!(w["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(w["server_time"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    server.stop().await;
}

#[tokio::test]
async fn bad_frames_get_bad_request_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let long_id = "i".repeat(129);
    let cases: Vec<(String, Option<&str>)> = vec![
        ("this is not json".into(), None),
        ("[1,2,3]".into(), None),
        (r#"{"id":"m1","data":{}}"#.into(), Some("m1")),
        (format!(r#"{{"type":"ping","id":"{long_id}"}}"#), None),
        (
            r#"{"type":"subscribe","id":"c1","channel":"bad name"}"#.into(),
            Some("c1"),
        ),
        (
            r#"{"type":"publish","id":"c2","channel":"a/b","data":1}"#.into(),
            Some("c2"),
        ),
        (r#"{"type":"Nope","id":"u1"}"#.into(), Some("u1")),
        (r#"{"type":"event","id":"u2"}"#.into(), Some("u2")),
        (r#"{"type":"publish","channel":"x"}"#.into(), None),
    ];
    for (frame, id) in &cases {
        c.send_text(frame).await;
        let reply = c.recv().await;
        assert_bad_request(&reply, *id);
        still_works(&mut c).await;
    }
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.expect("send binary");
    assert_bad_request(&c.recv().await, None);
    still_works(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let server = TestServer::start_with(|c| c.max_message_bytes = 1024).await;
    let mut c = server.client().await;
    let big = json!({"type": "publish", "id": "big", "channel": "x", "data": "y".repeat(2000)});
    c.send(big).await;
    assert_eq!(c.closed().await, 1009);
    // A frame just under the limit is fine on another connection.
    let mut d = server.client().await;
    let ok = d.publish("x", json!("y".repeat(900))).await;
    assert_eq!(ok["data"]["seq"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_with_4008_and_a_pinging_one_is_not() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(300);
        c.heartbeat_timeout = Duration::from_millis(200);
    })
    .await;
    let mut silent = server.client().await;
    let mut alive = server.client().await;
    let pinger = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            still_works(&mut alive).await;
        }
        alive
    };
    let (code, mut alive) = tokio::join!(silent.closed(), pinger);
    assert_eq!(code, 4008);
    still_works(&mut alive).await;
    server.stop().await;
}

#[tokio::test]
async fn websocket_ping_frames_count_as_traffic() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_interval = Duration::from_millis(300);
        c.heartbeat_timeout = Duration::from_millis(200);
    })
    .await;
    let mut c = server.client().await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.ws.send(Message::Ping(vec![1].into())).await.expect("ping");
    }
    still_works(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn a_batch_runs_in_order_with_one_reply_each() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.send(json!({"type": "batch", "data": [
        {"type": "subscribe", "id": "b1", "channel": "bat"},
        {"type": "publish", "id": "b2", "channel": "bat", "data": 1},
        {"type": "nonsense!", "id": "b3"},
        {"type": "ping", "id": "b4"}
    ]}))
    .await;
    assert_eq!(c.reply_to("b1").await["type"], "ack");
    assert_eq!(c.reply_to("b2").await["data"]["seq"], 1);
    assert_bad_request(&c.reply_to("b3").await, Some("b3"));
    assert_eq!(c.reply_to("b4").await["type"], "pong");
    assert_eq!(c.event("bat").await["seq"], 1);

    for bad in [
        json!({"type": "batch", "data": []}),
        json!({"type": "batch", "data": (0..101).map(|i| json!({"type": "ping", "id": format!("x{i}")})).collect::<Vec<_>>()}),
    ] {
        c.send(bad).await;
        assert_bad_request(&c.recv().await, None);
    }
    // Nothing of a rejected batch ran.
    assert!(c
        .maybe(Duration::from_millis(200), |v| v["type"] == "pong")
        .await
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn over_the_rate_gets_rate_limited_then_4029() {
    let server = TestServer::start_with(|c| {
        c.rate_limit = 1;
        c.rate_burst = 5;
    })
    .await;
    let mut c = server.client().await;
    for i in 0..20 {
        c.send(json!({"type": "ping", "id": format!("r{i}")})).await;
    }
    let code = c.closed().await;
    assert_eq!(code, 4029);
    let frames: Vec<Value> = c.pending().iter().cloned().collect();
    let pongs = frames.iter().filter(|v| v["type"] == "pong").count();
    let limited: Vec<&Value> = frames.iter().filter(|v| v["error"]["code"] == "rate_limited").collect();
    assert_eq!(pongs, 5, "the burst is served");
    assert_eq!(
        limited.len(),
        6,
        "rejections up to and including the one past rate_burst"
    );
    for v in &limited {
        assert_eq!(v["error"]["retryable"], true);
        assert!(v["error"]["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    }
    server.stop().await;
}
