//! The gateway's configuration: a plain struct with documented defaults. Only the
//! binary reads flags, environment and files; it builds a [`Config`] and calls
//! [`Config::validate`].

use std::path::PathBuf;
use std::time::Duration;

use tether_protocol::validate::pattern_matches;

use crate::auth::AuthSettings;
use crate::tls::TlsFiles;

/// How long a connection may take to send its upgrade request head: bounds
/// connections that never finish a handshake (slowloris).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default per-connection frame budget, frames per second.
pub const DEFAULT_RATE_LIMIT: u32 = 100;
/// Default burst over [`DEFAULT_RATE_LIMIT`].
pub const DEFAULT_RATE_BURST: u32 = 200;
/// Default largest frame; larger ones close the connection with 1009.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default cap on concurrent WebSocket connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 10_000;
/// Default events kept per channel.
pub const DEFAULT_HISTORY_SIZE: u64 = 1000;
/// Frames a connection may have queued for sending before it counts as a slow
/// consumer and is closed with 1013. 1024 frames absorb a burst of a thousand
/// events on one channel (the history size) while keeping a stuck connection's
/// memory to roughly a megabyte of shared event text.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;
/// Operations waiting for the store writer before publishers wait in turn.
pub const DEFAULT_LEDGER_QUEUE: usize = 16 * 1024;
/// Commands accepted and not yet finished, across the node; more get `overloaded`.
pub const DEFAULT_MAX_PENDING_COMMANDS: usize = 100_000;

/// Retention of one channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept.
    pub history_size: u64,
    /// Oldest event kept.
    pub history_ttl: Duration,
}

/// A `[[channels]]` override: the first rule whose pattern matches wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// A protocol pattern (`*`, `?`).
    pub pattern: String,
    /// The retention for matching channels.
    pub retention: Retention,
}

/// Everything `tether serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Shown in `welcome.node` and metrics.
    pub node_id: String,
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Redis instead of the embedded store (`redis://host:port/db`): history,
    /// seqs, dedup keys and fan-out shared by every node using it.
    pub redis_url: Option<String>,
    /// Larger frames close with 1009; HTTP bodies may be 100 times this.
    pub max_message_bytes: usize,
    /// Frames per second per connection.
    pub rate_limit: u32,
    /// Burst over `rate_limit`; also the number of rate rejections within 10 s
    /// after which the connection is closed with 4029.
    pub rate_burst: u32,
    /// Further upgrades from one IP get HTTP 429.
    pub max_connections_per_ip: usize,
    /// See the protocol's Heartbeat section.
    pub heartbeat_interval: Duration,
    /// See the protocol's Heartbeat section.
    pub heartbeat_timeout: Duration,
    /// Retention when no rule matches.
    pub retention: Retention,
    /// Per-pattern retention, first match wins.
    pub retention_rules: Vec<RetentionRule>,
    /// How long `(principal, id)` keys are remembered.
    pub dedup_window: Duration,
    /// How long a command waits for an agent.
    pub command_ttl: Duration,
    /// How long a dispatched task may take.
    pub task_timeout: Duration,
    /// Period of the `system` channel push.
    pub system_metrics_interval: Duration,
    /// Origin allowlist for upgrades; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Token checking (off by default: development mode).
    pub auth: AuthSettings,
    /// Mount the `/autobahn` echo endpoint (conformance testing only).
    pub autobahn_echo: bool,
    /// Serve `wss://` and `https://` only, with these files.
    pub tls: Option<TlsFiles>,
    /// How long a connection may take to send a complete request head (the TLS
    /// handshake before it has its own 10 s bound).
    pub handshake_timeout: Duration,
    /// Frames queued per connection before it is a slow consumer.
    pub outbound_queue: usize,
    /// Commands in flight or waiting across the node.
    pub max_pending_commands: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "tether".into(),
            data_dir: PathBuf::from("./tether-data"),
            redis_url: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: DEFAULT_RATE_BURST,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(10),
            retention: Retention {
                history_size: DEFAULT_HISTORY_SIZE,
                history_ttl: Duration::from_secs(24 * 3600),
            },
            retention_rules: Vec::new(),
            dedup_window: Duration::from_secs(24 * 3600),
            command_ttl: Duration::from_secs(300),
            task_timeout: Duration::from_secs(60),
            system_metrics_interval: Duration::from_secs(5),
            allowed_origins: Vec::new(),
            auth: AuthSettings::Off,
            tls: None,
            autobahn_echo: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            max_pending_commands: DEFAULT_MAX_PENDING_COMMANDS,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {field}: {reason}")]
pub struct ConfigError {
    /// The offending setting, named as the flag (without dashes).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl Config {
    /// Checks every value; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.into(),
            })
        };
        if self.node_id.is_empty() || !tether_protocol::validate::is_valid_id(&self.node_id) {
            return bad("node-id", "must be 1 to 128 printable ASCII characters");
        }
        if self.max_message_bytes < 256 {
            return bad("max-message-bytes", "must be at least 256");
        }
        if self.rate_limit == 0 {
            return bad("rate-limit", "must be at least 1");
        }
        if self.rate_burst == 0 {
            return bad("rate-burst", "must be at least 1");
        }
        if self.max_connections_per_ip == 0 {
            return bad("max-connections-per-ip", "must be at least 1");
        }
        for (field, d) in [
            ("heartbeat-interval", self.heartbeat_interval),
            ("heartbeat-timeout", self.heartbeat_timeout),
            ("history-ttl", self.retention.history_ttl),
            ("dedup-window", self.dedup_window),
            ("command-ttl", self.command_ttl),
            ("task-timeout", self.task_timeout),
            ("system-metrics-interval", self.system_metrics_interval),
        ] {
            if d.is_zero() {
                return bad(field, "must be longer than zero");
            }
        }
        if self.retention.history_size == 0 {
            return bad("history-size", "must be at least 1");
        }
        for rule in &self.retention_rules {
            if rule.pattern.is_empty() {
                return bad("channels.pattern", "must not be empty");
            }
            if rule.retention.history_size == 0 || rule.retention.history_ttl.is_zero() {
                return bad("channels", "history_size and history_ttl must be above zero");
            }
        }
        if self.outbound_queue == 0 {
            return bad("outbound-queue", "must be at least 1");
        }
        Ok(())
    }

    /// The retention for a channel: the first matching rule, else the default.
    pub fn retention_for(&self, channel: &str) -> Retention {
        self.retention_rules
            .iter()
            .find(|r| pattern_matches(&r.pattern, channel))
            .map_or(self.retention, |r| r.retention)
    }
}
