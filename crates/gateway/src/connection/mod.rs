//! One WebSocket connection: a reader loop (frames in, heartbeat deadline, size
//! limit) and a writer task (the bounded outbound queue out, close frames).
//!
//! **Invariant:** only the writer touches the socket's sending half, so a close
//! code asked for anywhere (slow consumer, heartbeat, rate, shutdown) goes out as
//! the last frame, once.

pub mod outbound;
pub mod ratelimit;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::future::Either;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tether_protocol::server::Welcome;
use tether_protocol::{CloseCode, PROTOCOL_VERSION};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, Identity};
use crate::clock::{now_ms, random_id};
use crate::handlers::Session;
use crate::metrics::Sent;
use crate::state::{Gateway, IpSlot};
use outbound::{ConnHandle, Outbound, OutboundRx};

/// How long the writer tries to deliver a close frame to a peer that is not
/// reading before it drops the TCP connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reader waits for the peer's answer to a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most queued frames written before one flush.
const WRITE_BATCH: usize = 64;

/// Who is connecting, as the upgrade request said.
pub struct Peer {
    /// What the upgrade request proved.
    pub auth: PeerAuth,
    /// Remote address, for logs.
    pub addr: std::net::SocketAddr,
}

/// The upgrade request's credentials, as checked by the HTTP layer.
pub enum PeerAuth {
    /// Auth off: the `client_id` query parameter, already validated.
    Unchecked { client_id: Option<String> },
    /// A valid token.
    Checked(Identity),
    /// A refused token: the connection is closed with 4001/4003 at once.
    Refused(AuthError),
}

/// Serves one upgraded connection until it closes.
///
/// Not an `async fn`: an async fn keeps its arguments (the socket, the peer)
/// in its future for as long as it runs, and this future lives as long as
/// the connection. So the setup (identity, queue, `welcome`, the writer task)
/// runs here, at once, and the future returned holds only what the reading
/// half needs: ~1.7 KiB less per connection.
pub fn serve(socket: WebSocket, gw: Arc<Gateway>, peer: Peer, slot: IpSlot) -> impl Future<Output = ()> + Send {
    let session = random_id("");
    let identity = match peer.auth {
        PeerAuth::Unchecked { client_id } => Identity::unchecked(client_id.unwrap_or_else(|| session.clone())),
        PeerAuth::Checked(identity) => identity,
        PeerAuth::Refused(e) => return Either::Left(Box::pin(refuse(socket, gw, peer.addr, e, slot))),
    };
    let principal = identity.principal.clone();
    let (conn, rx) = ConnHandle::new(
        gw.next_conn_id(),
        session.clone(),
        gw.config.outbound_queue,
        gw.metrics.clone(),
    );
    let reader_done = CancellationToken::new();
    let live = Live::new(gw.clone(), &reader_done, slot);
    tracing::info!(session = %session, peer = %peer.addr, principal = %principal, "connection open");

    let welcome = Welcome {
        session: session.clone(),
        node: gw.config.node_id.clone(),
        protocol: PROTOCOL_VERSION,
        heartbeat_interval_ms: gw.config.heartbeat_interval.as_millis() as u64,
        heartbeat_timeout_ms: gw.config.heartbeat_timeout.as_millis() as u64,
        max_message_bytes: gw.config.max_message_bytes as u64,
        server_time: now_ms(),
    };
    conn.send(
        Sent::Welcome,
        serde_json::json!({"type": "welcome", "data": welcome}).to_string(),
    );

    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, rx, conn.clone(), gw.clone(), reader_done.clone()));
    // Boxed: an async fn's arguments are kept twice in its state (as
    // arguments and as the locals they are moved into).
    let s = Box::new(Session::new(gw.clone(), conn.clone(), identity));
    Either::Right(read_until_closed(stream, s, gw, conn, writer, reader_done, live))
}

/// An open connection's bookkeeping that must be undone however its future
/// ends (even dropped unpolled at shutdown): the connections gauge, the
/// writer task (it stops once told the reader is done) and the per-IP slot.
struct Live {
    gw: Arc<Gateway>,
    _stop_writer: tokio_util::sync::DropGuard,
    _slot: IpSlot,
}

impl Live {
    fn new(gw: Arc<Gateway>, reader_done: &CancellationToken, slot: IpSlot) -> Live {
        gw.metrics.connections.inc();
        Live {
            gw,
            _stop_writer: reader_done.clone().drop_guard(),
            _slot: slot,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.gw.metrics.connections.dec();
    }
}

/// The connection's life after its setup: read until it ends, clean up, wait
/// for the writer.
async fn read_until_closed(
    stream: SplitStream<WebSocket>,
    mut s: Box<Session>,
    gw: Arc<Gateway>,
    conn: ConnHandle,
    writer: tokio::task::JoinHandle<()>,
    reader_done: CancellationToken,
    live: Live,
) {
    let reason = read_loop(stream, &mut s, &gw).await;
    // Boxed: the cleanup's state would otherwise be reserved in this
    // future for the connection's whole life.
    Box::pin(s.cleanup()).await;
    reader_done.cancel();
    let _ = writer.await;
    drop(live);
    let code = conn.close_code().map(|c| c.code());
    tracing::info!(session = %conn.session(), reason = %reason, close_code = ?code, "connection closed");
}

/// Closes a connection whose token was refused: 4001, or 4003 for a principal
/// that may not connect at all. No `welcome`.
/// `_slot` is held until the close is done, so that refused connections count
/// against the per-IP cap while they last.
async fn refuse(mut socket: WebSocket, gw: Arc<Gateway>, addr: std::net::SocketAddr, e: AuthError, _slot: IpSlot) {
    let code = match e {
        AuthError::Invalid(_) => CloseCode::Unauthorized,
        AuthError::Forbidden(_) => CloseCode::Forbidden,
    };
    tracing::warn!(peer = %addr, reason = %e, code = code.code(), "connection refused for its token");
    gw.metrics.close(code.code());
    let reason = close_reason(&e.to_string());
    let close = Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        socket.send(close).await?;
        // Wait for the peer's close answer (bounded by CLOSE_GRACE).
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), axum::Error>(())
    })
    .await;
}

async fn read_loop(mut stream: SplitStream<WebSocket>, s: &mut Session, gw: &Gateway) -> String {
    let idle_limit = gw.config.heartbeat_interval + gw.config.heartbeat_timeout;
    let mut deadline = Instant::now() + idle_limit;
    let conn = s.conn().clone();
    loop {
        tokio::select! {
            biased;
            code = conn.close_requested() => {
                // Let the peer answer the close frame (bounded), discarding input.
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    while let Some(Ok(m)) = stream.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                return format!("closed by the gateway ({})", code.reason());
            }
            _ = tokio::time::sleep_until(deadline) => {
                conn.close(CloseCode::HeartbeatTimeout);
                return "heartbeat deadline missed".into();
            }
            _ = sleep_until_opt(s.expiry()) => {
                tracing::info!(session = %conn.session(), "token expired; closing with 4001");
                conn.close(CloseCode::Unauthorized);
                return "token expired".into();
            }
            msg = stream.next() => {
                let msg = match msg {
                    None => return "peer went away".into(),
                    Some(Err(e)) => return read_error(&conn, e),
                    Some(Ok(m)) => m,
                };
                deadline = Instant::now() + idle_limit;
                match msg {
                    Message::Text(text) => {
                        gw.metrics.bytes_received.inc_by(text.len() as u64);
                        // Boxed: the handler future is large and idle connections
                        // should not carry its space.
                        Box::pin(s.on_text(text.as_str())).await;
                    }
                    Message::Binary(b) => {
                        gw.metrics.bytes_received.inc_by(b.len() as u64);
                        s.on_binary();
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(_) => {} // the stream ends after the reply
                }
            }
        }
    }
}

/// A close reason that fits a control frame (125 bytes, 2 of them the code).
fn close_reason(reason: &str) -> String {
    const MAX: usize = 123;
    if reason.len() <= MAX {
        return reason.to_owned();
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn read_error(conn: &ConnHandle, e: axum::Error) -> String {
    let inner = e.into_inner();
    if let Some(tungstenite::Error::Capacity(c)) = inner.downcast_ref::<tungstenite::Error>() {
        tracing::warn!(session = %conn.session(), "rejected frame: {c}");
        conn.close(CloseCode::MessageTooBig);
        return format!("frame too large: {c}");
    }
    format!("read error: {inner}")
}

/// Events read from the store per step of a replay.
const REPLAY_CHUNK: usize = 256;

/// Why a write stopped.
enum WriteStop {
    /// The socket failed: the connection is gone.
    Socket,
    /// A promised replay had a gap (retention moved on meanwhile).
    Gap,
}

impl From<axum::Error> for WriteStop {
    fn from(_: axum::Error) -> Self {
        WriteStop::Socket
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: OutboundRx,
    conn: ConnHandle,
    gw: Arc<Gateway>,
    reader_done: CancellationToken,
) {
    let metrics = gw.metrics.clone();
    loop {
        let code = tokio::select! {
            biased;
            code = conn.close_requested() => code,
            _ = gw.draining.cancelled() => {
                conn.close(CloseCode::GoingAway);
                continue;
            }
            _ = reader_done.cancelled() => return,
            item = rx.recv() => {
                // Boxed, like the close below: the write's state exists only
                // while writing, so an idle connection's writer task stays small.
                let write = Box::pin(async {
                    let mut bytes = write_item(&mut sink, item, &gw).await?;
                    for _ in 1..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(item) => bytes += write_item(&mut sink, item, &gw).await?,
                            Err(_) => break,
                        }
                    }
                    sink.flush().await?;
                    Ok::<usize, WriteStop>(bytes)
                });
                tokio::select! {
                    r = write => match r {
                        Ok(bytes) => {
                            metrics.bytes_sent.inc_by(bytes as u64);
                            continue;
                        }
                        Err(WriteStop::Socket) => return,
                        Err(WriteStop::Gap) => {
                            tracing::warn!(session = %conn.session(), "history trimmed during a replay; closing with 1013");
                            conn.close(CloseCode::TryAgainLater);
                            continue;
                        }
                    },
                    code = conn.close_requested() => code,
                    _ = reader_done.cancelled() => return,
                }
            }
        };
        // A slow consumer's backlog is dropped: the close frame goes out next.
        // Any other close first delivers what is queued (e.g. the last
        // `rate_limited` before 4029, or acks before 1001).
        metrics.close(code.code());
        let close = Message::Close(Some(CloseFrame {
            code: code.code(),
            reason: code.reason().into(),
        }));
        let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, async {
            if code != CloseCode::TryAgainLater {
                while let Ok(item) = rx.try_recv() {
                    write_item(&mut sink, item, &gw).await?;
                }
            }
            sink.send(close).await?;
            // Give the peer a moment to answer the close before dropping TCP.
            reader_done.cancelled().await;
            Ok::<(), WriteStop>(())
        }))
        .await;
        return;
    }
}

/// Feeds one queue item to the sink; returns the bytes fed.
async fn write_item(
    sink: &mut SplitSink<WebSocket, Message>,
    item: Outbound,
    gw: &Gateway,
) -> Result<usize, WriteStop> {
    match item {
        Outbound::Frame(frame) => {
            let n = frame.len();
            sink.feed(Message::Text(frame)).await?;
            Ok(n)
        }
        Outbound::Replay(r) => {
            let mut bytes = 0;
            let mut next = r.after + 1;
            while next <= r.upto {
                let chunk = gw
                    .store
                    .read_events(&r.channel, next - 1, r.upto, r.not_before_ms, REPLAY_CHUNK)
                    .map_err(|e| {
                        tracing::error!(error = %e, "replay read failed");
                        WriteStop::Gap
                    })?;
                if chunk.is_empty() {
                    return Err(WriteStop::Gap);
                }
                for e in chunk {
                    if e.seq != next {
                        return Err(WriteStop::Gap);
                    }
                    next += 1;
                    bytes += e.frame.len();
                    sink.feed(Message::Text(e.frame.into())).await?;
                    gw.metrics.sent(Sent::Event, 1);
                    gw.metrics.deliveries.inc();
                }
            }
            Ok(bytes)
        }
    }
}
