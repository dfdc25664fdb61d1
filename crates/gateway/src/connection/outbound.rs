//! The bounded outbound queue of one connection and the handle that every other
//! part of the gateway uses to reach it.
//!
//! **Invariant:** nothing ever waits on a connection's queue. `send` either
//! queues the frame or, when the queue is full, marks the connection a slow
//! consumer (close 1013) and drops the frame: one stuck reader can never slow a
//! publisher or another subscriber.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tether_protocol::CloseCode;
use tokio::sync::{mpsc, Notify};

use crate::metrics::{Metrics, Sent};

/// One item of the outbound queue.
pub enum Outbound {
    /// A frame, ready for the wire (event frames are shared, not copied).
    Frame(Utf8Bytes),
    /// Recovered history to stream from the store, in order, before anything
    /// queued after it. Kept as one item so that a long replay costs one slot,
    /// not one per event. Boxed: replays are rare, and a small item keeps the
    /// queue's preallocated slots (a block of 32 per connection) small.
    Replay(Box<Replay>),
}

/// The events `after < seq <= upto` of `channel` (none older than
/// `not_before_ms`), promised to the client by a `recovered: true` ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub channel: String,
    pub after: u64,
    pub upto: u64,
    pub not_before_ms: u64,
}

/// What became of a frame handed to [`ConnHandle::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// Queued for the socket.
    Sent,
    /// The queue was full: the connection is being closed with 1013.
    Slow,
    /// The connection is closing or gone.
    Closed,
}

/// A cheap, clonable handle to one connection's outbound side.
#[derive(Clone)]
pub struct ConnHandle {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    session: String,
    tx: mpsc::Sender<Outbound>,
    /// The close code asked for; 0 while open. The first request wins.
    close_code: AtomicU16,
    close_requested: Notify,
    metrics: Arc<Metrics>,
}

impl ConnHandle {
    /// A handle and the receiving end that the connection's writer drains.
    pub fn new(
        id: u64,
        session: String,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (ConnHandle, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let inner = Inner {
            id,
            session,
            tx,
            close_code: AtomicU16::new(0),
            close_requested: Notify::new(),
            metrics,
        };
        (ConnHandle { inner: Arc::new(inner) }, rx)
    }

    /// The process-unique connection number.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The connection's session id (as in `welcome`).
    pub fn session(&self) -> &str {
        &self.inner.session
    }

    /// Queues one frame without waiting.
    pub fn send(&self, kind: Sent, frame: impl Into<Utf8Bytes>) -> Enqueue {
        let e = self.enqueue(Outbound::Frame(frame.into()));
        if e == Enqueue::Sent {
            self.inner.metrics.sent(kind, 1);
        }
        e
    }

    /// Queues one shared event frame without counting it: the fan-out counts a
    /// whole delivery round with one `inc_by` instead of one shared atomic
    /// increment per subscriber.
    pub fn send_event_uncounted(&self, frame: Utf8Bytes) -> Enqueue {
        self.enqueue(Outbound::Frame(frame))
    }

    /// Queues a replay of stored history without waiting (one slot).
    pub fn replay(&self, replay: Replay) -> Enqueue {
        self.enqueue(Outbound::Replay(Box::new(replay)))
    }

    fn enqueue(&self, item: Outbound) -> Enqueue {
        if self.close_code().is_some() {
            return Enqueue::Closed;
        }
        match self.inner.tx.try_send(item) {
            Ok(()) => Enqueue::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(CloseCode::TryAgainLater) {
                    self.inner.metrics.slow_consumer_closes.inc();
                    tracing::warn!(session = %self.inner.session, "slow consumer: outbound queue full, closing with 1013");
                }
                Enqueue::Slow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Enqueue::Closed,
        }
    }

    /// Asks the connection to close with `code`. Returns whether this call was
    /// the first to ask.
    pub fn close(&self, code: CloseCode) -> bool {
        let first = self
            .inner
            .close_code
            .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            // Both the reader and the writer wait on this; wake every waiter
            // (`close_requested` re-checks the code, so none is lost).
            self.inner.close_requested.notify_waiters();
        }
        first
    }

    /// The close code asked for, if any.
    pub fn close_code(&self) -> Option<CloseCode> {
        CloseCode::from_code(self.inner.close_code.load(Ordering::Acquire))
    }

    /// Resolves once a close has been asked for.
    pub async fn close_requested(&self) -> CloseCode {
        loop {
            let notified = self.inner.close_requested.notified();
            if let Some(code) = self.close_code() {
                return code;
            }
            notified.await;
        }
    }
}
