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

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Stream};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::config::{ClientConfig, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_SUBSCRIPTION_BUFFER};
use crate::state::{State, Transition};
use crate::{Client, ClientError, SubscriptionItem};

/// Default cap on running endpoints: a handful of gateways behind one service;
/// more connections per process mostly add heartbeat traffic.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Default period of health pings: often enough to notice a slow gateway within
/// seconds, rare enough to be noise next to real traffic.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default capacity of the wait queue: a burst of about a second of traffic at
/// typical rates while a failover happens; beyond it callers should back off
/// rather than pile up memory.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default time a subscription waits for its endpoint to come back before it
/// moves: a reconnect after a 1001 or a quick restart fits in it.
pub const DEFAULT_FAILOVER_GRACE: Duration = Duration::from_secs(2);
/// Default window in which errors lower an endpoint's score.
pub const DEFAULT_ERROR_WINDOW: Duration = Duration::from_secs(60);
/// The priority of `publish`, `command` and `subscribe`: the middle, so that
/// [`Pool::send`] can go ahead of them or behind them.
pub const DEFAULT_REQUEST_PRIORITY: u8 = 128;
/// In-flight requests per endpoint at which the top tier counts as busy and a
/// spare endpoint is started (when `max_connections` allows).
pub const GROW_IN_FLIGHT: usize = 64;
/// The RTT at which the score halves; also the RTT assumed before the first pong.
pub const RTT_SCALE: Duration = Duration::from_millis(50);
/// Weight of the newest ping in the smoothed RTT.
const RTT_WEIGHT: f64 = 0.3;
/// Error timestamps kept per endpoint; the score is ~0 long before this.
const MAX_ERRORS_KEPT: usize = 1024;

/// How the pool picks an endpoint within the highest healthy priority tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancingStrategy {
    /// In turn (`round-robin`). The default.
    #[default]
    RoundRobin,
    /// Fewest requests in flight through this pool (`least-used`).
    LeastUsed,
    /// Best health score (`health-based`).
    HealthBased,
}

impl LoadBalancingStrategy {
    /// The configuration name: `round-robin`, `least-used` or `health-based`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancingStrategy::RoundRobin => "round-robin",
            LoadBalancingStrategy::LeastUsed => "least-used",
            LoadBalancingStrategy::HealthBased => "health-based",
        }
    }
}

impl fmt::Display for LoadBalancingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of `round-robin`, `least-used`, `health-based`:
/// fix the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown load-balancing strategy `{0}` (expected round-robin, least-used or health-based)")]
pub struct ParseStrategyError(pub String);

impl FromStr for LoadBalancingStrategy {
    type Err = ParseStrategyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "round-robin" => Ok(LoadBalancingStrategy::RoundRobin),
            "least-used" => Ok(LoadBalancingStrategy::LeastUsed),
            "health-based" => Ok(LoadBalancingStrategy::HealthBased),
            other => Err(ParseStrategyError(other.to_owned())),
        }
    }
}

/// Everything a [`Pool`] can be told. Defaults from [`PoolConfig::new`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// One endpoint per gateway URL (`ws://host:port/ws`), no duplicates.
    pub urls: Vec<String>,
    /// Endpoints started at once and kept healthy when spares exist (default:
    /// every URL, up to `max_connections`). At least 1, at most the URLs.
    pub min_connections: usize,
    /// Endpoints running at most ([`DEFAULT_MAX_CONNECTIONS`]); URLs beyond it
    /// are spares.
    pub max_connections: usize,
    /// Time for each endpoint to connect (10 s); replaces
    /// `client.connection_timeout`.
    pub connection_timeout: Duration,
    /// Period of health pings, and how long a ping may go unanswered
    /// ([`DEFAULT_HEALTH_CHECK_INTERVAL`]).
    pub health_check_interval: Duration,
    /// How an endpoint is picked (round robin).
    pub load_balancing_strategy: LoadBalancingStrategy,
    /// One priority per URL, higher preferred; `None`: all equal.
    pub priorities: Option<Vec<i32>>,
    /// Requests that may wait for a healthy endpoint ([`DEFAULT_QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
    /// How long a subscription's endpoint may be away before the subscription
    /// moves ([`DEFAULT_FAILOVER_GRACE`]).
    pub failover_grace: Duration,
    /// The window in which errors count against the score
    /// ([`DEFAULT_ERROR_WINDOW`]).
    pub error_window: Duration,
    /// The template of every endpoint's client (backoff, circuit breaker,
    /// heartbeat, token, `request_timeout` — which is also the pool's request
    /// timeout). Its `urls` are replaced by the endpoint's URL; without a
    /// `client_id` the pool picks one for all endpoints. No `offline_path`: the
    /// pool has no offline queue.
    pub client: ClientConfig,
}

impl PoolConfig {
    /// Defaults for `urls`.
    pub fn new(urls: Vec<String>) -> PoolConfig {
        let client = ClientConfig::with_urls(urls.clone());
        PoolConfig {
            min_connections: urls.len().clamp(1, DEFAULT_MAX_CONNECTIONS),
            urls,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
            load_balancing_strategy: LoadBalancingStrategy::default(),
            priorities: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            failover_grace: DEFAULT_FAILOVER_GRACE,
            error_window: DEFAULT_ERROR_WINDOW,
            client,
        }
    }

    /// Checks the values; the first bad one is reported.
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        if self.urls.is_empty() {
            return Err(PoolConfigError::NoUrls);
        }
        if let Some(u) = self
            .urls
            .iter()
            .find(|u| !u.starts_with("ws://") && !u.starts_with("wss://"))
        {
            return Err(PoolConfigError::BadUrl(u.clone()));
        }
        if let Some((_, u)) = self.urls.iter().enumerate().find(|(i, u)| self.urls[..*i].contains(u)) {
            return Err(PoolConfigError::DuplicateUrl(u.clone()));
        }
        if self.min_connections == 0 || self.min_connections > self.max_connections {
            return Err(PoolConfigError::Connections {
                min: self.min_connections,
                max: self.max_connections,
            });
        }
        if self.min_connections > self.urls.len() {
            return Err(PoolConfigError::MinAboveUrls {
                min: self.min_connections,
                urls: self.urls.len(),
            });
        }
        if let Some(p) = &self.priorities {
            if p.len() != self.urls.len() {
                return Err(PoolConfigError::Priorities {
                    priorities: p.len(),
                    urls: self.urls.len(),
                });
            }
        }
        for (name, d) in [
            ("connection_timeout", self.connection_timeout),
            ("health_check_interval", self.health_check_interval),
            ("failover_grace", self.failover_grace),
            ("error_window", self.error_window),
        ] {
            if d.is_zero() {
                return Err(PoolConfigError::ZeroDuration(name));
            }
        }
        if self.queue_capacity == 0 {
            return Err(PoolConfigError::ZeroQueue);
        }
        if self.client.offline_path.is_some() {
            return Err(PoolConfigError::OfflineQueue);
        }
        let mut client = self.client.clone();
        client.urls = self.urls.clone();
        client.connection_timeout = self.connection_timeout;
        client.validate().map_err(PoolConfigError::Client)
    }

    fn priority(&self, i: usize) -> i32 {
        self.priorities.as_ref().map_or(0, |p| p[i])
    }
}

/// A [`PoolConfig`] that cannot work: fix the configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolConfigError {
    /// `urls` is empty.
    #[error("at least one URL is needed")]
    NoUrls,
    /// A URL that is not `ws://` or `wss://`.
    #[error("URL `{0}` must start with ws:// or wss://")]
    BadUrl(String),
    /// A URL listed twice (the pool holds one client per URL).
    #[error("URL `{0}` is listed twice")]
    DuplicateUrl(String),
    /// `min_connections` is 0 or above `max_connections`.
    #[error("need 1 <= min_connections <= max_connections, got min {min}, max {max}")]
    Connections { min: usize, max: usize },
    /// More `min_connections` than URLs.
    #[error("min_connections ({min}) is above the number of URLs ({urls})")]
    MinAboveUrls { min: usize, urls: usize },
    /// `priorities` does not have one entry per URL.
    #[error("{priorities} priorities for {urls} URLs")]
    Priorities { priorities: usize, urls: usize },
    /// A duration that must be above zero.
    #[error("{0} must be above zero")]
    ZeroDuration(&'static str),
    /// `queue_capacity` is 0.
    #[error("queue_capacity must be above zero")]
    ZeroQueue,
    /// The client template names an offline queue, which one file cannot
    /// serve for several clients.
    #[error("the pool has no offline queue: leave client.offline_path empty")]
    OfflineQueue,
    /// The client template is invalid.
    #[error("client template: {0}")]
    Client(ClientError),
}

/// What can go wrong for a request through the pool; each variant says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    /// The wait queue was full and this request was refused, or displaced by
    /// one of higher priority: retry later, with backoff.
    #[error("the pool's wait queue is full ({capacity} requests)")]
    QueueFull { capacity: usize },
    /// No endpoint became healthy within the request timeout: retry later.
    #[error("no healthy endpoint within the request timeout")]
    NoHealthyEndpoint,
    /// The pool is closed: stop using it.
    #[error("the pool is closed")]
    Closed,
    /// The frame is not a JSON object with a string `type`: fix the input.
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// This pool already has a live subscription to the channel (a client
    /// holds one per channel): use it, or drop it first. Programmer error.
    #[error("already subscribed to `{0}` through this pool")]
    AlreadySubscribed(String),
    /// The chosen endpoint's client failed the request (see [`ClientError`]).
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl PoolError {
    /// Whether retrying the same request later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            PoolError::QueueFull { .. } | PoolError::NoHealthyEndpoint => true,
            PoolError::Closed | PoolError::BadFrame(_) | PoolError::AlreadySubscribed(_) => false,
            PoolError::Client(e) => e.retryable(),
        }
    }
}

/// The health score of a healthy endpoint (see the module docs): `rtt` the
/// smoothed ping round trip (`None`: not measured yet, taken as [`RTT_SCALE`]),
/// `errors` the failures in the error window.
pub fn score(rtt: Option<Duration>, errors: usize) -> f64 {
    let rtt = rtt.unwrap_or(RTT_SCALE).as_secs_f64() / RTT_SCALE.as_secs_f64();
    1.0 / ((1.0 + rtt) * (1.0 + errors as f64))
}

/// Whether a failed request says something about the endpoint (rather than
/// about the caller's input or an agent).
fn endpoint_fault(e: &ClientError) -> bool {
    match e {
        ClientError::Timeout | ClientError::Closed(_) => true,
        ClientError::Gateway(b) => matches!(b.code.as_str(), "internal" | "overloaded" | "rate_limited"),
        ClientError::Config(_) | ClientError::Queue(_) => false,
    }
}

// ---- choosing (pure) ----

/// A healthy endpoint as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    index: usize,
    priority: i32,
    in_flight: usize,
    score: f64,
}

/// Picks among healthy candidates (in index order) as the module docs say;
/// `last` is the endpoint chosen last.
fn choose(strategy: LoadBalancingStrategy, healthy: &[Candidate], last: Option<usize>) -> Option<usize> {
    let top = healthy.iter().map(|c| c.priority).max()?;
    let tier = healthy.iter().filter(|c| c.priority == top);
    let best: Vec<usize> = match strategy {
        LoadBalancingStrategy::RoundRobin => tier.map(|c| c.index).collect(),
        LoadBalancingStrategy::LeastUsed => {
            let least = tier.clone().map(|c| c.in_flight).min()?;
            tier.filter(|c| c.in_flight == least).map(|c| c.index).collect()
        }
        LoadBalancingStrategy::HealthBased => {
            let best = tier.clone().map(|c| c.score).fold(f64::MIN, f64::max);
            tier.filter(|c| c.score >= best).map(|c| c.index).collect()
        }
    };
    best.iter()
        .copied()
        .find(|i| last.is_some_and(|l| *i > l))
        .or_else(|| best.first().copied())
}

// ---- the wait queue (pure) ----

/// Position in the wait queue: higher priority first, then arrival order.
type Key = (Reverse<u8>, u64);

/// The bounded priority queue of waiting requests (see the module docs).
struct WaitQueue<T> {
    capacity: usize,
    next: u64,
    items: BTreeMap<Key, T>,
}

impl<T> WaitQueue<T> {
    fn new(capacity: usize) -> WaitQueue<T> {
        WaitQueue {
            capacity,
            next: 0,
            items: BTreeMap::new(),
        }
    }

    /// Queues `item`; on overflow either returns it (refused) or queues it and
    /// hands back the displaced one.
    fn push(&mut self, priority: u8, item: T) -> Result<(Key, Option<T>), T> {
        let mut displaced = None;
        if self.items.len() >= self.capacity {
            let lowest = *self.items.keys().next_back().expect("full queue has items");
            if priority <= lowest.0 .0 {
                return Err(item);
            }
            displaced = self.items.remove(&lowest);
        }
        let key = (Reverse(priority), self.next);
        self.next += 1;
        self.items.insert(key, item);
        Ok((key, displaced))
    }

    fn pop(&mut self) -> Option<T> {
        self.items.pop_first().map(|(_, v)| v)
    }

    fn remove(&mut self, key: &Key) -> Option<T> {
        self.items.remove(key)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

// ---- the pool ----

type Grant = oneshot::Sender<Result<usize, PoolError>>;

/// A pool of connections to several gateways. Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    endpoints: Vec<Endpoint>,
    /// Endpoint indices, highest priority first, then URL order.
    order: Vec<usize>,
    sched: Mutex<Scheduler>,
    /// Something changed (an endpoint's state, the queue): the dispatcher looks.
    wake: Arc<Notify>,
    closed: AtomicBool,
    failovers: AtomicU64,
    rejected: AtomicU64,
    /// Channels with a live [`PoolSubscription`].
    subscribed: Mutex<HashSet<String>>,
}

struct Scheduler {
    queue: WaitQueue<Grant>,
    last: Option<usize>,
}

struct Endpoint {
    url: String,
    priority: i32,
    client: Mutex<Option<Client>>,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    rtt: Option<Duration>,
    errors: VecDeque<Instant>,
}

impl Health {
    fn record_rtt(&mut self, sample: Duration) {
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(old) => old.mul_f64(1.0 - RTT_WEIGHT) + sample.mul_f64(RTT_WEIGHT),
        });
    }

    fn record_error(&mut self, now: Instant) {
        if self.errors.len() >= MAX_ERRORS_KEPT {
            self.errors.pop_front();
        }
        self.errors.push_back(now);
    }

    fn errors(&mut self, now: Instant, window: Duration) -> usize {
        while self.errors.front().is_some_and(|t| now.duration_since(*t) > window) {
            self.errors.pop_front();
        }
        self.errors.len()
    }
}

impl Endpoint {
    fn client(&self) -> Option<Client> {
        self.client.lock().expect("endpoint lock").clone()
    }

    fn state(&self) -> State {
        self.client().map_or(State::Idle, |c| c.state())
    }

    fn record_error(&self) {
        self.health.lock().expect("health lock").record_error(Instant::now());
    }
}

/// An endpoint reserved for one request: counts as in flight until dropped.
struct Lease<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
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
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn request_timeout(&self) -> Duration {
        self.config.client.request_timeout
    }

    /// The healthy endpoints as candidates.
    fn candidates(&self) -> Vec<Candidate> {
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
    async fn acquire(&self, priority: u8, deadline: Instant) -> Result<Lease<'_>, PoolError> {
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

    fn lease(&self, index: usize) -> Lease<'_> {
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
    fn start_endpoint(self: &Arc<Self>, i: usize) -> Result<(), ClientError> {
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
    async fn request(&self, frame: Value, priority: u8) -> Result<Value, PoolError> {
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

fn check_frame(frame: &Value) -> Result<(), PoolError> {
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

/// Pings endpoint `i` every `interval` while it is connected and records the
/// round trip, or an error when no pong comes within `interval`.
async fn health_checks(pool: Weak<Inner>, i: usize, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let client = {
            let Some(inner) = pool.upgrade() else { return };
            if inner.is_closed() {
                return;
            }
            match inner.endpoints[i].client() {
                Some(c) if c.is_online() => c,
                _ => continue,
            }
        };
        let sent = Instant::now();
        let reply = tokio::time::timeout(interval, client.send_request(json!({"type": "ping"}))).await;
        let rtt = sent.elapsed();
        drop(client);
        let Some(inner) = pool.upgrade() else { return };
        let endpoint = &inner.endpoints[i];
        match reply {
            Ok(Ok(_)) => endpoint.health.lock().expect("health lock").record_rtt(rtt),
            Ok(Err(e)) if !endpoint_fault(&e) => {}
            _ => endpoint.record_error(),
        }
    }
}

/// Releases waiting requests and starts spares whenever something changes
/// (and at least every `interval`).
async fn dispatch(pool: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
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

/// The reply of one endpoint to [`Pool::broadcast`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointReply {
    /// The endpoint's URL.
    pub url: String,
    /// Its reply frame, or why there is none.
    pub result: Result<Value, ClientError>,
}

/// A snapshot of the pool ([`Pool::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolMetrics {
    /// Endpoints started and not closed.
    pub total_connections: usize,
    /// Endpoints connected now.
    pub healthy_connections: usize,
    /// Requests waiting for a healthy endpoint.
    pub queued: usize,
    /// Requests refused or displaced because the queue was full, ever.
    pub rejected: u64,
    /// Subscription moves from one endpoint to another, ever.
    pub failovers: u64,
    /// One entry per URL, in URL order.
    pub endpoints: Vec<EndpointMetrics>,
}

/// One endpoint in [`PoolMetrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointMetrics {
    /// The endpoint's URL.
    pub url: String,
    /// Its priority (higher preferred).
    pub priority: i32,
    /// The client's state name (`idle` when not started).
    pub state: &'static str,
    /// Connected, so it may be chosen.
    pub healthy: bool,
    /// The health score; 0 when unhealthy.
    pub score: f64,
    /// The smoothed ping round trip, once measured.
    pub rtt: Option<Duration>,
    /// Errors in the error window.
    pub errors: usize,
    /// Requests in flight through the pool.
    pub in_flight: usize,
    /// Requests sent to it, ever.
    pub requests: u64,
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

fn render_metrics(m: &PoolMetrics) -> String {
    use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
    let registry = Registry::new();
    let int_gauge = |name: &str, help: &str, v: usize| {
        let g = IntGauge::new(name, help).expect("valid metric");
        g.set(v as i64);
        registry.register(Box::new(g)).expect("unique metric");
    };
    let counter = |name: &str, help: &str, v: u64| {
        let c = IntCounter::new(name, help).expect("valid metric");
        c.inc_by(v);
        registry.register(Box::new(c)).expect("unique metric");
    };
    let gauges = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry.register(Box::new(g.clone())).expect("unique metric");
        g
    };
    int_gauge(
        "tether_pool_connections",
        "Endpoints started and not closed",
        m.total_connections,
    );
    int_gauge(
        "tether_pool_healthy_connections",
        "Endpoints connected now",
        m.healthy_connections,
    );
    int_gauge(
        "tether_pool_queued_requests",
        "Requests waiting for a healthy endpoint",
        m.queued,
    );
    counter(
        "tether_pool_rejected_total",
        "Requests refused or displaced by a full queue",
        m.rejected,
    );
    counter(
        "tether_pool_failovers_total",
        "Subscription moves between endpoints",
        m.failovers,
    );
    let healthy = gauges(
        "tether_pool_endpoint_healthy",
        "1 while the endpoint may be chosen",
        &["url"],
    );
    let score = gauges(
        "tether_pool_endpoint_score",
        "Health score (0 when unhealthy)",
        &["url"],
    );
    let rtt = gauges("tether_pool_endpoint_rtt_seconds", "Smoothed ping round trip", &["url"]);
    let errors = gauges("tether_pool_endpoint_errors", "Errors in the error window", &["url"]);
    let in_flight = gauges("tether_pool_endpoint_in_flight", "Requests in flight", &["url"]);
    let state = gauges(
        "tether_pool_endpoint_state",
        "1 for the endpoint's current state",
        &["url", "state"],
    );
    let requests = IntCounterVec::new(
        Opts::new("tether_pool_endpoint_requests_total", "Requests sent to the endpoint"),
        &["url"],
    )
    .expect("valid metric");
    registry.register(Box::new(requests.clone())).expect("unique metric");
    for e in &m.endpoints {
        let url = [e.url.as_str()];
        healthy.with_label_values(&url).set(f64::from(u8::from(e.healthy)));
        score.with_label_values(&url).set(e.score);
        if let Some(r) = e.rtt {
            rtt.with_label_values(&url).set(r.as_secs_f64());
        }
        errors.with_label_values(&url).set(e.errors as f64);
        in_flight.with_label_values(&url).set(e.in_flight as f64);
        state.with_label_values(&[e.url.as_str(), e.state]).set(1.0);
        requests.with_label_values(&url).inc_by(e.requests);
    }
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(buf).expect("exposition is UTF-8")
}

// ---- subscriptions ----

struct SubState {
    endpoint: Mutex<String>,
    failovers: AtomicU64,
}

/// The events of one channel through the pool; moves between endpoints (see
/// the module docs). Ends when the pool is closed or the gateway refuses the
/// channel (an error item).
pub struct PoolSubscription {
    rx: mpsc::Receiver<Result<SubscriptionItem, ClientError>>,
    state: Arc<SubState>,
    #[allow(dead_code)] // held for its Drop
    claim: Claim,
}

/// A channel marked as subscribed in the pool until dropped.
struct Claim {
    pool: Weak<Inner>,
    channel: Option<String>,
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
struct Follower {
    pool: Weak<Inner>,
    channel: String,
    tx: mpsc::Sender<Result<SubscriptionItem, ClientError>>,
    state: Arc<SubState>,
    /// The last event delivered: `(seq, epoch)`.
    last: Option<(u64, String)>,
}

impl Follower {
    async fn run(mut self, index: usize, sub: crate::Subscription, transitions: broadcast::Receiver<Transition>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use LoadBalancingStrategy::{HealthBased, LeastUsed, RoundRobin};

    fn c(index: usize, priority: i32, in_flight: usize, score: f64) -> Candidate {
        Candidate {
            index,
            priority,
            in_flight,
            score,
        }
    }

    #[test]
    fn strategy_names_parse_print_and_serialize() {
        for s in [RoundRobin, LeastUsed, HealthBased] {
            assert_eq!(s.to_string().parse::<LoadBalancingStrategy>(), Ok(s));
            assert_eq!(serde_json::to_value(s).expect("json"), json!(s.as_str()));
            assert_eq!(
                serde_json::from_value::<LoadBalancingStrategy>(json!(s.as_str())).ok(),
                Some(s)
            );
        }
        assert_eq!(
            "fastest".parse::<LoadBalancingStrategy>(),
            Err(ParseStrategyError("fastest".into()))
        );
    }

    #[test]
    fn config_validation_names_the_problem() {
        let urls = || vec!["ws://a/ws".to_owned(), "ws://b/ws".to_owned()];
        assert_eq!(PoolConfig::new(urls()).validate(), Ok(()));
        assert_eq!(PoolConfig::new(urls()).min_connections, 2);
        assert_eq!(PoolConfig::new(vec![]).validate(), Err(PoolConfigError::NoUrls));
        let mut c = PoolConfig::new(vec!["http://a".into()]);
        assert_eq!(c.validate(), Err(PoolConfigError::BadUrl("http://a".into())));
        c = PoolConfig::new(vec!["ws://a/ws".into(), "ws://a/ws".into()]);
        assert_eq!(c.validate(), Err(PoolConfigError::DuplicateUrl("ws://a/ws".into())));
        c = PoolConfig::new(urls());
        c.min_connections = 3;
        c.max_connections = 2;
        assert_eq!(c.validate(), Err(PoolConfigError::Connections { min: 3, max: 2 }));
        c.max_connections = 4;
        assert_eq!(c.validate(), Err(PoolConfigError::MinAboveUrls { min: 3, urls: 2 }));
        c = PoolConfig::new(urls());
        c.priorities = Some(vec![1]);
        assert_eq!(
            c.validate(),
            Err(PoolConfigError::Priorities { priorities: 1, urls: 2 })
        );
        c = PoolConfig::new(urls());
        c.health_check_interval = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(PoolConfigError::ZeroDuration("health_check_interval"))
        );
        c = PoolConfig::new(urls());
        c.queue_capacity = 0;
        assert_eq!(c.validate(), Err(PoolConfigError::ZeroQueue));
        c = PoolConfig::new(urls());
        c.client.offline_path = Some("q.redb".into());
        assert_eq!(c.validate(), Err(PoolConfigError::OfflineQueue));
    }

    #[test]
    fn the_score_falls_with_rtt_and_with_errors() {
        let ms = Duration::from_millis;
        assert_eq!(score(Some(ms(0)), 0), 1.0);
        assert_eq!(score(Some(ms(50)), 0), 0.5);
        assert_eq!(score(None, 0), 0.5, "unmeasured counts as 50 ms");
        assert_eq!(score(Some(ms(0)), 1), 0.5);
        assert_eq!(score(Some(ms(50)), 3), 0.125);
        assert!(score(Some(ms(5)), 0) > score(Some(ms(20)), 0));
        assert!(score(Some(ms(20)), 0) > score(Some(ms(5)), 1));
    }

    #[test]
    fn the_smoothed_rtt_moves_by_a_third_of_the_way() {
        let mut h = Health::default();
        h.record_rtt(Duration::from_millis(10));
        assert_eq!(h.rtt, Some(Duration::from_millis(10)));
        h.record_rtt(Duration::from_millis(110));
        assert_eq!(h.rtt.map(|d| d.as_millis()), Some(40));
        let now = Instant::now();
        h.record_error(now);
        h.record_error(now + Duration::from_secs(10));
        assert_eq!(h.errors(now + Duration::from_secs(11), Duration::from_secs(5)), 1);
    }

    #[test]
    fn round_robin_takes_the_top_tier_in_turn() {
        let all = [c(0, 0, 0, 1.0), c(1, 0, 0, 1.0), c(2, 0, 0, 1.0)];
        let mut last = None;
        let picks: Vec<usize> = (0..5)
            .map(|_| {
                last = choose(RoundRobin, &all, last);
                last.expect("some")
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1]);
        // Endpoint 1 unhealthy (absent): 0 and 2 alternate.
        let two = [c(0, 0, 0, 1.0), c(2, 0, 0, 1.0)];
        assert_eq!(choose(RoundRobin, &two, Some(0)), Some(2));
        assert_eq!(choose(RoundRobin, &two, Some(2)), Some(0));
        assert_eq!(choose(RoundRobin, &[], Some(0)), None);
    }

    #[test]
    fn priority_tiers_come_before_the_strategy() {
        // Endpoint 1 has the higher priority: it wins even when busier and worse.
        let all = [c(0, 0, 0, 1.0), c(1, 5, 9, 0.1)];
        for s in [RoundRobin, LeastUsed, HealthBased] {
            assert_eq!(choose(s, &all, Some(1)), Some(1), "{s}");
        }
        // Without it, the lower tier serves.
        assert_eq!(choose(LeastUsed, &all[..1], Some(1)), Some(0));
    }

    #[test]
    fn least_used_takes_the_fewest_in_flight_then_turns() {
        let all = [c(0, 0, 3, 1.0), c(1, 0, 1, 1.0), c(2, 0, 1, 1.0)];
        assert_eq!(choose(LeastUsed, &all, None), Some(1));
        assert_eq!(choose(LeastUsed, &all, Some(1)), Some(2));
        assert_eq!(choose(LeastUsed, &all, Some(2)), Some(1));
    }

    #[test]
    fn health_based_takes_the_best_score() {
        let all = [c(0, 0, 0, 0.2), c(1, 0, 0, 0.9), c(2, 0, 0, 0.5)];
        assert_eq!(choose(HealthBased, &all, None), Some(1));
        assert_eq!(choose(HealthBased, &all, Some(1)), Some(1));
        let tied = [c(0, 0, 0, 0.5), c(1, 0, 0, 0.5)];
        assert_eq!(choose(HealthBased, &tied, Some(0)), Some(1));
    }

    #[test]
    fn the_queue_releases_higher_priority_first_then_fifo() {
        let mut q = WaitQueue::new(10);
        for (p, v) in [(1, "low"), (9, "high-1"), (5, "mid"), (9, "high-2")] {
            assert!(q.push(p, v).is_ok());
        }
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["high-1", "high-2", "mid", "low"]);
    }

    #[test]
    fn a_full_queue_sheds_the_newest_lowest_or_refuses() {
        let mut q = WaitQueue::new(3);
        q.push(5, "a").expect("room");
        let (b, _) = q.push(1, "b").expect("room");
        q.push(1, "c").expect("room");
        // Not above the lowest waiting (1): refused.
        assert_eq!(q.push(1, "d"), Err("d"));
        assert_eq!(q.push(0, "e"), Err("e"));
        // Above it: the newest of the lowest ("c") is displaced.
        let (_, displaced) = q.push(2, "f").expect("displaces");
        assert_eq!(displaced, Some("c"));
        assert_eq!(q.len(), 3);
        assert_eq!(q.remove(&b), Some("b"));
        let order: Vec<&str> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["a", "f"]);
    }
}
