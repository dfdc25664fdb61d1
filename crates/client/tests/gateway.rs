//! The client against the real gateway (in-process, on loopback).

use std::time::Duration;

use serde_json::{json, Value};
use tether_client::circuit::CircuitConfig;
use tether_client::state::State;
use tether_client::{Client, ClientConfig, SendOutcome, SubscriptionItem};

mod support;
use support::{http_get, start, WAIT};

fn client_config(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url);
    c.reconnect_interval = Duration::from_millis(50);
    c.max_reconnect_delay = Duration::from_millis(300);
    // Restarts take a few fast retries; keep the breaker's cooldown short.
    c.circuit = CircuitConfig::try_new(5, Duration::from_millis(200)).expect("circuit");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_and_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path(), "127.0.0.1:0", "gw-client-test").await;
    let client = Client::start(client_config(&gw.url())).expect("start");
    client.wait_connected(WAIT).await.expect("connected");
    let mut sub = client.subscribe("news").await.expect("subscribe");
    let ack = client.publish("news", json!({"n": 1})).await.expect("publish");
    assert_eq!(ack["seq"], 1);
    match tokio::time::timeout(WAIT, sub.next()).await.expect("in time") {
        Some(Ok(SubscriptionItem::Event(e))) => assert_eq!(e.data, json!({"n": 1})),
        other => panic!("expected the event, got {other:?}"),
    }
    let pong = client.send_request(json!({"type": "ping"})).await.expect("ping");
    assert_eq!(pong["type"], "pong");
    let err = client.publish("bad channel", json!(1)).await.expect_err("refused");
    assert!(
        matches!(err, tether_client::ClientError::Gateway(ref b) if b.code == "bad_request"),
        "{err:?}"
    );
    assert!(client.metrics_text().contains("tether_client_frames_sent_total"));
    client.close().await;
    assert!(matches!(client.state(), State::Closed { .. }));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_publishes_survive_two_gateway_restarts_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path(), "127.0.0.1:0", "gw-client-test").await;
    let url = gw.url();
    let publisher = Client::start(client_config(&url)).expect("publisher");
    let subscriber = Client::start(client_config(&url)).expect("subscriber");
    subscriber.wait_connected(WAIT).await.expect("connected");
    let mut events = subscriber.subscribe("stream").await.expect("subscribe");

    let collect = tokio::spawn(async move {
        let mut seqs = Vec::new();
        let mut data = Vec::new();
        while seqs.len() < 1000 {
            match tokio::time::timeout(WAIT, events.next())
                .await
                .expect("events keep coming")
            {
                Some(Ok(SubscriptionItem::Event(e))) => {
                    seqs.push(e.seq);
                    data.push(e.data);
                }
                Some(Ok(SubscriptionItem::Recovered(ok))) => assert!(ok, "history covers the gap"),
                other => panic!("subscription failed: {other:?}"),
            }
        }
        (seqs, data)
    });
    let publishing = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for i in 0..1000 {
                publisher
                    .publish("stream", json!(i))
                    .await
                    .expect("publish eventually acked");
            }
        }
    });
    let mut gw = gw;
    for restart_at in [300u64, 650] {
        // Wait until the stream has got that far, then restart on the same port.
        loop {
            let (_, body) = http_get(gw.addr, "/api/v1/channels/stream/history?limit=1").await;
            let seq = serde_json::from_str::<Value>(&body)
                .map(|v| v["seq"].as_u64().unwrap_or(0))
                .unwrap_or(0);
            if seq >= restart_at {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let addr = gw.stop().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw = start(dir.path(), &addr.to_string(), "gw-client-test").await;
    }
    tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("publishing ends")
        .expect("publisher");
    let (seqs, data) = tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("collected")
        .expect("collector");
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<u64>>(),
        "seq 1..=1000, no gap, no duplicate"
    );
    assert_eq!(
        data,
        (0..1000).map(|i| json!(i)).collect::<Vec<_>>(),
        "each publish took effect once, in order"
    );
    assert!(
        publisher.metrics_text().contains("tether_client_reconnects_total 2"),
        "{}",
        publisher.metrics_text()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_queue_survives_a_client_restart_and_flushes_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue_path = dir.path().join("client-queue.redb");
    // Reserve a port, then leave it closed: the gateway is "down".
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);
    let url = format!("ws://{addr}/ws");
    let mut offline = client_config(&url);
    offline.offline_path = Some(queue_path.clone());
    {
        let client = Client::start(offline.clone()).expect("start");
        for i in 0..5 {
            let frame = json!({"type": "publish", "channel": "offline", "data": i});
            assert_eq!(
                client.send_with_offline_fallback(frame).await.expect("queued"),
                SendOutcome::Queued
            );
        }
        assert_eq!(client.queue_len(), 5);
        client.close().await;
    }
    // The process "restarts": a new client on the same queue, the gateway is up.
    let gw = start(&dir.path().join("gw"), &addr.to_string(), "gw-client-test").await;
    let client = Client::start(offline).expect("restart");
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.queue_len() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the queue flushes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.last_sync_time().is_some());
    let (_, body) = http_get(gw.addr, "/api/v1/channels/offline/history").await;
    let v: Value = serde_json::from_str(&body).expect("json");
    let data: Vec<Value> = v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(
        data,
        (0..5).map(|i| json!(i)).collect::<Vec<_>>(),
        "each queued message once, in order"
    );
    client.close().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_times_out_even_while_frames_keep_arriving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(dir.path(), "127.0.0.1:0", "gw-client-test").await;
    let mut c = client_config(&gw.url());
    c.request_timeout = Duration::from_millis(500);
    let client = Client::start(c).expect("start");
    client.wait_connected(WAIT).await.expect("connected");
    let _busy = client.subscribe("busy").await.expect("subscribe");
    let flood = tokio::spawn({
        let publisher = Client::start(client_config(&gw.url())).expect("publisher");
        async move {
            for i in 0..400 {
                let _ = publisher.publish("busy", json!(i)).await;
            }
        }
    });
    // Nobody handles this command: only the client's deadline can end it.
    let reply = tokio::time::timeout(WAIT, client.command("nobody_home", json!({}))).await;
    let err = reply.expect("the client's own deadline fires").expect_err("times out");
    assert_eq!(err, tether_client::ClientError::Timeout);
    flood.abort();
    client.close().await;
    gw.stop().await;
}
