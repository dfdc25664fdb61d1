//! `ping`, `request_agent_status`, `request_system_metrics`.

use serde_json::json;
use tether_protocol::server::pong_frame;

use super::Session;
use crate::clock::now_ms;
use crate::metrics::Sent;

impl Session {
    pub(super) fn ping(&self, id: &str) {
        self.conn.send(Sent::Pong, pong_frame(id, now_ms()));
    }

    pub(super) fn agent_status(&self, id: &str) {
        let data = self.gw.agents.snapshot();
        self.conn.send(
            Sent::AgentStatus,
            json!({"type": "agent_status", "id": id, "data": data}).to_string(),
        );
    }

    pub(super) fn system_metrics(&self, id: &str) {
        let data = self
            .gw
            .with_cluster_totals(self.gw.system.latest(self.gw.agents.online()));
        self.conn.send(
            Sent::SystemMetrics,
            json!({"type": "system_metrics", "id": id, "data": data}).to_string(),
        );
    }
}
