//! The benchmark's side of the network: opening a WebSocket connection and
//! reading its `welcome` ([`connect`], [`connect_from`] a given loopback
//! source address), the frame-level helpers every scenario shares (next text
//! frame, ping, close reasons and hints), and the checks made before a run:
//! which source addresses cover the connections within their ephemeral ports
//! ([`source_addresses`]) and raising the open-files limit.
//!
//! Not here: what the frames mean ([`super::frame`]), or what a scenario
//! sends and counts on its connections.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frame::parse;
use super::plan::{Plan, Protocol};
use crate::cli::UsageError;

/// Longest a connect (TCP, upgrade, `welcome`) or a subscribe may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight at once while opening connections.
pub(super) const CONNECT_CONCURRENCY: usize = 64;
/// Read buffer of a connection that reads acks, events or results.
const READ_BUFFER: usize = 8 * 1024;
/// Connections per loopback source address unless `--source-addrs` says
/// otherwise: the gateway's default per-IP cap.
const CONNECTIONS_PER_SOURCE: usize = tether_gateway::config::DEFAULT_MAX_CONNECTIONS_PER_IP;
/// Source addresses available: 127.0.0.2 to 127.0.0.255.
const MAX_SOURCE_ADDRS: usize = 254;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The source addresses for `connections`, and the target to connect them to:
/// `asked` (or enough for [`CONNECTIONS_PER_SOURCE`] each) addresses from
/// 127.0.0.2 on when `url` is on an IPv4 loopback address; none (the system
/// picks) otherwise. Refuses more connections than the addresses have
/// ephemeral ports.
pub(super) fn source_addresses(
    url: &str,
    asked: Option<usize>,
    connections: usize,
) -> Result<(Vec<Ipv4Addr>, Option<SocketAddr>), UsageError> {
    let ports = ephemeral_ports();
    let target = url
        .into_client_request()
        .ok()
        .and_then(|r| {
            let uri = r.uri();
            let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(80);
            (host.as_str(), port).to_socket_addrs().ok()
        })
        .and_then(|mut addrs| addrs.find(|a| matches!(a, SocketAddr::V4(v4) if v4.ip().is_loopback())));
    let Some(target) = target else {
        if asked.is_some() {
            return Err(UsageError(format!(
                "--source-addrs needs a --url on an IPv4 loopback address (127.x.x.x or localhost), not {url}"
            )));
        }
        if connections as u64 > ports {
            return Err(UsageError(format!(
                "{connections} connections to {url} need more than the {ports} ephemeral ports one source \
                 address has (net.ipv4.ip_local_port_range); run the gateway on a loopback address and the \
                 bench with --source-addrs"
            )));
        }
        return Ok((Vec::new(), None));
    };
    let n = match asked {
        Some(0) => return Err(UsageError("--source-addrs must be at least 1".into())),
        Some(n) => n,
        None => connections.div_ceil(CONNECTIONS_PER_SOURCE),
    };
    if n > MAX_SOURCE_ADDRS {
        return Err(UsageError(format!(
            "--source-addrs must be at most {MAX_SOURCE_ADDRS} (127.0.0.2 to 127.0.0.255)"
        )));
    }
    if connections as u64 > n as u64 * ports {
        let needed = (connections as u64).div_ceil(ports);
        return Err(UsageError(format!(
            "{connections} connections from {n} source address{} need more than the {ports} ephemeral ports \
             each has (net.ipv4.ip_local_port_range); use --source-addrs {needed} or more",
            if n == 1 { "" } else { "es" }
        )));
    }
    let addrs = (0..n).map(|k| Ipv4Addr::new(127, 0, 0, 2 + k as u8)).collect();
    Ok((addrs, Some(target)))
}

/// Ephemeral ports one source address has for connections to one
/// destination (`net.ipv4.ip_local_port_range`; Linux's default range when it
/// cannot be read).
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u64>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            (hi >= lo).then_some(hi - lo + 1)
        })
        .unwrap_or(60999 - 32768 + 1)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort); returns
/// `(soft, hard)` as they are afterwards.
pub(super) fn raise_open_files_limit() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((u64::MAX, u64::MAX))
}

/// How a connection shows it is alive, by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keepalive {
    /// The protocol's `{"type":"ping"}`, answered by `pong`.
    Tether,
    /// A WebSocket ping frame, answered by a pong frame (plain broadcast servers).
    WsPing,
    /// `{"event":"pusher:ping"}`, answered by `pusher:pong`.
    Pusher,
}

impl Keepalive {
    /// Whether `msg` answers a ping of this kind.
    pub(super) fn answered_by(self, msg: &Message) -> bool {
        match (self, msg) {
            (Keepalive::Tether, Message::Text(t)) => parse(t.as_str()).is_some_and(|f| f.kind == "pong"),
            (Keepalive::WsPing, Message::Pong(_)) => true,
            (Keepalive::Pusher, Message::Text(t)) => t.as_str().contains("\"pusher:pong\""),
            _ => false,
        }
    }
}

/// An open connection whose greeting (`welcome`, `pusher:connection_established`) has been read.
pub(crate) struct Conn {
    pub ws: Ws,
    /// How often to send a ping when otherwise silent (half the server's
    /// heartbeat interval or activity timeout), so that it never closes us.
    pub ping_every: Duration,
    pub keepalive: Keepalive,
}

impl Conn {
    /// The application-level ping to send as the `n`th.
    pub(super) fn ping_message(&self, n: u64) -> Message {
        match self.keepalive {
            Keepalive::Tether => Message::text(format!(r#"{{"type":"ping","id":"p{n}"}}"#)),
            Keepalive::WsPing => Message::Ping(Default::default()),
            Keepalive::Pusher => Message::text(r#"{"event":"pusher:ping","data":{}}"#),
        }
    }

    /// The next text frame that arrives before `wake`, or `None` when `wake`
    /// passed or a non-text frame came (the caller recomputes its deadline and
    /// asks again). Pings when one is due since `last_write`. A close or a
    /// read error is an error naming `who`, with a hint for the close codes a
    /// benchmark provokes.
    pub(super) async fn next_text_until(
        &mut self,
        wake: Instant,
        last_write: &mut Instant,
        who: &str,
    ) -> anyhow::Result<Option<Utf8Bytes>> {
        let Ok(msg) = tokio::time::timeout_at(wake.into(), self.ws.next()).await else {
            if Instant::now() >= *last_write + self.ping_every {
                ping(&mut self.ws)
                    .await
                    .with_context(|| format!("{who}: send failed"))?;
                *last_write = Instant::now();
            }
            return Ok(None);
        };
        match msg {
            Some(Ok(Message::Text(text))) => Ok(Some(text)),
            Some(Ok(Message::Close(f))) => {
                let reason = close_reason(f);
                bail!(
                    "{who}: the gateway closed the connection ({reason}){}",
                    close_hint(&reason)
                )
            }
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) => bail!("{who}: connection failed: {e}"),
            None => bail!("{who}: the gateway closed the connection"),
        }
    }
}

/// Opens a connection and reads its `welcome`; `who` names it in errors.
pub(crate) async fn connect(plan: &Plan, who: &str) -> anyhow::Result<Conn> {
    connect_from(plan, who, None, READ_BUFFER).await
}

/// [`connect`] from the source address `source` (any port), or from the one
/// the system picks, with a read buffer of `read_buffer` bytes.
pub(crate) async fn connect_from(
    plan: &Plan,
    who: &str,
    source: Option<Ipv4Addr>,
    read_buffer: usize,
) -> anyhow::Result<Conn> {
    let pusher_url;
    let url = match &plan.protocol {
        Protocol::Pusher(app) => {
            pusher_url = format!(
                "{}/app/{}?protocol=7&client=tether-bench&version=1.0",
                plan.url, app.key
            );
            &pusher_url
        }
        _ => &plan.url,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("invalid --url {url}"))?;
    if let Some(token) = &plan.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("--token has characters a header cannot carry"))?;
        request.headers_mut().insert("authorization", value);
    }
    // Small buffers: a subscriber reads ~200-byte frames, and thousands of
    // connections with tungstenite's 128 KiB default would dwarf the gateway.
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let connect = async {
        match (source, plan.target) {
            (Some(ip), Some(target)) => {
                let socket = TcpSocket::new_v4().map_err(|e| anyhow!("cannot create a socket: {e}"))?;
                socket
                    .bind(SocketAddr::new(ip.into(), 0))
                    .map_err(|e| anyhow!("cannot bind to source address {ip}: {e}"))?;
                let tcp = socket.connect(target).await.map_err(|e| anyhow!("from {ip}: {e}"))?;
                tcp.set_nodelay(true)?;
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(tcp), Some(config))
                        .await
                        .map_err(|e| anyhow!("from {ip}: {e}"))?;
                Ok::<Ws, anyhow::Error>(ws)
            }
            _ => Ok(
                tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                    .await?
                    .0,
            ),
        }
    };
    let mut ws = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow!("{who}: no connection to {url} within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| anyhow!("{who}: cannot connect to {url}: {e}"))?;
    if plan.protocol == Protocol::Broadcast {
        // No greeting; a ping every 15 s keeps idle-timeouts away.
        return Ok(Conn {
            ws,
            ping_every: Duration::from_secs(15),
            keepalive: Keepalive::WsPing,
        });
    }
    let text = tokio::time::timeout(CONNECT_TIMEOUT, next_text(&mut ws, who))
        .await
        .map_err(|_| anyhow!("{who}: no greeting from {url} within {CONNECT_TIMEOUT:?}"))??;
    if let Protocol::Pusher(_) = plan.protocol {
        let timeout = pusher_established(&text)
            .ok_or_else(|| anyhow!("{who}: expected pusher:connection_established first, got {text}"))?;
        return Ok(Conn {
            ws,
            // Half the activity timeout, but no less often than the other
            // protocols (every 15 s), so that CPU per ping compares.
            ping_every: (Duration::from_secs(timeout.max(2)) / 2).min(Duration::from_secs(15)),
            keepalive: Keepalive::Pusher,
        });
    }
    let frame = parse(&text).ok_or_else(|| anyhow!("{who}: the first frame is not JSON: {text}"))?;
    if frame.kind != "welcome" {
        bail!("{who}: expected a welcome frame first, got {text}");
    }
    let heartbeat = Duration::from_millis(frame.heartbeat_interval_ms.unwrap_or(30_000).max(200));
    Ok(Conn {
        ws,
        ping_every: heartbeat / 2,
        keepalive: Keepalive::Tether,
    })
}

/// The activity timeout (s) of a `pusher:connection_established` frame
/// (`data` is a JSON string holding `socket_id` and `activity_timeout`), or
/// None when `text` is not one.
fn pusher_established(text: &str) -> Option<u64> {
    let frame: serde_json::Value = serde_json::from_str(text).ok()?;
    if frame.get("event")?.as_str()? != "pusher:connection_established" {
        return None;
    }
    let data: serde_json::Value = match frame.get("data")? {
        serde_json::Value::String(s) => serde_json::from_str(s).ok()?,
        other => other.clone(),
    };
    Some(
        data.get("activity_timeout")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(120),
    )
}

/// The next text frame; a close or a read error is an error naming `who`.
pub(super) async fn next_text(ws: &mut Ws, who: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("{who}: the gateway closed the connection ({})", close_reason(f)),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("{who}: connection failed: {e}"),
            None => bail!("{who}: the gateway closed the connection"),
        }
    }
}

/// `4029 rate limited`, or `no close frame`.
pub(crate) fn close_reason(frame: Option<CloseFrame>) -> String {
    match frame {
        None => "no close frame".into(),
        Some(f) if f.reason.is_empty() => format!("code {}", u16::from(f.code)),
        Some(f) => format!("code {}: {}", u16::from(f.code), f.reason.as_str()),
    }
}

/// A hint for the close codes a benchmark can provoke.
pub(super) fn close_hint(reason: &str) -> &'static str {
    if reason.starts_with("code 4029") {
        "; start the gateway with --rate-limit and --rate-burst above the benchmark's rate"
    } else if reason.starts_with("code 1009") {
        "; --payload-size is over the gateway's --max-message-bytes"
    } else {
        ""
    }
}

/// Sends a WebSocket ping (a control frame: not rate-limited, but it resets
/// the gateway's heartbeat deadline).
pub(crate) async fn ping(ws: &mut Ws) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::Ping(Default::default())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_greeting() {
        let established =
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}"#;
        assert_eq!(pusher_established(established), Some(30));
        assert_eq!(
            pusher_established(r#"{"event":"pusher:error","data":{"code":4001}}"#),
            None
        );
        assert_eq!(pusher_established("not json"), None);
    }

    #[test]
    fn source_addresses_cover_the_connections() {
        let ip = |d| Ipv4Addr::new(127, 0, 0, d);
        let (addrs, target) = source_addresses("ws://127.0.0.1:9/ws", Some(3), 100).expect("three");
        assert_eq!(addrs, [ip(2), ip(3), ip(4)]);
        assert_eq!(target, Some("127.0.0.1:9".parse().expect("addr")));
        // By default one per CONNECTIONS_PER_SOURCE connections.
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", None, 100).expect("one");
        assert_eq!(addrs, [ip(2)]);
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", None, 2 * CONNECTIONS_PER_SOURCE + 1).expect("three");
        assert_eq!(addrs.len(), 3);
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", Some(MAX_SOURCE_ADDRS), 1).expect("all");
        assert_eq!(addrs.last(), Some(&ip(255)));
        // Refused: none, too many, fewer ports than connections, not loopback.
        assert!(source_addresses("ws://127.0.0.1:9/ws", Some(0), 1).is_err());
        assert!(source_addresses("ws://127.0.0.1:9/ws", Some(MAX_SOURCE_ADDRS + 1), 1).is_err());
        let ports = ephemeral_ports() as usize;
        let e = source_addresses("ws://127.0.0.1:9/ws", Some(1), ports + 1).expect_err("ports");
        assert!(e.0.contains("--source-addrs 2 or more"), "{}", e.0);
        assert!(source_addresses("ws://192.0.2.1:9/ws", Some(2), 1).is_err());
        let (addrs, target) = source_addresses("ws://192.0.2.1:9/ws", None, 10).expect("not loopback");
        assert!(addrs.is_empty() && target.is_none());
    }
}
