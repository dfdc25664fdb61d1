//! A connection pool over several gateways: one [`Client`] per URL (each with
//! its own reconnect backoff and circuit breaker), a health score per endpoint,
//! a load-balancing choice per request, a bounded priority queue for requests
//! that find no healthy endpoint, and subscriptions that move off a failed
//! endpoint.
//!
//! Not here: connecting, heartbeats, resending and circuit breaking (each
//! endpoint's [`Client`] does that; the pool only reads its state), and history
//! shared between gateways (that is the gateways' store).
//!
//! # The rules
//!
//! **Health.** An endpoint is *healthy* only while its client is `Connected`.
//! One that is not started, connecting, reconnecting, behind an open circuit
//! breaker (`CircuitOpen`) or closed is unhealthy and never chosen. A healthy
//! endpoint's score (see [`score`]) is
//!
//! ```text
//! score = 1 / ((1 + rtt / 50 ms) × (1 + errors))        in (0, 1]
//! ```
//!
//! `rtt` is the smoothed round trip of the pool's health `ping`s (sent through
//! `send_request` every `health_check_interval` to each connected endpoint; an
//! exponential moving average giving the newest sample weight 0.3; taken as
//! 50 ms until the first `pong`). `errors` counts the endpoint's failures in the
//! last `error_window`: pings unanswered within one `health_check_interval`, and
//! requests that failed with `Timeout`, `Closed` or the gateway error
//! `internal`, `overloaded` or `rate_limited` — not the caller's own mistakes
//! such as `bad_request`. So the score halves at 50 ms of RTT, and each recent
//! error divides it further.
//!
//! **Choice.** Of the healthy endpoints, only those with the highest priority
//! present are considered (the highest healthy *tier*): a lower tier gets
//! traffic only while every endpoint above it is unhealthy. Within the tier,
//! [`LoadBalancingStrategy::RoundRobin`] takes them in turn,
//! [`LoadBalancingStrategy::LeastUsed`] the one with the fewest requests in
//! flight through this pool (health pings not counted),
//! [`LoadBalancingStrategy::HealthBased`] the one with the best score. Ties
//! (and round robin) go to the first endpoint after the one chosen last, in URL
//! order, wrapping around.
//!
//! **Queue.** When no endpoint is healthy, a request waits in the pool's queue
//! (capacity `queue_capacity`, [`DEFAULT_QUEUE_CAPACITY`]) until one is, or
//! until the request timeout (`client.request_timeout`, counted from the call)
//! ends it with [`PoolError::NoHealthyEndpoint`]. Waiting requests are released
//! higher priority first, first-in first-out within a priority; while any wait,
//! new requests queue behind them. Overflow policy, *shed lowest*: when the
//! queue is full, a new request of higher priority than the lowest waiting one
//! displaces the newest of those (which fails with [`PoolError::QueueFull`]);
//! otherwise the new request fails with [`PoolError::QueueFull`] at once.
//! A request handed to an endpoint stays with that endpoint's client (which
//! resends it, same id, after a reconnect) until answered or timed out: the
//! pool never sends one request to two gateways.
//!
//! **Subscriptions.** [`Pool::subscribe`] follows its channel: when its
//! endpoint leaves `Connected` and has not come back within `failover_grace`,
//! or closes, the pool subscribes on a healthy endpoint with
//! `subscribe_since(last seq, last epoch)`, yields the gateway's
//! `Recovered(true|false)`, and drops any event at or before the last one
//! delivered. Moving before the first event yields `Recovered(false)` (the
//! position is unknown). A subscription does not move back when its first
//! endpoint recovers. A client holds one subscription per channel, so a pool
//! holds one live [`PoolSubscription`] per channel
//! ([`PoolError::AlreadySubscribed`] until it is dropped).
//!
//! **Connections.** The first `min_connections` endpoints (highest priority
//! first, then URL order) start at once. Another one starts, up to
//! `max_connections` running, whenever fewer than `min_connections` are
//! healthy, a request is waiting, or every healthy endpoint of the top tier has
//! [`GROW_IN_FLIGHT`] requests in flight. Started endpoints stay until
//! [`Pool::close`].

mod choose;
mod config;
mod endpoint;
mod error;
mod health;
mod inner;
mod metrics;
mod queue;
mod subscription;

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::config::DEFAULT_SUBSCRIPTION_BUFFER;
use crate::state::State;
use crate::{Client, ClientError};

pub use config::{
    LoadBalancingStrategy, ParseStrategyError, PoolConfig, PoolConfigError, DEFAULT_ERROR_WINDOW,
    DEFAULT_FAILOVER_GRACE, DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_CAPACITY,
};
pub use error::PoolError;
pub use health::{score, RTT_SCALE};
pub use inner::GROW_IN_FLIGHT;
pub use metrics::{EndpointMetrics, PoolMetrics};
pub use queue::DEFAULT_REQUEST_PRIORITY;
pub use subscription::PoolSubscription;

use endpoint::Endpoint;
use health::{endpoint_fault, Health};
use inner::{check_frame, dispatch, Grant, Inner, Scheduler};
use metrics::render_metrics;
use queue::WaitQueue;
use subscription::{Claim, Follower, SubState};

/// A pool of connections to several gateways. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// The reply of one endpoint to [`Pool::broadcast`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReply {
    /// The endpoint's URL.
    pub url: String,
    /// Its reply frame, or why there is none.
    pub result: Result<Value, ClientError>,
}

impl Pool {
    /// Validates `config` and starts the first `min_connections` endpoints;
    /// they connect in the background. Must be called inside a Tokio runtime.
    pub fn start(config: PoolConfig) -> Result<Pool, ClientError> {
        config.validate().map_err(|e| ClientError::Config(e.to_string()))?;
        let mut config = config;
        if config.client.client_id.is_none() {
            use rand::Rng;
            config.client.client_id = Some(format!("pool-{:016x}", rand::rng().random::<u64>()));
        }
        let endpoints: Vec<Endpoint> = config
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| Endpoint {
                url: url.clone(),
                priority: config.priority(i),
                client: Mutex::new(None),
                in_flight: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                health: Mutex::new(Health::default()),
            })
            .collect();
        let mut order: Vec<usize> = (0..endpoints.len()).collect();
        order.sort_by_key(|&i| Reverse(endpoints[i].priority));
        let inner = Arc::new(Inner {
            sched: Mutex::new(Scheduler {
                queue: WaitQueue::new(config.queue_capacity),
                last: None,
            }),
            endpoints,
            order,
            wake: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            failovers: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            subscribed: Mutex::new(HashSet::new()),
            config,
        });
        for &i in inner.order.iter().take(inner.config.min_connections) {
            if let Err(e) = inner.start_endpoint(i) {
                for e in &inner.endpoints {
                    if let Some(c) = e.client() {
                        tokio::spawn(async move { c.close().await });
                    }
                }
                return Err(e);
            }
        }
        tokio::spawn(dispatch(
            Arc::downgrade(&inner),
            inner.wake.clone(),
            inner.config.health_check_interval,
        ));
        Ok(Pool { inner })
    }

    /// Waits until at least `n` endpoints are healthy, or fails after `timeout`.
    pub async fn wait_ready(&self, n: usize, timeout: Duration) -> Result<(), PoolError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.inner.is_closed() {
                return Err(PoolError::Closed);
            }
            if self.inner.candidates().len() >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PoolError::NoHealthyEndpoint);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes `data` on `channel` through one endpoint; resolves with the
    /// ack's `data` (`{channel, seq, epoch}`) once the event is durable there.
    pub async fn publish(&self, channel: &str, data: Value) -> Result<Value, PoolError> {
        let frame = json!({"type": "publish", "channel": channel, "data": data});
        let reply = self.inner.request(frame, DEFAULT_REQUEST_PRIORITY).await?;
        Ok(reply["data"].clone())
    }

    /// Sends command `command` through one endpoint and resolves with its
    /// `result` frame, as [`Client::command`].
    pub async fn command(&self, command: &str, data: Value) -> Result<Value, PoolError> {
        let frame = json!({"type": command, "data": data});
        self.inner.request(frame, DEFAULT_REQUEST_PRIORITY).await
    }

    /// Sends any request (`ping`, `publish`, a command, …; an `id` is added
    /// when missing) through one endpoint and resolves with the reply frame.
    /// While no endpoint is healthy it waits in the queue at `priority`
    /// (higher first; `publish` and `command` use [`DEFAULT_REQUEST_PRIORITY`]).
    pub async fn send(&self, frame: Value, priority: u8) -> Result<Value, PoolError> {
        self.inner.request(frame, priority).await
    }

    /// Sends `frame` to every connected endpoint at once (an `id` is added per
    /// endpoint when missing); one reply per endpoint, in URL order. Endpoints
    /// that are not connected are skipped; nothing waits in the queue.
    pub async fn broadcast(&self, frame: Value) -> Result<Vec<EndpointReply>, PoolError> {
        check_frame(&frame)?;
        let inner = &self.inner;
        if inner.is_closed() {
            return Err(PoolError::Closed);
        }
        let timeout = inner.request_timeout();
        let sends = inner.endpoints.iter().enumerate().filter_map(|(i, e)| {
            let client = e.client().filter(Client::is_online)?;
            e.in_flight.fetch_add(1, Ordering::Relaxed);
            e.requests.fetch_add(1, Ordering::Relaxed);
            let lease = inner.lease(i);
            let frame = frame.clone();
            Some(async move {
                let result = tokio::time::timeout(timeout, client.send_request(frame))
                    .await
                    .unwrap_or(Err(ClientError::Timeout));
                if matches!(&result, Err(e) if endpoint_fault(e)) {
                    lease.endpoint.record_error();
                }
                EndpointReply {
                    url: lease.endpoint.url.clone(),
                    result,
                }
            })
        });
        Ok(futures_util::future::join_all(sends).await)
    }

    /// Subscribes to `channel` on one endpoint and follows it to another when
    /// that endpoint fails (see the module docs). One live subscription per
    /// channel and pool.
    pub async fn subscribe(&self, channel: &str) -> Result<PoolSubscription, PoolError> {
        let inner = &self.inner;
        if !inner
            .subscribed
            .lock()
            .expect("subscribed lock")
            .insert(channel.to_owned())
        {
            return Err(PoolError::AlreadySubscribed(channel.to_owned()));
        }
        // Gives the channel back unless the subscription is made.
        let claim = Claim {
            pool: Arc::downgrade(inner),
            channel: Some(channel.to_owned()),
        };
        let deadline = Instant::now() + inner.request_timeout();
        let lease = inner.acquire(DEFAULT_REQUEST_PRIORITY, deadline).await?;
        let client = lease.endpoint.client().ok_or(PoolError::Closed)?;
        let transitions = client.transitions();
        let sub = tokio::time::timeout_at(deadline, client.subscribe(channel))
            .await
            .unwrap_or(Err(ClientError::Timeout));
        if matches!(&sub, Err(e) if endpoint_fault(e)) {
            lease.endpoint.record_error();
        }
        let sub = sub?;
        let state = Arc::new(SubState {
            endpoint: Mutex::new(lease.endpoint.url.clone()),
            failovers: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(DEFAULT_SUBSCRIPTION_BUFFER);
        let follower = Follower {
            pool: Arc::downgrade(inner),
            channel: channel.to_owned(),
            tx,
            state: state.clone(),
            last: None,
        };
        tokio::spawn(follower.run(lease.index, sub, transitions));
        Ok(PoolSubscription { rx, state, claim })
    }

    /// A snapshot of the endpoints and the queue.
    pub fn metrics(&self) -> PoolMetrics {
        let inner = &self.inner;
        let now = Instant::now();
        let endpoints: Vec<EndpointMetrics> = inner
            .endpoints
            .iter()
            .map(|e| {
                let state = e.state();
                let healthy = matches!(state, State::Connected { .. });
                let mut h = e.health.lock().expect("health lock");
                let errors = h.errors(now, inner.config.error_window);
                EndpointMetrics {
                    url: e.url.clone(),
                    priority: e.priority,
                    state: state.name(),
                    healthy,
                    score: if healthy { score(h.rtt, errors) } else { 0.0 },
                    rtt: h.rtt,
                    errors,
                    in_flight: e.in_flight.load(Ordering::Relaxed),
                    requests: e.requests.load(Ordering::Relaxed),
                }
            })
            .collect();
        PoolMetrics {
            total_connections: endpoints
                .iter()
                .filter(|e| !matches!(e.state, "idle" | "closed"))
                .count(),
            healthy_connections: endpoints.iter().filter(|e| e.healthy).count(),
            queued: inner.sched.lock().expect("scheduler lock").queue.len(),
            rejected: inner.rejected.load(Ordering::Relaxed),
            failovers: inner.failovers.load(Ordering::Relaxed),
            endpoints,
        }
    }

    /// [`Pool::metrics`] as Prometheus text (format 0.0.4).
    pub fn metrics_text(&self) -> String {
        render_metrics(&self.metrics())
    }

    /// Fails waiting requests, stops following subscriptions, and closes every
    /// endpoint's client (each waits up to 5 s for its driver).
    pub async fn close(&self) {
        let inner = &self.inner;
        let waiting: Vec<Grant> = {
            let mut sched = inner.sched.lock().expect("scheduler lock");
            inner.closed.store(true, Ordering::Release);
            std::iter::from_fn(|| sched.queue.pop()).collect()
        };
        for grant in waiting {
            let _ = grant.send(Err(PoolError::Closed));
        }
        inner.wake.notify_one();
        let clients: Vec<Client> = inner.endpoints.iter().filter_map(Endpoint::client).collect();
        futures_util::future::join_all(clients.iter().map(Client::close)).await;
    }
}
