//! Probes, metrics and the HTTP API.

mod common;

use common::{http_exchange, http_get, http_post, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn probes() {
    let server = TestServer::start().await;
    assert_eq!(http_get(&server.http("/healthz")).await.0, 200);
    assert_eq!(http_get(&server.http("/readyz")).await.0, 200);
    server.stop().await;
}

/// The embedded dashboard: index.html at every view's path (never cached, with
/// a CSP), the hashed assets it names (cached, typed, with an ETag that gives
/// 304), gzip when asked, and 404 for anything else.
#[tokio::test]
async fn serves_the_embedded_dashboard() {
    let server = TestServer::start().await;
    let (status, head, page) = http_exchange("GET", &server.http("/"), "", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("content-security-policy: default-src 'self'"), "{head}");
    assert!(page.contains(r#"<div id="root"></div>"#), "{page}");
    for view in ["/system", "/channels", "/commands", "/analytics"] {
        let (status, view_page) = http_get(&server.http(view)).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view_page, page, "{view} serves index.html");
    }

    let script = page
        .split(r#"src="/assets/"#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("index.html names its script");
    let url = server.http(&format!("/assets/{script}"));
    let (status, head, js) = http_exchange("GET", &url, "", &[]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=31536000, immutable"),
        "{head}"
    );
    assert!(js.len() > 10_000, "the bundle is {} bytes", js.len());
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .trim()
        .to_string();
    let (status, _, body) = http_exchange("GET", &url, "", &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    let (status, head, _) = http_exchange("GET", &url, "", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert!(head.contains("content-encoding: gzip"), "{head}");

    for missing in ["/assets/nope.js", "/nope", "/analytics/x", "/index.html.bak"] {
        assert_eq!(http_get(&server.http(missing)).await.0, 404, "{missing}");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_expose_the_contract_names() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.subscribe("m").await;
    c.publish("m", json!(1)).await;
    c.send_text("not json").await;
    c.recv_where(|v| v["type"] == "error").await;
    let (status, text) = http_get(&server.http("/metrics")).await;
    assert_eq!(status, 200);
    for name in [
        "tether_connections 1",
        "tether_frames_received_total{type=\"publish\"} 1",
        "tether_frames_sent_total{type=\"event\"} 1",
        "tether_errors_total{code=\"bad_request\"} 1",
        "tether_publish_ack_seconds_count 1",
        "tether_deliveries_total 1",
        "tether_dedup_hits_total 0",
        "tether_recoveries_total{outcome=\"recovered\"} 0",
        "tether_slow_consumer_closes_total 0",
        "tether_agents 0",
        "tether_tasks_total{outcome=\"ok\"} 0",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn post_messages_publishes_and_accepts_commands_with_dedup() {
    let server = TestServer::start().await;
    let mut sub = server.client().await;
    sub.subscribe("web").await;
    let body = json!([
        {"type": "publish", "id": "h1", "channel": "web", "data": {"a": 1}},
        {"type": "publish", "id": "h1", "channel": "web", "data": {"a": 1}},
        {"type": "process_receipt", "id": "h2", "data": {}},
        {"type": "process_receipt", "id": "h2", "data": {}},
        {"type": "subscribe", "id": "h3", "channel": "web"},
        {"type": "publish", "id": "h4", "channel": "bad channel"}
    ]);
    let (status, text) = http_post(&server.http("/api/v1/messages?client_id=sw"), &body.to_string()).await;
    assert_eq!(status, 200, "{text}");
    let replies: Vec<Value> = serde_json::from_str(&text).expect("array");
    assert_eq!(replies.len(), 6);
    assert_eq!(replies[0]["data"]["seq"], 1);
    assert_eq!(replies[1]["data"]["seq"], 1);
    assert_eq!(replies[1]["data"]["duplicate"], true);
    assert_eq!(
        replies[2],
        json!({"type": "ack", "id": "h2", "data": {"accepted": true}})
    );
    assert_eq!(
        replies[3],
        json!({"type": "ack", "id": "h2", "data": {"accepted": true, "duplicate": true}})
    );
    assert_eq!(replies[4]["error"]["code"], "bad_request");
    assert_eq!(replies[5]["error"]["code"], "bad_request");
    let e = sub.event("web").await;
    assert_eq!(e["from"], "sw");
    // The same principal over the WebSocket sees the HTTP publish as a duplicate.
    let mut ws = server.client_as("sw").await;
    let dup = ws
        .request(json!({"type": "publish", "id": "h1", "channel": "web", "data": {"a": 1}}))
        .await;
    assert_eq!(dup["data"]["duplicate"], true);

    let (status, text) = http_post(&server.http("/api/v1/messages"), "{\"not\":\"an array\"}").await;
    assert_eq!(status, 400);
    let err: Value = serde_json::from_str(&text).expect("error object");
    assert_eq!(err["error"]["code"], "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn an_oversize_body_gets_413() {
    let server = TestServer::start_with(|c| c.max_message_bytes = 256).await;
    let big = format!(
        "[{{\"type\":\"publish\",\"id\":\"x\",\"channel\":\"c\",\"data\":\"{}\"}}]",
        "y".repeat(30_000)
    );
    let (status, text) = http_post(&server.http("/api/v1/messages"), &big).await;
    assert_eq!(status, 413);
    assert!(text.contains("too_large"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn agents_route_lists_the_status_array() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.request(json!({"type": "register", "id": "r", "data": {"name": "lst", "commands": ["go"]}}))
        .await;
    let (status, text) = http_get(&server.http("/api/v1/agents")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).expect("array");
    assert_eq!(v[0]["name"], "lst");
    assert_eq!(v[0]["status"], "idle");
    server.stop().await;
}

#[tokio::test]
async fn the_per_ip_cap_refuses_further_upgrades_with_429() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2).await;
    let _a = server.client().await;
    let _b = server.client().await;
    let third = tokio_tungstenite::connect_async(server.ws_url()).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }
    drop(_a);
    // The slot frees once the connection is gone.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if tokio_tungstenite::connect_async(server.ws_url()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "a slot frees after a disconnect");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(a.closed().await, 1001);
    assert_eq!(b.closed().await, 1001);
    stopping.await.expect("run returned");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_http_api_answers_cors_for_pages_on_other_origins() {
    let server = TestServer::start().await;
    let url = server.http("/api/v1/messages?client_id=page");
    let (status, head, _) = http_exchange(
        "OPTIONS",
        &url,
        "",
        &[
            ("Origin", "http://app.test:3000"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization,content-type"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("access-control-allow-methods: get,post"), "{head}");
    assert!(
        head.contains("access-control-allow-headers: authorization,content-type"),
        "{head}"
    );
    let body = json!([{"type": "publish", "id": "x1", "channel": "news", "data": 1}]).to_string();
    let (status, head, _) = http_exchange("POST", &url, &body, &[("Origin", "http://app.test:3000")]).await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    server.stop().await;

    // With an allowlist, only its origins are told they may read.
    let server = TestServer::start_with(|c| c.allowed_origins = vec!["http://app.test:3000".into()]).await;
    let url = server.http("/api/v1/agents");
    let (_, head, _) = http_exchange("GET", &url, "", &[("Origin", "http://app.test:3000")]).await;
    assert!(
        head.contains("access-control-allow-origin: http://app.test:3000"),
        "{head}"
    );
    let (_, head, _) = http_exchange("GET", &url, "", &[("Origin", "http://evil.test")]).await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    server.stop().await;
}
