//! `subscribe`, `unsubscribe`, `publish`.

use std::time::Instant;

use serde_json::{json, Value};
use tether_protocol::client::Since;
use tether_protocol::server::ack_frame;
use tether_protocol::ErrorCode;

use super::Session;
use crate::clock::now_ms;
use crate::hub::RecoverFrom;
use crate::ledger::{PublishOp, Reply};
use crate::metrics::Sent;

impl Session {
    pub(super) fn subscribe(&mut self, id: &str, channel: &str, since: Option<Since>) {
        if !self.permit(
            self.identity.may_subscribe(channel),
            Some(id),
            &format!("subscribing to `{channel}`"),
        ) {
            return;
        }
        if self.subscriptions.contains(channel) {
            // A repeated subscribe starts over, so its replay cannot duplicate
            // events this connection already has.
            self.gw.hub.unsubscribe(self.conn.id(), channel);
        }
        let since = since.map(|s| RecoverFrom {
            seq: s.seq,
            epoch: s.epoch,
            not_before_ms: now_ms()
                .saturating_sub(self.gw.config.retention_for(channel).history_ttl.as_millis() as u64),
        });
        match self.gw.hub.subscribe(&self.conn, id, channel, since) {
            Ok(_) => {
                self.subscriptions.insert(channel.to_owned());
            }
            Err(e) => {
                tracing::error!(error = %e, channel, "subscribe failed");
                self.subscriptions.remove(channel);
                self.error(Some(id), ErrorCode::Internal, "the store failed; retry");
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, id: &str, channel: &str) {
        if self.subscriptions.remove(channel) {
            self.gw.hub.unsubscribe(self.conn.id(), channel);
        }
        self.conn.send(Sent::Ack, ack_frame(id, json!({"channel": channel})));
    }

    pub(super) async fn publish(&mut self, id: String, channel: String, data: Value) {
        if !self.permit(
            self.identity.may_publish(&channel),
            Some(&id),
            &format!("publishing on `{channel}`"),
        ) {
            return;
        }
        let op = PublishOp {
            principal: self.principal().to_owned(),
            id: Some(id.clone()),
            channel,
            data,
            from: Some(self.principal().to_owned()),
            reply: Some(Reply::Conn(self.conn.clone())),
            received: Instant::now(),
        };
        if self.gw.ledger.publish(op).await.is_err() {
            self.error(
                Some(&id),
                ErrorCode::Overloaded,
                "the gateway is shutting down; publish elsewhere",
            );
        }
    }
}
