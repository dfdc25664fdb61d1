//! `auth`: replacing the token of a live connection.

use serde_json::json;
use tether_protocol::server::ack_frame;
use tether_protocol::ErrorCode;

use super::Session;
use crate::metrics::Sent;

impl Session {
    /// A valid token for the same `sub` replaces the old one (its claims and
    /// `exp`); anything else gets `unauthorized` and the old token stays.
    pub(super) fn auth(&mut self, id: &str, token: &str) {
        let Some(authenticator) = &self.gw.auth else {
            let msg = "authentication is not enabled on this gateway; tokens are not checked";
            return self.error(Some(id), ErrorCode::BadRequest, msg);
        };
        match authenticator.authenticate(token) {
            Ok(new) if new.principal == self.identity.principal => {
                let data = json!({"sub": new.principal, "exp": new.exp});
                self.identity = new;
                self.conn.send(Sent::Ack, ack_frame(id, data));
            }
            Ok(_) => self.error(Some(id), ErrorCode::Unauthorized, "the new token is for another `sub`"),
            Err(e) => self.error(Some(id), ErrorCode::Unauthorized, &e.to_string()),
        }
    }
}
