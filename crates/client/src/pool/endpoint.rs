//! One endpoint of the pool: its URL and priority, its [`Client`] once
//! started, its request counters and its [`Health`], and the [`Lease`] that
//! counts a request in flight on it.
//!
//! Not here: connecting and reconnecting (the endpoint's [`Client`]) and when
//! an endpoint is started (the pool's dispatcher).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::time::Instant;

use crate::state::State;
use crate::Client;

use super::health::Health;

pub(super) struct Endpoint {
    pub(super) url: String,
    pub(super) priority: i32,
    pub(super) client: Mutex<Option<Client>>,
    pub(super) in_flight: AtomicUsize,
    pub(super) requests: AtomicU64,
    pub(super) health: Mutex<Health>,
}

impl Endpoint {
    pub(super) fn client(&self) -> Option<Client> {
        self.client.lock().expect("endpoint lock").clone()
    }

    pub(super) fn state(&self) -> State {
        self.client().map_or(State::Idle, |c| c.state())
    }

    pub(super) fn record_error(&self) {
        self.health.lock().expect("health lock").record_error(Instant::now());
    }
}

/// An endpoint reserved for one request: counts as in flight until dropped.
pub(super) struct Lease<'a> {
    pub(super) endpoint: &'a Endpoint,
    pub(super) index: usize,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
