//! A slow reader is closed with 1013 while a fast reader on the same channel
//! keeps up.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_closed_with_1013_and_a_fast_one_keeps_up() {
    let server = TestServer::start_with(|c| {
        c.outbound_queue = 64;
        c.max_message_bytes = 1 << 20;
    })
    .await;
    const EVENTS: u64 = 120;
    let payload = "x".repeat(256 * 1024);

    // The slow reader subscribes, then stops reading.
    let mut slow = server.client().await;
    slow.subscribe("firehose").await;
    let mut fast = server.client().await;
    fast.subscribe("firehose").await;

    let fast_reader = tokio::spawn(async move {
        for seq in 1..=EVENTS {
            let e = fast.event("firehose").await;
            assert_eq!(e["seq"], seq, "the fast reader gets every event in order");
        }
        fast
    });
    let mut publisher = server.client().await;
    // Windows of 16 publishes keep every burst well inside a 64-frame queue.
    for window in 0..EVENTS / 16 + 1 {
        let ids: Vec<u64> = (window * 16..((window + 1) * 16).min(EVENTS)).collect();
        for i in &ids {
            publisher
                .send(json!({"type": "publish", "id": format!("f{i}"), "channel": "firehose", "data": payload}))
                .await;
        }
        for i in &ids {
            assert_eq!(publisher.reply_to(&format!("f{i}")).await["type"], "ack");
        }
    }
    // 30 MB were published; the slow reader's buffers hold far less.
    let _fast = tokio::time::timeout(Duration::from_secs(30), fast_reader)
        .await
        .expect("fast reader in time")
        .expect("fast ok");

    // Now the slow reader drains what reached it: some events, then 1013.
    let code = read_until_close(&mut slow).await;
    assert_eq!(code, 1013);
    let got = slow.pending().iter().filter(|v| v["type"] == "event").count() as u64;
    assert!(got < EVENTS, "the slow reader was cut off ({got} of {EVENTS})");
    let (_, metrics) = common::http_get(&server.http("/metrics")).await;
    assert!(metrics.contains("tether_slow_consumer_closes_total 1"), "{metrics}");
    server.stop().await;
}

async fn read_until_close(c: &mut Client) -> u16 {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), c.ws.next())
            .await
            .expect("close in time");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Text(_))) => c.count_event(),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}
