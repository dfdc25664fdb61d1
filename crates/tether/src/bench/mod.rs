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
//!
//! Both read the gateway's resident memory before connecting and once every
//! connection is up when given `--server-pid`, print a progress line to stderr
//! every second, and end with a table on stdout (or one JSON line, `--json`).
//! Every phase is bounded: connects by [`CONNECT_TIMEOUT`], sending by
//! `--duration` (and `--count`), the wait for the last acks and deliveries by
//! [`DRAIN_LIMIT`], and the whole run by a hard deadline.

mod fanout;
mod publish;
pub mod stats;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cli::{BenchArgs, BenchCommonArgs, BenchScenario, UsageError};
use stats::{Counters, Latency, Percentiles};

/// Longest a connect (TCP, upgrade, `welcome`) or a subscribe may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects in flight at once while opening connections.
const CONNECT_CONCURRENCY: usize = 64;
/// After sending stops: how long publishers wait for their last acks, and
/// subscribers for the last events.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// File descriptors kept free for the runtime, stdio and the like.
const SPARE_FILES: u64 = 64;
/// Largest `--payload-size` accepted (the gateway's own limit is usually lower).
const MAX_PAYLOAD: usize = 16 << 20;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Publish,
    Fanout,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::Fanout => "fanout",
        }
    }
}

/// A validated `tether bench` invocation.
#[derive(Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub url: String,
    pub token: Option<String>,
    pub publishers: usize,
    /// 0 for `publish`.
    pub subscribers: usize,
    pub window: usize,
    /// Bytes of each publish's `data` JSON.
    pub payload: usize,
    /// Target publishes per second across all publishers; `None`: as fast as
    /// the windows allow.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Publishes in all, split across the publishers; `None`: until `duration`.
    pub count: Option<u64>,
    pub server_pid: Option<u32>,
    pub json: bool,
    /// Random per run: channel names and publish ids, so that runs never
    /// collide with each other or with deduplication.
    pub run_id: String,
}

impl Plan {
    /// Checks the flags, raises the soft open-files limit to the hard one, and
    /// checks that the connections asked for fit under it.
    pub fn from_args(args: BenchArgs) -> Result<Plan, UsageError> {
        let (scenario, common, publishers, subscribers, rate) = match args.scenario {
            BenchScenario::Publish(a) => (Scenario::Publish, a.common, a.publishers, 0, None),
            BenchScenario::Fanout(a) => (Scenario::Fanout, a.common, a.publishers, a.subscribers, a.rate),
        };
        let BenchCommonArgs {
            url,
            token,
            duration,
            count,
            payload_size,
            window,
            server_pid,
            json,
        } = common;
        let url = crate::client::ws_url(&url).map_err(|e| UsageError(e.to_string()))?;
        if url.starts_with("wss://") {
            return Err(UsageError(
                "tether bench speaks plain ws:// only (run it on the gateway's machine, against a ws:// listener)"
                    .into(),
            ));
        }
        if publishers == 0 {
            return Err(UsageError("--publishers must be at least 1".into()));
        }
        if scenario == Scenario::Fanout && subscribers == 0 {
            return Err(UsageError("--subscribers must be at least 1".into()));
        }
        if window == 0 {
            return Err(UsageError("--window must be at least 1".into()));
        }
        if duration.is_zero() {
            return Err(UsageError("--duration must be more than 0".into()));
        }
        if duration > Duration::from_secs(24 * 3600) {
            return Err(UsageError("--duration must be at most 24h".into()));
        }
        if count == Some(0) {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if payload_size > MAX_PAYLOAD {
            return Err(UsageError(format!("--payload-size must be at most {MAX_PAYLOAD}")));
        }
        if let Some(r) = rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(UsageError(format!(
                    "invalid value '{r}' for --rate: publishes per second, more than 0 (leave it out for as fast as possible)"
                )));
            }
        }
        if let Some(pid) = server_pid {
            if let Err(e) = vm_rss_kib(pid) {
                return Err(UsageError(format!("invalid value '{pid}' for --server-pid: {e:#}")));
            }
        }
        let connections = (publishers + subscribers) as u64;
        let (soft, hard) = raise_open_files_limit();
        if connections + SPARE_FILES > soft {
            return Err(UsageError(format!(
                "{connections} connections need about {} open files, but this process may open only {soft} \
                 (soft limit, raised to the hard limit {hard}); ask for fewer, or raise the hard limit \
                 (ulimit -Hn, /etc/security/limits.conf)",
                connections + SPARE_FILES
            )));
        }
        let run_id = tether_gateway::clock::random_id("")[..8].to_owned();
        Ok(Plan {
            scenario,
            url,
            token,
            publishers,
            subscribers,
            window,
            payload: payload_size,
            rate,
            duration,
            count,
            server_pid,
            json,
            run_id,
        })
    }

    fn connections(&self) -> usize {
        self.publishers + self.subscribers
    }

    /// Everything must be over by then: connecting (generously), sending,
    /// draining acks and deliveries, and some slack.
    fn hard_deadline(&self) -> Duration {
        let setup = Duration::from_secs(30) + Duration::from_millis(10) * self.connections() as u32;
        setup + self.duration + 2 * DRAIN_LIMIT + Duration::from_secs(10)
    }

    /// Publishes publisher `i` sends at most.
    fn quota(&self, i: usize) -> Option<u64> {
        self.count.map(|c| {
            let p = self.publishers as u64;
            c / p + u64::from((i as u64) < c % p)
        })
    }
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
                "tether bench: the gateway is rate-limiting publishes (resent after retry_after_ms); \
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
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
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
    /// `data.duplicate` (acks).
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
            duplicate: data.duplicate.unwrap_or(false),
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
        duplicate: data["duplicate"].as_bool().unwrap_or(false),
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
        let delta = (self.after_kib as i64 - self.before_kib as i64) * 1024;
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
    /// From the first send to the last ack (publish) or delivery (fanout).
    pub elapsed: Duration,
    /// From the first send to the last ack.
    pub ack_elapsed: Duration,
    /// Publishes sent (each once, however often resent).
    pub sent: u64,
    pub acked: u64,
    /// Sent and never acknowledged within the drain limit.
    pub unacked: u64,
    /// Fan-out: events received by all subscribers, duplicates included.
    pub deliveries: u64,
    /// Fan-out: final seq minus each subscriber's starting seq, summed.
    pub expected_deliveries: u64,
    pub lost: u64,
    /// Publish: repeated ack seqs and duplicate acks; fanout: repeated
    /// deliveries (duplicate acks are counted apart).
    pub duplicates: u64,
    /// Acks of a publish already acknowledged, or with `"duplicate":true`.
    pub duplicate_acks: u64,
    pub reordered: u64,
    /// Publishes resent after a retryable error (`rate_limited`, …).
    pub retried: u64,
    /// Subscribers the gateway closed (or that failed) during the run.
    pub disconnects: u64,
    pub latency: Percentiles,
    pub rss: Option<Rss>,
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

impl Report {
    fn latency_measured(plan: &Plan) -> &'static str {
        match plan.scenario {
            Scenario::Publish => "send_to_ack",
            Scenario::Fanout => "publish_to_delivery",
        }
    }

    fn json(&self, plan: &Plan) -> Value {
        let l = &self.latency;
        let mut v = json!({
            "scenario": plan.scenario.name(),
            "url": plan.url,
            "publishers": plan.publishers,
            "subscribers": plan.subscribers,
            "rate": plan.rate,
            "window": plan.window,
            "payload_bytes": plan.payload,
            "duration_s": plan.duration.as_secs_f64(),
            "count": plan.count,
            "elapsed_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "sent": self.sent,
            "acked": self.acked,
            "unacked": self.unacked,
            "acks_per_s": round1(per_second(self.acked, self.ack_elapsed)),
        });
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
        v["latency_us"] = json!({
            "measured": Report::latency_measured(plan),
            "samples": l.samples,
            "p50": l.p50,
            "p90": l.p90,
            "p99": l.p99,
            "p99_9": l.p99_9,
            "max": l.max,
        });
        v["server_rss"] = match &self.rss {
            None => Value::Null,
            Some(r) => json!({
                "pid": r.pid,
                "before_kib": r.before_kib,
                "after_kib": r.after_kib,
                "connections": r.connections,
                "per_connection_bytes": r.per_connection_bytes(),
            }),
        };
        v
    }

    fn table(&self, plan: &Plan) -> String {
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let l = &self.latency;
        let mut rows: Vec<(String, String)> = Vec::new();
        let rate = match plan.rate {
            Some(r) => format!("{r} publishes/s in all"),
            None => "as fast as the window allows".into(),
        };
        let clients = match plan.scenario {
            Scenario::Publish => format!("{} publishers, each on its own channel", plan.publishers),
            Scenario::Fanout => format!(
                "{} subscribers on one channel, {} publisher{}",
                plan.subscribers,
                plan.publishers,
                if plan.publishers == 1 { "" } else { "s" }
            ),
        };
        rows.push(("clients".into(), clients));
        let limit = match plan.count {
            Some(c) => format!("{c} publishes or {}", humantime::format_duration(plan.duration)),
            None => humantime::format_duration(plan.duration).to_string(),
        };
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
        rows.push(("elapsed".into(), format!("{:.3} s", self.elapsed.as_secs_f64())));
        let what = match plan.scenario {
            Scenario::Publish => "latency, send to ack",
            Scenario::Fanout => "latency, publish to delivery",
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
        rows.push((
            "lost / duplicated".into(),
            format!(
                "{} / {}  (duplicate acks {}, reordered {}, resent {}, disconnects {})",
                self.lost, self.duplicates, self.duplicate_acks, self.reordered, self.retried, self.disconnects
            ),
        ));
        if let Some(r) = &self.rss {
            rows.push((
                format!("server RSS (pid {})", r.pid),
                format!(
                    "{:.1} MiB before, {:.1} MiB with {} connections: {:.2} KiB per connection",
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
    let (mut last_acked, mut last_delivered) = (0, 0);
    loop {
        tick.tick().await;
        let get = Counters::get;
        let Some(started) = shared.started.get() else {
            eprintln!("tether bench {name}: connecting {}/{connections}", get(&c.connected));
            continue;
        };
        let (acked, delivered) = (get(&c.acked), get(&c.delivered));
        let mut line = format!(
            "tether bench {name}: {:>5.1}s  acked {acked} ({}/s)",
            started.elapsed().as_secs_f64(),
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
        eprintln!("{line}");
        (last_acked, last_delivered) = (acked, delivered);
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
    fn the_count_is_split_across_publishers() {
        let args = |count| Plan {
            scenario: Scenario::Fanout,
            url: String::new(),
            token: None,
            publishers: 3,
            subscribers: 1,
            window: 1,
            payload: 1,
            rate: None,
            duration: Duration::from_secs(1),
            count,
            server_pid: None,
            json: false,
            run_id: String::new(),
        };
        let plan = args(Some(10));
        assert_eq!(
            (0..3).map(|i| plan.quota(i).expect("quota")).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!(args(None).quota(0), None);
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
