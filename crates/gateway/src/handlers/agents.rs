//! `register`, `status`, `task_progress`, `task_result`, and commands.

use serde_json::{json, Value};
use tether_protocol::client::{AgentError, AgentState};
use tether_protocol::server::ack_frame;
use tether_protocol::ErrorCode;

use super::Session;
use crate::agents::registry::Refusal;
use crate::ledger::{CommandOp, Reply};
use crate::metrics::Sent;

impl Session {
    pub(super) async fn register(&mut self, id: &str, name: &str, commands: Vec<String>, concurrency: u32) {
        if !self.permit(
            self.identity.may_register(),
            Some(id),
            "`register` (it needs role agent or admin)",
        ) {
            return;
        }
        let data = json!({"name": name, "replica": self.conn.session()});
        self.conn.send(Sent::Ack, ack_frame(id, data));
        self.gw.agents.register(&self.conn, name, commands, concurrency).await;
    }

    pub(super) async fn status(&mut self, state: AgentState) {
        if let Err(r) = self.gw.agents.status(self.conn.id(), state).await {
            self.refused(None, r);
        }
    }

    pub(super) async fn task_progress(&mut self, task_id: &str, data: Value) {
        if let Err(r) = self.gw.agents.progress(self.conn.id(), task_id, data).await {
            self.refused(Some(task_id), r);
        }
    }

    pub(super) async fn task_result(&mut self, task_id: &str, outcome: Result<Value, AgentError>) {
        if let Err(r) = self.gw.agents.result(self.conn.id(), task_id, outcome).await {
            self.refused(Some(task_id), r);
        }
    }

    pub(super) async fn command(&mut self, id: String, command: String, data: Value) {
        if !self.permit(
            self.identity.may_command(&command),
            Some(&id),
            &format!("the command `{command}`"),
        ) {
            return;
        }
        let op = CommandOp {
            principal: self.principal().to_owned(),
            id: id.clone(),
            command,
            data,
            reply: Reply::Conn(self.conn.clone()),
        };
        if self.gw.ledger.command(op).await.is_err() {
            self.error(
                Some(&id),
                ErrorCode::Overloaded,
                "the gateway is shutting down; retry elsewhere",
            );
        }
    }

    fn refused(&self, id: Option<&str>, r: Refusal) {
        let message = match r {
            Refusal::NotRegistered => "this connection has not registered as an agent; send `register` first",
            Refusal::UnknownTask => "no such task in flight on this connection (finished, timed out or never sent)",
        };
        self.error(id, ErrorCode::BadRequest, message);
    }
}
