//! Hardening on the real gateway: TLS end to end, slow or silent handshakes,
//! oversize frames refused from their header.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tether_gateway::tls::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost`, written into `dir`.
fn certificate(dir: &std::path::Path) -> (TlsFiles, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (TlsFiles { cert, key }, ck.cert.der().to_vec())
}

fn client_config(der: Vec<u8>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn wss_and_https_work_end_to_end_and_plain_text_does_not() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (files, der) = certificate(certs.path());
    let server = TestServer::start_with(|c| c.tls = Some(files)).await;
    let config = client_config(der);

    let stream = tls_connect(server.addr, config.clone()).await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.expect("wss upgrade");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let publish = json!({"type": "publish", "id": "s1", "channel": "secure", "data": {"over": "tls"}});
    ws.send(Message::text(publish.to_string())).await.expect("send");
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["data"]["seq"], 1, "{ack}");

    let mut https = tls_connect(server.addr, config).await;
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    https.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Plain HTTP/WebSocket on the TLS listener gets nowhere.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(server.ws_url()),
    )
    .await;
    assert!(matches!(plain, Ok(Err(_))), "plain ws:// must fail on a TLS listener");
    server.stop().await;
}

#[tokio::test]
async fn connections_that_never_send_a_request_head_are_dropped() {
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    for s in [&mut silent, &mut slow] {
        let mut buf = [0u8; 1024];
        // The server closes: read returns 0 (or an error), well before the test's wait.
        let n = tokio::time::timeout(common::WAIT, s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "closed, or 408: {text}");
    }
    assert!(started.elapsed() < common::WAIT);
    // A normal client still works.
    let mut c = server.client().await;
    assert_eq!(c.request(json!({"type": "ping", "id": "p"})).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn an_oversize_frame_is_refused_from_its_header_before_its_payload() {
    let server = TestServer::start_with(|c| c.max_message_bytes = 1024).await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("upgrade request");
    // A masked text frame header announcing 100 MB, followed by only 16 bytes.
    let mut frame = vec![0x81, 0xFF];
    frame.extend_from_slice(&(100u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 16]);
    tcp.write_all(&frame).await.expect("frame");
    // The gateway answers with a close frame 1009 without waiting for the payload.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut buf = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            other => panic!(
                "no close frame in time: {other:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        };
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if find_close(&seen).is_some() {
            break;
        }
    }
    assert_eq!(find_close(&seen), Some(1009), "a close frame with 1009");
    server.stop().await;
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        if let Message::Text(t) = ws.next().await.expect("open").expect("frame") {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}

/// The code of the first close frame (opcode 8) after the HTTP head.
fn find_close(bytes: &[u8]) -> Option<u16> {
    let start = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut i = start;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let len = usize::from(bytes[i + 1] & 0x7f);
        let (header, len) = match len {
            126 => (
                4,
                usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?])),
            ),
            127 => return None,
            n => (2, n),
        };
        if opcode == 8 && i + header + 2 <= bytes.len() {
            return Some(u16::from_be_bytes([bytes[i + header], bytes[i + header + 1]]));
        }
        i += header + len;
    }
    None
}
