//! The pool against two real gateways (in-process, on loopback, separate data
//! dirs). Which gateway got a publish is read from that gateway's channel
//! history; the gateways share nothing.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tether_client::circuit::CircuitConfig;
use tether_client::pool::{PoolError, PoolMetrics};
use tether_client::{ClientError, LoadBalancingStrategy, Pool, PoolConfig, SubscriptionItem};

mod support;
use support::{http_get, start, Gateway, WAIT};

/// Two gateways, each with its own data dir (kept in the returned guard).
async fn two_gateways() -> (tempfile::TempDir, Gateway, Gateway) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = start(&dir.path().join("a"), "127.0.0.1:0", "gw-a").await;
    let b = start(&dir.path().join("b"), "127.0.0.1:0", "gw-b").await;
    (dir, a, b)
}

fn pool_config(urls: Vec<String>, strategy: LoadBalancingStrategy) -> PoolConfig {
    let mut c = PoolConfig::new(urls);
    c.load_balancing_strategy = strategy;
    c.health_check_interval = Duration::from_millis(200);
    c.failover_grace = Duration::from_millis(300);
    c.client.reconnect_interval = Duration::from_millis(50);
    c.client.max_reconnect_delay = Duration::from_millis(300);
    c.client.circuit = CircuitConfig::try_new(5, Duration::from_millis(200)).expect("circuit");
    c.client.request_timeout = WAIT;
    c
}

/// The `data` of every event a gateway holds for `channel`, oldest first.
async fn history(addr: SocketAddr, channel: &str) -> Vec<Value> {
    let (status, body) = http_get(addr, &format!("/api/v1/channels/{channel}/history?limit=1000")).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"].clone())
        .collect()
}

/// Waits (bounded) until `check` holds for the pool's metrics.
async fn wait_for(pool: &Pool, what: &str, check: impl Fn(&PoolMetrics) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = pool.metrics();
        if check(&m) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn healthy(m: &PoolMetrics, url: &str) -> bool {
    m.endpoints.iter().any(|e| e.url == url && e.healthy)
}

async fn publish_all(pool: &Pool, channel: &str, data: impl IntoIterator<Item = i64>) {
    for i in data {
        pool.publish(channel, json!(i)).await.expect("publish");
    }
}

fn ints(v: &[i64]) -> Vec<Value> {
    v.iter().map(|i| json!(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_between_two_healthy_gateways() {
    let (_dir, a, b) = two_gateways().await;
    let pool = Pool::start(pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::RoundRobin)).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    publish_all(&pool, "rr", 0..10).await;
    let (on_a, on_b) = (history(a.addr, "rr").await, history(b.addr, "rr").await);
    let (evens, odds) = (ints(&[0, 2, 4, 6, 8]), ints(&[1, 3, 5, 7, 9]));
    assert!(
        (on_a == evens && on_b == odds) || (on_a == odds && on_b == evens),
        "in turn: a {on_a:?}, b {on_b:?}"
    );
    let m = pool.metrics();
    assert_eq!((m.total_connections, m.healthy_connections), (2, 2));
    assert!(m.endpoints.iter().all(|e| e.requests == 5), "{m:?}");
    pool.close().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_used_prefers_the_idle_gateway() {
    let (_dir, a, b) = two_gateways().await;
    let pool = Pool::start(pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::LeastUsed)).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    // No agent handles this command: it stays in flight on one endpoint.
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool.command("nobody.home", json!({})).await }
    });
    wait_for(&pool, "a request in flight", |m| {
        m.endpoints.iter().map(|e| e.in_flight).sum::<usize>() == 1
    })
    .await;
    let m = pool.metrics();
    let busy = m
        .endpoints
        .iter()
        .position(|e| e.in_flight == 1)
        .expect("busy endpoint");
    let (busy_addr, idle_addr) = if m.endpoints[busy].url == a.url() {
        (a.addr, b.addr)
    } else {
        (b.addr, a.addr)
    };
    publish_all(&pool, "lu", 0..5).await;
    assert_eq!(
        history(idle_addr, "lu").await,
        ints(&[0, 1, 2, 3, 4]),
        "all to the idle one"
    );
    assert!(history(busy_addr, "lu").await.is_empty());
    assert_eq!(pool.metrics().endpoints[busy].in_flight, 1, "still waiting");
    pool.close().await;
    let outcome = tokio::time::timeout(WAIT, waiting).await.expect("ends").expect("task");
    assert!(outcome.is_err(), "the pool closed under it: {outcome:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_based_prefers_the_better_score_and_never_an_unhealthy_gateway() {
    let (_dir, a, b) = two_gateways().await;
    let mut config = pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::HealthBased);
    // No pings during the test: both RTTs stay unmeasured, so only errors
    // separate the scores.
    config.health_check_interval = Duration::from_secs(3600);
    config.client.request_timeout = Duration::from_secs(4);
    let pool = Pool::start(config).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    let m = pool.metrics();
    assert_eq!(m.endpoints[0].score, m.endpoints[1].score, "{m:?}");
    // A command nobody handles times out: an error on the endpoint it went to.
    let err = pool.command("nobody.home", json!({})).await.expect_err("times out");
    assert_eq!(err, PoolError::Client(ClientError::Timeout));
    let m = pool.metrics();
    let worse = m
        .endpoints
        .iter()
        .position(|e| e.errors == 1)
        .expect("one endpoint has the error");
    let better = 1 - worse;
    assert!(m.endpoints[better].score > m.endpoints[worse].score, "{m:?}");
    let addr = |i: usize| if i == 0 { a.addr } else { b.addr };
    publish_all(&pool, "hb", 0..4).await;
    assert_eq!(
        history(addr(better), "hb").await,
        ints(&[0, 1, 2, 3]),
        "to the better score"
    );
    assert!(history(addr(worse), "hb").await.is_empty());

    // Stop the better one: the worse (but healthy) one gets everything.
    let (better_gw, worse_gw) = if better == 0 { (a, b) } else { (b, a) };
    let better_url = better_gw.url();
    better_gw.stop().await;
    wait_for(&pool, "the stopped gateway unhealthy", |m| !healthy(m, &better_url)).await;
    let m = pool.metrics();
    assert_eq!(m.endpoints[better].score, 0.0, "{m:?}");
    publish_all(&pool, "hb2", 0..3).await;
    assert_eq!(history(worse_gw.addr, "hb2").await, ints(&[0, 1, 2]));
    pool.close().await;
    worse_gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_gateway_gets_the_traffic_while_healthy() {
    let (_dir, low, high) = two_gateways().await;
    let mut config = pool_config(vec![low.url(), high.url()], LoadBalancingStrategy::RoundRobin);
    config.priorities = Some(vec![1, 10]);
    let pool = Pool::start(config).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    publish_all(&pool, "prio", 0..4).await;
    assert_eq!(history(high.addr, "prio").await, ints(&[0, 1, 2, 3]));
    assert!(history(low.addr, "prio").await.is_empty(), "the lower tier idles");
    let high_url = high.url();
    high.stop().await;
    wait_for(&pool, "the high-priority gateway unhealthy", |m| !healthy(m, &high_url)).await;
    publish_all(&pool, "prio", 4..7).await;
    assert_eq!(
        history(low.addr, "prio").await,
        ints(&[4, 5, 6]),
        "the lower tier takes over"
    );
    pool.close().await;
    low.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keeps_working_when_one_gateway_stops() {
    let (_dir, a, b) = two_gateways().await;
    let pool = Pool::start(pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::RoundRobin)).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    let replies = pool.broadcast(json!({"type": "ping"})).await.expect("broadcast");
    assert_eq!(replies.len(), 2);
    assert!(
        replies
            .iter()
            .all(|r| matches!(&r.result, Ok(v) if v["type"] == "pong")),
        "{replies:?}"
    );
    wait_for(&pool, "RTTs measured", |m| m.endpoints.iter().all(|e| e.rtt.is_some())).await;

    let a_url = a.url();
    a.stop().await;
    wait_for(&pool, "gateway A unhealthy", |m| !healthy(m, &a_url)).await;
    publish_all(&pool, "keep", 0..4).await;
    let reply = pool
        .send(json!({"type": "publish", "channel": "keep", "data": 4}), 7)
        .await
        .expect("send");
    assert_eq!(reply["type"], "ack");
    assert!(matches!(
        pool.send(json!("not an object"), 7).await,
        Err(PoolError::BadFrame(_))
    ));
    assert_eq!(history(b.addr, "keep").await, ints(&[0, 1, 2, 3, 4]));
    let replies = pool.broadcast(json!({"type": "ping"})).await.expect("broadcast");
    assert_eq!(replies.len(), 1, "only the connected endpoint");
    assert_eq!(replies[0].url, b.url());
    let m = pool.metrics();
    assert_eq!((m.total_connections, m.healthy_connections), (2, 1), "{m:?}");
    let text = pool.metrics_text();
    for line in [
        "tether_pool_connections 2",
        "tether_pool_healthy_connections 1",
        &format!("tether_pool_endpoint_healthy{{url=\"{a_url}\"}} 0"),
        &format!("tether_pool_endpoint_healthy{{url=\"{}\"}} 1", b.url()),
        "tether_pool_endpoint_rtt_seconds{",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    pool.close().await;
    assert!(matches!(pool.publish("keep", json!(5)).await, Err(PoolError::Closed)));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_moves_to_the_other_gateway_when_its_gateway_stops() {
    let (_dir, a, b) = two_gateways().await;
    let mut config = pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::RoundRobin);
    config.priorities = Some(vec![10, 1]); // the subscription starts on A
    let pool = Pool::start(config).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    let mut sub = pool.subscribe("feed").await.expect("subscribe");
    assert_eq!(sub.endpoint(), a.url());
    assert!(matches!(
        pool.subscribe("feed").await,
        Err(PoolError::AlreadySubscribed(c)) if c == "feed"
    ));
    publish_all(&pool, "feed", 0..3).await;
    let mut a_epoch = String::new();
    for i in 0..3 {
        match tokio::time::timeout(WAIT, sub.next()).await.expect("in time") {
            Some(Ok(SubscriptionItem::Event(e))) => {
                assert_eq!((e.seq, e.data), (i as u64 + 1, json!(i)));
                a_epoch = e.epoch;
            }
            other => panic!("expected event {i}, got {other:?}"),
        }
    }

    a.stop().await;
    // B has another epoch: it cannot replay what A had, and says so.
    match tokio::time::timeout(WAIT, sub.next()).await.expect("in time") {
        Some(Ok(SubscriptionItem::Recovered(false))) => {}
        other => panic!("expected Recovered(false), got {other:?}"),
    }
    assert_eq!(sub.endpoint(), b.url(), "the pool reports the move");
    assert_eq!(sub.failovers(), 1);
    assert_eq!(pool.metrics().failovers, 1);
    publish_all(&pool, "feed", 10..13).await;
    for (seq, i) in (1..=3).zip(10..13) {
        match tokio::time::timeout(WAIT, sub.next()).await.expect("in time") {
            Some(Ok(SubscriptionItem::Event(e))) => {
                assert_eq!((e.seq, e.data), (seq, json!(i)), "B's live events");
                assert_ne!(e.epoch, a_epoch);
            }
            other => panic!("expected B's event {i}, got {other:?}"),
        }
    }
    assert!(pool.metrics_text().contains("tether_pool_failovers_total 1"));
    pool.close().await;
    let end = tokio::time::timeout(WAIT, sub.next()).await.expect("ends after close");
    assert!(end.is_none(), "{end:?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_in_a_bounded_queue_until_a_gateway_is_back() {
    let (dir, a, b) = two_gateways().await;
    let mut config = pool_config(vec![a.url(), b.url()], LoadBalancingStrategy::RoundRobin);
    config.queue_capacity = 2;
    let pool = Pool::start(config).expect("start");
    pool.wait_ready(2, WAIT).await.expect("both connected");
    let a_addr = a.stop().await;
    b.stop().await;
    wait_for(&pool, "no healthy endpoint", |m| m.healthy_connections == 0).await;

    let send = |data: &str, priority: u8| {
        let pool = pool.clone();
        let frame = json!({"type": "publish", "channel": "q", "data": data});
        tokio::spawn(async move { pool.send(frame, priority).await })
    };
    let low = send("low", 1);
    wait_for(&pool, "one queued", |m| m.queued == 1).await;
    let high = send("high", 9);
    wait_for(&pool, "two queued", |m| m.queued == 2).await;
    // Full: not above the lowest waiting (1) → refused at once.
    let refused = pool
        .send(json!({"type": "publish", "channel": "q", "data": "lowest"}), 0)
        .await;
    assert_eq!(refused, Err(PoolError::QueueFull { capacity: 2 }));
    // Above it: displaces "low".
    let mid = send("mid", 5);
    let displaced = tokio::time::timeout(WAIT, low).await.expect("in time").expect("task");
    assert_eq!(displaced, Err(PoolError::QueueFull { capacity: 2 }));
    assert_eq!(pool.metrics().queued, 2);
    assert_eq!(pool.metrics().rejected, 2);

    let a = start(&dir.path().join("a"), &a_addr.to_string(), "gw-a").await;
    for task in [high, mid] {
        let reply = tokio::time::timeout(WAIT, task).await.expect("in time").expect("task");
        assert_eq!(reply.expect("sent once A is back")["type"], "ack");
    }
    let mut got = history(a.addr, "q").await;
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("high"), json!("mid")]);
    assert_eq!(pool.metrics().queued, 0);
    pool.close().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_refused_with_its_reason() {
    let mut config = PoolConfig::new(vec!["ws://127.0.0.1:1/ws".into()]);
    config.priorities = Some(vec![1, 2]);
    match Pool::start(config) {
        Err(ClientError::Config(reason)) => assert!(reason.contains("priorities"), "{reason}"),
        Err(other) => panic!("expected a config error, got {other:?}"),
        Ok(_) => panic!("expected a config error"),
    }
}
