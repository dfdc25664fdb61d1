//! Channels against the real gateway: fan-out order, recovery, dedup, history.

mod common;

use std::time::Duration;

use common::{http_get, TestServer};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subscribers_get_a_thousand_events_each_once_in_order() {
    let server = TestServer::start().await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut c = server.client().await;
        let ack = c.subscribe("orders").await;
        assert_eq!(ack["data"]["seq"], 0);
        subs.push(c);
    }
    let mut publisher = server.client().await;
    // Pipelined: all 1000 publishes are sent before any ack is awaited.
    for i in 0..1000 {
        publisher
            .send(json!({"type": "publish", "id": format!("p{i}"), "channel": "orders", "data": {"n": i}}))
            .await;
    }
    for i in 0..1000 {
        let ack = publisher.reply_to(&format!("p{i}")).await;
        assert_eq!(ack["type"], "ack");
        assert_eq!(ack["data"]["seq"], i + 1, "acks carry consecutive seqs");
    }
    for c in &mut subs {
        for i in 0..1000u64 {
            let e = c.event("orders").await;
            assert_eq!(e["seq"], i + 1);
            assert_eq!(e["data"]["n"], i);
        }
        let extra = c.maybe(Duration::from_millis(200), |v| v["type"] == "event").await;
        assert!(extra.is_none(), "no duplicate or extra event: {extra:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn recovery_replays_exactly_the_missed_events() {
    let server = TestServer::start().await;
    let mut sub = server.client().await;
    sub.subscribe("feed").await;
    let mut publisher = server.client().await;
    for i in 1..=5 {
        publisher.publish("feed", json!(i)).await;
    }
    let mut last = Value::Null;
    for _ in 1..=5 {
        last = sub.event("feed").await;
    }
    let epoch = last["epoch"].clone();
    drop(sub);
    for i in 6..=9 {
        publisher.publish("feed", json!(i)).await;
    }
    let mut back = server.client().await;
    let ack = back.subscribe_since("feed", json!({"seq": 5, "epoch": epoch})).await;
    assert_eq!(ack["data"]["recovered"], true);
    assert_eq!(ack["data"]["seq"], 9);
    for want in 6..=9 {
        let e = back.event("feed").await;
        assert_eq!(e["seq"], want);
        assert_eq!(e["data"], want);
    }
    assert!(
        back.maybe(Duration::from_millis(200), |v| v["type"] == "event")
            .await
            .is_none(),
        "nothing else replayed"
    );
    // Live events continue after the replay.
    publisher.publish("feed", json!(10)).await;
    assert_eq!(back.event("feed").await["seq"], 10);
    server.stop().await;
}

#[tokio::test]
async fn seq_zero_without_epoch_replays_everything_retained() {
    let server = TestServer::start().await;
    let mut p = server.client().await;
    for i in 1..=3 {
        p.publish("all", json!(i)).await;
    }
    let mut c = server.client().await;
    let ack = c.subscribe_since("all", json!({"seq": 0})).await;
    assert_eq!(ack["data"]["recovered"], true);
    for want in 1..=3 {
        assert_eq!(c.event("all").await["seq"], want);
    }
    server.stop().await;
}

#[tokio::test]
async fn wrong_epoch_or_gap_beyond_retention_is_not_recovered() {
    let server = TestServer::start_with(|c| c.retention.history_size = 3).await;
    let mut p = server.client().await;
    let mut epoch = Value::Null;
    for i in 1..=6 {
        epoch = p.publish("short", json!(i)).await["data"]["epoch"].clone();
    }
    // Retained: 4, 5, 6. Asking from 1 (wants 2..) is a gap.
    let mut c = server.client().await;
    let ack = c.subscribe_since("short", json!({"seq": 1, "epoch": epoch})).await;
    assert_eq!(ack["data"]["recovered"], false);
    assert_eq!(ack["data"]["seq"], 6);
    // From 3 (wants 4..6) is fully retained.
    let mut d = server.client().await;
    let ack = d.subscribe_since("short", json!({"seq": 3, "epoch": epoch})).await;
    assert_eq!(ack["data"]["recovered"], true);
    assert_eq!(d.event("short").await["seq"], 4);
    // A wrong epoch, and a seq beyond the current one.
    let mut e = server.client().await;
    let ack = e
        .subscribe_since("short", json!({"seq": 5, "epoch": "not-the-epoch"}))
        .await;
    assert_eq!(ack["data"]["recovered"], false);
    let ack = e.subscribe_since("short", json!({"seq": 99, "epoch": epoch})).await;
    assert_eq!(ack["data"]["recovered"], false);
    assert!(
        c.maybe(Duration::from_millis(200), |v| v["type"] == "event")
            .await
            .is_none(),
        "no replay"
    );
    assert!(
        e.maybe(Duration::from_millis(100), |v| v["type"] == "event")
            .await
            .is_none(),
        "no replay"
    );
    server.stop().await;
}

#[tokio::test]
async fn duplicate_publish_returns_the_original_ack_and_is_delivered_once() {
    let server = TestServer::start().await;
    let mut sub = server.client().await;
    sub.subscribe("dup").await;
    let mut p = server.client_as("alice").await;
    let frame = json!({"type": "publish", "id": "same", "channel": "dup", "data": {"v": 1}});
    let first = p.request(frame.clone()).await;
    assert_eq!(first["data"]["seq"], 1);
    assert!(first["data"].get("duplicate").is_none());
    let second = p.request(frame.clone()).await;
    assert_eq!(second["data"]["seq"], 1);
    assert_eq!(second["data"]["duplicate"], true);
    // Same principal on a new connection: still a duplicate.
    let mut again = server.client_as("alice").await;
    let third = again.request(frame.clone()).await;
    assert_eq!(third["data"]["duplicate"], true);
    assert_eq!(third["data"]["seq"], 1);
    // Another principal with the same id is a new event.
    let mut bob = server.client_as("bob").await;
    assert_eq!(bob.request(frame).await["data"]["seq"], 2);
    assert_eq!(sub.event("dup").await["seq"], 1);
    let e = sub.event("dup").await;
    assert_eq!(e["seq"], 2);
    assert_eq!(e["from"], "bob");
    assert!(sub
        .maybe(Duration::from_millis(200), |v| v["type"] == "event")
        .await
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_events() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.subscribe("u").await;
    let ack = c
        .request(json!({"type": "unsubscribe", "id": "x", "channel": "u"}))
        .await;
    assert_eq!(ack, json!({"type": "ack", "id": "x", "data": {"channel": "u"}}));
    let mut p = server.client().await;
    p.publish("u", json!(1)).await;
    assert!(c
        .maybe(Duration::from_millis(200), |v| v["type"] == "event")
        .await
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn history_route_pages_through_retained_events() {
    let server = TestServer::start().await;
    let mut p = server.client().await;
    for i in 1..=5 {
        p.publish("h", json!(i)).await;
    }
    let (status, body) = http_get(&server.http("/api/v1/channels/h/history?since=2&limit=2")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["channel"], "h");
    assert_eq!(v["seq"], 5);
    let seqs: Vec<u64> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(v["events"][0]["type"], "event");
    let (status, _) = http_get(&server.http("/api/v1/channels/bad%20name/history")).await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_replay_longer_than_the_outbound_queue_is_streamed_whole() {
    let server = TestServer::start_with(|c| c.outbound_queue = 16).await;
    let mut p = server.client().await;
    for i in 0..300 {
        p.send(json!({"type": "publish", "id": format!("q{i}"), "channel": "long", "data": i}))
            .await;
        if i % 8 == 7 {
            // Keep the publisher's own ack bursts within its small queue.
            p.reply_to(&format!("q{i}")).await;
        }
    }
    p.reply_to("q299").await;
    let mut c = server.client().await;
    let ack = c.subscribe_since("long", json!({"seq": 0})).await;
    assert_eq!(ack["data"]["recovered"], true);
    for want in 1..=300u64 {
        let e = c.event("long").await;
        assert_eq!(e["seq"], want);
    }
    p.publish("long", json!("live")).await;
    assert_eq!(c.event("long").await["seq"], 301);
    server.stop().await;
}

/// Publishes `n` events of `size` bytes to `channel`, waiting for every 8th ack.
async fn publish_many(p: &mut common::Client, channel: &str, from: usize, n: usize, size: usize) {
    let payload = "x".repeat(size);
    for i in from..from + n {
        p.send(json!({"type": "publish", "id": format!("{channel}{i}"), "channel": channel, "data": payload}))
            .await;
        if i % 8 == 7 || i == from + n - 1 {
            p.reply_to(&format!("{channel}{i}")).await;
        }
    }
}

/// A client whose socket takes 8 KiB unread: what the gateway writes beyond
/// its own socket buffer waits in the gateway.
async fn slow_reader(server: &TestServer) -> common::Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(8 * 1024).expect("small receive buffer");
    let addr = server
        .ws_url()
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host")
        .to_owned();
    let tcp = socket.connect(addr.parse().expect("addr")).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .expect("upgrade");
    common::Client::from_ws(ws).await
}

/// A client that closes while the gateway still has frames for it (a long
/// replay it has not read, filling the socket) gets its close answered after
/// what was already written, and nothing after the answer.
#[tokio::test]
async fn a_client_close_is_answered_while_frames_are_still_queued() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start().await;
    let mut p = server.client().await;
    // 1000 × 8 KB: more than the kernel's socket buffers take unread.
    publish_many(&mut p, "big", 0, 1000, 8_000).await;
    let mut c = slow_reader(&server).await;
    c.send(json!({"type": "subscribe", "id": "s", "channel": "big", "since": {"seq": 0}}))
        .await;
    // Not read: the replay fills the socket, so the gateway still has frames
    // to write when it reads the close.
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    c.ws.send(Message::Close(Some(bye))).await.expect("close sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.closed().await, 1000, "the close is answered, not dropped");
    // Nothing after the answer: the stream ends.
    let after = tokio::time::timeout(Duration::from_secs(10), c.ws.next())
        .await
        .expect("the stream ends");
    assert!(
        !matches!(after, Some(Ok(Message::Text(_)))),
        "nothing is sent after the close answer: {after:?}"
    );
    server.stop().await;
}

/// A replay that retention overtakes (the reader too slow while newer events
/// push the promised ones out) stops at the gap and closes with 1013, after a
/// contiguous prefix and nothing beyond it.
#[tokio::test]
async fn a_replay_overtaken_by_retention_closes_with_1013_after_a_contiguous_prefix() {
    let server = TestServer::start_with(|c| {
        c.retention.history_size = 300;
        // Room for every live event: a full queue would be 1013 for another reason.
        c.outbound_queue = 4096;
    })
    .await;
    let mut p = server.client().await;
    // 300 × 30 KB: the replay's first chunk (256 events) is more than the
    // socket buffers take, so it is still being written below.
    publish_many(&mut p, "trim", 0, 300, 30_000).await;
    let mut c = slow_reader(&server).await;
    c.send(json!({"type": "subscribe", "id": "s", "channel": "trim", "since": {"seq": 0}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 300 newer events: seqs 1..=300 leave the history.
    publish_many(&mut p, "trim", 300, 300, 30_000).await;
    assert_eq!(c.closed().await, 1013);
    let frames = c.pending();
    assert_eq!(frames[0]["type"], "ack", "{}", frames[0]);
    assert_eq!(frames[0]["data"]["recovered"], true);
    let seqs: Vec<u64> = frames
        .iter()
        .skip(1)
        .map(|v| v["seq"].as_u64().expect("an event"))
        .collect();
    assert!(
        !seqs.is_empty() && seqs.len() < 300,
        "a prefix of the replay: {} events",
        seqs.len()
    );
    assert!(
        seqs.iter().zip(1u64..).all(|(s, want)| *s == want),
        "contiguous from 1, nothing after the gap"
    );
    let (_, metrics) = http_get(&server.http("/metrics")).await;
    assert!(
        metrics.contains("tether_slow_consumer_closes_total 0"),
        "not a slow consumer"
    );
    server.stop().await;
}
