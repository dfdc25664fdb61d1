//! Agents and commands: the [`registry::Registry`] behind a mutex, plus the
//! tasks that feed it (accepted commands from the ledger, deadlines) and carry out
//! its actions (task frames, completions, status events).
//!
//! **Invariant:** the registry lock is never held across an `.await`: methods
//! lock, compute actions, unlock, then act.

pub mod registry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_protocol::client::{AgentError, AgentState};
use tether_protocol::server::AgentStatusEntry;
use tether_protocol::validate::{agent_channel, AGENTS_CHANNEL};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::cluster::{Cluster, Presence};
use crate::connection::outbound::ConnHandle;
use crate::ledger::{CompleteOp, Ledger};
use crate::metrics::{Metrics, Sent};
use crate::store::PendingCommand;
use registry::{Action, Refusal, Registry};

/// Pushes on `agents` are at most this frequent.
pub const AGENTS_PUSH_INTERVAL: Duration = Duration::from_millis(250);

/// The node's agents.
pub struct Agents {
    registry: Mutex<Registry>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    /// A deadline may have moved earlier.
    rearm: Notify,
    /// The status array changed.
    changed: Notify,
    /// The other nodes' agents (with Redis); `None` on a single node.
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    node: std::sync::OnceLock<String>,
}

impl Agents {
    /// An empty registry writing through `ledger`.
    pub fn new(command_ttl: Duration, task_timeout: Duration, ledger: Ledger, metrics: Arc<Metrics>) -> Arc<Agents> {
        Arc::new(Agents {
            registry: Mutex::new(Registry::new(command_ttl, task_timeout)),
            ledger,
            metrics,
            rearm: Notify::new(),
            changed: Notify::new(),
            cluster: std::sync::OnceLock::new(),
            node: std::sync::OnceLock::new(),
        })
    }

    /// Shows the cluster's agents (set once at start-up, with Redis).
    pub fn set_cluster(&self, cluster: Arc<Cluster>, node: &str) {
        let _ = self.cluster.set(cluster);
        let _ = self.node.set(node.to_owned());
    }

    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().expect("registry lock"))
    }

    /// Starts the background tasks: accepted commands in, deadlines, the
    /// coalesced `agents` push.
    pub fn spawn(self: &Arc<Self>, mut accepted: mpsc::UnboundedReceiver<PendingCommand>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(cmd) = accepted.recv().await {
                let actions = me.with(|r| r.enqueue(cmd, Instant::now()));
                me.act_and_rearm(actions).await;
            }
        });
        let me = self.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            loop {
                let next = me.with(|r| r.next_deadline());
                let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
                tokio::select! {
                    _ = stop2.cancelled() => return,
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = me.rearm.notified() => {}
                }
                let actions = me.with(|r| r.expire(Instant::now()));
                me.act(actions).await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = me.changed.notified() => {}
                }
                if let (Some(cluster), Some(node)) = (me.cluster.get(), me.node.get()) {
                    // Announce the change first and read the others', so that
                    // this push shows the cluster as it is now.
                    let mine = Presence {
                        node: node.clone(),
                        agents: me.local_snapshot(),
                        system: None,
                    };
                    let c = cluster.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || c.exchange(&mine)).await {
                        tracing::debug!(error = %e, "presence refresh failed");
                    }
                }
                let snapshot = me.snapshot();
                let data = serde_json::to_value(&snapshot).expect("entries serialize");
                if !me.ledger.publish_now(AGENTS_CHANNEL.to_owned(), data) {
                    tracing::warn!("ledger queue full: dropped an `agents` push");
                }
                tokio::time::sleep(AGENTS_PUSH_INTERVAL).await;
            }
        });
    }

    /// `register`.
    pub async fn register(&self, conn: &ConnHandle, name: &str, commands: Vec<String>, concurrency: u32) {
        let actions = self.with(|r| r.register(conn, name, commands, concurrency, Instant::now(), now_ms()));
        self.act_and_rearm(actions).await;
    }

    /// The connection closed.
    pub async fn disconnected(&self, conn_id: u64) {
        let actions = self.with(|r| r.unregister(conn_id, Instant::now(), now_ms()));
        self.act_and_rearm(actions).await;
    }

    /// Whether `conn_id` is a registered replica.
    pub fn is_replica(&self, conn_id: u64) -> bool {
        self.with(|r| r.is_replica(conn_id))
    }

    /// Notes a frame from a replica (`last_seen`).
    pub fn touch(&self, conn_id: u64) {
        self.with(|r| r.touch(conn_id, now_ms()));
    }

    /// `status`.
    pub async fn status(&self, conn_id: u64, state: AgentState) -> Result<(), Refusal> {
        let actions = self.with(|r| r.set_status(conn_id, state, Instant::now(), now_ms()))?;
        self.act_and_rearm(actions).await;
        Ok(())
    }

    /// `task_result`.
    pub async fn result(&self, conn_id: u64, task_id: &str, outcome: Result<Value, AgentError>) -> Result<(), Refusal> {
        let actions = self.with(|r| r.task_result(conn_id, task_id, outcome, Instant::now(), now_ms()))?;
        self.act_and_rearm(actions).await;
        Ok(())
    }

    /// `task_progress`.
    pub async fn progress(&self, conn_id: u64, task_id: &str, data: Value) -> Result<(), Refusal> {
        let actions = self.with(|r| r.task_progress(conn_id, task_id, data, now_ms()))?;
        self.act_and_rearm(actions).await;
        Ok(())
    }

    /// The `agent_status` array: this node's agents merged with the other
    /// nodes' (with Redis).
    pub fn snapshot(&self) -> Vec<AgentStatusEntry> {
        let local = self.local_snapshot();
        match self.cluster.get() {
            Some(c) => c.merge_agents(local),
            None => local,
        }
    }

    /// The local replicas that could start tasks now: (free slots, commands).
    pub fn free_replicas(&self) -> Vec<(u32, Vec<String>)> {
        self.with(|r| r.free_replicas())
    }

    /// Whether the registry holds `task_id`.
    pub fn has_task(&self, task_id: &str) -> bool {
        self.with(|r| r.has_task(task_id))
    }

    /// Queued tasks no local replica handles any more (taken out).
    pub fn take_stranded(&self) -> Vec<PendingCommand> {
        self.with(|r| r.take_stranded())
    }

    /// Hands a command (claimed from the cluster's queue) to the registry.
    pub async fn enqueue(&self, cmd: PendingCommand) {
        let actions = self.with(|r| r.enqueue(cmd, Instant::now()));
        self.act_and_rearm(actions).await;
    }

    /// This node's agents only.
    pub fn local_snapshot(&self) -> Vec<AgentStatusEntry> {
        self.with(|r| r.snapshot())
    }

    /// Agents with at least one replica.
    pub fn online(&self) -> usize {
        self.with(|r| r.online())
    }

    async fn act(&self, actions: Vec<Action>) {
        let mut changed = false;
        for action in actions {
            match action {
                Action::SendTask { conn, frame } => {
                    conn.send(Sent::Task, frame);
                }
                Action::Complete { task_id, outcome } => {
                    if self.ledger.complete(CompleteOp { task_id, outcome }).await.is_err() {
                        tracing::warn!("shutting down: a command outcome stays pending for the next start");
                    }
                }
                Action::AgentEvent { name, data } => {
                    if !self.ledger.publish_now(agent_channel(&name), data) {
                        tracing::warn!(agent = %name, "ledger queue full: dropped an agent event");
                    }
                }
                Action::AgentsChanged => changed = true,
                Action::Redelivered => self.metrics.task("redelivered"),
                Action::Finished(label) => self.metrics.task(label),
            }
        }
        if changed {
            self.metrics.agents.set(self.online() as i64);
            self.changed.notify_one();
        }
    }

    /// Acts, then wakes the timer: a deadline may now be earlier.
    async fn act_and_rearm(&self, actions: Vec<Action>) {
        self.act(actions).await;
        self.rearm.notify_one();
    }
}
