//! The bounded outbound queue of one connection and the handle that every other
//! part of the gateway uses to reach it.
//!
//! **Invariant:** nothing ever waits on a connection's queue. `send` either
//! queues the frame or, when the queue is full, marks the connection a slow
//! consumer (close 1013) and drops the frame: one stuck reader can never slow a
//! publisher or another subscriber.
//!
//! The queue is a `VecDeque` behind a mutex that only the connection's task
//! and its senders touch, not a tokio channel: a channel allocates a block of
//! 32 slots when it is made, and most connections are idle, so this one holds
//! memory only for what is queued (and gives a burst's worth back once it is
//! drained).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::extract::ws::Utf8Bytes;
use futures_util::task::AtomicWaker;
use tether_protocol::CloseCode;
use tokio::sync::Notify;

use crate::metrics::{Metrics, Sent};

/// One item of the outbound queue.
pub enum Outbound {
    /// A frame, ready for the wire (event frames are shared, not copied).
    Frame(Utf8Bytes),
    /// Recovered history to stream from the store, in order, before anything
    /// queued after it. Kept as one item so that a long replay costs one slot,
    /// not one per event. Boxed: replays are rare, and a small item keeps the
    /// queue's slots small.
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
    queue: Mutex<Queue>,
    /// Wakes the connection's task when something was queued.
    queued: AtomicWaker,
    /// Most items queued at once; one more is a slow consumer.
    capacity: usize,
    /// The close code asked for; 0 while open. The first request wins.
    close_code: AtomicU16,
    close_requested: Notify,
    metrics: Arc<Metrics>,
}

/// What is queued, and whether the connection still takes it.
struct Queue {
    items: VecDeque<Outbound>,
    receiver_gone: bool,
}

/// Allocated slots an emptied queue keeps; a larger one (after a burst) is freed.
const KEEP_SLOTS: usize = 16;

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // No code panics while holding the lock; if one did, the queue is still consistent.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The connection task's end of its queue. Dropping it makes later sends
/// return [`Enqueue::Closed`] and drops what was queued.
pub struct OutboundRx {
    inner: Arc<Inner>,
}

/// [`OutboundRx::try_recv`] found nothing queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl OutboundRx {
    /// The next item, waiting for one.
    pub async fn recv(&mut self) -> Outbound {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if one is queued; otherwise `cx` is woken when one is.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Outbound> {
        if let Ok(item) = self.try_recv() {
            return Poll::Ready(item);
        }
        self.inner.queued.register(cx.waker());
        // Again: a send between the first look and the registration woke nobody.
        match self.try_recv() {
            Ok(item) => Poll::Ready(item),
            Err(Empty) => Poll::Pending,
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<Outbound, Empty> {
        let mut q = self.inner.queue();
        let item = q.items.pop_front().ok_or(Empty)?;
        if q.items.is_empty() && q.items.capacity() > KEEP_SLOTS {
            q.items = VecDeque::new();
        }
        Ok(item)
    }

    /// Takes nothing more: later sends return [`Enqueue::Closed`] (not a slow
    /// consumer) and what was queued is dropped.
    pub fn close(&mut self) {
        let mut q = self.inner.queue();
        q.receiver_gone = true;
        q.items = VecDeque::new();
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        self.close();
        // A handle that outlives the connection (a command's requester, say)
        // must not keep the finished task alive through its waker.
        drop(self.inner.queued.take());
    }
}

impl ConnHandle {
    /// A handle and the receiving end that the connection's task drains.
    pub fn new(id: u64, session: String, capacity: usize, metrics: Arc<Metrics>) -> (ConnHandle, OutboundRx) {
        let inner = Inner {
            id,
            session,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                receiver_gone: false,
            }),
            queued: AtomicWaker::new(),
            capacity: capacity.max(1),
            close_code: AtomicU16::new(0),
            close_requested: Notify::new(),
            metrics,
        };
        let inner = Arc::new(inner);
        (ConnHandle { inner: inner.clone() }, OutboundRx { inner })
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
        {
            let mut q = self.inner.queue();
            if q.receiver_gone {
                return Enqueue::Closed;
            }
            if q.items.len() < self.inner.capacity {
                q.items.push_back(item);
                drop(q);
                self.inner.queued.wake();
                return Enqueue::Sent;
            }
        }
        if self.close(CloseCode::TryAgainLater) {
            self.inner.metrics.slow_consumer_closes.inc();
            tracing::warn!(session = %self.inner.session, "slow consumer: outbound queue full, closing with 1013");
        }
        Enqueue::Slow
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
            // Wake every waiter (the connection's task; `close_requested`
            // makes its future before it checks the code, so none is lost).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(capacity: usize) -> (ConnHandle, OutboundRx) {
        ConnHandle::new(1, "s".into(), capacity, Arc::new(Metrics::new()))
    }

    fn text(item: Outbound) -> String {
        match item {
            Outbound::Frame(f) => f.as_str().to_owned(),
            Outbound::Replay(r) => format!("replay {}", r.channel),
        }
    }

    #[test]
    fn bounded_in_order_and_a_full_queue_is_a_slow_consumer() {
        let (conn, mut rx) = handle(2);
        assert_eq!(conn.send(Sent::Pong, "a"), Enqueue::Sent);
        assert_eq!(conn.send(Sent::Pong, "b"), Enqueue::Sent);
        assert_eq!(conn.close_code(), None);
        assert_eq!(conn.send(Sent::Pong, "c"), Enqueue::Slow);
        assert_eq!(conn.close_code(), Some(CloseCode::TryAgainLater));
        // Once a close is asked for, nothing more is queued.
        assert_eq!(conn.send(Sent::Pong, "d"), Enqueue::Closed);
        assert_eq!(text(rx.try_recv().expect("a")), "a");
        assert_eq!(text(rx.try_recv().expect("b")), "b");
        assert_eq!(rx.try_recv().err(), Some(Empty));
    }

    #[test]
    fn without_its_task_a_connection_takes_nothing() {
        let (conn, rx) = handle(4);
        drop(rx);
        assert_eq!(conn.send(Sent::Pong, "a"), Enqueue::Closed);
        assert_eq!(conn.close_code(), None, "not a slow consumer");
    }

    #[test]
    fn an_idle_queue_holds_no_memory_and_a_drained_burst_gives_it_back() {
        let (conn, mut rx) = handle(1000);
        assert_eq!(conn.inner.queue().items.capacity(), 0);
        for i in 0..200 {
            conn.send(Sent::Pong, format!("{i}"));
        }
        assert!(conn.inner.queue().items.capacity() >= 200);
        while rx.try_recv().is_ok() {}
        assert_eq!(conn.inner.queue().items.capacity(), 0);
        // A small queue keeps its few slots (no allocation churn in steady traffic).
        conn.send(Sent::Pong, "x");
        let _ = rx.try_recv();
        assert!(conn.inner.queue().items.capacity() <= KEEP_SLOTS);
    }

    #[tokio::test]
    async fn recv_waits_for_a_send_from_another_task() {
        let (conn, mut rx) = handle(4);
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            conn.replay(Replay {
                channel: "c".into(),
                after: 0,
                upto: 1,
                not_before_ms: 0,
            })
        });
        let item = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("woken");
        assert_eq!(text(item), "replay c");
        assert_eq!(sender.await.expect("sender"), Enqueue::Sent);
    }
}
