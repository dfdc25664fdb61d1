//! `/api/v1`: the HTTP twin of the WebSocket for what a Service Worker replays
//! (`POST /messages`), the agent list and channel history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_protocol::client::{parse_http_messages, ClientMessage};
use tether_protocol::server::error_frame;
use tether_protocol::validate::{is_valid_channel, is_valid_principal};
use tether_protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::auth::{request_token, AuthError, Identity};
use crate::clock::now_ms;
use crate::ledger::{CommandOp, PublishOp, Reply};
use crate::state::Gateway;

/// Principal of an HTTP request without `client_id` (auth off).
pub const ANONYMOUS: &str = "anonymous";
/// How long a request waits for the ledger's replies.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default and largest `limit` of the history route.
const HISTORY_LIMIT: (usize, usize) = (100, 1000);

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    json_response(status, error_frame(None, code, message))
}

/// Who sent a request: with auth on, its token (401 without a valid one, 403
/// for a principal that may not connect); with auth off, `client_id` or
/// `anonymous`.
fn identify(
    gw: &Gateway,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Identity, (StatusCode, ErrorCode, String)> {
    let Some(auth) = &gw.auth else {
        return match query.get("client_id") {
            None => Ok(Identity::unchecked(ANONYMOUS.to_owned())),
            Some(c) if is_valid_principal(c) => Ok(Identity::unchecked(c.clone())),
            Some(_) => Err((
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "client_id must be 1 to 128 printable ASCII characters".into(),
            )),
        };
    };
    let Some(token) = request_token(headers, query) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing token".into(),
        ));
    };
    auth.authenticate(token).map_err(|e| match e {
        AuthError::Invalid(m) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m),
        AuthError::Forbidden(m) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden, m),
    })
}

fn refused(gw: &Gateway, (status, code, message): (StatusCode, ErrorCode, String)) -> Response {
    gw.metrics.error(code);
    error_response(status, code, &message)
}

/// `POST /api/v1/messages`: publishes and commands, replies in order.
pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let identity = match identify(&gw, &headers, &query) {
        Ok(i) => i,
        Err(e) => return refused(&gw, e),
    };
    let principal = identity.principal.clone();
    let limit = gw.config.max_message_bytes.saturating_mul(100);
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            gw.metrics.error(ErrorCode::TooLarge);
            let msg = format!("body larger than {limit} bytes (max_message_bytes x 100)");
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, &msg);
        }
    };
    let items = match parse_http_messages(&bytes) {
        Ok(items) => items,
        Err(e) => {
            gw.metrics.error(ErrorCode::BadRequest);
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &e.message);
        }
    };
    let n = items.len();
    let mut replies: Vec<Option<String>> = vec![None; n];
    let (tx, mut rx) = mpsc::channel(n.max(1));
    let mut waiting = 0;
    for (i, item) in items.into_iter().enumerate() {
        let reply = Reply::Http(tx.clone(), i);
        let queued = match item {
            Err(e) => Err((e.id, ErrorCode::BadRequest, e.message)),
            Ok(ClientMessage::Publish { id, channel, .. }) if !identity.may_publish(&channel) => Err((
                Some(id),
                ErrorCode::Forbidden,
                format!("your token does not allow publishing on `{channel}`"),
            )),
            Ok(ClientMessage::Command { id, command, .. }) if !identity.may_command(&command) => Err((
                Some(id),
                ErrorCode::Forbidden,
                format!("your token does not allow the command `{command}`"),
            )),
            Ok(ClientMessage::Publish { id, channel, data }) => {
                gw.metrics.received("publish");
                let op = PublishOp {
                    principal: principal.clone(),
                    id: Some(id.clone()),
                    channel,
                    data,
                    from: Some(principal.clone()),
                    reply: Some(reply),
                    received: Instant::now(),
                };
                gw.ledger
                    .publish(op)
                    .await
                    .map_err(|_| (Some(id), ErrorCode::Overloaded, "shutting down".into()))
            }
            Ok(ClientMessage::Command { id, command, data }) => {
                gw.metrics.received("command");
                let op = CommandOp {
                    principal: principal.clone(),
                    id: id.clone(),
                    command,
                    data,
                    reply,
                };
                gw.ledger
                    .command(op)
                    .await
                    .map_err(|_| (Some(id), ErrorCode::Overloaded, "shutting down".into()))
            }
            Ok(other) => Err((
                other.id().map(str::to_owned),
                ErrorCode::BadRequest,
                format!(
                    "`{}` is not accepted over HTTP: send `publish` or a command",
                    other.type_name()
                ),
            )),
        };
        match queued {
            Ok(()) => waiting += 1,
            Err((id, code, message)) => {
                gw.metrics.error(code);
                replies[i] = Some(error_frame(id.as_deref(), code, &message));
            }
        }
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    while waiting > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((i, frame))) => {
                replies[i] = Some(frame);
                waiting -= 1;
            }
            _ => break,
        }
    }
    let body: Vec<String> = replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|| error_frame(None, ErrorCode::Internal, "no reply in time; retry")))
        .collect();
    json_response(StatusCode::OK, format!("[{}]", body.join(",")))
}

/// `GET /api/v1/agents`.
pub async fn agents(
    State(gw): State<Arc<Gateway>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = identify(&gw, &headers, &query) {
        return refused(&gw, e);
    }
    json_response(
        StatusCode::OK,
        serde_json::to_string(&gw.agents.snapshot()).expect("entries serialize"),
    )
}

/// `GET /api/v1/channels/{channel}/history?since=N&limit=M`.
pub async fn history(
    State(gw): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let identity = match identify(&gw, &headers, &query) {
        Ok(i) => i,
        Err(e) => return refused(&gw, e),
    };
    if !is_valid_channel(&channel) {
        return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "bad channel name");
    }
    if !identity.may_subscribe(&channel) {
        let msg = format!("your token does not allow reading `{channel}`");
        return refused(&gw, (StatusCode::FORBIDDEN, ErrorCode::Forbidden, msg));
    }
    let number = |key: &str| query.get(key).map(|v| v.parse::<u64>());
    let since = match number("since") {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "since must be a non-negative integer",
            )
        }
    };
    let limit = match number("limit") {
        None => HISTORY_LIMIT.0,
        Some(Ok(n)) if n >= 1 => (n as usize).min(HISTORY_LIMIT.1),
        Some(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "limit must be an integer from 1 to 1000",
            )
        }
    };
    let store = gw.store.clone();
    let ttl = gw.config.retention_for(&channel).history_ttl.as_millis() as u64;
    let result = tokio::task::spawn_blocking(move || {
        let seq = store.last_seq(&channel)?;
        let events = store.read_events(&channel, since, seq, now_ms().saturating_sub(ttl), limit)?;
        let epoch = store.epoch(&channel);
        Ok::<_, crate::store::StoreError>((channel, epoch, seq, events))
    })
    .await;
    match result {
        Ok(Ok((channel, epoch, seq, events))) => {
            let head = json!({"channel": channel, "epoch": epoch, "seq": seq}).to_string();
            let frames: Vec<&str> = events.iter().map(|e| e.frame.as_str()).collect();
            let body = format!("{},\"events\":[{}]}}", &head[..head.len() - 1], frames.join(","));
            json_response(StatusCode::OK, body)
        }
        _ => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the store failed; retry",
        ),
    }
}
