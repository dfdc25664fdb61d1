//! The command line, parsed in two stages: raw (clap: flags and `TETHER_*`
//! environment) and validated (layered over the `--config` TOML file and the
//! defaults into a gateway [`Config`]). Flags win over the environment, the
//! environment over the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use tether_gateway::auth::{AuthSettings, Authenticator};
use tether_gateway::config::{Retention, RetentionRule};
use tether_gateway::tls::TlsFiles;
use tether_gateway::Config;

/// Tether: a real-time WebSocket gateway with durable channels and agents.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(Box<ServeArgs>),
    /// Publish one event and print its ack.
    Pub(PubArgs),
    /// Print every event of a channel, one JSON line each, until interrupted.
    Sub(SubArgs),
    /// Run a demo agent that echoes each task's payload.
    Agent(AgentArgs),
    /// Print a signed HS256 token.
    Token(TokenArgs),
    /// Load-test a running gateway (publish, fanout, connections, rpc).
    Bench(BenchArgs),
}

/// `tether serve` flags, before layering. Every one is optional here so that
/// the file and the defaults can fill what is not given.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the flags below (snake_case keys) and `[[channels]]`.
    #[arg(long, env = "TETHER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind (port 0 picks a free port) [default: 127.0.0.1:8001].
    #[arg(long, env = "TETHER_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Embedded store directory [default: ./tether-data].
    #[arg(long, env = "TETHER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Redis URL for running many nodes.
    #[arg(long, env = "TETHER_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// Node id [default: hostname + random suffix].
    #[arg(long, env = "TETHER_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// HS256 secret: auth on.
    #[arg(long, env = "TETHER_JWT_SECRET", value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// RS256/ES256 public key (PEM): auth on.
    #[arg(long, env = "TETHER_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// Origin allowlist for upgrades (repeatable).
    #[arg(
        long = "allowed-origin",
        env = "TETHER_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origin: Option<Vec<String>>,
    /// Larger frames close with 1009 [default: 65536].
    #[arg(long, env = "TETHER_MAX_MESSAGE_BYTES", value_name = "N")]
    pub max_message_bytes: Option<usize>,
    /// Frames per second per connection [default: 100].
    #[arg(long, env = "TETHER_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Burst over the rate [default: 200].
    #[arg(long, env = "TETHER_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Further upgrades from one IP get HTTP 429 [default: 10000].
    #[arg(long, env = "TETHER_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// [default: 30s]
    #[arg(long, env = "TETHER_HEARTBEAT_INTERVAL", value_name = "D", value_parser = duration)]
    pub heartbeat_interval: Option<Duration>,
    /// [default: 10s]
    #[arg(long, env = "TETHER_HEARTBEAT_TIMEOUT", value_name = "D", value_parser = duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// Events kept per channel [default: 1000].
    #[arg(long, env = "TETHER_HISTORY_SIZE", value_name = "N")]
    pub history_size: Option<u64>,
    /// Oldest event kept [default: 24h].
    #[arg(long, env = "TETHER_HISTORY_TTL", value_name = "D", value_parser = duration)]
    pub history_ttl: Option<Duration>,
    /// (principal, id) deduplication window [default: 24h].
    #[arg(long, env = "TETHER_DEDUP_WINDOW", value_name = "D", value_parser = duration)]
    pub dedup_window: Option<Duration>,
    /// How long a command waits for an agent [default: 5m].
    #[arg(long, env = "TETHER_COMMAND_TTL", value_name = "D", value_parser = duration)]
    pub command_ttl: Option<Duration>,
    /// How long a dispatched task may take [default: 60s].
    #[arg(long, env = "TETHER_TASK_TIMEOUT", value_name = "D", value_parser = duration)]
    pub task_timeout: Option<Duration>,
    /// Push period on channel `system` [default: 5s].
    #[arg(long, env = "TETHER_SYSTEM_METRICS_INTERVAL", value_name = "D", value_parser = duration)]
    pub system_metrics_interval: Option<Duration>,
    /// TLS certificate (PEM).
    #[arg(long, env = "TETHER_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "TETHER_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mount the /autobahn echo endpoint (WebSocket conformance testing only).
    #[arg(long, env = "TETHER_AUTOBAHN_ECHO")]
    pub autobahn_echo: bool,
    /// Log format on stderr [default: text].
    #[arg(long, env = "TETHER_LOG_FORMAT", value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// Connection flags shared by the client subcommands.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// WebSocket URL (`ws://HOST:PORT/ws`; `http://HOST:PORT` means its `/ws`).
    #[arg(long, env = "TETHER_URL", default_value = "ws://127.0.0.1:8001/ws")]
    pub url: String,
    /// Bearer token.
    #[arg(long)]
    pub token: Option<String>,
    /// Stable client id (deduplication across reconnects, auth off).
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Channel name.
    pub channel: String,
    /// The event's data, as JSON.
    pub json: String,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Channel name.
    pub channel: String,
    /// Recover events after this seq.
    #[arg(long)]
    pub since: Option<u64>,
    /// The epoch `--since` belongs to.
    #[arg(long, requires = "since")]
    pub epoch: Option<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Agent name (replicas share it).
    #[arg(long)]
    pub name: String,
    /// Command type handled (repeatable).
    #[arg(long = "command", required = true)]
    pub commands: Vec<String>,
    /// Tasks at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u32,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The HS256 secret (the gateway's --jwt-secret).
    #[arg(long)]
    pub secret: String,
    /// The principal.
    #[arg(long)]
    pub sub: String,
    /// client (default), agent or admin.
    #[arg(long)]
    pub role: Option<String>,
    /// Channel patterns it may subscribe to (comma-separated; '' for none).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// Channel patterns it may publish to (comma-separated; '' for none).
    #[arg(long, value_delimiter = ',')]
    pub publish: Option<Vec<String>>,
    /// Command types it may send (comma-separated; '' for none).
    #[arg(long, value_delimiter = ',')]
    pub commands: Option<Vec<String>>,
    /// Lifetime.
    #[arg(long, value_parser = duration, default_value = "1h")]
    pub ttl: Duration,
}

/// `tether bench`: one scenario per run.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: BenchScenario,
}

#[derive(Debug, Subcommand)]
pub enum BenchScenario {
    /// K publishers, each on its own channel: durable publishes acknowledged per second.
    Publish(BenchPublishArgs),
    /// S subscribers on one channel and P publishers: deliveries per second.
    Fanout(BenchFanoutArgs),
    /// C idle connections held with heartbeats: open rate and the gateway's memory per connection.
    Connections(BenchConnectionsArgs),
    /// K clients sending commands to N agents that echo them: results per second.
    Rpc(BenchRpcArgs),
}

/// Flags every `tether bench` scenario takes.
#[derive(Debug, Args)]
pub struct BenchCommonArgs {
    /// The gateway's WebSocket URL (`ws://HOST:PORT/ws`; `http://HOST:PORT` means its `/ws`).
    #[arg(long, env = "TETHER_URL", default_value = "ws://127.0.0.1:8001/ws")]
    pub url: String,
    /// Bearer token for every connection (auth on; they then share its principal).
    #[arg(long)]
    pub token: Option<String>,
    /// The gateway's process id: report its resident memory per connection (Linux).
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pid: Option<u32>,
    /// One JSON line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Flags of the scenarios that send messages (publish, fanout, rpc).
#[derive(Debug, Args)]
pub struct BenchLoadArgs {
    /// How long to send (then up to 10s more for the last acks, deliveries or results).
    #[arg(long, value_parser = duration, default_value = "10s", value_name = "D")]
    pub duration: Duration,
    /// Stop after this many publishes (commands, for rpc) in all, split across the senders, or at --duration.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Bytes of each publish's (or command's) `data` JSON (at least the ~30 its timestamp needs).
    #[arg(long = "payload-size", default_value_t = 100, value_name = "BYTES")]
    pub payload_size: usize,
}

#[derive(Debug, Args)]
pub struct BenchPublishArgs {
    #[command(flatten)]
    pub common: BenchCommonArgs,
    #[command(flatten)]
    pub load: BenchLoadArgs,
    /// Concurrent publishers (connections), each on its own channel.
    #[arg(long, default_value_t = 16, value_name = "K")]
    pub publishers: usize,
    /// Unacknowledged publishes each publisher keeps in flight.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub window: usize,
}

#[derive(Debug, Args)]
pub struct BenchFanoutArgs {
    #[command(flatten)]
    pub common: BenchCommonArgs,
    #[command(flatten)]
    pub peer: BenchPeerArgs,
    #[command(flatten)]
    pub load: BenchLoadArgs,
    /// Subscriber connections on the channel.
    #[arg(long, default_value_t = 1000, value_name = "S")]
    pub subscribers: usize,
    /// Publisher connections on the channel.
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub publishers: usize,
    /// Publishes per second across all publishers [default: as fast as the windows allow].
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Unacknowledged publishes each publisher keeps in flight (peers: sent and not yet received by every
    /// subscriber).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub window: usize,
}

/// The server a `fanout` or `connections` run talks to: Tether, or one of the
/// peers `bench/compare` measures it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchProtocol {
    /// The Tether protocol (`--url` is the gateway's `/ws`).
    Tether,
    /// A plain broadcast server: every text frame a client sends goes to every other client (the Node `ws`
    /// reference); `--url` is its ws:// URL.
    Broadcast,
    /// The Pusher protocol (e.g. sockudo): subscribers on `<url>/app/<key>`, the publisher through the signed
    /// HTTP events API; `--url` is the server's ws://HOST:PORT.
    Pusher,
}

/// Which protocol, and the Pusher app's credentials.
#[derive(Debug, Args)]
pub struct BenchPeerArgs {
    /// The server's protocol.
    #[arg(long, value_enum, default_value_t = BenchProtocol::Tether)]
    pub protocol: BenchProtocol,
    /// Pusher app id (with --protocol pusher).
    #[arg(long = "pusher-app-id", default_value = "tether-bench", value_name = "ID")]
    pub pusher_app_id: String,
    /// Pusher app key (with --protocol pusher).
    #[arg(long = "pusher-key", default_value = "tether-bench-key", value_name = "KEY")]
    pub pusher_key: String,
    /// Pusher app secret, to sign the HTTP API requests (with --protocol pusher).
    #[arg(long = "pusher-secret", default_value = "tether-bench-secret", value_name = "SECRET")]
    pub pusher_secret: String,
}

#[derive(Debug, Args)]
pub struct BenchConnectionsArgs {
    #[command(flatten)]
    pub common: BenchCommonArgs,
    #[command(flatten)]
    pub peer: BenchPeerArgs,
    /// Idle connections to open and hold.
    #[arg(long, default_value_t = 1000, value_name = "C")]
    pub connections: usize,
    /// Loopback source addresses to connect from (127.0.0.2, 127.0.0.3, …) [default: one per 10000 connections].
    #[arg(long = "source-addrs", value_name = "N")]
    pub source_addrs: Option<usize>,
    /// How long to hold the connections once all are open (each sends a `ping` every half heartbeat interval).
    #[arg(long, value_parser = duration, default_value = "10s", value_name = "D")]
    pub hold: Duration,
}

#[derive(Debug, Args)]
pub struct BenchRpcArgs {
    #[command(flatten)]
    pub common: BenchCommonArgs,
    #[command(flatten)]
    pub load: BenchLoadArgs,
    /// Agent connections, each registered for the run's echo command.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub agents: usize,
    /// Client connections sending commands.
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub clients: usize,
    /// Commands each client keeps in flight (sent, no result yet).
    #[arg(long, default_value_t = 64, value_name = "X")]
    pub concurrency: usize,
}

/// Parses `500ms`, `30s`, `5m`, `24h` (any humantime duration).
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration ({e}); use e.g. 500ms, 30s, 5m, 24h"))
}

/// The `--config` file. Keys are the flags in snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    redis_url: Option<String>,
    node_id: Option<String>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    allowed_origin: Option<Vec<String>>,
    max_message_bytes: Option<usize>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_connections_per_ip: Option<usize>,
    heartbeat_interval: Option<String>,
    heartbeat_timeout: Option<String>,
    history_size: Option<u64>,
    history_ttl: Option<String>,
    dedup_window: Option<String>,
    command_ttl: Option<String>,
    task_timeout: Option<String>,
    system_metrics_interval: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<String>,
    autobahn_echo: Option<bool>,
    #[serde(default)]
    channels: Vec<FileChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChannel {
    pattern: String,
    history_size: Option<u64>,
    history_ttl: Option<String>,
}

/// The validated `serve` settings.
#[derive(Debug)]
pub struct Serve {
    pub listen: SocketAddr,
    pub config: Config,
    pub json_logs: bool,
}

/// A bad value: one line naming it; exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

fn file_duration(key: &str, v: Option<String>) -> Result<Option<Duration>, UsageError> {
    v.map(|s| duration(&s).map_err(|e| UsageError(format!("invalid value '{s}' for {key} in the config file: {e}"))))
        .transpose()
}

impl ServeArgs {
    /// Layers flags/environment over the file over the defaults.
    pub fn resolve(self) -> Result<Serve, UsageError> {
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| UsageError(format!("cannot read config file {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| {
                    let msg = e.message().replace('\n', " ");
                    UsageError(format!("invalid config file {}: {msg}", path.display()))
                })?
            }
        };
        let redis_url = self.redis_url.or(file.redis_url);
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://")) {
                return Err(UsageError(format!(
                    "--redis-url must be redis://host:port[/db], rediss://… or unix://…, got {url:?}"
                )));
            }
        }
        let jwt_secret = self.jwt_secret.or(file.jwt_secret);
        let jwt_public_key = self.jwt_public_key.or(file.jwt_public_key);
        let auth = match (jwt_secret, jwt_public_key) {
            (Some(_), Some(_)) => {
                return Err(UsageError("give --jwt-secret or --jwt-public-key, not both".into()));
            }
            (Some(secret), None) => AuthSettings::Hs256 { secret },
            (None, Some(path)) => {
                let pem = std::fs::read(&path)
                    .map_err(|e| UsageError(format!("cannot read --jwt-public-key {}: {e}", path.display())))?;
                AuthSettings::PublicKeyPem { pem }
            }
            (None, None) => AuthSettings::Off,
        };
        if let Err(e) = Authenticator::from_settings(&auth) {
            return Err(UsageError(format!(
                "invalid value for --jwt-secret/--jwt-public-key: {e}"
            )));
        }
        let tls = match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let files = TlsFiles { cert, key };
                if let Err(e) = tether_gateway::tls::server_config(&files) {
                    return Err(UsageError(format!("invalid value for --tls-cert/--tls-key: {e}")));
                }
                Some(files)
            }
            _ => return Err(UsageError("--tls-cert and --tls-key go together".into())),
        };
        let d = Config::default();
        let listen = match (self.listen, file.listen) {
            (Some(a), _) => a,
            (None, Some(s)) => s
                .parse()
                .map_err(|_| UsageError(format!("invalid value '{s}' for listen in the config file")))?,
            (None, None) => "127.0.0.1:8001".parse().expect("valid default"),
        };
        let log_format = self.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            return Err(UsageError(format!(
                "invalid value '{log_format}' for log_format: use text or json"
            )));
        }
        let retention = Retention {
            history_size: self
                .history_size
                .or(file.history_size)
                .unwrap_or(d.retention.history_size),
            history_ttl: self
                .history_ttl
                .or(file_duration("history_ttl", file.history_ttl)?)
                .unwrap_or(d.retention.history_ttl),
        };
        let mut retention_rules = Vec::new();
        for c in file.channels {
            retention_rules.push(RetentionRule {
                retention: Retention {
                    history_size: c.history_size.unwrap_or(retention.history_size),
                    history_ttl: file_duration("channels.history_ttl", c.history_ttl)?.unwrap_or(retention.history_ttl),
                },
                pattern: c.pattern,
            });
        }
        let config = Config {
            node_id: self.node_id.or(file.node_id).unwrap_or_else(default_node_id),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            redis_url,
            max_message_bytes: self
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(d.max_message_bytes),
            rate_limit: self.rate_limit.or(file.rate_limit).unwrap_or(d.rate_limit),
            rate_burst: self.rate_burst.or(file.rate_burst).unwrap_or(d.rate_burst),
            max_connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            heartbeat_interval: self
                .heartbeat_interval
                .or(file_duration("heartbeat_interval", file.heartbeat_interval)?)
                .unwrap_or(d.heartbeat_interval),
            heartbeat_timeout: self
                .heartbeat_timeout
                .or(file_duration("heartbeat_timeout", file.heartbeat_timeout)?)
                .unwrap_or(d.heartbeat_timeout),
            retention,
            retention_rules,
            dedup_window: self
                .dedup_window
                .or(file_duration("dedup_window", file.dedup_window)?)
                .unwrap_or(d.dedup_window),
            command_ttl: self
                .command_ttl
                .or(file_duration("command_ttl", file.command_ttl)?)
                .unwrap_or(d.command_ttl),
            task_timeout: self
                .task_timeout
                .or(file_duration("task_timeout", file.task_timeout)?)
                .unwrap_or(d.task_timeout),
            system_metrics_interval: self
                .system_metrics_interval
                .or(file_duration("system_metrics_interval", file.system_metrics_interval)?)
                .unwrap_or(d.system_metrics_interval),
            allowed_origins: self.allowed_origin.or(file.allowed_origin).unwrap_or_default(),
            auth,
            tls,
            autobahn_echo: self.autobahn_echo || file.autobahn_echo.unwrap_or(false),
            ..d
        };
        config
            .validate()
            .map_err(|e| UsageError(format!("invalid value for --{}: {}", e.field, e.reason)))?;
        Ok(Serve {
            listen,
            config,
            json_logs: log_format == "json",
        })
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && tether_protocol::validate::is_valid_id(h))
        .unwrap_or_else(|| "tether".into());
    let suffix = &tether_gateway::clock::random_id("")[..6];
    format!("{host}-{suffix}")
}

/// One line for a clap error (bad flag, bad value, missing argument).
pub fn clap_one_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(arg) = e.get(ContextKind::InvalidArg) {
            return format!("error: unknown flag {arg}");
        }
    }
    let text = e.to_string();
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: invalid arguments");
    if line.starts_with("error:") {
        line.to_owned()
    } else {
        format!("error: {line}")
    }
}
