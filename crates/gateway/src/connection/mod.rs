//! One WebSocket connection, served by one task: frames in (heartbeat deadline,
//! size limit, handlers) and the bounded outbound queue out, then the close.
//!
//! One task, not a reader and a writer: a second task and the lock that
//! splitting the socket needs cost ~1 KiB per idle connection. The task reads
//! only between handlers (a handler runs to its end before the next frame is
//! read), but writes all the time, handlers included. So a close asked for
//! while a handler waits (for room in the ledger's queue, when the store
//! stalls) goes out once that handler returns; meanwhile nothing more is
//! taken from the queue.
//!
//! **Invariant:** a close code asked for anywhere (slow consumer, heartbeat,
//! rate, shutdown) goes out as the last frame, once: once one is asked for,
//! nothing more is taken from the queue until the close, which sends what is
//! queued (except after 1013) and then the close frame.

pub mod outbound;
pub mod ratelimit;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::future::Either;
use futures_util::{SinkExt, StreamExt};
use tether_protocol::server::Welcome;
use tether_protocol::{CloseCode, PROTOCOL_VERSION};
use tokio::time::Instant;

use crate::auth::{AuthError, Identity};
use crate::clock::{now_ms, random_id};
use crate::handlers::Session;
use crate::metrics::Sent;
use crate::state::{Gateway, IpSlot};
use crate::store::StoredEvent;
use outbound::{ConnHandle, Outbound, OutboundRx, Replay};

/// How long the close tries to deliver what is queued and the close frame to a
/// peer that is not reading before it drops the TCP connection.
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
/// the connection. So the setup (identity, queue, `welcome`) runs here, at
/// once, and the future returned holds only what the connection needs.
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
    let live = Live::new(gw.clone(), slot);
    tracing::info!(session = %session, peer = %peer.addr, principal = %principal, "connection open");

    let welcome = Welcome {
        session,
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
    // Boxed: an async fn's arguments are kept twice in its state (as
    // arguments and as the locals they are moved into).
    let s = Box::new(Session::new(gw.clone(), conn, identity));
    Either::Right(run(socket, s, rx, gw, live))
}

/// An open connection's bookkeeping that must be undone however its future
/// ends (even dropped unpolled at shutdown): the connections gauge and the
/// per-IP slot.
struct Live {
    gw: Arc<Gateway>,
    _slot: IpSlot,
}

impl Live {
    fn new(gw: Arc<Gateway>, slot: IpSlot) -> Live {
        gw.metrics.connections.inc();
        Live { gw, _slot: slot }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.gw.metrics.connections.dec();
    }
}

/// The connection's life after its setup: serve it while open, end its
/// session, then close it.
///
/// An `async move` block, not an `async fn`: a block uses what it captures in
/// place, where an async fn would keep a second copy of its arguments (the
/// socket is ~370 bytes).
#[allow(clippy::manual_async_fn)] // on purpose, as said above
fn run(
    mut ws: WebSocket,
    mut s: Box<Session>,
    mut rx: OutboundRx,
    gw: Arc<Gateway>,
    live: Live,
) -> impl Future<Output = ()> + Send {
    async move {
        let conn = s.conn().clone();
        let mut out = Writes::default();
        let ended = open(&mut ws, &mut s, &mut rx, &mut out, &gw).await;
        let code = conn.close_code();
        // The session ends (unsubscribe, agent offline) while the close is
        // sent: an agent's cleanup may wait for the ledger, and the close must
        // not wait for it. Boxed: their state would otherwise be reserved in
        // this future for the connection's whole life.
        let closing = async {
            match (ended.then, code) {
                (Then::Close, Some(code)) => close(&mut ws, &mut rx, &mut out, code, &gw, &conn).await,
                (Then::Answer, _) => answer(&mut ws).await,
                _ => {}
            }
        };
        tokio::join!(Box::pin(s.cleanup()), Box::pin(closing));
        drop(rx);
        drop(live);
        let code = code.map(|c| c.code());
        tracing::info!(session = %conn.session(), reason = %ended.reason, close_code = ?code, "connection closed");
    }
}

/// How the open phase of a connection ended.
struct Ended {
    /// For the log.
    reason: String,
    /// What the socket still needs.
    then: Then,
}

/// What is left to send once the open phase ends.
#[derive(Clone, Copy)]
enum Then {
    /// A close was asked for: the queue's rest and a close frame.
    Close,
    /// The peer closed: what was fed, then tungstenite's answer.
    Answer,
    /// Nothing: the peer went, or the socket failed.
    Nothing,
}

impl Ended {
    /// A close was asked for; the socket works.
    fn closing(reason: impl Into<String>) -> Ended {
        Ended {
            reason: reason.into(),
            then: Then::Close,
        }
    }

    /// The peer went, or the socket failed.
    fn gone(reason: impl Into<String>) -> Ended {
        Ended {
            reason: reason.into(),
            then: Then::Nothing,
        }
    }
}

/// Reads frames and runs their handlers, writing the queue all along, until
/// the peer goes or a close is asked for.
async fn open(ws: &mut WebSocket, s: &mut Session, rx: &mut OutboundRx, out: &mut Writes, gw: &Gateway) -> Ended {
    let idle_limit = gw.config.heartbeat_interval + gw.config.heartbeat_timeout;
    let mut deadline = Instant::now() + idle_limit;
    let conn = s.conn().clone();
    loop {
        // One timer for both deadlines (a timer is ~110 bytes of every
        // connection's state). The token's expiry may change (a refresh).
        let expiry = s.expiry();
        let token_first = expiry.is_some_and(|e| e <= deadline);
        let wake = if token_first {
            expiry.unwrap_or(deadline)
        } else {
            deadline
        };
        let msg = tokio::select! {
            biased;
            code = conn.close_requested() => return Ended::closing(format!("closed by the gateway ({})", code.reason())),
            _ = gw.draining.cancelled() => {
                conn.close(CloseCode::GoingAway);
                continue;
            }
            _ = tokio::time::sleep_until(wake) => {
                if token_first {
                    tracing::info!(session = %conn.session(), "token expired; closing with 4001");
                    conn.close(CloseCode::Unauthorized);
                    return Ended::closing("token expired");
                }
                conn.close(CloseCode::HeartbeatTimeout);
                return Ended::closing("heartbeat deadline missed");
            }
            io = poll_fn(|cx| out.poll(cx, ws, rx, gw, &conn, true)) => match io {
                Err(ended) => return ended,
                Ok(msg) => msg,
            },
        };
        deadline = Instant::now() + idle_limit;
        match msg {
            Message::Text(text) => {
                gw.metrics.bytes_received.inc_by(text.len() as u64);
                // Boxed: the handler future is large and idle connections
                // should not carry its space.
                let mut handler = Box::pin(s.on_text(text.as_str()));
                // Keep writing while it runs (a publish may wait for room in
                // the ledger's queue while events for this connection arrive).
                let ended = tokio::select! {
                    biased;
                    () = &mut handler => None,
                    io = poll_fn(|cx| out.poll(cx, ws, rx, gw, &conn, false)) => io.err(),
                };
                if let Some(ended) = ended {
                    // Nobody reads the replies now; the handler's effects
                    // (a publish queued for the ledger, say) still complete.
                    handler.await;
                    return ended;
                }
                // The deadline is about the peer's silence, and time spent in
                // the handler (waiting for room in the ledger's queue) is not.
                deadline = Instant::now() + idle_limit;
            }
            Message::Binary(b) => {
                gw.metrics.bytes_received.inc_by(b.len() as u64);
                s.on_binary();
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => {
                // tungstenite may send nothing after its answer: nothing more
                // is queued (senders see the connection closed, not a slow
                // consumer), and `answer` sends what was fed, then the answer.
                rx.close();
                return Ended {
                    reason: "closed by the peer".into(),
                    then: Then::Answer,
                };
            }
        }
    }
}

/// Sends a close frame with `code`: after what is queued (not for 1013: a slow
/// consumer's backlog is dropped); then lets the peer answer it (for at most
/// [`CLOSE_GRACE`]), discarding its input. All within [`CLOSE_TIMEOUT`].
async fn close(
    ws: &mut WebSocket,
    rx: &mut OutboundRx,
    out: &mut Writes,
    code: CloseCode,
    gw: &Gateway,
    conn: &ConnHandle,
) {
    gw.metrics.close(code.code());
    let frame = Message::Close(Some(CloseFrame {
        code: code.code(),
        reason: code.reason().into(),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if code != CloseCode::TryAgainLater {
            poll_fn(|cx| out.poll_drain(cx, ws, rx, gw, conn)).await?;
        }
        ws.send(frame).await.map_err(|_| WriteStop::Socket)?;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(m)) = ws.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ok::<(), WriteStop>(())
    })
    .await;
}

/// The peer closed: tungstenite answers with the next read or flush, so read
/// (which flushes what was fed, then the answer) until the stream ends,
/// within [`CLOSE_TIMEOUT`] as a close of our own.
async fn answer(ws: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
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

/// A read failed: a frame over the size limit is closed with 1009 (the socket
/// still works); any other error ends the connection.
fn read_error(conn: &ConnHandle, e: axum::Error) -> Ended {
    let inner = e.into_inner();
    if let Some(tungstenite::Error::Capacity(c)) = inner.downcast_ref::<tungstenite::Error>() {
        tracing::warn!(session = %conn.session(), "rejected frame: {c}");
        conn.close(CloseCode::MessageTooBig);
        return Ended::closing(format!("frame too large: {c}"));
    }
    Ended::gone(format!("read error: {inner}"))
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

/// The outbound side's progress between polls.
#[derive(Default)]
struct Writes {
    /// Frames were fed since the last completed flush.
    unflushed: bool,
    /// Bytes fed since the last completed flush (for `bytes_sent`).
    fed: usize,
    /// A replay being streamed.
    replay: Option<Box<Replaying>>,
    /// Whether the next [`Writes::poll`] reads before it writes.
    read_first: bool,
}

/// The next frame read, or how the open phase ended.
fn poll_read(cx: &mut Context<'_>, ws: &mut WebSocket, conn: &ConnHandle) -> Poll<Result<Message, Ended>> {
    match ws.poll_next_unpin(cx) {
        Poll::Ready(None) => Poll::Ready(Err(Ended::gone("peer went away"))),
        Poll::Ready(Some(Err(e))) => Poll::Ready(Err(read_error(conn, e))),
        Poll::Ready(Some(Ok(m))) => Poll::Ready(Ok(m)),
        Poll::Pending => Poll::Pending,
    }
}

/// A replay in progress: `after` advances as events are fed.
struct Replaying {
    replay: Replay,
    /// Events read from the store and not yet fed.
    chunk: VecDeque<StoredEvent>,
}

impl Writes {
    /// Writes what is queued, and with `read` returns the next frame read.
    /// `Err` says how the open phase ended (the socket failed or the peer
    /// went; or a frame was refused, and a close code set). Stops taking from
    /// the queue once a close is asked for (the close sends the rest).
    ///
    /// Reads and writes take turns going first: a long replay to a fast
    /// reader uses up the task's budget of socket operations, and the peer's
    /// frames (its pings among them) must still be read meanwhile.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocket,
        rx: &mut OutboundRx,
        gw: &Gateway,
        conn: &ConnHandle,
        read: bool,
    ) -> Poll<Result<Message, Ended>> {
        let read_now = read && self.read_first;
        self.read_first = !read_now;
        if read_now {
            if let Poll::Ready(r) = poll_read(cx, ws, conn) {
                return Poll::Ready(r);
            }
        }
        let wrote = if conn.close_code().is_some() {
            self.poll_flush(cx, ws, gw)
        } else {
            match self.poll_write(cx, ws, rx, gw, conn) {
                // The gap asked for 1013 (see `poll_replay`): only what was
                // fed goes out.
                Poll::Ready(Err(WriteStop::Gap)) => self.poll_flush(cx, ws, gw),
                other => other,
            }
        };
        if let Poll::Ready(Err(_)) = wrote {
            return Poll::Ready(Err(Ended::gone("write error")));
        }
        if !read || read_now {
            // Either not reading, or the read above is already waiting.
            return Poll::Pending;
        }
        poll_read(cx, ws, conn)
    }

    /// Feeds queued frames (at most [`WRITE_BATCH`] between flushes) and
    /// flushes them. `Pending` when it waits for the socket or for the queue;
    /// `Ready` only with an error.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocket,
        rx: &mut OutboundRx,
        gw: &Gateway,
        conn: &ConnHandle,
    ) -> Poll<Result<(), WriteStop>> {
        loop {
            ready!(self.poll_flush(cx, ws, gw))?;
            for _ in 0..WRITE_BATCH {
                ready!(self.poll_replay(cx, ws, gw, conn))?;
                ready!(ws.poll_ready_unpin(cx))?;
                match rx.poll_recv(cx) {
                    Poll::Ready(item) => self.start(ws, item)?,
                    Poll::Pending if self.unflushed => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }

    /// Like [`Writes::poll_write`] until the queue is empty, then flushed:
    /// for the close.
    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocket,
        rx: &mut OutboundRx,
        gw: &Gateway,
        conn: &ConnHandle,
    ) -> Poll<Result<(), WriteStop>> {
        loop {
            match ready!(self.poll_replay(cx, ws, gw, conn)) {
                // What was queued after the gap is dropped.
                Err(WriteStop::Gap) => return self.poll_flush(cx, ws, gw),
                Err(e) => return Poll::Ready(Err(e)),
                Ok(()) => {}
            }
            ready!(ws.poll_ready_unpin(cx))?;
            match rx.try_recv() {
                Ok(item) => self.start(ws, item)?,
                Err(_) => return self.poll_flush(cx, ws, gw),
            }
        }
    }

    /// Flushes what was fed; `Ready(Ok)` once nothing is waiting.
    fn poll_flush(&mut self, cx: &mut Context<'_>, ws: &mut WebSocket, gw: &Gateway) -> Poll<Result<(), WriteStop>> {
        if self.unflushed {
            ready!(ws.poll_flush_unpin(cx))?;
            gw.metrics.bytes_sent.inc_by(self.fed as u64);
            self.unflushed = false;
            self.fed = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Feeds one queue item (a replay starts streaming).
    fn start(&mut self, ws: &mut WebSocket, item: Outbound) -> Result<(), WriteStop> {
        match item {
            Outbound::Frame(frame) => self.feed(ws, frame),
            Outbound::Replay(replay) => {
                self.replay = Some(Box::new(Replaying {
                    replay: *replay,
                    chunk: VecDeque::new(),
                }));
                Ok(())
            }
        }
    }

    fn feed(&mut self, ws: &mut WebSocket, frame: Utf8Bytes) -> Result<(), WriteStop> {
        self.fed += frame.len();
        self.unflushed = true;
        ws.start_send_unpin(Message::Text(frame))?;
        Ok(())
    }

    /// Streams the replay in progress, if any, from the store; `Ready(Ok)`
    /// once it is all fed. A gap (retention moved on meanwhile, or the store
    /// failed) ends the replay and asks for 1013: `Err(Gap)`.
    fn poll_replay(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocket,
        gw: &Gateway,
        conn: &ConnHandle,
    ) -> Poll<Result<(), WriteStop>> {
        let streamed = self.poll_stream(cx, ws, gw);
        if let Poll::Ready(Err(WriteStop::Gap)) = streamed {
            self.replay = None;
            if conn.close(CloseCode::TryAgainLater) {
                tracing::warn!(session = %conn.session(), "history trimmed during a replay; closing with 1013");
            } else {
                tracing::warn!(session = %conn.session(), "history trimmed during a replay at close; dropping the rest");
            }
        }
        streamed
    }

    /// Feeds the replay's events, read from the store a chunk at a time.
    fn poll_stream(&mut self, cx: &mut Context<'_>, ws: &mut WebSocket, gw: &Gateway) -> Poll<Result<(), WriteStop>> {
        while let Some(Replaying { replay: r, chunk }) = self.replay.as_deref_mut() {
            if chunk.is_empty() {
                if r.after >= r.upto {
                    self.replay = None;
                    break;
                }
                let read = gw
                    .store
                    .read_events(&r.channel, r.after, r.upto, r.not_before_ms, REPLAY_CHUNK)
                    .map_err(|e| {
                        tracing::error!(error = %e, "replay read failed");
                        WriteStop::Gap
                    })?;
                if read.is_empty() {
                    return Poll::Ready(Err(WriteStop::Gap));
                }
                *chunk = read.into();
            }
            ready!(ws.poll_ready_unpin(cx))?;
            let Some(event) = chunk.pop_front() else { continue };
            if event.seq != r.after + 1 {
                return Poll::Ready(Err(WriteStop::Gap));
            }
            r.after = event.seq;
            self.feed(ws, event.frame.into())?;
            gw.metrics.sent(Sent::Event, 1);
            gw.metrics.deliveries.inc();
        }
        Poll::Ready(Ok(()))
    }
}
