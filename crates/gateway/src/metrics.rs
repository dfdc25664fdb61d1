//! Prometheus metrics of one gateway node (`GET /metrics`, text format 0.0.4).
//!
//! Hot paths hold pre-resolved counters (no label lookups per delivery); the
//! fan-out adds its deliveries in one `inc_by` per event.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tether_protocol::ErrorCode;

/// Kinds of frames the gateway sends, for `tether_frames_sent_total{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Welcome,
    Pong,
    Ack,
    Error,
    Event,
    AgentStatus,
    SystemMetrics,
    Result,
    Task,
}

impl Sent {
    const ALL: [Sent; 9] = [
        Sent::Welcome,
        Sent::Pong,
        Sent::Ack,
        Sent::Error,
        Sent::Event,
        Sent::AgentStatus,
        Sent::SystemMetrics,
        Sent::Result,
        Sent::Task,
    ];

    fn label(self) -> &'static str {
        match self {
            Sent::Welcome => "welcome",
            Sent::Pong => "pong",
            Sent::Ack => "ack",
            Sent::Error => "error",
            Sent::Event => "event",
            Sent::AgentStatus => "agent_status",
            Sent::SystemMetrics => "system_metrics",
            Sent::Result => "result",
            Sent::Task => "task",
        }
    }
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    received: IntCounterVec,
    /// All received frames (unregistered; feeds `messages_in_per_s`).
    received_all: IntCounter,
    sent: Vec<IntCounter>,
    /// Bytes of frames received.
    pub bytes_received: IntCounter,
    /// Bytes of frames written to sockets.
    pub bytes_sent: IntCounter,
    errors: IntCounterVec,
    /// Publish accepted → durable ack sent.
    pub publish_ack_seconds: Histogram,
    /// Events handed to subscribers.
    pub deliveries: IntCounter,
    /// Store writes run again after losing a race with another node (Redis).
    pub store_conflicts: IntCounter,
    /// Publishes and commands recognised as duplicates.
    pub dedup_hits: IntCounter,
    recoveries: IntCounterVec,
    /// Connections closed with 1013 for a full outbound queue.
    pub slow_consumer_closes: IntCounter,
    /// Agents with at least one replica.
    pub agents: IntGauge,
    tasks: IntCounterVec,
    closes: IntCounterVec,
    /// Upgrades refused (per-IP cap, origin, draining).
    pub rejected_upgrades: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric names");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric names");
            g
        };
        // A labelled counter, with its known label values present at zero.
        let family = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric names");
            for v in values {
                c.with_label_values(&[*v]);
            }
            c
        };
        let connections = gauge("tether_connections", "Open WebSocket connections");
        let received = family(
            "tether_frames_received_total",
            "Frames received, by type (commands as `command`)",
            "type",
            &[],
        );
        let sent_vec = family("tether_frames_sent_total", "Frames sent, by type", "type", &[]);
        let sent = Sent::ALL
            .iter()
            .map(|k| sent_vec.with_label_values(&[k.label()]))
            .collect();
        let bytes_received = counter("tether_bytes_received_total", "Bytes of frames received");
        let bytes_sent = counter("tether_bytes_sent_total", "Bytes of frames sent");
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        let errors = family("tether_errors_total", "Error frames sent, by code", "code", &codes);
        let publish_ack_seconds = Histogram::with_opts(
            HistogramOpts::new("tether_publish_ack_seconds", "Publish received to durable ack").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(publish_ack_seconds.clone()))
            .expect("unique metric names");
        let deliveries = counter("tether_deliveries_total", "Events queued to subscribers");
        let store_conflicts = counter(
            "tether_store_conflicts_total",
            "Store writes run again after another node changed a key they read",
        );
        let dedup_hits = counter("tether_dedup_hits_total", "Duplicate publishes and commands");
        let recoveries = family(
            "tether_recoveries_total",
            "Subscribes with `since`, by outcome",
            "outcome",
            &["recovered", "not_recovered"],
        );
        let slow_consumer_closes = counter(
            "tether_slow_consumer_closes_total",
            "Connections closed as slow consumers",
        );
        let agents = gauge("tether_agents", "Agents with at least one replica");
        let tasks = family(
            "tether_tasks_total",
            "Finished commands, by outcome",
            "outcome",
            &["ok", "agent_error", "no_handler", "timeout", "redelivered"],
        );
        let closes = family(
            "tether_connection_closes_total",
            "Connections closed by the gateway, by close code",
            "code",
            &[],
        );
        let rejected_upgrades = family(
            "tether_rejected_upgrades_total",
            "Upgrades refused, by reason",
            "reason",
            &[],
        );
        Metrics {
            registry,
            connections,
            received,
            received_all: IntCounter::new("received_all", "internal").expect("valid"),
            sent,
            bytes_received,
            bytes_sent,
            errors,
            publish_ack_seconds,
            deliveries,
            store_conflicts,
            dedup_hits,
            recoveries,
            slow_consumer_closes,
            agents,
            tasks,
            closes,
            rejected_upgrades,
        }
    }

    /// Counts a received frame of `type` (`command`, `invalid` for others).
    pub fn received(&self, ty: &str) {
        self.received.with_label_values(&[ty]).inc();
        self.received_all.inc();
    }

    /// Counts `n` sent frames of a kind.
    pub fn sent(&self, kind: Sent, n: u64) {
        self.sent[kind as usize].inc_by(n);
    }

    /// Counts an error frame.
    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// `tether_errors_total` of `code` so far.
    pub fn error_count(&self, code: ErrorCode) -> u64 {
        self.errors.with_label_values(&[code.as_str()]).get()
    }

    /// Counts a recovery attempt.
    pub fn recovery(&self, recovered: bool) {
        let o = if recovered { "recovered" } else { "not_recovered" };
        self.recoveries.with_label_values(&[o]).inc();
    }

    /// Counts a finished command (`ok`, `agent_error`, `no_handler`, `timeout`) or
    /// a redelivery.
    pub fn task(&self, outcome: &str) {
        self.tasks.with_label_values(&[outcome]).inc();
    }

    /// Counts a close the gateway initiated.
    pub fn close(&self, code: u16) {
        self.closes.with_label_values(&[&code.to_string()]).inc();
    }

    /// Total frames received and sent so far (for the per-second rates).
    pub fn frame_totals(&self) -> (u64, u64) {
        let sent: u64 = self.sent.iter().map(IntCounter::get).sum();
        (self.received_all.get(), sent)
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}
