//! The node's shared state, handed to every connection and HTTP handler.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::Agents;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::hub::Hub;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::system::SystemSampler;

/// Where the node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Opening the store, loading pending commands.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// Shutting down: no new connections, `/readyz` 503.
    Draining = 2,
}

/// Everything a connection or request needs.
pub struct Gateway {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub ledger: Ledger,
    pub agents: Arc<Agents>,
    pub system: Arc<SystemSampler>,
    /// Token checker; `None` when auth is off.
    pub auth: Option<Authenticator>,
    /// Cancelled when draining starts: every connection closes with 1001.
    pub draining: CancellationToken,
    /// Tracks connection tasks so that shutdown can wait for them.
    pub connections: TaskTracker,
    phase: AtomicU8,
    next_conn: AtomicU64,
    per_ip: DashMap<IpAddr, usize>,
    /// When the node started.
    pub started: Instant,
    /// The other nodes (with Redis).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A slot of the per-IP connection cap, released on drop.
pub struct IpSlot {
    gw: Arc<Gateway>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.gw.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

impl Gateway {
    /// Assembles the state (phase `Starting`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        ledger: Ledger,
        agents: Arc<Agents>,
        system: Arc<SystemSampler>,
        auth: Option<Authenticator>,
    ) -> Gateway {
        Gateway {
            config,
            metrics,
            store,
            hub,
            ledger,
            agents,
            system,
            auth,
            draining: CancellationToken::new(),
            connections: TaskTracker::new(),
            phase: AtomicU8::new(Phase::Starting as u8),
            next_conn: AtomicU64::new(1),
            per_ip: DashMap::new(),
            started: Instant::now(),
            cluster: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Moves to `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Shows the other nodes (with Redis).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Gateway {
        self.cluster = cluster;
        self
    }

    /// `sample` with the cluster's totals (with Redis; unchanged otherwise).
    pub fn with_cluster_totals(
        &self,
        mut sample: tether_protocol::server::SystemMetrics,
    ) -> tether_protocol::server::SystemMetrics {
        if let Some(c) = &self.cluster {
            sample.cluster = Some(c.totals(&sample, self.agents.local_snapshot()));
        }
        sample
    }

    /// Whether `/readyz` says 200: serving, the last commit succeeded, and the
    /// store answers now (Redis is pinged).
    pub fn ready(&self) -> bool {
        self.phase() == Phase::Ready && self.ledger.healthy() && self.store.ready()
    }

    /// A fresh connection number.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes a slot of `ip`'s connection cap, or `None` when it is full.
    pub fn take_ip_slot(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.config.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot { gw: self.clone(), ip })
    }
}
