//! What a connection does with each frame: parse, rate-check, then one handler
//! per message kind (`channels`, `agents`, `info`).
//!
//! **Invariant:** an invalid frame, a forbidden action or a failed command
//! gets an `error` reply and never closes the connection; only the rate rule
//! (4029) closes from here.

mod agents;
mod auth;
mod channels;
mod info;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tether_protocol::client::{parse_frame, ClientMessage, Frame, FrameError};
use tether_protocol::server::{error_frame, rate_limited_frame};
use tether_protocol::{CloseCode, ErrorCode};

use crate::auth::Identity;
use crate::connection::outbound::ConnHandle;
use crate::connection::ratelimit::{RateGuard, Verdict};
use crate::metrics::Sent;
use crate::state::Gateway;

/// The per-connection state the handlers work on.
pub struct Session {
    gw: Arc<Gateway>,
    conn: ConnHandle,
    identity: Identity,
    subscriptions: HashSet<String>,
    rate: RateGuard,
}

impl Session {
    /// A new session for `conn`, acting as `identity`.
    pub fn new(gw: Arc<Gateway>, conn: ConnHandle, identity: Identity) -> Session {
        let rate = RateGuard::new(gw.config.rate_limit, gw.config.rate_burst);
        Session {
            gw,
            conn,
            identity,
            subscriptions: HashSet::new(),
            rate,
        }
    }

    fn principal(&self) -> &str {
        &self.identity.principal
    }

    /// When the connection's token expires (auth on): it is then closed with 4001.
    pub fn expiry(&self) -> Option<tokio::time::Instant> {
        let exp_ms = self.identity.exp?.saturating_mul(1000);
        let left = exp_ms.saturating_sub(crate::clock::now_ms());
        Some(tokio::time::Instant::now() + std::time::Duration::from_millis(left))
    }

    /// The connection's handle.
    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    /// One text frame.
    pub async fn on_text(&mut self, text: &str) {
        if self.gw.agents.is_replica(self.conn.id()) {
            self.gw.agents.touch(self.conn.id());
        }
        match parse_frame(text) {
            Err(e) => {
                self.gw.metrics.received("invalid");
                if self.allow(e.id.as_deref()) {
                    self.bad_request(&e);
                }
            }
            Ok(Frame::Single(msg)) => {
                self.count(&msg);
                if self.allow(msg.id()) {
                    self.handle(msg).await;
                }
            }
            Ok(Frame::Batch(items)) => {
                self.gw.metrics.received("batch");
                for item in items {
                    match item {
                        Err(e) => {
                            self.gw.metrics.received("invalid");
                            if self.allow(e.id.as_deref()) {
                                self.bad_request(&e);
                            }
                        }
                        Ok(msg) => {
                            self.count(&msg);
                            if self.allow(msg.id()) {
                                self.handle(msg).await;
                            }
                        }
                    }
                    if self.conn.close_code().is_some() {
                        return;
                    }
                }
            }
        }
    }

    /// A binary frame: not part of the protocol.
    pub fn on_binary(&mut self) {
        self.gw.metrics.received("binary");
        if self.allow(None) {
            self.error(
                None,
                ErrorCode::BadRequest,
                "binary frames are not supported; send JSON text frames",
            );
        }
    }

    fn count(&self, msg: &ClientMessage) {
        let ty = match msg {
            ClientMessage::Command { .. } => "command",
            other => other.type_name(),
        };
        self.gw.metrics.received(ty);
    }

    /// Spends a rate token; answers `rate_limited` (and closes with 4029 past the
    /// limit) when there is none.
    fn allow(&mut self, id: Option<&str>) -> bool {
        match self.rate.check(Instant::now()) {
            Verdict::Allow => true,
            Verdict::Reject { retry_after_ms, close } => {
                self.gw.metrics.error(ErrorCode::RateLimited);
                self.conn.send(Sent::Error, rate_limited_frame(id, retry_after_ms));
                if close {
                    tracing::warn!(session = %self.conn.session(), "too many frames rejected for rate; closing with 4029");
                    self.conn.close(CloseCode::RateLimited);
                }
                false
            }
        }
    }

    async fn handle(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::Ping { id } => self.ping(&id),
            ClientMessage::Auth { id, token } => self.auth(&id, &token),
            ClientMessage::Subscribe { id, channel, since } => self.subscribe(&id, &channel, since),
            ClientMessage::Unsubscribe { id, channel } => self.unsubscribe(&id, &channel),
            ClientMessage::Publish { id, channel, data } => self.publish(id, channel, data).await,
            ClientMessage::RequestAgentStatus { id } => self.agent_status(&id),
            ClientMessage::RequestSystemMetrics { id } => self.system_metrics(&id),
            ClientMessage::SubscribeAgent { id, name } => {
                self.subscribe(&id, &tether_protocol::validate::agent_channel(&name), None)
            }
            ClientMessage::UnsubscribeAgent { id, name } => {
                self.unsubscribe(&id, &tether_protocol::validate::agent_channel(&name))
            }
            ClientMessage::Register {
                id,
                name,
                commands,
                concurrency,
            } => self.register(&id, &name, commands, concurrency).await,
            ClientMessage::Status { state, .. } => self.status(state).await,
            ClientMessage::TaskProgress { id, data } => self.task_progress(&id, data).await,
            ClientMessage::TaskResult { id, outcome } => self.task_result(&id, outcome).await,
            ClientMessage::Command { id, command, data } => self.command(id, command, data).await,
        }
    }

    /// Answers `forbidden` and returns false when `allowed` is false.
    fn permit(&self, allowed: bool, id: Option<&str>, what: &str) -> bool {
        if !allowed {
            tracing::warn!(session = %self.conn.session(), principal = %self.principal(), what, "forbidden");
            self.error(id, ErrorCode::Forbidden, &format!("your token does not allow {what}"));
        }
        allowed
    }

    fn bad_request(&self, e: &FrameError) {
        tracing::warn!(session = %self.conn.session(), error = %e.message, "rejected frame");
        self.error(e.id.as_deref(), ErrorCode::BadRequest, &e.message);
    }

    fn error(&self, id: Option<&str>, code: ErrorCode, message: &str) {
        self.gw.metrics.error(code);
        self.conn.send(Sent::Error, error_frame(id, code, message));
    }

    /// Undoes the connection's subscriptions and registration.
    pub async fn cleanup(&mut self) {
        for channel in self.subscriptions.drain() {
            self.gw.hub.unsubscribe(self.conn.id(), &channel);
        }
        self.gw.agents.disconnected(self.conn.id()).await;
    }
}
