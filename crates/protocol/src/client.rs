//! Client → server messages: parsing and validation of one text frame into a
//! typed [`Frame`], or a [`FrameError`] that the gateway answers with
//! `bad_request`.
//!
//! Unknown top-level fields are ignored. `id` is checked first so that an error
//! about any other field can still echo it.

use serde_json::{Map, Value};

use crate::validate::{is_valid_agent_name, is_valid_channel, is_valid_command_type, is_valid_id, MAX_ID_LEN};
use crate::MAX_BATCH;

/// Largest `concurrency` an agent may register with.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Most commands one `register` may list.
pub const MAX_REGISTER_COMMANDS: usize = 256;

/// A frame that is not a valid client message. The gateway answers it with an
/// `error` of code `bad_request`; `id` is the frame's id when it had a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// The frame's id, when it had a valid one (echoed in the error).
    pub id: Option<String>,
    /// What is wrong, for a human.
    pub message: String,
}

impl FrameError {
    fn new(id: Option<&str>, message: impl Into<String>) -> Self {
        FrameError {
            id: id.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// `since` of a recovering `subscribe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The last seq the client has.
    pub seq: u64,
    /// The epoch that seq belongs to; `None` only means "the current one".
    pub epoch: Option<String>,
}

/// A replica's self-reported state (`status` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Ready for work.
    Idle,
    /// Working; prefer other replicas.
    Busy,
    /// Broken; receives no tasks.
    Error,
}

/// An agent's error answer to a task (`task_result` with `error`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentError {
    /// The agent's own error code.
    pub code: String,
    /// A human message.
    pub message: String,
}

/// One valid client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `ping` → `pong`.
    Ping { id: String },
    /// Replace the connection's token.
    Auth { id: String, token: String },
    /// Subscribe to a channel, optionally recovering from `since`.
    Subscribe {
        id: String,
        channel: String,
        since: Option<Since>,
    },
    /// Stop receiving a channel.
    Unsubscribe { id: String, channel: String },
    /// Publish `data` on a channel.
    Publish { id: String, channel: String, data: Value },
    /// Ask for the agent status array.
    RequestAgentStatus { id: String },
    /// Ask for a system metrics snapshot.
    RequestSystemMetrics { id: String },
    /// `subscribe` to `agent:<name>`.
    SubscribeAgent { id: String, name: String },
    /// `unsubscribe` from `agent:<name>`.
    UnsubscribeAgent { id: String, name: String },
    /// Become a replica of agent `name` handling `commands`.
    Register {
        id: String,
        name: String,
        commands: Vec<String>,
        concurrency: u32,
    },
    /// Set this replica's self-reported state.
    Status { state: AgentState, detail: Option<String> },
    /// Progress of task `id`.
    TaskProgress { id: String, data: Value },
    /// The outcome of task `id`.
    TaskResult {
        id: String,
        outcome: Result<Value, AgentError>,
    },
    /// A command to route to an agent (any other valid `type`).
    Command { id: String, command: String, data: Value },
}

impl ClientMessage {
    /// The message's type name as on the wire.
    pub fn type_name(&self) -> &str {
        match self {
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Auth { .. } => "auth",
            ClientMessage::Subscribe { .. } => "subscribe",
            ClientMessage::Unsubscribe { .. } => "unsubscribe",
            ClientMessage::Publish { .. } => "publish",
            ClientMessage::RequestAgentStatus { .. } => "request_agent_status",
            ClientMessage::RequestSystemMetrics { .. } => "request_system_metrics",
            ClientMessage::SubscribeAgent { .. } => "subscribe_agent",
            ClientMessage::UnsubscribeAgent { .. } => "unsubscribe_agent",
            ClientMessage::Register { .. } => "register",
            ClientMessage::Status { .. } => "status",
            ClientMessage::TaskProgress { .. } => "task_progress",
            ClientMessage::TaskResult { .. } => "task_result",
            ClientMessage::Command { command, .. } => command,
        }
    }

    /// The message's id, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientMessage::Status { .. } => None,
            ClientMessage::Ping { id }
            | ClientMessage::Auth { id, .. }
            | ClientMessage::Subscribe { id, .. }
            | ClientMessage::Unsubscribe { id, .. }
            | ClientMessage::Publish { id, .. }
            | ClientMessage::RequestAgentStatus { id }
            | ClientMessage::RequestSystemMetrics { id }
            | ClientMessage::SubscribeAgent { id, .. }
            | ClientMessage::UnsubscribeAgent { id, .. }
            | ClientMessage::Register { id, .. }
            | ClientMessage::TaskProgress { id, .. }
            | ClientMessage::TaskResult { id, .. }
            | ClientMessage::Command { id, .. } => Some(id),
        }
    }
}

/// One text frame: a single message, or a batch whose inner messages are each
/// valid or not on their own.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A single message.
    Single(ClientMessage),
    /// A `batch`: 1..=100 inner messages, handled in order, each with its own
    /// reply (an invalid one gets its own `bad_request`).
    Batch(Vec<Result<ClientMessage, FrameError>>),
}

/// Parses one text frame.
pub fn parse_frame(text: &str) -> Result<Frame, FrameError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| FrameError::new(None, format!("frame is not valid JSON: {e}")))?;
    parse_frame_value(value)
}

/// Parses one already-decoded frame.
pub fn parse_frame_value(value: Value) -> Result<Frame, FrameError> {
    let Value::Object(mut obj) = value else {
        return Err(FrameError::new(None, "frame must be a JSON object"));
    };
    if obj.get("type").and_then(Value::as_str) != Some("batch") {
        return parse_object(obj).map(Frame::Single);
    }
    // A batch that fails as a whole is answered with id null (the protocol's
    // Batch section), whatever id it carried.
    let id = None;
    let Some(Value::Array(items)) = obj.remove("data") else {
        return Err(FrameError::new(id, "batch needs `data`: an array of 1 to 100 messages"));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(FrameError::new(
            id,
            format!("batch carries {} messages; it must carry 1 to {MAX_BATCH}", items.len()),
        ));
    }
    if items
        .iter()
        .any(|m| m.get("type").and_then(Value::as_str) == Some("batch"))
    {
        return Err(FrameError::new(id, "batches may not be nested"));
    }
    Ok(Frame::Batch(items.into_iter().map(parse_message).collect()))
}

/// Most messages one `POST /api/v1/messages` body may carry.
pub const MAX_HTTP_MESSAGES: usize = 1000;

/// Parses the body of `POST /api/v1/messages`: a JSON array of at most
/// [`MAX_HTTP_MESSAGES`] messages, each valid or not on its own. Only `publish`
/// and commands are accepted there; the caller answers other types.
pub fn parse_http_messages(body: &[u8]) -> Result<Vec<Result<ClientMessage, FrameError>>, FrameError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) if items.len() <= MAX_HTTP_MESSAGES => {
            Ok(items.into_iter().map(parse_message).collect())
        }
        Ok(Value::Array(items)) => Err(FrameError::new(
            None,
            format!("{} messages in one request; at most {MAX_HTTP_MESSAGES}", items.len()),
        )),
        Ok(_) => Err(FrameError::new(None, "body must be a JSON array of messages")),
        Err(e) => Err(FrameError::new(None, format!("body is not valid JSON: {e}"))),
    }
}

/// Parses one message (a frame that is not a batch, or a batch's inner message,
/// or an item of `POST /api/v1/messages`).
pub fn parse_message(value: Value) -> Result<ClientMessage, FrameError> {
    match value {
        Value::Object(obj) => parse_object(obj),
        _ => Err(FrameError::new(None, "message must be a JSON object")),
    }
}

fn valid_id(obj: &Map<String, Value>) -> Option<String> {
    match obj.get("id") {
        Some(Value::String(s)) if is_valid_id(s) => Some(s.clone()),
        _ => None,
    }
}

fn parse_object(mut obj: Map<String, Value>) -> Result<ClientMessage, FrameError> {
    let id = valid_id(&obj);
    let err = |m: String| FrameError::new(id.as_deref(), m);
    match obj.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(_)) if id.is_some() => {}
        Some(_) => {
            return Err(err(format!(
                "`id` must be a string of 1 to {MAX_ID_LEN} printable ASCII characters"
            )))
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(err("`type` must be a string".into())),
        None => return Err(err("missing `type`".into())),
    };
    let need_id = || {
        id.clone()
            .ok_or_else(|| FrameError::new(None, format!("`{ty}` needs an `id`")))
    };
    let data = obj.remove("data").unwrap_or(Value::Null);

    let msg = match ty.as_str() {
        "ping" => ClientMessage::Ping { id: need_id()? },
        "auth" => {
            let id = need_id()?;
            let token = data
                .get("token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| err("`auth` needs `data.token`: a non-empty string".into()))?;
            ClientMessage::Auth {
                id,
                token: token.to_owned(),
            }
        }
        "subscribe" => {
            let id = need_id()?;
            let channel = channel_field(&obj, id.as_str())?;
            let since = match obj.get("since") {
                None | Some(Value::Null) => None,
                Some(s) => Some(parse_since(s).map_err(err)?),
            };
            ClientMessage::Subscribe { id, channel, since }
        }
        "unsubscribe" => {
            let id = need_id()?;
            ClientMessage::Unsubscribe {
                channel: channel_field(&obj, &id)?,
                id,
            }
        }
        "publish" => {
            let id = need_id()?;
            ClientMessage::Publish {
                channel: channel_field(&obj, &id)?,
                id,
                data,
            }
        }
        "request_agent_status" => ClientMessage::RequestAgentStatus { id: need_id()? },
        "request_system_metrics" => ClientMessage::RequestSystemMetrics { id: need_id()? },
        "subscribe_agent" | "unsubscribe_agent" => {
            let id = need_id()?;
            let name = data
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| is_valid_agent_name(n))
                .ok_or_else(|| err("needs `data.name`: a valid agent name".into()))?
                .to_owned();
            if ty == "subscribe_agent" {
                ClientMessage::SubscribeAgent { id, name }
            } else {
                ClientMessage::UnsubscribeAgent { id, name }
            }
        }
        "register" => parse_register(need_id()?, &data)?,
        "status" => {
            let state = data
                .get("status")
                .cloned()
                .and_then(|s| serde_json::from_value::<AgentState>(s).ok())
                .ok_or_else(|| err("`status` needs `data.status`: idle, busy or error".into()))?;
            let detail = match data.get("detail") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.clone()),
                Some(_) => return Err(err("`data.detail` must be a string".into())),
            };
            ClientMessage::Status { state, detail }
        }
        "task_progress" => ClientMessage::TaskProgress { id: need_id()?, data },
        "task_result" => {
            let id = need_id()?;
            let outcome = match obj.get("error") {
                None | Some(Value::Null) => Ok(data),
                Some(e) => Err(parse_agent_error(e).map_err(err)?),
            };
            ClientMessage::TaskResult { id, outcome }
        }
        "batch" => return Err(err("batches may not be nested".into())),
        t if is_valid_command_type(t) => ClientMessage::Command {
            id: need_id()?,
            command: ty,
            data,
        },
        _ => return Err(err(format!("unknown type `{}`", truncate(&ty, 64)))),
    };
    Ok(msg)
}

fn channel_field(obj: &Map<String, Value>, id: &str) -> Result<String, FrameError> {
    match obj.get("channel") {
        Some(Value::String(c)) if is_valid_channel(c) => Ok(c.clone()),
        Some(Value::String(c)) => Err(FrameError::new(
            Some(id),
            format!(
                "bad channel name `{}`: use 1 to 128 of A-Z a-z 0-9 _ : . -",
                truncate(c, 64)
            ),
        )),
        _ => Err(FrameError::new(Some(id), "missing `channel`: a string")),
    }
}

fn parse_since(v: &Value) -> Result<Since, String> {
    let seq = v
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("`since.seq` must be a non-negative integer")?;
    let epoch = match v.get("epoch") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(_) => return Err("`since.epoch` must be a string".into()),
    };
    Ok(Since { seq, epoch })
}

fn parse_agent_error(v: &Value) -> Result<AgentError, String> {
    let code = v.get("code").and_then(Value::as_str).filter(|c| !c.is_empty());
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    match code {
        Some(code) => Ok(AgentError {
            code: code.to_owned(),
            message: message.to_owned(),
        }),
        None => Err("`error` needs `code`: a non-empty string".into()),
    }
}

fn parse_register(id: String, data: &Value) -> Result<ClientMessage, FrameError> {
    let err = |m: &str| FrameError::new(Some(&id), m);
    let name = data
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| is_valid_agent_name(n))
        .ok_or_else(|| err("`register` needs `data.name`: 1 to 122 of A-Z a-z 0-9 _ : . -"))?
        .to_owned();
    let commands: Vec<String> = match data.get("commands") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_REGISTER_COMMANDS => list
            .iter()
            .map(|c| c.as_str().filter(|c| is_valid_command_type(c)).map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| err("every entry of `data.commands` must be a valid command type"))?,
        _ => {
            return Err(err(
                "`register` needs `data.commands`: an array of 1 to 256 command types",
            ))
        }
    };
    let concurrency = match data.get("concurrency") {
        None | Some(Value::Null) => 1,
        Some(c) => c
            .as_u64()
            .filter(|c| (1..=u64::from(MAX_CONCURRENCY)).contains(c))
            .ok_or_else(|| err("`data.concurrency` must be an integer from 1 to 10000"))? as u32,
    };
    Ok(ClientMessage::Register {
        id,
        name,
        commands,
        concurrency,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Result<ClientMessage, FrameError> {
        match parse_frame(text)? {
            Frame::Single(m) => Ok(m),
            Frame::Batch(_) => panic!("unexpected batch"),
        }
    }

    #[test]
    fn error_echoes_valid_id_only() {
        let e = one(r#"{"id":"x1","type":"subscribe","channel":"a b"}"#).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("x1"));
        let long = "i".repeat(129);
        let e = one(&format!(r#"{{"id":"{long}","type":"ping"}}"#)).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn commands_are_other_valid_types() {
        let m = one(r#"{"type":"process_receipt","id":"9","data":{"u":1}}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Command {
                id: "9".into(),
                command: "process_receipt".into(),
                data: json!({"u":1})
            }
        );
        assert!(one(r#"{"type":"event","id":"9"}"#).is_err());
        assert!(one(r#"{"type":"Nope","id":"9"}"#).is_err());
    }

    #[test]
    fn batch_bounds() {
        assert!(parse_frame(r#"{"type":"batch","data":[]}"#).is_err());
        let nested = r#"{"type":"batch","data":[{"type":"batch","data":[{"type":"ping","id":"1"}]}]}"#;
        assert!(parse_frame(nested).is_err());
        let ok = parse_frame(r#"{"type":"batch","data":[{"type":"ping","id":"1"},{"type":"ping"}]}"#).unwrap();
        let Frame::Batch(items) = ok else { panic!() };
        assert!(items[0].is_ok() && items[1].is_err());
    }
}
