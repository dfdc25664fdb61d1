//! Auth attacked on the real gateway: bad tokens of every kind, claims, roles,
//! refresh, expiry, HTTP, origins.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{http_request_with, Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tether_gateway::auth::AuthSettings;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn token(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

fn alice(extra: Value) -> String {
    let mut claims = json!({"sub": "alice", "exp": now() + 3600});
    for (k, v) in extra.as_object().expect("object") {
        claims[k] = v.clone();
    }
    token(claims)
}

async fn hs256_server() -> TestServer {
    TestServer::start_with(|c| c.auth = AuthSettings::Hs256 { secret: SECRET.into() }).await
}

/// Connects with `?access_token=` and expects an immediate close (no welcome).
async fn refused(server: &TestServer, token: &str) -> (u16, String) {
    let url = format!("{}?access_token={token}", server.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade completes");
    match tokio::time::timeout(common::WAIT, ws.next())
        .await
        .expect("close in time")
    {
        Some(Ok(Message::Close(Some(f)))) => (u16::from(f.code), f.reason.to_string()),
        Some(Ok(Message::Text(t))) => panic!("no frame may come before the close, got {t}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn b64(v: &Value) -> String {
    use std::fmt::Write;
    // base64url without padding, enough for test headers and claims.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn bad_tokens_are_closed_with_4001_right_after_the_upgrade() {
    let server = hs256_server().await;
    // Missing.
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("upgrade");
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 4001),
        other => panic!("expected 4001, got {other:?}"),
    }
    // Malformed.
    assert_eq!(refused(&server, "not.a.jwt").await.0, 4001);
    // Wrongly signed.
    let wrong = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": now() + 60}),
        &EncodingKey::from_secret(b"another-secret"),
    )
    .expect("sign");
    assert_eq!(refused(&server, &wrong).await.0, 4001);
    // alg: none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "alice", "exp": now() + 60}))
    );
    assert_eq!(refused(&server, &none).await.0, 4001);
    // Expired (no leeway).
    let (code, reason) = refused(&server, &token(json!({"sub": "alice", "exp": now() - 1}))).await;
    assert_eq!(code, 4001);
    assert!(reason.contains("expired"), "{reason}");
    // No sub.
    assert_eq!(refused(&server, &token(json!({"exp": now() + 60}))).await.0, 4001);
    // Unknown role: may not connect at all.
    assert_eq!(refused(&server, &alice(json!({"role": "superuser"}))).await.0, 4003);
    server.stop().await;
}

#[tokio::test]
async fn header_and_query_tokens_both_work_and_sub_is_the_principal() {
    let server = hs256_server().await;
    let t = alice(json!({}));
    let mut by_query = Client::connect(&format!("{}?access_token={t}&client_id=mallory", server.ws_url())).await;
    let ack = by_query.publish("open", json!(1)).await;
    assert_eq!(ack["data"]["seq"], 1);
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {t}").parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
    let mut by_header = Client::from_ws(ws).await;
    by_header.subscribe_since("open", json!({"seq": 0})).await;
    let e = by_header.event("open").await;
    assert_eq!(e["from"], "alice", "the principal is the token's sub, not client_id");
    server.stop().await;
}

#[tokio::test]
async fn claims_limit_channels_publishes_commands_and_register() {
    let server = hs256_server().await;
    let t = alice(json!({"channels": ["orders:*"], "publish": ["orders:eu"], "commands": ["resize"]}));
    let mut c = Client::connect(&format!("{}?access_token={t}", server.ws_url())).await;
    let forbidden = |v: &Value| v["type"] == "error" && v["error"]["code"] == "forbidden";
    assert!(
        c.request(json!({"type": "subscribe", "id": "1", "channel": "orders:eu"}))
            .await["type"]
            == "ack"
    );
    assert!(forbidden(
        &c.request(json!({"type": "subscribe", "id": "2", "channel": "news"}))
            .await
    ));
    assert!(forbidden(
        &c.request(json!({"type": "subscribe", "id": "3", "channel": "inbox:bob"}))
            .await
    ));
    assert_eq!(
        c.request(json!({"type": "subscribe", "id": "4", "channel": "inbox:alice"}))
            .await["type"],
        "ack"
    );
    assert!(forbidden(
        &c.request(json!({"type": "subscribe_agent", "id": "5", "data": {"name": "x"}}))
            .await
    ));
    assert_eq!(
        c.request(json!({"type": "publish", "id": "6", "channel": "orders:eu", "data": 1}))
            .await["type"],
        "ack"
    );
    assert!(forbidden(
        &c.request(json!({"type": "publish", "id": "7", "channel": "orders:us", "data": 1}))
            .await
    ));
    assert!(forbidden(&c.request(json!({"type": "delete_all", "id": "8"})).await));
    assert!(forbidden(
        &c.request(json!({"type": "register", "id": "9", "data": {"name": "a", "commands": ["resize"]}}))
            .await
    ));
    // Nothing forbidden ran: still one event on orders:eu, and the connection works.
    let pong = c.request(json!({"type": "ping", "id": "10"})).await;
    assert_eq!(pong["type"], "pong");

    // An agent token may register; an admin may read another's inbox.
    let agent = token(json!({"sub": "worker", "exp": now() + 60, "role": "agent"}));
    let mut a = Client::connect(&format!("{}?access_token={agent}", server.ws_url())).await;
    let ack = a
        .request(json!({"type": "register", "id": "r", "data": {"name": "resizer", "commands": ["resize"]}}))
        .await;
    assert_eq!(ack["type"], "ack");
    let admin = token(json!({"sub": "root", "exp": now() + 60, "role": "admin"}));
    let mut root = Client::connect(&format!("{}?access_token={admin}", server.ws_url())).await;
    assert_eq!(
        root.request(json!({"type": "subscribe", "id": "i", "channel": "inbox:alice"}))
            .await["type"],
        "ack"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_http_api_uses_the_same_auth_and_permissions() {
    let server = hs256_server().await;
    let body = json!([{"type": "publish", "id": "h1", "channel": "orders:eu", "data": 1},
                      {"type": "publish", "id": "h2", "channel": "news", "data": 1},
                      {"type": "resize", "id": "h3"}, {"type": "nuke", "id": "h4"}])
    .to_string();
    let url = server.http("/api/v1/messages");
    let (status, text) = http_request_with("POST", &url, &body, &[]).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("unauthorized"));
    let (status, _) = http_request_with("POST", &url, &body, &[("Authorization", "Bearer nope")]).await;
    assert_eq!(status, 401);
    let t = alice(json!({"channels": ["orders:*"], "publish": ["orders:*"], "commands": ["resize"]}));
    let bearer = format!("Bearer {t}");
    let (status, text) = http_request_with("POST", &url, &body, &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200, "{text}");
    let replies: Vec<Value> = serde_json::from_str(&text).expect("array");
    assert_eq!(replies[0]["type"], "ack");
    assert_eq!(replies[1]["error"]["code"], "forbidden");
    assert_eq!(replies[2]["data"]["accepted"], true);
    assert_eq!(replies[3]["error"]["code"], "forbidden");
    // Query token, history permission, agents route.
    let (status, _) = http_request_with(
        "GET",
        &server.http(&format!("/api/v1/channels/orders:eu/history?access_token={t}")),
        "",
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http_request_with(
        "GET",
        &server.http(&format!("/api/v1/channels/news/history?access_token={t}")),
        "",
        &[],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        http_request_with("GET", &server.http("/api/v1/agents"), "", &[])
            .await
            .0,
        401
    );
    assert_eq!(
        http_request_with("GET", &server.http("/api/v1/agents"), "", &[("Authorization", &bearer)])
            .await
            .0,
        200
    );
    // Probes and metrics need no token.
    assert_eq!(http_request_with("GET", &server.http("/healthz"), "", &[]).await.0, 200);
    assert_eq!(http_request_with("GET", &server.http("/metrics"), "", &[]).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn an_expiring_token_closes_the_connection_and_a_refresh_keeps_it() {
    let server = hs256_server().await;
    let short = token(json!({"sub": "alice", "exp": now() + 2}));
    let mut doomed = Client::connect(&format!("{}?access_token={short}", server.ws_url())).await;
    let mut kept = Client::connect(&format!("{}?access_token={short}", server.ws_url())).await;
    let fresh = alice(json!({}));
    let ack = kept
        .request(json!({"type": "auth", "id": "a1", "data": {"token": fresh}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["data"]["sub"], "alice");
    assert!(ack["data"]["exp"].as_u64().is_some_and(|e| e > now() + 60));
    // Another sub, or garbage: unauthorized, and the old token stays in force.
    let bob = token(json!({"sub": "bob", "exp": now() + 60}));
    assert_eq!(
        kept.request(json!({"type": "auth", "id": "a2", "data": {"token": bob}}))
            .await["error"]["code"],
        "unauthorized"
    );
    assert_eq!(
        kept.request(json!({"type": "auth", "id": "a3", "data": {"token": "x"}}))
            .await["error"]["code"],
        "unauthorized"
    );
    // The doomed one is closed by the timer, without sending anything.
    assert_eq!(doomed.closed().await, 4001);
    // The refreshed one is still fine after the old exp.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kept.request(json!({"type": "ping", "id": "p"})).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn rs256_and_es256_public_keys() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let read = |f: &str| std::fs::read(format!("{fixtures}{f}")).expect("fixture");
    for (public, private, alg) in [
        ("rsa-public.pem", "rsa-private.pem", Algorithm::RS256),
        ("ec-public.pem", "ec-private.pem", Algorithm::ES256),
    ] {
        let pem = read(public);
        let server = TestServer::start_with(|c| c.auth = AuthSettings::PublicKeyPem { pem: pem.clone() }).await;
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&read(private)),
            _ => EncodingKey::from_ec_pem(&read(private)),
        }
        .expect("private key");
        let good = encode(&Header::new(alg), &claims, &key).expect("sign");
        let mut c = Client::connect(&format!("{}?access_token={good}", server.ws_url())).await;
        assert_eq!(c.publish("k", json!(1)).await["type"], "ack", "{alg:?} works");
        // An HS256 token whose secret is the public key (the classic confusion).
        let confused = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&pem)).expect("sign");
        assert_eq!(
            refused(&server, &confused).await.0,
            4001,
            "{alg:?}: HS256 with the public key"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn a_disallowed_origin_gets_403_and_no_origin_is_allowed() {
    let server = TestServer::start_with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Origin", "https://app.example".parse().expect("header"));
    assert!(
        tokio_tungstenite::connect_async(request).await.is_ok(),
        "a listed origin"
    );
    let _no_origin = server.client().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_limited_while_a_well_behaved_one_sees_no_errors() {
    let server = TestServer::start_with(|c| {
        c.rate_limit = 50;
        c.rate_burst = 20;
    })
    .await;
    let mut flood = server.client().await;
    let mut good = server.client().await;
    let flooding = tokio::spawn(async move {
        for i in 0..2000 {
            let frame = Message::text(json!({"type": "ping", "id": format!("f{i}")}).to_string());
            if flood.ws.send(frame).await.is_err() {
                break;
            }
        }
        flood.closed().await
    });
    for i in 0..20 {
        let reply = good.request(json!({"type": "ping", "id": format!("g{i}")})).await;
        assert_eq!(reply["type"], "pong", "the well-behaved client gets no error: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(flooding.await.expect("flood task"), 4029);
    assert!(good.pending().iter().all(|v| v["type"] != "error"));
    server.stop().await;
}

/// A refused connection holds its per-IP slot until its 4001 close is done
/// (the gateway waits up to a second for the peer's answer): bad tokens cannot
/// be used to hold more sockets than the cap.
#[tokio::test]
async fn a_refused_connection_counts_against_the_per_ip_cap_until_closed() {
    let server = TestServer::start_with(|c| {
        c.auth = AuthSettings::Hs256 { secret: SECRET.into() };
        c.max_connections_per_ip = 1;
    })
    .await;
    // Upgraded, then closed with 4001; not reading, so the close is not answered.
    let (_refused, _) = tokio_tungstenite::connect_async(format!("{}?access_token=bad", server.ws_url()))
        .await
        .expect("the upgrade succeeds before the 4001 close");
    match tokio_tungstenite::connect_async(format!("{}?access_token=bad", server.ws_url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected HTTP 429 while the first refusal is still closing, got {other:?}"),
    }
    server.stop().await;
}
