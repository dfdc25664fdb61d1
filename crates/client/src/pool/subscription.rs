//! Subscriptions through the pool: [`PoolSubscription`], and the task that
//! follows its channel from a failed endpoint to a healthy one with
//! `subscribe_since`, yields `Recovered`, and drops events already delivered.
//!
//! Not here: resubscribing after a reconnect of the same endpoint (its
//! [`Client`](crate::Client) does that) and choosing the next endpoint (the
//! pool's usual choice).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Stream};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::state::{State, Transition};
use crate::{ClientError, SubscriptionItem};

use super::error::PoolError;
use super::health::endpoint_fault;
use super::inner::Inner;
use super::queue::DEFAULT_REQUEST_PRIORITY;

pub(super) struct SubState {
    pub(super) endpoint: Mutex<String>,
    pub(super) failovers: AtomicU64,
}

/// The events of one channel through the pool; moves between endpoints (see
/// the module docs). Ends when the pool is closed or the gateway refuses the
/// channel (an error item).
pub struct PoolSubscription {
    pub(super) rx: mpsc::Receiver<Result<SubscriptionItem, ClientError>>,
    pub(super) state: Arc<SubState>,
    #[allow(dead_code)] // held for its Drop
    pub(super) claim: Claim,
}

/// A channel marked as subscribed in the pool until dropped.
pub(super) struct Claim {
    pub(super) pool: Weak<Inner>,
    pub(super) channel: Option<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let (Some(pool), Some(channel)) = (self.pool.upgrade(), self.channel.take()) {
            pool.subscribed.lock().expect("subscribed lock").remove(&channel);
        }
    }
}

impl PoolSubscription {
    /// The next item (`None` once the pool is closed).
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem, ClientError>> {
        self.rx.recv().await
    }

    /// The URL of the endpoint serving the subscription (the last one while moving).
    pub fn endpoint(&self) -> String {
        self.state.endpoint.lock().expect("subscription lock").clone()
    }

    /// How many times the subscription moved to another endpoint.
    pub fn failovers(&self) -> u64 {
        self.state.failovers.load(Ordering::Relaxed)
    }
}

impl Stream for PoolSubscription {
    type Item = Result<SubscriptionItem, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Why following one endpoint ended.
enum Served {
    /// The endpoint failed: move.
    Move,
    /// The subscriber is gone, the pool closed, or the gateway refused: stop.
    Stop,
}

/// The task behind a [`PoolSubscription`].
pub(super) struct Follower {
    pub(super) pool: Weak<Inner>,
    pub(super) channel: String,
    pub(super) tx: mpsc::Sender<Result<SubscriptionItem, ClientError>>,
    pub(super) state: Arc<SubState>,
    /// The last event delivered: `(seq, epoch)`.
    pub(super) last: Option<(u64, String)>,
}

impl Follower {
    pub(super) async fn run(
        mut self,
        index: usize,
        sub: crate::Subscription,
        transitions: broadcast::Receiver<Transition>,
    ) {
        let mut current = (index, sub, transitions);
        loop {
            let (index, sub, transitions) = current;
            if let Served::Stop = self.serve(index, sub, transitions).await {
                return;
            }
            match self.resubscribe().await {
                Some(next) => {
                    let from = std::mem::replace(
                        &mut *self.state.endpoint.lock().expect("subscription lock"),
                        next.1.clone(),
                    );
                    if from == next.1 {
                        tracing::debug!(channel = %self.channel, endpoint = %from, "subscription renewed");
                    } else {
                        self.state.failovers.fetch_add(1, Ordering::Relaxed);
                        if let Some(inner) = self.pool.upgrade() {
                            inner.failovers.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::info!(channel = %self.channel, from = %from, to = %next.1, "subscription moved");
                    }
                    current = (next.0, next.2, next.3);
                }
                None => return,
            }
        }
    }

    /// Forwards the items of one endpoint's subscription until it fails.
    async fn serve(
        &mut self,
        index: usize,
        mut sub: crate::Subscription,
        mut transitions: broadcast::Receiver<Transition>,
    ) -> Served {
        let Some(state) = self.pool.upgrade().map(|p| p.endpoints[index].state()) else {
            return Served::Stop;
        };
        let mut lost_at = away_since(&state, None);
        if matches!(state, State::Closed { .. }) {
            return self.drain(&mut sub).await;
        }
        loop {
            let grace = self.pool.upgrade().map(|p| p.config.failover_grace);
            let give_up = lost_at.zip(grace).map(|(at, grace)| at + grace);
            tokio::select! {
                item = sub.next() => match item {
                    Some(item) => {
                        if !self.forward(item).await {
                            return Served::Stop;
                        }
                    }
                    None => return Served::Move,
                },
                t = transitions.recv() => {
                    let new = match t {
                        Ok(t) => t.new,
                        Err(broadcast::error::RecvError::Lagged(_)) => match self.pool.upgrade() {
                            Some(p) => p.endpoints[index].state(),
                            None => return Served::Stop,
                        },
                        Err(broadcast::error::RecvError::Closed) => return self.drain(&mut sub).await,
                    };
                    if matches!(new, State::Closed { .. }) {
                        return self.drain(&mut sub).await;
                    }
                    lost_at = away_since(&new, lost_at);
                }
                _ = sleep_until(give_up) => return self.drain(&mut sub).await,
                _ = self.tx.closed() => return Served::Stop,
            }
        }
    }

    /// Forwards what the old subscription already holds, then moves.
    async fn drain(&mut self, sub: &mut crate::Subscription) -> Served {
        while let Some(Some(item)) = sub.next().now_or_never() {
            if !self.forward(item).await {
                return Served::Stop;
            }
        }
        Served::Move
    }

    /// Forwards one item, dropping events already delivered; false: stop.
    async fn forward(&mut self, item: Result<SubscriptionItem, ClientError>) -> bool {
        match item {
            Ok(SubscriptionItem::Event(e)) => {
                if let Some((seq, epoch)) = &self.last {
                    if *epoch == e.epoch && e.seq <= *seq {
                        return true;
                    }
                }
                self.last = Some((e.seq, e.epoch.clone()));
                self.tx.send(Ok(SubscriptionItem::Event(e))).await.is_ok()
            }
            Ok(recovered) => self.tx.send(Ok(recovered)).await.is_ok(),
            Err(e) => {
                let _ = self.tx.send(Err(e)).await;
                false
            }
        }
    }

    /// Subscribes on a healthy endpoint from the last event delivered; `None`:
    /// stop (pool closed, subscriber gone, or the channel refused).
    async fn resubscribe(&mut self) -> Option<(usize, String, crate::Subscription, broadcast::Receiver<Transition>)> {
        loop {
            if self.tx.is_closed() {
                return None;
            }
            let inner = self.pool.upgrade()?;
            if inner.is_closed() {
                return None;
            }
            let deadline = Instant::now() + inner.request_timeout();
            let lease = match inner.acquire(DEFAULT_REQUEST_PRIORITY, deadline).await {
                Ok(lease) => lease,
                Err(PoolError::Closed) => return None,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let client = lease.endpoint.client()?;
            let transitions = client.transitions();
            let sub = match &self.last {
                Some((seq, epoch)) => client.subscribe_since(&self.channel, *seq, Some(epoch.clone())).boxed(),
                None => client.subscribe(&self.channel).boxed(),
            };
            match tokio::time::timeout_at(deadline, sub)
                .await
                .unwrap_or(Err(ClientError::Timeout))
            {
                Ok(sub) => {
                    if self.last.is_none() && self.tx.send(Ok(SubscriptionItem::Recovered(false))).await.is_err() {
                        return None;
                    }
                    return Some((lease.index, lease.endpoint.url.clone(), sub, transitions));
                }
                Err(e) if endpoint_fault(&e) => {
                    lease.endpoint.record_error();
                    drop(lease);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return None;
                }
            }
        }
    }
}

/// When the endpoint went away: `None` while connected, else the earlier time
/// or now.
fn away_since(state: &State, since: Option<Instant>) -> Option<Instant> {
    match state {
        State::Connected { .. } => None,
        _ => Some(since.unwrap_or_else(Instant::now)),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
