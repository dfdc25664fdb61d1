//! `tether bench`: a load generator for a running gateway, over plain
//! WebSockets (`tokio-tungstenite`, one connection per simulated client, every
//! connection its own principal unless `--token` is given).
//!
//! - `publish` ([`publish`]): K publishers, each on its own channel, keep up to
//!   a window of durable publishes in flight; reports acks/s and the latency
//!   from sending a publish to its ack, and checks that each channel's acked
//!   seqs are contiguous with no ack repeated.
//! - `fanout` ([`fanout`]): S subscribers on one channel, P publishers at a
//!   target rate (or as fast as their windows allow); reports deliveries/s and
//!   the latency from the publisher's timestamp (embedded in each event's
//!   `data`) to delivery, and checks every seq at every subscriber
//!   ([`stats::SeqTracker`]).
//! - `connections` ([`connections`]): C idle connections, opened from several
//!   loopback source addresses so that C can exceed one address's ephemeral
//!   ports, each sending a protocol `ping` every half heartbeat interval;
//!   reports connections opened and failed, the open rate, and the gateway's
//!   memory per connection; closes them cleanly after `--hold`.
//! - `rpc` ([`rpc`]): N agents registered for one command type echo every
//!   task; K clients keep a window of commands in flight; reports results/s
//!   and the latency from sending a command to its `result`, and checks that
//!   every command got exactly one result.
//!
//! All read the gateway's resident memory before connecting and once every
//! connection is up when given `--server-pid`, print a progress line to stderr
//! every second, and end with a table on stdout (or one JSON line, `--json`).
//! Every phase is bounded: connects by [`CONNECT_TIMEOUT`], sending by
//! `--duration` (and `--count`) or `--hold`, the wait for the last acks,
//! deliveries and results by [`DRAIN_LIMIT`], and the whole run by a hard
//! deadline.

mod connections;
mod fanout;
mod publish;
mod rpc;
pub mod stats;

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cli::{BenchArgs, BenchCommonArgs, BenchLoadArgs, BenchScenario, UsageError};
use stats::{Counters, Latency, Percentiles};

/// Longest a connect (TCP, upgrade, `welcome`) or a subscribe may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight at once while opening connections.
const CONNECT_CONCURRENCY: usize = 64;
/// After sending stops: how long publishers wait for their last acks,
/// subscribers for the last events, and clients for the last results.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// File descriptors kept free for the runtime, stdio and the like.
const SPARE_FILES: u64 = 64;
/// Largest `--payload-size` accepted (the gateway's own limit is usually lower).
const MAX_PAYLOAD: usize = 16 << 20;
/// Read buffer of a connection that reads acks, events or results.
const READ_BUFFER: usize = 8 * 1024;
/// Connections per loopback source address unless `--source-addrs` says
/// otherwise: the gateway's default per-IP cap.
const CONNECTIONS_PER_SOURCE: usize = tether_gateway::config::DEFAULT_MAX_CONNECTIONS_PER_IP;
/// Source addresses available: 127.0.0.2 to 127.0.0.255.
const MAX_SOURCE_ADDRS: usize = 254;
/// Longest `--duration` or `--hold`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Publish,
    Fanout,
    Connections,
    Rpc,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::Fanout => "fanout",
            Scenario::Connections => "connections",
            Scenario::Rpc => "rpc",
        }
    }
}

/// A validated `tether bench` invocation.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub url: String,
    pub token: Option<String>,
    /// 0 for `connections` and `rpc`.
    pub publishers: usize,
    /// 0 except for `fanout`.
    pub subscribers: usize,
    /// Idle connections (`connections`), 0 otherwise.
    pub idle: usize,
    /// Loopback addresses the idle connections are opened from, in turn
    /// (empty: the system picks).
    pub source_addrs: Vec<Ipv4Addr>,
    /// `--url`'s address, resolved, when connecting from `source_addrs`.
    pub target: Option<SocketAddr>,
    /// How long `connections` holds them once all are open.
    pub hold: Duration,
    /// Agent connections (`rpc`), 0 otherwise.
    pub agents: usize,
    /// Client connections sending commands (`rpc`), 0 otherwise.
    pub clients: usize,
    /// Publishes (`--window`) or commands (`--concurrency`) each sender keeps
    /// in flight.
    pub window: usize,
    /// Bytes of each publish's (or command's) `data` JSON.
    pub payload: usize,
    /// Target publishes per second across all publishers; `None`: as fast as
    /// the windows allow.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Publishes (or commands) in all, split across the senders; `None`: until
    /// `duration`.
    pub count: Option<u64>,
    pub server_pid: Option<u32>,
    pub json: bool,
    /// Random per run: channel names, command types and ids, so that runs
    /// never collide with each other or with deduplication.
    pub run_id: String,
}

impl Plan {
    /// A plan with nothing to do, to fill in.
    fn empty(scenario: Scenario) -> Plan {
        Plan {
            scenario,
            url: String::new(),
            token: None,
            publishers: 0,
            subscribers: 0,
            idle: 0,
            source_addrs: Vec::new(),
            target: None,
            hold: Duration::ZERO,
            agents: 0,
            clients: 0,
            window: 1,
            payload: 0,
            rate: None,
            duration: Duration::ZERO,
            count: None,
            server_pid: None,
            json: false,
            run_id: String::new(),
        }
    }

    /// Checks the flags, raises the soft open-files limit to the hard one, and
    /// checks that the connections asked for fit under it.
    pub fn from_args(args: BenchArgs) -> Result<Plan, UsageError> {
        let usage = |msg: &str| Err(UsageError(msg.to_owned()));
        let (mut plan, common, load, source_addrs) = match args.scenario {
            BenchScenario::Publish(a) => {
                if a.publishers == 0 {
                    return usage("--publishers must be at least 1");
                }
                if a.window == 0 {
                    return usage("--window must be at least 1");
                }
                let plan = Plan {
                    publishers: a.publishers,
                    window: a.window,
                    ..Plan::empty(Scenario::Publish)
                };
                (plan, a.common, Some(a.load), None)
            }
            BenchScenario::Fanout(a) => {
                if a.publishers == 0 {
                    return usage("--publishers must be at least 1");
                }
                if a.subscribers == 0 {
                    return usage("--subscribers must be at least 1");
                }
                if a.window == 0 {
                    return usage("--window must be at least 1");
                }
                if let Some(r) = a.rate {
                    if !(r.is_finite() && r > 0.0) {
                        return Err(UsageError(format!(
                            "invalid value '{r}' for --rate: publishes per second, more than 0 (leave it out for as fast as possible)"
                        )));
                    }
                }
                let plan = Plan {
                    publishers: a.publishers,
                    subscribers: a.subscribers,
                    window: a.window,
                    rate: a.rate,
                    ..Plan::empty(Scenario::Fanout)
                };
                (plan, a.common, Some(a.load), None)
            }
            BenchScenario::Connections(a) => {
                if a.connections == 0 {
                    return usage("--connections must be at least 1");
                }
                if a.hold > MAX_DURATION {
                    return usage("--hold must be at most 24h");
                }
                let plan = Plan {
                    idle: a.connections,
                    hold: a.hold,
                    ..Plan::empty(Scenario::Connections)
                };
                (plan, a.common, None, Some(a.source_addrs))
            }
            BenchScenario::Rpc(a) => {
                if a.agents == 0 {
                    return usage("--agents must be at least 1");
                }
                if a.clients == 0 {
                    return usage("--clients must be at least 1");
                }
                if a.concurrency == 0 {
                    return usage("--concurrency must be at least 1");
                }
                let plan = Plan {
                    agents: a.agents,
                    clients: a.clients,
                    window: a.concurrency,
                    ..Plan::empty(Scenario::Rpc)
                };
                (plan, a.common, Some(a.load), None)
            }
        };
        let BenchCommonArgs {
            url,
            token,
            server_pid,
            json,
        } = common;
        let url = crate::client::ws_url(&url).map_err(|e| UsageError(e.to_string()))?;
        if url.starts_with("wss://") {
            return usage(
                "tether bench speaks plain ws:// only (run it on the gateway's machine, against a ws:// listener)",
            );
        }
        if let Some(BenchLoadArgs {
            duration,
            count,
            payload_size,
        }) = load
        {
            if duration.is_zero() {
                return usage("--duration must be more than 0");
            }
            if duration > MAX_DURATION {
                return usage("--duration must be at most 24h");
            }
            if count == Some(0) {
                return usage("--count must be at least 1");
            }
            if payload_size > MAX_PAYLOAD {
                return Err(UsageError(format!("--payload-size must be at most {MAX_PAYLOAD}")));
            }
            (plan.duration, plan.count, plan.payload) = (duration, count, payload_size);
        }
        if let Some(asked) = source_addrs {
            (plan.source_addrs, plan.target) = source_addresses(&url, asked, plan.idle)?;
        }
        if let Some(pid) = server_pid {
            if let Err(e) = vm_rss_kib(pid) {
                return Err(UsageError(format!("invalid value '{pid}' for --server-pid: {e:#}")));
            }
        }
        let connections = plan.connections() as u64;
        let (soft, hard) = raise_open_files_limit();
        if connections + SPARE_FILES > soft {
            return Err(UsageError(format!(
                "{connections} connections need about {} open files, but this process may open only {soft} \
                 (soft limit, raised to the hard limit {hard}); ask for fewer, or raise the hard limit \
                 (ulimit -Hn, /etc/security/limits.conf)",
                connections + SPARE_FILES
            )));
        }
        plan.url = url;
        plan.token = token;
        plan.server_pid = server_pid;
        plan.json = json;
        plan.run_id = tether_gateway::clock::random_id("")[..8].to_owned();
        Ok(plan)
    }

    fn connections(&self) -> usize {
        self.publishers + self.subscribers + self.idle + self.agents + self.clients
    }

    /// The connections that send publishes or commands.
    fn senders(&self) -> usize {
        self.publishers + self.clients
    }

    /// Everything must be over by then: connecting (generously), sending (or
    /// holding) and closing, draining acks, deliveries and results, and some
    /// slack.
    fn hard_deadline(&self) -> Duration {
        let setup = Duration::from_secs(30) + Duration::from_millis(10) * self.connections() as u32;
        match self.scenario {
            Scenario::Connections => setup + self.hold + CONNECT_TIMEOUT + Duration::from_secs(10),
            _ => setup + self.duration + 2 * DRAIN_LIMIT + Duration::from_secs(10),
        }
    }

    /// Publishes (or commands) sender `i` sends at most.
    fn quota(&self, i: usize) -> Option<u64> {
        self.count.map(|c| {
            let p = self.senders().max(1) as u64;
            c / p + u64::from((i as u64) < c % p)
        })
    }
}

/// The source addresses for `connections`, and the target to connect them to:
/// `asked` (or enough for [`CONNECTIONS_PER_SOURCE`] each) addresses from
/// 127.0.0.2 on when `url` is on an IPv4 loopback address; none (the system
/// picks) otherwise. Refuses more connections than the addresses have
/// ephemeral ports.
fn source_addresses(
    url: &str,
    asked: Option<usize>,
    connections: usize,
) -> Result<(Vec<Ipv4Addr>, Option<SocketAddr>), UsageError> {
    let ports = ephemeral_ports();
    let target = url
        .into_client_request()
        .ok()
        .and_then(|r| {
            let uri = r.uri();
            let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(80);
            (host.as_str(), port).to_socket_addrs().ok()
        })
        .and_then(|mut addrs| addrs.find(|a| matches!(a, SocketAddr::V4(v4) if v4.ip().is_loopback())));
    let Some(target) = target else {
        if asked.is_some() {
            return Err(UsageError(format!(
                "--source-addrs needs a --url on an IPv4 loopback address (127.x.x.x or localhost), not {url}"
            )));
        }
        if connections as u64 > ports {
            return Err(UsageError(format!(
                "{connections} connections to {url} need more than the {ports} ephemeral ports one source \
                 address has (net.ipv4.ip_local_port_range); run the gateway on a loopback address and the \
                 bench with --source-addrs"
            )));
        }
        return Ok((Vec::new(), None));
    };
    let n = match asked {
        Some(0) => return Err(UsageError("--source-addrs must be at least 1".into())),
        Some(n) => n,
        None => connections.div_ceil(CONNECTIONS_PER_SOURCE),
    };
    if n > MAX_SOURCE_ADDRS {
        return Err(UsageError(format!(
            "--source-addrs must be at most {MAX_SOURCE_ADDRS} (127.0.0.2 to 127.0.0.255)"
        )));
    }
    if connections as u64 > n as u64 * ports {
        let needed = (connections as u64).div_ceil(ports);
        return Err(UsageError(format!(
            "{connections} connections from {n} source address{} need more than the {ports} ephemeral ports \
             each has (net.ipv4.ip_local_port_range); use --source-addrs {needed} or more",
            if n == 1 { "" } else { "es" }
        )));
    }
    let addrs = (0..n).map(|k| Ipv4Addr::new(127, 0, 0, 2 + k as u8)).collect();
    Ok((addrs, Some(target)))
}

/// Ephemeral ports one source address has for connections to one
/// destination (`net.ipv4.ip_local_port_range`; Linux's default range when it
/// cannot be read).
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u64>().ok());
            let (lo, hi) = (it.next()??, it.next()??);
            (hi >= lo).then_some(hi - lo + 1)
        })
        .unwrap_or(60999 - 32768 + 1)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (best effort); returns
/// `(soft, hard)` as they are afterwards.
fn raise_open_files_limit() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((u64::MAX, u64::MAX))
}

/// The state every task of a run shares.
pub(crate) struct Shared {
    /// Time zero of the embedded timestamps (µs since this instant).
    base: Instant,
    pub counters: Counters,
    pub latency: Latency,
    /// When sending started (set once every connection is up).
    started: OnceLock<Instant>,
    rate_limit_warned: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Shared {
            base: Instant::now(),
            counters: Counters::default(),
            latency: Latency::new(4 * cores),
            started: OnceLock::new(),
            rate_limit_warned: AtomicBool::new(false),
        }
    }

    /// Microseconds since the run's time zero: the timestamp publishers embed.
    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    /// `at` as a timestamp like [`Shared::now_us`].
    pub fn us_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    /// Latency of something stamped `t` (by [`Shared::now_us`]), in µs.
    pub fn since_us(&self, t: u64) -> u64 {
        self.now_us().saturating_sub(t)
    }

    /// Says once per run that the gateway is rate-limiting the benchmark.
    pub fn warn_rate_limited(&self) {
        if !self.rate_limit_warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "tether bench: the gateway is rate-limiting the benchmark's frames (resent after retry_after_ms); \
                 start it with --rate-limit and --rate-burst above the benchmark's rate, e.g. 1000000"
            );
        }
    }
}

/// An open connection whose `welcome` has been read.
pub(crate) struct Conn {
    pub ws: Ws,
    /// How often to send a WebSocket ping when otherwise silent (half the
    /// gateway's heartbeat interval), so that it never closes us with 4008.
    pub ping_every: Duration,
}

/// Opens a connection and reads its `welcome`; `who` names it in errors.
pub(crate) async fn connect(plan: &Plan, who: &str) -> anyhow::Result<Conn> {
    connect_from(plan, who, None, READ_BUFFER).await
}

/// [`connect`] from the source address `source` (any port), or from the one
/// the system picks, with a read buffer of `read_buffer` bytes.
pub(crate) async fn connect_from(
    plan: &Plan,
    who: &str,
    source: Option<Ipv4Addr>,
    read_buffer: usize,
) -> anyhow::Result<Conn> {
    let url = &plan.url;
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("invalid --url {url}"))?;
    if let Some(token) = &plan.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| anyhow!("--token has characters a header cannot carry"))?;
        request.headers_mut().insert("authorization", value);
    }
    // Small buffers: a subscriber reads ~200-byte frames, and thousands of
    // connections with tungstenite's 128 KiB default would dwarf the gateway.
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let connect = async {
        match (source, plan.target) {
            (Some(ip), Some(target)) => {
                let socket = TcpSocket::new_v4().map_err(|e| anyhow!("cannot create a socket: {e}"))?;
                socket
                    .bind(SocketAddr::new(ip.into(), 0))
                    .map_err(|e| anyhow!("cannot bind to source address {ip}: {e}"))?;
                let tcp = socket.connect(target).await.map_err(|e| anyhow!("from {ip}: {e}"))?;
                tcp.set_nodelay(true)?;
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(tcp), Some(config))
                        .await
                        .map_err(|e| anyhow!("from {ip}: {e}"))?;
                Ok::<Ws, anyhow::Error>(ws)
            }
            _ => Ok(
                tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                    .await?
                    .0,
            ),
        }
    };
    let mut ws = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow!("{who}: no connection to {url} within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| anyhow!("{who}: cannot connect to {url}: {e}"))?;
    let text = tokio::time::timeout(CONNECT_TIMEOUT, next_text(&mut ws, who))
        .await
        .map_err(|_| anyhow!("{who}: no welcome from {url} within {CONNECT_TIMEOUT:?}"))??;
    let frame = parse(&text).ok_or_else(|| anyhow!("{who}: the first frame is not JSON: {text}"))?;
    if frame.kind != "welcome" {
        bail!("{who}: expected a welcome frame first, got {text}");
    }
    let heartbeat = Duration::from_millis(frame.heartbeat_interval_ms.unwrap_or(30_000).max(200));
    Ok(Conn {
        ws,
        ping_every: heartbeat / 2,
    })
}

/// The next text frame; a close or a read error is an error naming `who`.
async fn next_text(ws: &mut Ws, who: &str) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("{who}: the gateway closed the connection ({})", close_reason(f)),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("{who}: connection failed: {e}"),
            None => bail!("{who}: the gateway closed the connection"),
        }
    }
}

/// `4029 rate limited`, or `no close frame`.
pub(crate) fn close_reason(frame: Option<CloseFrame>) -> String {
    match frame {
        None => "no close frame".into(),
        Some(f) if f.reason.is_empty() => format!("code {}", u16::from(f.code)),
        Some(f) => format!("code {}: {}", u16::from(f.code), f.reason.as_str()),
    }
}

/// Sends a WebSocket ping (a control frame: not rate-limited, but it resets
/// the gateway's heartbeat deadline).
pub(crate) async fn ping(ws: &mut Ws) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::Ping(Default::default())).await
}

/// The parts of a server frame the benchmark looks at.
#[derive(Debug, Default)]
pub(crate) struct Frame<'a> {
    pub kind: Cow<'a, str>,
    pub id: Option<Cow<'a, str>>,
    /// Top-level `seq` (events).
    pub seq: Option<u64>,
    /// `data.t`: the publisher's timestamp (events).
    pub t: Option<u64>,
    /// `data.seq` (acks).
    pub data_seq: Option<u64>,
    /// `data.duplicate` (acks) or a top-level `duplicate` (results).
    pub duplicate: bool,
    /// `data.heartbeat_interval_ms` (welcome).
    pub heartbeat_interval_ms: Option<u64>,
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

/// The fast path: a typed, borrowing parse that skips what it does not name.
#[derive(Deserialize)]
struct Typed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    data: Option<TypedData>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct TypedData {
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: Option<bool>,
    #[serde(default)]
    heartbeat_interval_ms: Option<u64>,
}

/// Parses a server frame; `None` when it is not a JSON object with a `type`.
pub(crate) fn parse(text: &str) -> Option<Frame<'_>> {
    if let Ok(f) = serde_json::from_str::<Typed<'_>>(text) {
        let data = f.data.unwrap_or(TypedData {
            t: None,
            seq: None,
            duplicate: None,
            heartbeat_interval_ms: None,
        });
        return Some(Frame {
            kind: Cow::Borrowed(f.kind),
            id: f.id.map(Cow::Borrowed),
            seq: f.seq,
            t: data.t,
            data_seq: data.seq,
            duplicate: data.duplicate.unwrap_or(false) || f.duplicate.unwrap_or(false),
            heartbeat_interval_ms: data.heartbeat_interval_ms,
            error: f.error,
        });
    }
    // The slow path: escaped strings, `data` that is not an object, and so on.
    let v: Value = serde_json::from_str(text).ok()?;
    let data = &v["data"];
    Some(Frame {
        kind: Cow::Owned(v.get("type")?.as_str()?.to_owned()),
        id: v["id"].as_str().map(|s| Cow::Owned(s.to_owned())),
        seq: v["seq"].as_u64(),
        t: data["t"].as_u64(),
        data_seq: data["seq"].as_u64(),
        duplicate: data["duplicate"].as_bool().unwrap_or(false) || v["duplicate"].as_bool().unwrap_or(false),
        heartbeat_interval_ms: data["heartbeat_interval_ms"].as_u64(),
        error: v.get("error").map(|e| ErrorBody {
            code: e["code"].as_str().unwrap_or_default().to_owned(),
            message: e["message"].as_str().unwrap_or_default().to_owned(),
            retry_after_ms: e["retry_after_ms"].as_u64(),
        }),
    })
}

/// An event's `seq` and its `data.t`, scanned without a full parse: the
/// gateway writes `type`, `channel` (which cannot contain a quote) and `seq`
/// first, and the publisher's `data` starts with `t`. `None` when the frame
/// does not look like that; the caller then falls back to [`parse`]. (A full
/// parse was a third of the benchmark's CPU at a million deliveries a second.)
pub(crate) fn scan_event(text: &str) -> Option<(u64, Option<u64>)> {
    let rest = text.strip_prefix(r#"{"type":"event","channel":""#)?;
    let rest = &rest[rest.find('"')?..];
    let rest = rest.strip_prefix(r#"","seq":"#)?;
    let (seq, mut rest) = leading_number(rest)?;
    // The first `{` that opens `"data":{"t":` (a `{` inside a string such as
    // `from` is never preceded by an unescaped `"data":`).
    let t = loop {
        let Some(open) = rest.find('{') else { break None };
        let (before, after) = (&rest[..open], &rest[open + 1..]);
        if before.ends_with(r#""data":"#) {
            break after.strip_prefix(r#""t":"#).and_then(leading_number).map(|(t, _)| t);
        }
        rest = after;
    };
    Some((seq, t))
}

/// The decimal number `text` starts with, and what follows it.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    Some((text[..len].parse().ok()?, &text[len..]))
}

/// A publish frame's `data`, exactly `size` bytes of JSON when `size` leaves
/// room for the timestamp: `{"t":<µs>,"pad":"xxx…"}`.
pub(crate) fn payload(t: u64, size: usize, pad: &str) -> String {
    let head = format!(r#"{{"t":{t},"pad":""#);
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len()).min(pad.len());
    let mut s = String::with_capacity(head.len() + fill + tail.len());
    s.push_str(&head);
    s.push_str(&pad[..fill]);
    s.push_str(tail);
    s
}

/// The gateway's resident set size (`VmRSS` in `/proc/PID/status`), in KiB.
fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

/// The gateway's memory before and after the benchmark's connections opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rss {
    pid: u32,
    before_kib: u64,
    after_kib: u64,
    connections: usize,
}

impl Rss {
    /// Bytes of server memory per connection (negative if RSS shrank).
    fn per_connection_bytes(&self) -> i64 {
        self.per_connection_bytes_at(self.after_kib)
    }

    /// The same with the gateway's RSS at `kib` instead.
    fn per_connection_bytes_at(&self, kib: u64) -> i64 {
        let delta = (kib as i64 - self.before_kib as i64) * 1024;
        delta / self.connections.max(1) as i64
    }
}

/// Reads the gateway's RSS (when `--server-pid` was given) around `open`,
/// which opens every connection of the run.
pub(crate) async fn measure_rss<T, F>(plan: &Plan, open: F) -> anyhow::Result<(T, Option<Rss>)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let before = plan.server_pid.map(vm_rss_kib).transpose()?;
    let opened = open.await?;
    let rss = match (plan.server_pid, before) {
        (Some(pid), Some(before_kib)) => Some(Rss {
            pid,
            before_kib,
            after_kib: vm_rss_kib(pid).context("the gateway's memory after connecting")?,
            connections: plan.connections(),
        }),
        _ => None,
    };
    Ok((opened, rss))
}

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// From the first send to the last ack (publish), delivery (fanout) or
    /// result (rpc).
    pub elapsed: Duration,
    /// From the first send to the last ack.
    pub ack_elapsed: Duration,
    /// Publishes (or commands) sent (each once, however often resent).
    pub sent: u64,
    pub acked: u64,
    /// Sent and never acknowledged within the drain limit.
    pub unacked: u64,
    /// Fan-out: events received by all subscribers, duplicates included.
    pub deliveries: u64,
    /// Fan-out: final seq minus each subscriber's starting seq, summed.
    pub expected_deliveries: u64,
    /// Publish and fanout: skipped seqs; rpc: commands without a result by
    /// the end.
    pub lost: u64,
    /// Publish: repeated ack seqs and duplicate acks; fanout: repeated
    /// deliveries (duplicate acks are counted apart); rpc: second results.
    pub duplicates: u64,
    /// Acks of a publish already acknowledged, or with `"duplicate":true`.
    pub duplicate_acks: u64,
    pub reordered: u64,
    /// Publishes (or commands) resent after a retryable error (`rate_limited`, …).
    pub retried: u64,
    /// Subscribers, agents or idle connections the gateway closed (or that
    /// failed) during the run.
    pub disconnects: u64,
    /// Rpc: commands answered by a `result` (the first one of each).
    pub results: u64,
    /// Rpc: commands answered by an `error` instead (`timeout`, `no_handler`).
    pub failed: u64,
    /// Rpc: tasks the agents answered.
    pub tasks: u64,
    /// Rpc: `error` replies to the agents' `task_result`s.
    pub agent_errors: u64,
    /// Connections: opened (welcome read) and failed to open.
    pub opened: u64,
    pub open_failed: u64,
    /// Connections: from the first connect to the last one opened.
    pub open_elapsed: Duration,
    /// Connections: protocol `ping`s sent and `pong`s received while holding.
    pub pings: u64,
    pub pongs: u64,
    /// Connections: closed with a close handshake the gateway answered.
    pub closed: u64,
    pub latency: Percentiles,
    pub rss: Option<Rss>,
    /// Connections: the gateway's RSS at the end of the hold, in KiB.
    pub rss_held_kib: Option<u64>,
}

fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Rounds to one decimal for the JSON line.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Seconds rounded to the millisecond for the JSON line.
fn secs3(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl Report {
    fn latency_measured(plan: &Plan) -> &'static str {
        match plan.scenario {
            Scenario::Publish => "send_to_ack",
            Scenario::Fanout => "publish_to_delivery",
            Scenario::Rpc => "send_to_result",
            Scenario::Connections => "none",
        }
    }

    fn json(&self, plan: &Plan) -> Value {
        let mut v = json!({
            "scenario": plan.scenario.name(),
            "url": plan.url,
        });
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                v["publishers"] = json!(plan.publishers);
                v["subscribers"] = json!(plan.subscribers);
                v["rate"] = json!(plan.rate);
                v["window"] = json!(plan.window);
            }
            Scenario::Rpc => {
                v["agents"] = json!(plan.agents);
                v["clients"] = json!(plan.clients);
                v["concurrency"] = json!(plan.window);
            }
            Scenario::Connections => {
                let sources: Vec<String> = plan.source_addrs.iter().map(|a| a.to_string()).collect();
                v["connections"] = json!(plan.idle);
                v["source_addrs"] = json!(sources);
                v["hold_s"] = json!(plan.hold.as_secs_f64());
                v["opened"] = json!(self.opened);
                v["failed"] = json!(self.open_failed);
                v["open_elapsed_s"] = json!(secs3(self.open_elapsed));
                v["opens_per_s"] = json!(round1(per_second(self.opened, self.open_elapsed)));
                v["pings"] = json!(self.pings);
                v["pongs"] = json!(self.pongs);
                v["disconnects"] = json!(self.disconnects);
                v["closed"] = json!(self.closed);
            }
        }
        if plan.scenario != Scenario::Connections {
            v["payload_bytes"] = json!(plan.payload);
            v["duration_s"] = json!(plan.duration.as_secs_f64());
            v["count"] = json!(plan.count);
            v["elapsed_s"] = json!(secs3(self.elapsed));
            v["sent"] = json!(self.sent);
        }
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                v["acked"] = json!(self.acked);
                v["unacked"] = json!(self.unacked);
                v["acks_per_s"] = json!(round1(per_second(self.acked, self.ack_elapsed)));
                if plan.scenario == Scenario::Fanout {
                    v["deliveries"] = json!(self.deliveries);
                    v["expected_deliveries"] = json!(self.expected_deliveries);
                    v["deliveries_per_s"] = json!(round1(per_second(self.deliveries, self.elapsed)));
                }
                v["lost"] = json!(self.lost);
                v["duplicates"] = json!(self.duplicates);
                v["duplicate_acks"] = json!(self.duplicate_acks);
                v["reordered"] = json!(self.reordered);
                v["retried"] = json!(self.retried);
                v["disconnects"] = json!(self.disconnects);
            }
            Scenario::Rpc => {
                v["results"] = json!(self.results);
                v["failed"] = json!(self.failed);
                v["results_per_s"] = json!(round1(per_second(self.results, self.elapsed)));
                v["tasks"] = json!(self.tasks);
                v["lost"] = json!(self.lost);
                v["duplicates"] = json!(self.duplicates);
                v["retried"] = json!(self.retried);
                v["agent_errors"] = json!(self.agent_errors);
                v["disconnects"] = json!(self.disconnects);
            }
            Scenario::Connections => {}
        }
        if plan.scenario != Scenario::Connections {
            let l = &self.latency;
            v["latency_us"] = json!({
                "measured": Report::latency_measured(plan),
                "samples": l.samples,
                "p50": l.p50,
                "p90": l.p90,
                "p99": l.p99,
                "p99_9": l.p99_9,
                "max": l.max,
            });
        }
        v["server_rss"] = match &self.rss {
            None => Value::Null,
            Some(r) => {
                let mut rss = json!({
                    "pid": r.pid,
                    "before_kib": r.before_kib,
                    "after_kib": r.after_kib,
                    "connections": r.connections,
                    "per_connection_bytes": r.per_connection_bytes(),
                });
                if let Some(held) = self.rss_held_kib {
                    rss["held_kib"] = json!(held);
                    rss["held_per_connection_bytes"] = json!(r.per_connection_bytes_at(held));
                }
                rss
            }
        };
        v
    }

    fn table(&self, plan: &Plan) -> String {
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let l = &self.latency;
        let mut rows: Vec<(String, String)> = Vec::new();
        let sends = if plan.scenario == Scenario::Rpc {
            "commands"
        } else {
            "publishes"
        };
        let limit = match plan.count {
            Some(c) => format!("{c} {sends} or {}", humantime::format_duration(plan.duration)),
            None => humantime::format_duration(plan.duration).to_string(),
        };
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => {
                let rate = match plan.rate {
                    Some(r) => format!("{r} publishes/s in all"),
                    None => "as fast as the window allows".into(),
                };
                let clients = match plan.scenario {
                    Scenario::Publish => format!("{} publishers, each on its own channel", plan.publishers),
                    _ => format!(
                        "{} subscribers on one channel, {} publisher{}",
                        plan.subscribers,
                        plan.publishers,
                        if plan.publishers == 1 { "" } else { "s" }
                    ),
                };
                rows.push(("clients".into(), clients));
                rows.push((
                    "load".into(),
                    format!(
                        "{rate}, window {}, {}-byte payloads, {limit}",
                        plan.window, plan.payload
                    ),
                ));
                rows.push((
                    "publishes".into(),
                    format!(
                        "{} sent, {} acked, {} unacked; {:.1} acks/s",
                        self.sent,
                        self.acked,
                        self.unacked,
                        per_second(self.acked, self.ack_elapsed)
                    ),
                ));
                if plan.scenario == Scenario::Fanout {
                    rows.push((
                        "deliveries".into(),
                        format!(
                            "{} of {} expected; {:.1} deliveries/s",
                            self.deliveries,
                            self.expected_deliveries,
                            per_second(self.deliveries, self.elapsed)
                        ),
                    ));
                }
            }
            Scenario::Rpc => {
                rows.push((
                    "clients".into(),
                    format!("{} clients, {} agents", plan.clients, plan.agents),
                ));
                rows.push((
                    "load".into(),
                    format!(
                        "{} commands in flight per client, {}-byte payloads, {limit}",
                        plan.window, plan.payload
                    ),
                ));
                rows.push((
                    "commands".into(),
                    format!(
                        "{} sent, {} results, {} failed; {:.1} results/s ({} tasks answered by the agents)",
                        self.sent,
                        self.results,
                        self.failed,
                        per_second(self.results, self.elapsed),
                        self.tasks
                    ),
                ));
            }
            Scenario::Connections => {
                let from = match plan.source_addrs.as_slice() {
                    [] => "the address the system picks".to_owned(),
                    [one] => one.to_string(),
                    [first, .., last] => format!("{} addresses, {first} to {last}", plan.source_addrs.len()),
                };
                rows.push((
                    "connections".into(),
                    format!(
                        "{} idle from {from}, held {}",
                        plan.idle,
                        humantime::format_duration(plan.hold)
                    ),
                ));
                rows.push((
                    "opened".into(),
                    format!(
                        "{} opened, {} failed in {:.3} s; {:.1} opens/s",
                        self.opened,
                        self.open_failed,
                        self.open_elapsed.as_secs_f64(),
                        per_second(self.opened, self.open_elapsed)
                    ),
                ));
                rows.push((
                    "while held".into(),
                    format!(
                        "{} pings, {} pongs, {} disconnects; {} closed cleanly",
                        self.pings, self.pongs, self.disconnects, self.closed
                    ),
                ));
            }
        }
        if plan.scenario != Scenario::Connections {
            rows.push(("elapsed".into(), format!("{:.3} s", self.elapsed.as_secs_f64())));
            let what = match plan.scenario {
                Scenario::Publish => "latency, send to ack",
                Scenario::Rpc => "latency, send to result",
                _ => "latency, publish to delivery",
            };
            rows.push((
                what.into(),
                if l.samples == 0 {
                    "no samples".into()
                } else {
                    format!(
                        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                        ms(l.p50),
                        ms(l.p90),
                        ms(l.p99),
                        ms(l.p99_9),
                        ms(l.max),
                        l.samples
                    )
                },
            ));
        }
        match plan.scenario {
            Scenario::Publish | Scenario::Fanout => rows.push((
                "lost / duplicated".into(),
                format!(
                    "{} / {}  (duplicate acks {}, reordered {}, resent {}, disconnects {})",
                    self.lost, self.duplicates, self.duplicate_acks, self.reordered, self.retried, self.disconnects
                ),
            )),
            Scenario::Rpc => rows.push((
                "lost / duplicated".into(),
                format!(
                    "{} / {}  (resent {}, agent errors {}, disconnects {})",
                    self.lost, self.duplicates, self.retried, self.agent_errors, self.disconnects
                ),
            )),
            Scenario::Connections => {}
        }
        if let Some(r) = &self.rss {
            let held = match self.rss_held_kib {
                Some(kib) => format!(
                    "; {:.1} MiB at the end of the hold: {:.2} KiB per connection",
                    kib as f64 / 1024.0,
                    r.per_connection_bytes_at(kib) as f64 / 1024.0
                ),
                None => String::new(),
            };
            rows.push((
                format!("server RSS (pid {})", r.pid),
                format!(
                    "{:.1} MiB before, {:.1} MiB with {} connections: {:.2} KiB per connection{held}",
                    r.before_kib as f64 / 1024.0,
                    r.after_kib as f64 / 1024.0,
                    r.connections,
                    r.per_connection_bytes() as f64 / 1024.0
                ),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("tether bench {} against {}\n", plan.scenario.name(), plan.url);
        for (k, v) in rows {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}

/// Runs the plan and prints its report.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new());
    let progress = tokio::spawn(progress(plan.scenario, plan.connections() as u64, shared.clone()));
    let limit = plan.hard_deadline();
    let result = tokio::time::timeout(limit, async {
        match plan.scenario {
            Scenario::Publish => publish::run(&plan, &shared).await,
            Scenario::Fanout => fanout::run(&plan, &shared).await,
            Scenario::Connections => connections::run(&plan, &shared).await,
            Scenario::Rpc => rpc::run(&plan, &shared).await,
        }
    })
    .await;
    progress.abort();
    let report = match result {
        Ok(r) => r?,
        Err(_) => bail!(
            "the run did not finish within its hard deadline of {}",
            humantime::format_duration(limit)
        ),
    };
    if plan.json {
        println!("{}", report.json(&plan));
    } else {
        print!("{}", report.table(&plan));
    }
    Ok(())
}

/// One line on stderr per second: connections while connecting, then the
/// running totals and the last second's rates.
async fn progress(scenario: Scenario, connections: u64, shared: Arc<Shared>) {
    let c = &shared.counters;
    let name = scenario.name();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_acked, mut last_delivered, mut last_results) = (0, 0, 0);
    loop {
        tick.tick().await;
        let get = Counters::get;
        let Some(started) = shared.started.get() else {
            let failed = match get(&c.connect_failed) {
                0 => String::new(),
                n => format!(" ({n} failed)"),
            };
            eprintln!(
                "tether bench {name}: connecting {}/{connections}{failed}",
                get(&c.connected)
            );
            continue;
        };
        let elapsed = started.elapsed().as_secs_f64();
        let line = match scenario {
            Scenario::Publish | Scenario::Fanout => {
                let (acked, delivered) = (get(&c.acked), get(&c.delivered));
                let mut line = format!(
                    "tether bench {name}: {elapsed:>5.1}s  acked {acked} ({}/s)",
                    acked - last_acked
                );
                if scenario == Scenario::Fanout {
                    line.push_str(&format!("  delivered {delivered} ({}/s)", delivered - last_delivered));
                }
                line.push_str(&format!(
                    "  lost {}  dup {}  resent {}  disconnects {}",
                    get(&c.lost),
                    get(&c.duplicates),
                    get(&c.retried),
                    get(&c.disconnects)
                ));
                (last_acked, last_delivered) = (acked, delivered);
                line
            }
            Scenario::Rpc => {
                let results = get(&c.results);
                let line = format!(
                    "tether bench {name}: {elapsed:>5.1}s  sent {}  results {results} ({}/s)  failed {}  dup {}  \
                     resent {}  disconnects {}",
                    get(&c.sent),
                    results - last_results,
                    get(&c.failed),
                    get(&c.duplicates),
                    get(&c.retried),
                    get(&c.disconnects)
                );
                last_results = results;
                line
            }
            Scenario::Connections => format!(
                "tether bench {name}: holding {elapsed:>5.1}s  open {}  pings {}  pongs {}  disconnects {}",
                get(&c.connected).saturating_sub(get(&c.disconnects)),
                get(&c.pings),
                get(&c.pongs),
                get(&c.disconnects)
            ),
        };
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_asked_for_and_carry_the_timestamp() {
        let pad = "x".repeat(1000);
        for size in [40, 100, 1000] {
            let p = payload(123_456, size, &pad);
            assert_eq!(p.len(), size, "{p}");
            let v: Value = serde_json::from_str(&p).expect("json");
            assert_eq!(v["t"], 123_456);
        }
        // Too small for the timestamp: the smallest payload that carries it.
        let p = payload(7, 3, &pad);
        assert_eq!(p, r#"{"t":7,"pad":""}"#);
    }

    #[test]
    fn frames_parse_on_the_fast_and_the_slow_path() {
        let f = parse(r#"{"type":"event","channel":"c","seq":58,"epoch":"e","ts":1,"data":{"t":9,"pad":"xx"}}"#)
            .expect("event");
        assert_eq!((f.kind.as_ref(), f.seq, f.t), ("event", Some(58), Some(9)));
        let f = parse(r#"{"type":"ack","id":"r-1-5","data":{"channel":"c","seq":3,"epoch":"e","duplicate":true}}"#)
            .expect("ack");
        assert_eq!(
            (f.id.as_deref(), f.data_seq, f.duplicate),
            (Some("r-1-5"), Some(3), true)
        );
        let f = parse(r#"{"type":"error","id":null,"error":{"code":"rate_limited","message":"m","retryable":true,"retry_after_ms":12}}"#)
            .expect("error");
        let e = f.error.expect("body");
        assert_eq!((e.code.as_str(), e.retry_after_ms), ("rate_limited", Some(12)));
        // Data that is not an object, and an escaped id: the slow path.
        let f = parse(r#"{"type":"event","seq":4,"data":17}"#).expect("event");
        assert_eq!((f.seq, f.t), (Some(4), None));
        let f = parse(r#"{"type":"ack","id":"a\"b","data":{"seq":1}}"#).expect("ack");
        assert_eq!(f.id.as_deref(), Some("a\"b"));
        assert!(parse("[1]").is_none());
        // The event scanner agrees with the parser, and declines what it cannot read.
        let event = r#"{"type":"event","channel":"c","seq":58,"epoch":"e","ts":1,"from":"a","data":{"t":9,"pad":"x"}}"#;
        assert_eq!(scan_event(event), Some((58, Some(9))));
        assert_eq!(
            scan_event(r#"{"type":"event","channel":"c","seq":4,"data":17}"#),
            Some((4, None))
        );
        assert_eq!(scan_event(r#"{"type":"event","channel":"c","data":{"t":1}}"#), None);
        let tricky = r#"{"type":"event","channel":"c","seq":5,"from":"{\"data\":{\"t\":1","data":{"t":2}}"#;
        assert_eq!(scan_event(tricky), Some((5, Some(2))));
        assert_eq!(parse(tricky).map(|f| (f.seq, f.t)), Some((Some(5), Some(2))));
        let no_t = r#"{"type":"event","channel":"c","seq":6,"from":"{","data":{"x":{"t":3}}}"#;
        assert_eq!(scan_event(no_t), Some((6, None)));
        assert_eq!(scan_event(r#"{"type":"ack","id":"s","data":{"seq":1}}"#), None);
        assert_eq!(scan_event(r#"{"type":"event","seq":"x"}"#), None);
        assert!(parse("not json").is_none());
    }

    #[test]
    fn results_marked_duplicate_are_seen_on_both_paths() {
        let f = parse(r#"{"type":"result","id":"r-0-1","data":{"t":5,"pad":""},"duplicate":true}"#).expect("result");
        assert_eq!(
            (f.kind.as_ref(), f.id.as_deref(), f.duplicate),
            ("result", Some("r-0-1"), true)
        );
        let f = parse(r#"{"type":"result","id":"r-0-1","data":"x","duplicate":true}"#).expect("result");
        assert!(f.duplicate);
        let f = parse(r#"{"type":"result","id":"r-0-1","data":{"duplicate":false}}"#).expect("result");
        assert!(!f.duplicate);
    }

    #[test]
    fn source_addresses_cover_the_connections() {
        let ip = |d| Ipv4Addr::new(127, 0, 0, d);
        let (addrs, target) = source_addresses("ws://127.0.0.1:9/ws", Some(3), 100).expect("three");
        assert_eq!(addrs, [ip(2), ip(3), ip(4)]);
        assert_eq!(target, Some("127.0.0.1:9".parse().expect("addr")));
        // By default one per CONNECTIONS_PER_SOURCE connections.
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", None, 100).expect("one");
        assert_eq!(addrs, [ip(2)]);
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", None, 2 * CONNECTIONS_PER_SOURCE + 1).expect("three");
        assert_eq!(addrs.len(), 3);
        let (addrs, _) = source_addresses("ws://127.0.0.1:9/ws", Some(MAX_SOURCE_ADDRS), 1).expect("all");
        assert_eq!(addrs.last(), Some(&ip(255)));
        // Refused: none, too many, fewer ports than connections, not loopback.
        assert!(source_addresses("ws://127.0.0.1:9/ws", Some(0), 1).is_err());
        assert!(source_addresses("ws://127.0.0.1:9/ws", Some(MAX_SOURCE_ADDRS + 1), 1).is_err());
        let ports = ephemeral_ports() as usize;
        let e = source_addresses("ws://127.0.0.1:9/ws", Some(1), ports + 1).expect_err("ports");
        assert!(e.0.contains("--source-addrs 2 or more"), "{}", e.0);
        assert!(source_addresses("ws://192.0.2.1:9/ws", Some(2), 1).is_err());
        let (addrs, target) = source_addresses("ws://192.0.2.1:9/ws", None, 10).expect("not loopback");
        assert!(addrs.is_empty() && target.is_none());
    }

    #[test]
    fn the_count_is_split_across_publishers() {
        let args = |count| Plan {
            publishers: 3,
            subscribers: 1,
            duration: Duration::from_secs(1),
            count,
            ..Plan::empty(Scenario::Fanout)
        };
        let plan = args(Some(10));
        assert_eq!(
            (0..3).map(|i| plan.quota(i).expect("quota")).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(args(None).quota(0), None);
        // Rpc: split across the clients.
        let rpc = Plan {
            agents: 5,
            clients: 2,
            count: Some(5),
            ..Plan::empty(Scenario::Rpc)
        };
        assert_eq!((rpc.quota(0), rpc.quota(1)), (Some(3), Some(2)));
        assert_eq!(rpc.connections(), 7);
    }

    #[test]
    fn rss_per_connection() {
        let r = Rss {
            pid: 1,
            before_kib: 1000,
            after_kib: 1100,
            connections: 50,
        };
        assert_eq!(r.per_connection_bytes(), 2048);
        assert!(vm_rss_kib(std::process::id()).expect("own rss") > 0);
    }
}
