//! The state shared by every handle of a [`Pool`](super::Pool) and the
//! dispatcher that works on it: reserving an endpoint for a request at once or
//! after a wait in the queue, releasing waiting requests when an endpoint
//! becomes healthy, starting spare endpoints, and sending one request.
//!
//! Not here: the choice itself (`choose`), the queue's order and shedding
//! (`queue`), scores (`health`) and subscriptions (`subscription`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, oneshot, Notify};
use tokio::time::Instant;

use crate::state::{State, Transition};
use crate::{Client, ClientError};

use super::choose::{choose, Candidate};
use super::config::PoolConfig;
use super::endpoint::{Endpoint, Lease};
use super::error::PoolError;
use super::health::{endpoint_fault, health_checks, score};
use super::queue::{Key, WaitQueue};
#[cfg(doc)]
use super::subscription::PoolSubscription;

/// In-flight requests per endpoint at which the top tier counts as busy and a
/// spare endpoint is started (when `max_connections` allows).
pub const GROW_IN_FLIGHT: usize = 64;

pub(super) type Grant = oneshot::Sender<Result<usize, PoolError>>;

pub(super) struct Inner {
    pub(super) config: PoolConfig,
    pub(super) endpoints: Vec<Endpoint>,
    /// Endpoint indices, highest priority first, then URL order.
    pub(super) order: Vec<usize>,
    pub(super) sched: Mutex<Scheduler>,
    /// Something changed (an endpoint's state, the queue): the dispatcher looks.
    pub(super) wake: Arc<Notify>,
    pub(super) closed: AtomicBool,
    pub(super) failovers: AtomicU64,
    pub(super) rejected: AtomicU64,
    /// Channels with a live [`PoolSubscription`].
    pub(super) subscribed: Mutex<HashSet<String>>,
}

pub(super) struct Scheduler {
    pub(super) queue: WaitQueue<Grant>,
    pub(super) last: Option<usize>,
}

/// A place in the wait queue; leaving it (timeout, cancellation) gives the
/// place, or an endpoint granted meanwhile, back.
struct Waiting<'a> {
    inner: &'a Inner,
    key: Key,
    rx: oneshot::Receiver<Result<usize, PoolError>>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let removed = self.inner.sched.lock().expect("scheduler lock").queue.remove(&self.key);
        if removed.is_none() {
            if let Ok(Ok(i)) = self.rx.try_recv() {
                self.inner.endpoints[i].in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl Inner {
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn request_timeout(&self) -> Duration {
        self.config.client.request_timeout
    }

    /// The healthy endpoints as candidates.
    pub(super) fn candidates(&self) -> Vec<Candidate> {
        let now = Instant::now();
        self.endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.state(), State::Connected { .. }))
            .map(|(index, e)| {
                let mut h = e.health.lock().expect("health lock");
                let errors = h.errors(now, self.config.error_window);
                Candidate {
                    index,
                    priority: e.priority,
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    score: score(h.rtt, errors),
                }
            })
            .collect()
    }

    /// Chooses an endpoint and counts a request in flight on it.
    fn reserve(&self, sched: &mut Scheduler) -> Option<usize> {
        let healthy = self.candidates();
        let i = choose(self.config.load_balancing_strategy, &healthy, sched.last)?;
        sched.last = Some(i);
        self.endpoints[i].in_flight.fetch_add(1, Ordering::Relaxed);
        let top = healthy.iter().map(|c| c.priority).max();
        if healthy
            .iter()
            .filter(|c| Some(c.priority) == top)
            .all(|c| c.in_flight + usize::from(c.index == i) >= GROW_IN_FLIGHT)
        {
            self.wake.notify_one();
        }
        Some(i)
    }

    /// An endpoint for one request: at once, or after waiting in the queue.
    pub(super) async fn acquire(&self, priority: u8, deadline: Instant) -> Result<Lease<'_>, PoolError> {
        let (key, rx) = {
            let mut sched = self.sched.lock().expect("scheduler lock");
            if self.is_closed() {
                return Err(PoolError::Closed);
            }
            if sched.queue.is_empty() {
                if let Some(index) = self.reserve(&mut sched) {
                    return Ok(self.lease(index));
                }
            }
            let (tx, rx) = oneshot::channel();
            match sched.queue.push(priority, tx) {
                Ok((key, displaced)) => {
                    if let Some(d) = displaced {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        let _ = d.send(Err(self.queue_full()));
                    }
                    (key, rx)
                }
                Err(_) => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(self.queue_full());
                }
            }
        };
        self.wake.notify_one();
        let mut waiting = Waiting {
            inner: self,
            key,
            rx,
            done: false,
        };
        match tokio::time::timeout_at(deadline, &mut waiting.rx).await {
            Ok(granted) => {
                waiting.done = true;
                let index = granted.map_err(|_| PoolError::Closed)??;
                Ok(self.lease(index))
            }
            Err(_) => Err(PoolError::NoHealthyEndpoint),
        }
    }

    pub(super) fn lease(&self, index: usize) -> Lease<'_> {
        Lease {
            endpoint: &self.endpoints[index],
            index,
        }
    }

    fn queue_full(&self) -> PoolError {
        PoolError::QueueFull {
            capacity: self.config.queue_capacity,
        }
    }

    /// Releases waiting requests, in queue order, while an endpoint is healthy.
    fn drain(&self) {
        let mut sched = self.sched.lock().expect("scheduler lock");
        while !sched.queue.is_empty() {
            let Some(i) = self.reserve(&mut sched) else { break };
            let grant = sched.queue.pop().expect("not empty");
            if grant.send(Ok(i)).is_err() {
                self.endpoints[i].in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts a spare endpoint when the pool needs one (see the module docs).
    fn grow(self: &Arc<Self>) {
        let running = self
            .endpoints
            .iter()
            .filter(|e| e.client().is_some_and(|c| !matches!(c.state(), State::Closed { .. })))
            .count();
        if running >= self.config.max_connections {
            return;
        }
        let healthy = self.candidates();
        let top = healthy.iter().map(|c| c.priority).max();
        let busy = !healthy.is_empty()
            && healthy
                .iter()
                .filter(|c| Some(c.priority) == top)
                .all(|c| c.in_flight >= GROW_IN_FLIGHT);
        let waiting = !self.sched.lock().expect("scheduler lock").queue.is_empty();
        if healthy.len() < self.config.min_connections || waiting || busy {
            if let Some(&i) = self.order.iter().find(|&&i| self.endpoints[i].client().is_none()) {
                if let Err(e) = self.start_endpoint(i) {
                    tracing::warn!(url = %self.endpoints[i].url, error = %e, "cannot start a pool endpoint");
                }
            }
        }
    }

    /// Starts endpoint `i`'s client, its state watcher and its health pings.
    pub(super) fn start_endpoint(self: &Arc<Self>, i: usize) -> Result<(), ClientError> {
        let endpoint = &self.endpoints[i];
        let mut slot = endpoint.client.lock().expect("endpoint lock");
        if slot.is_some() {
            return Ok(());
        }
        let mut config = self.config.client.clone();
        config.urls = vec![endpoint.url.clone()];
        config.connection_timeout = self.config.connection_timeout;
        let client = Client::start(config)?;
        tokio::spawn(watch_states(client.transitions(), self.wake.clone()));
        tokio::spawn(health_checks(
            Arc::downgrade(self),
            i,
            self.config.health_check_interval,
        ));
        *slot = Some(client);
        Ok(())
    }

    /// Sends one request through the pool.
    pub(super) async fn request(&self, frame: Value, priority: u8) -> Result<Value, PoolError> {
        check_frame(&frame)?;
        let deadline = Instant::now() + self.request_timeout();
        let lease = self.acquire(priority, deadline).await?;
        let endpoint = lease.endpoint;
        let client = endpoint.client().ok_or(PoolError::Closed)?;
        endpoint.requests.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout_at(deadline, client.send_request(frame))
            .await
            .unwrap_or(Err(ClientError::Timeout));
        if let Err(e) = &result {
            if endpoint_fault(e) {
                endpoint.record_error();
            }
        }
        drop(lease);
        Ok(result?)
    }
}

pub(super) fn check_frame(frame: &Value) -> Result<(), PoolError> {
    if frame.is_object() && frame["type"].is_string() {
        Ok(())
    } else {
        Err(PoolError::BadFrame(
            "a JSON object with a string `type` is needed".into(),
        ))
    }
}

/// Wakes the dispatcher on every state change of one client; ends with it.
async fn watch_states(mut transitions: broadcast::Receiver<Transition>, wake: Arc<Notify>) {
    loop {
        match transitions.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Releases waiting requests and starts spares whenever something changes
/// (and at least every `interval`).
pub(super) async fn dispatch(pool: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = pool.upgrade() else { return };
        if inner.is_closed() {
            return;
        }
        inner.grow();
        inner.drain();
    }
}
