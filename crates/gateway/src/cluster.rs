//! Cluster presence on Redis: each node announces its agents and its latest
//! system sample under `tether:presence:<node>` (expiring after
//! [`PRESENCE_TTL`], refreshed every [`PRESENCE_EVERY`] and on every agent
//! change), and reads the others', so that `agent_status` and the `agents`
//! channel show the whole cluster and `system_metrics` carries cluster totals.
//!
//! A node that dies stops refreshing its key: within [`PRESENCE_TTL`] its
//! agents leave the cluster view. What is merged: replicas, in-flight,
//! processed and failed add up; commands are united; the latency is the mean
//! weighted by processed tasks; `last_seen` is the latest; the status is the
//! most available (`idle` > `busy` > `error` > `offline`).
//!
//! **Boundary:** presence is informational, plus one judgement: a node whose
//! presence expired is dead, and `tasks` requeues its claims.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_protocol::server::{AgentStatusEntry, ClusterTotals, SystemMetrics};
use tokio_util::sync::CancellationToken;

use crate::store::redis::connect;
use crate::store::StoreError;

/// How long a node's presence outlives its last refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(5);
/// How often a node refreshes its presence.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(1);

const NODES_KEY: &str = "tether:nodes";

/// Where `node` announces itself; it exists while the node is alive.
pub fn presence_key(node: &str) -> String {
    format!("tether:presence:{node}")
}

/// What one node announces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Presence {
    /// The node id.
    pub node: String,
    /// Its local agents.
    pub agents: Vec<AgentStatusEntry>,
    /// Its latest system sample, if it took one.
    pub system: Option<SystemMetrics>,
}

/// This node's view of the others.
pub struct Cluster {
    client: redis::Client,
    node: String,
    others: Mutex<Vec<Presence>>,
    con: Mutex<Option<redis::Connection>>,
    /// Since when every presence refresh succeeded (none failed since).
    healthy_since: Mutex<Option<std::time::Instant>>,
}

impl Cluster {
    /// A cluster view for `node` over `client`.
    pub fn new(client: redis::Client, node: &str) -> Arc<Cluster> {
        Arc::new(Cluster {
            client,
            node: node.to_owned(),
            others: Mutex::new(Vec::new()),
            con: Mutex::new(None),
            healthy_since: Mutex::new(None),
        })
    }

    /// Whether this node's own presence has been refreshed without a failure
    /// for longer than [`PRESENCE_TTL`]: only then may it judge another node
    /// dead by its expired presence (after a Redis outage every presence
    /// expired, and nobody is dead).
    pub fn may_judge(&self) -> bool {
        self.healthy_since
            .lock()
            .expect("healthy_since")
            .is_some_and(|t| t.elapsed() > PRESENCE_TTL + PRESENCE_EVERY)
    }

    fn note(&self, ok: bool) {
        let mut h = self.healthy_since.lock().expect("healthy_since");
        match (ok, h.is_some()) {
            (true, false) => *h = Some(std::time::Instant::now()),
            (false, _) => *h = None,
            _ => {}
        }
    }

    fn with_con<T>(&self, f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut guard = self.con.lock().expect("cluster connection");
        if guard.is_none() {
            *guard = Some(connect(&self.client)?);
        }
        let con = guard.as_mut().expect("just set");
        f(con).map_err(|e| {
            *guard = None;
            StoreError::Failed(format!("redis: {e}"))
        })
    }

    /// Announces `mine` and reads the other nodes' presence (blocking I/O).
    pub fn exchange(&self, mine: &Presence) -> Result<(), StoreError> {
        let r = self.exchange_once(mine);
        self.note(r.is_ok());
        r
    }

    fn exchange_once(&self, mine: &Presence) -> Result<(), StoreError> {
        let json = serde_json::to_string(mine).map_err(|e| StoreError::Failed(format!("presence: {e}")))?;
        let ttl = PRESENCE_TTL.as_millis() as u64;
        let nodes: Vec<String> = self.with_con(|c| {
            redis::pipe()
                .cmd("SET")
                .arg(presence_key(&self.node))
                .arg(&json)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .cmd("SADD")
                .arg(NODES_KEY)
                .arg(&self.node)
                .ignore()
                .cmd("SMEMBERS")
                .arg(NODES_KEY)
                .query::<(Vec<String>,)>(c)
                .map(|(n,)| n)
        })?;
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        let mut found = Vec::new();
        if !others.is_empty() {
            let keys: Vec<String> = others.iter().map(|n| presence_key(n)).collect();
            let raw: Vec<Option<String>> = self.with_con(|c| redis::cmd("MGET").arg(&keys).query(c))?;
            let mut gone = Vec::new();
            for (node, value) in others.iter().zip(raw) {
                match value.and_then(|j| serde_json::from_str::<Presence>(&j).ok()) {
                    Some(p) => found.push(p),
                    None => gone.push(node.clone()),
                }
            }
            if !gone.is_empty() {
                // Expired presence: the node stopped (or died); forget it.
                let _ = self.with_con(|c| redis::cmd("SREM").arg(NODES_KEY).arg(&gone).query::<()>(c));
            }
        }
        *self.others.lock().expect("others") = found;
        Ok(())
    }

    /// Withdraws this node's presence (on shutdown).
    pub fn leave(&self) {
        let _ = self.with_con(|c| {
            redis::pipe()
                .cmd("DEL")
                .arg(presence_key(&self.node))
                .ignore()
                .cmd("SREM")
                .arg(NODES_KEY)
                .arg(&self.node)
                .ignore()
                .query::<()>(c)
        });
    }

    /// `local` merged with the other nodes' agents, sorted by name.
    pub fn merge_agents(&self, local: Vec<AgentStatusEntry>) -> Vec<AgentStatusEntry> {
        let others = self.others.lock().expect("others");
        merge_agents(
            local
                .into_iter()
                .chain(others.iter().flat_map(|p| p.agents.iter().cloned())),
        )
    }

    /// Totals over this node's `sample` and the others' latest samples.
    pub fn totals(&self, sample: &SystemMetrics, local_agents: Vec<AgentStatusEntry>) -> ClusterTotals {
        let others = self.others.lock().expect("others");
        let mut t = ClusterTotals {
            nodes: 1 + others.len() as u64,
            connections: sample.connections,
            agents: 0,
            messages_in_per_s: sample.messages_in_per_s,
            messages_out_per_s: sample.messages_out_per_s,
        };
        for s in others.iter().filter_map(|p| p.system.as_ref()) {
            t.connections += s.connections;
            t.messages_in_per_s += s.messages_in_per_s;
            t.messages_out_per_s += s.messages_out_per_s;
        }
        let all = merge_agents(
            local_agents
                .into_iter()
                .chain(others.iter().flat_map(|p| p.agents.iter().cloned())),
        );
        t.agents = all.iter().filter(|a| a.replicas > 0).count() as u64;
        t.messages_in_per_s = (t.messages_in_per_s * 10.0).round() / 10.0;
        t.messages_out_per_s = (t.messages_out_per_s * 10.0).round() / 10.0;
        t
    }
}

/// The cluster status is the most available of the nodes' (the protocol:
/// `busy` only when every replica not in error is busy).
fn status_rank(s: &str) -> u8 {
    match s {
        "idle" => 3,
        "busy" => 2,
        "error" => 1,
        _ => 0,
    }
}

/// Merges entries of the same agent (see the module docs).
pub fn merge_agents(entries: impl Iterator<Item = AgentStatusEntry>) -> Vec<AgentStatusEntry> {
    let mut by_name: BTreeMap<String, AgentStatusEntry> = BTreeMap::new();
    for e in entries {
        match by_name.get_mut(&e.name) {
            None => {
                by_name.insert(e.name.clone(), e);
            }
            Some(m) => {
                let (pa, pb) = (m.processed as f64, e.processed as f64);
                m.avg_latency_ms = if pa + pb > 0.0 {
                    (m.avg_latency_ms * pa + e.avg_latency_ms * pb) / (pa + pb)
                } else {
                    0.0
                };
                m.replicas += e.replicas;
                m.in_flight += e.in_flight;
                m.processed += e.processed;
                m.failed += e.failed;
                m.last_seen = m.last_seen.max(e.last_seen);
                if status_rank(&e.status) > status_rank(&m.status) {
                    m.status = e.status;
                }
                for c in e.commands {
                    if !m.commands.contains(&c) {
                        m.commands.push(c);
                    }
                }
                m.commands.sort();
            }
        }
    }
    by_name.into_values().collect()
}

/// Refreshes presence every [`PRESENCE_EVERY`] until `stop`, then withdraws it.
pub fn spawn(cluster: Arc<Cluster>, gw: Arc<crate::state::Gateway>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRESENCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mine = Presence {
                node: gw.config.node_id.clone(),
                agents: gw.agents.local_snapshot(),
                system: Some(gw.system.latest(gw.agents.online())),
            };
            let c = cluster.clone();
            match tokio::task::spawn_blocking(move || c.exchange(&mine)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "presence refresh failed"),
                Err(e) => tracing::warn!(error = %e, "presence refresh panicked"),
            }
        }
        let c = cluster.clone();
        let _ = tokio::task::spawn_blocking(move || c.leave()).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, status: &str, replicas: u32, processed: u64, latency: f64) -> AgentStatusEntry {
        AgentStatusEntry {
            name: name.into(),
            status: status.into(),
            replicas,
            commands: vec![format!("{name}_cmd")],
            in_flight: 1,
            processed,
            failed: 1,
            avg_latency_ms: latency,
            last_seen: processed,
        }
    }

    #[test]
    fn entries_of_one_agent_on_two_nodes_add_up() {
        let merged = merge_agents(
            vec![
                entry("ocr", "idle", 1, 10, 10.0),
                entry("mail", "idle", 1, 0, 0.0),
                entry("ocr", "busy", 2, 30, 30.0),
            ]
            .into_iter(),
        );
        assert_eq!(merged.len(), 2);
        let ocr = merged.iter().find(|e| e.name == "ocr").expect("ocr");
        assert_eq!((ocr.replicas, ocr.in_flight, ocr.processed, ocr.failed), (3, 2, 40, 2));
        assert_eq!(ocr.status, "idle", "idle on one node: not every replica is busy");
        assert!((ocr.avg_latency_ms - 25.0).abs() < 1e-9);
        assert_eq!(ocr.last_seen, 30);
        assert_eq!(merged[0].name, "mail", "sorted by name");
    }
}
