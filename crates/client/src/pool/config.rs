//! What a [`Pool`] can be told: [`PoolConfig`] with its documented defaults,
//! the [`LoadBalancingStrategy`] names, and validation into [`PoolConfigError`].
//!
//! Not here: reading flags, environment or files (only the binary does that),
//! and what the values mean at run time (see the module docs of `pool`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{ClientConfig, DEFAULT_CONNECTION_TIMEOUT};
use crate::ClientError;

#[cfg(doc)]
use super::Pool;

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

    pub(super) fn priority(&self, i: usize) -> i32 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use LoadBalancingStrategy::{HealthBased, LeastUsed, RoundRobin};

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
}
