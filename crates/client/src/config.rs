//! Client configuration: a plain struct with documented defaults, named as users
//! know them from the browser provider (`url`/`urls`, `auto_reconnect`,
//! `reconnect_interval`, `max_reconnect_attempts`, `heartbeat_interval`, …).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::BackoffConfig;
use crate::circuit::CircuitConfig;
use crate::offline_queue::OfflineConfig;

/// Gives a fresh token; asked before every connect.
pub type TokenProvider = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Default time to open a connection (TCP, upgrade and `welcome`).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request (publish, command, subscribe) waits for its reply,
/// across reconnects.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames the application may have waiting for the driver before calls wait.
pub const DEFAULT_COMMAND_QUEUE: usize = 1024;
/// Events buffered per subscription before the subscriber counts as too slow
/// (the subscription then ends with an error rather than grow without bound).
pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 4096;

/// Everything a [`crate::Client`] can be told.
#[derive(Clone)]
pub struct ClientConfig {
    /// Gateway WebSocket URLs (`ws://host:port/ws`); the client moves to the
    /// next one after a 1001 or a failed connect.
    pub urls: Vec<String>,
    /// Reconnect after an unexpected close (true).
    pub auto_reconnect: bool,
    /// Base delay of the reconnect backoff (1 s); delays grow exponentially
    /// with full jitter.
    pub reconnect_interval: Duration,
    /// Largest reconnect delay (30 s).
    pub max_reconnect_delay: Duration,
    /// Give up after this many failed attempts in a row (`None`: never, the
    /// default).
    pub max_reconnect_attempts: Option<u32>,
    /// Send a `ping` after this long without sending (30 s; the gateway's
    /// `welcome` may lower it).
    pub heartbeat_interval: Duration,
    /// A `pong` missing this long means the connection is dead (10 s).
    pub heartbeat_timeout: Duration,
    /// Time to connect (10 s).
    pub connection_timeout: Duration,
    /// Time a request waits for its reply (30 s).
    pub request_timeout: Duration,
    /// Consecutive failed connects before the breaker opens, and its cooldown.
    pub circuit: CircuitConfig,
    /// A stable client id (auth off). With an offline queue it is persisted
    /// there and this is only the first value.
    pub client_id: Option<String>,
    /// A fixed token, or…
    pub token: Option<String>,
    /// …a provider asked before every connect.
    pub token_provider: Option<TokenProvider>,
    /// Where the durable offline queue lives; `None`: no offline queue.
    pub offline_path: Option<PathBuf>,
    /// Bounds of the offline queue.
    pub offline: OfflineConfig,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("urls", &self.urls)
            .field("auto_reconnect", &self.auto_reconnect)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("client_id", &self.client_id)
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .field("offline_path", &self.offline_path)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for one URL.
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig::with_urls(vec![url.into()])
    }

    /// Defaults for several URLs.
    pub fn with_urls(urls: Vec<String>) -> ClientConfig {
        ClientConfig {
            urls,
            auto_reconnect: true,
            reconnect_interval: BackoffConfig::default().base,
            max_reconnect_delay: BackoffConfig::default().max,
            max_reconnect_attempts: None,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            circuit: CircuitConfig::default(),
            client_id: None,
            token: None,
            token_provider: None,
            offline_path: None,
            offline: OfflineConfig::default(),
        }
    }

    /// The backoff these settings describe.
    pub fn backoff(&self) -> Result<BackoffConfig, crate::ClientError> {
        BackoffConfig::try_new(
            self.reconnect_interval,
            self.max_reconnect_delay,
            self.max_reconnect_attempts,
        )
        .map_err(|e| crate::ClientError::Config(e.to_string()))
    }

    /// Checks the values; the first bad one is reported.
    pub fn validate(&self) -> Result<(), crate::ClientError> {
        self.backoff()?;
        let bad = |m: &str| Err(crate::ClientError::Config(m.to_owned()));
        if self.urls.is_empty() {
            return bad("at least one URL is needed");
        }
        if let Some(u) = self
            .urls
            .iter()
            .find(|u| !u.starts_with("ws://") && !u.starts_with("wss://"))
        {
            return bad(&format!("URL `{u}` must start with ws:// or wss://"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_timeout.is_zero() {
            return bad("heartbeat_interval and heartbeat_timeout must be above zero");
        }
        if self.connection_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("connection_timeout and request_timeout must be above zero");
        }
        Ok(())
    }
}
