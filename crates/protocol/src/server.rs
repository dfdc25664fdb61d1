//! Server → client frames: typed structs the gateway serializes and clients
//! deserialize, and builders that produce frame text directly.
//!
//! The gateway encodes an `event` once per publish and shares the text among all
//! subscribers, so [`event_frame`] returns a `String` ready for the wire.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{AgentState, ErrorCode};

/// `welcome.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// This connection's session id.
    pub session: String,
    /// The gateway node's id.
    pub node: String,
    /// Protocol version (1).
    pub protocol: u32,
    /// Send a `ping` after this long without sending anything.
    pub heartbeat_interval_ms: u64,
    /// Treat a missing `pong` after this long as a dead connection.
    pub heartbeat_timeout_ms: u64,
    /// Larger frames close the connection with 1009.
    pub max_message_bytes: u64,
    /// The server's clock, ms since the Unix epoch.
    pub server_time: u64,
}

/// An `event` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The channel.
    pub channel: String,
    /// Its position in the channel (1-based, contiguous within an epoch).
    pub seq: u64,
    /// The channel's epoch.
    pub epoch: String,
    /// When the gateway accepted it, ms since the Unix epoch.
    pub ts: u64,
    /// The publisher's principal; absent for events made by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

/// `error` of an `error` frame or of a `result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// An [`ErrorCode`] for gateway errors; the agent's own code in a `result`.
    pub code: String,
    /// A human message.
    #[serde(default)]
    pub message: String,
    /// Whether retrying may succeed (gateway errors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// For `rate_limited`: when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// A gateway error body.
    pub fn gateway(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.as_str().to_owned(),
            message: message.into(),
            retryable: Some(code.retryable()),
            retry_after_ms: None,
        }
    }
}

/// One entry of the `agent_status` array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatusEntry {
    /// The agent's name.
    pub name: String,
    /// `offline`, `error`, `busy` or `idle`.
    pub status: String,
    /// Connected replicas.
    pub replicas: u32,
    /// Commands handled by any replica (sorted).
    pub commands: Vec<String>,
    /// Tasks dispatched and not yet answered.
    pub in_flight: u32,
    /// Tasks answered with data.
    pub processed: u64,
    /// Tasks answered with an error (or lost to a timeout).
    pub failed: u64,
    /// Mean dispatch-to-result latency.
    pub avg_latency_ms: f64,
    /// Last frame from any replica, ms since the Unix epoch.
    pub last_seen: u64,
}

/// `system_metrics.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemMetrics {
    /// The node that measured.
    pub node: String,
    /// CPU use of the gateway process, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory of the gateway process.
    pub memory_bytes: u64,
    /// Seconds since the gateway started.
    pub uptime_s: u64,
    /// Open WebSocket connections on this node.
    pub connections: u64,
    /// Agents with at least one replica.
    pub agents: u64,
    /// Frames received per second (over the last interval).
    pub messages_in_per_s: f64,
    /// Frames sent per second (over the last interval).
    pub messages_out_per_s: f64,
    /// Totals over every node sharing this node's Redis (absent on a single
    /// node with the embedded store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterTotals>,
}

/// `system_metrics.data.cluster`: the whole cluster, from each node's latest
/// announced sample (at most a few seconds old).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterTotals {
    /// Nodes announcing themselves (this one included).
    pub nodes: u64,
    /// Open WebSocket connections on all nodes.
    pub connections: u64,
    /// Distinct agents with at least one replica on some node.
    pub agents: u64,
    /// Frames received per second, summed.
    pub messages_in_per_s: f64,
    /// Frames sent per second, summed.
    pub messages_out_per_s: f64,
}

/// `task.data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskData {
    /// The command type.
    pub command: String,
    /// The command's `data`.
    #[serde(default)]
    pub payload: Value,
    /// The requester's principal.
    pub from: String,
}

/// Any server → client frame, for clients to decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every accepted connection.
    Welcome { data: Welcome },
    /// Reply to `ping`.
    Pong { id: String, ts: u64 },
    /// Success reply.
    Ack {
        id: String,
        #[serde(default)]
        data: Value,
    },
    /// Failure reply.
    Error {
        id: Option<String>,
        error: ErrorBody,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A channel event.
    Event(Event),
    /// Reply to `request_agent_status`.
    AgentStatus {
        id: Option<String>,
        data: Vec<AgentStatusEntry>,
    },
    /// Reply to `request_system_metrics`.
    SystemMetrics { id: Option<String>, data: SystemMetrics },
    /// The outcome of a command.
    Result {
        id: String,
        /// `Some(Value::Null)` for an explicit `"data": null`.
        #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// A task for an agent.
    Task { id: String, data: TaskData },
}

impl ServerMessage {
    /// Decodes one server frame.
    pub fn parse(text: &str) -> Result<ServerMessage, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Encodes the frame as JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// Deserializes a present field as `Some`, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The `error` frame text.
pub fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> String {
    json!({"type": "error", "id": id, "error": ErrorBody::gateway(code, message)}).to_string()
}

/// The `rate_limited` `error` frame text.
pub fn rate_limited_frame(id: Option<&str>, retry_after_ms: u64) -> String {
    let mut body = ErrorBody::gateway(ErrorCode::RateLimited, "rate limit exceeded");
    body.retry_after_ms = Some(retry_after_ms);
    json!({"type": "error", "id": id, "error": body}).to_string()
}

/// The `ack` frame text (`data` any JSON-serializable value).
pub fn ack_frame(id: &str, data: impl Serialize) -> String {
    #[derive(Serialize)]
    struct Ack<'a, T> {
        r#type: &'static str,
        id: &'a str,
        data: T,
    }
    serde_json::to_string(&Ack {
        r#type: "ack",
        id,
        data,
    })
    .expect("acks always serialize")
}

/// The `data` of a publish's `ack`.
#[derive(Debug, Clone, Serialize)]
pub struct PublishAck<'a> {
    /// The channel published to.
    pub channel: &'a str,
    /// The event's seq.
    pub seq: u64,
    /// The channel's epoch.
    pub epoch: &'a str,
    /// Present (`true`) when the id was already published: nothing new was stored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The `pong` frame text.
pub fn pong_frame(id: &str, ts: u64) -> String {
    json!({"type": "pong", "id": id, "ts": ts}).to_string()
}

/// The `event` frame text, encoded once and shared by every subscriber.
pub fn event_frame(event: &Event) -> String {
    encode_event(EventRef {
        channel: &event.channel,
        seq: event.seq,
        epoch: &event.epoch,
        ts: event.ts,
        from: event.from.as_deref(),
        data: &event.data,
    })
}

/// An [`Event`]'s fields, borrowed: encoding a new event needs no copy of its
/// payload.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub channel: &'a str,
    pub seq: u64,
    pub epoch: &'a str,
    pub ts: u64,
    pub from: Option<&'a str>,
    pub data: &'a Value,
}

/// The `event` frame text of `e` (as [`event_frame`]).
pub fn encode_event(e: EventRef<'_>) -> String {
    #[derive(Serialize)]
    struct Tagged<'a> {
        r#type: &'static str,
        channel: &'a str,
        seq: u64,
        epoch: &'a str,
        ts: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        data: &'a Value,
    }
    let t = Tagged {
        r#type: "event",
        channel: e.channel,
        seq: e.seq,
        epoch: e.epoch,
        ts: e.ts,
        from: e.from,
        data: e.data,
    };
    serde_json::to_string(&t).expect("events always serialize")
}

/// The `agent_status` entry's `status` word for a state.
pub fn state_word(state: AgentState) -> &'static str {
    match state {
        AgentState::Idle => "idle",
        AgentState::Busy => "busy",
        AgentState::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frame_round_trips() {
        let e = Event {
            channel: "orders".into(),
            seq: 58,
            epoch: "e7".into(),
            ts: 1,
            from: Some("alice".into()),
            data: json!({"a": 1}),
        };
        let text = event_frame(&e);
        assert_eq!(ServerMessage::parse(&text).unwrap(), ServerMessage::Event(e.clone()));
        let gateway_made = Event { from: None, ..e };
        assert!(!event_frame(&gateway_made).contains("\"from\""));
    }

    #[test]
    fn error_frame_has_retryable() {
        let v: Value = serde_json::from_str(&error_frame(None, ErrorCode::NoHandler, "x")).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["retryable"], true);
        assert_eq!(v["error"]["code"], "no_handler");
    }
}
