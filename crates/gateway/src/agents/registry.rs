//! The agent registry, sans-IO: replicas, the command queue, in-flight tasks and
//! their deadlines. Every method takes the time and returns [`Action`]s; the
//! caller ([`super::Agents`]) does the sending.
//!
//! Routing: a command goes to a replica that handles it and is not in `error`,
//! with the fewest tasks in flight (self-reported `busy` replicas last), never
//! above its `concurrency`. With none free it waits in FIFO order up to
//! `command_ttl`. A task whose replica disconnects goes back to the front of the
//! queue with the same task id (at-least-once to agents).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_protocol::client::{AgentError, AgentState};
use tether_protocol::server::{state_word, AgentStatusEntry, TaskData};
use tether_protocol::ErrorCode;

use crate::connection::outbound::ConnHandle;
use crate::store::{Outcome, PendingCommand};

/// How long an agent with no replica stays listed as `offline`.
pub const OFFLINE_RETENTION: Duration = Duration::from_secs(3600);

/// Side effects for the caller to carry out, in order.
pub enum Action {
    /// Send a `task` frame to a replica.
    SendTask { conn: ConnHandle, frame: String },
    /// Record the end of a command in the ledger.
    Complete { task_id: String, outcome: Outcome },
    /// Publish on `agent:<name>`.
    AgentEvent { name: String, data: Value },
    /// The status array changed (coalesced push on `agents`).
    AgentsChanged,
    /// A redelivery happened (metrics).
    Redelivered,
    /// A command finished, with this outcome label (metrics).
    Finished(&'static str),
}

/// Why an agent message was refused (answered with `bad_request`/`forbidden`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The connection has not registered.
    NotRegistered,
    /// The task is not in flight on this connection (unknown, finished or timed out).
    UnknownTask,
}

struct Replica {
    conn: ConnHandle,
    commands: Vec<String>,
    concurrency: u32,
    in_flight: BTreeSet<String>,
    state: AgentState,
}

struct Agent {
    replicas: BTreeMap<u64, Replica>,
    /// Commands of the replicas, or the last known ones when offline.
    commands: Vec<String>,
    processed: u64,
    failed: u64,
    latency_total_ms: f64,
    latency_count: u64,
    last_seen_ms: u64,
    offline_since: Option<Instant>,
    /// The (status, replicas, commands) last published on `agent:<name>`.
    published: Option<(String, u32, Vec<String>)>,
}

enum TaskState {
    Queued,
    InFlight { agent: String, conn: u64, since: Instant },
}

struct Task {
    cmd: PendingCommand,
    state: TaskState,
    deadline: Instant,
}

/// The registry of one node.
pub struct Registry {
    command_ttl: Duration,
    task_timeout: Duration,
    agents: BTreeMap<String, Agent>,
    replica_of: HashMap<u64, String>,
    tasks: HashMap<String, Task>,
    queue: VecDeque<String>,
    deadlines: BTreeSet<(Instant, String)>,
}

impl Registry {
    /// An empty registry.
    pub fn new(command_ttl: Duration, task_timeout: Duration) -> Registry {
        Registry {
            command_ttl,
            task_timeout,
            agents: BTreeMap::new(),
            replica_of: HashMap::new(),
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            deadlines: BTreeSet::new(),
        }
    }

    /// Registers `conn` as a replica of `name` (re-registering replaces).
    pub fn register(
        &mut self,
        conn: &ConnHandle,
        name: &str,
        commands: Vec<String>,
        concurrency: u32,
        now: Instant,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.replica_of.contains_key(&conn.id()) {
            actions.extend(self.unregister(conn.id(), now, now_ms));
        }
        let agent = self.agents.entry(name.to_owned()).or_insert_with(|| Agent {
            replicas: BTreeMap::new(),
            commands: Vec::new(),
            processed: 0,
            failed: 0,
            latency_total_ms: 0.0,
            latency_count: 0,
            last_seen_ms: now_ms,
            offline_since: None,
            published: None,
        });
        agent.replicas.insert(
            conn.id(),
            Replica {
                conn: conn.clone(),
                commands,
                concurrency,
                in_flight: BTreeSet::new(),
                state: AgentState::Idle,
            },
        );
        agent.offline_since = None;
        agent.last_seen_ms = now_ms;
        self.replica_of.insert(conn.id(), name.to_owned());
        self.refresh(name, &mut actions);
        self.pump(now, &mut actions);
        actions
    }

    /// Whether `conn` is a registered replica.
    pub fn is_replica(&self, conn_id: u64) -> bool {
        self.replica_of.contains_key(&conn_id)
    }

    /// Removes a replica (its connection closed); its tasks are redelivered.
    pub fn unregister(&mut self, conn_id: u64, now: Instant, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(name) = self.replica_of.remove(&conn_id) else {
            return actions;
        };
        let Some(agent) = self.agents.get_mut(&name) else {
            return actions;
        };
        let Some(replica) = agent.replicas.remove(&conn_id) else {
            return actions;
        };
        agent.last_seen_ms = now_ms;
        if agent.replicas.is_empty() {
            agent.offline_since = Some(now);
        }
        for task_id in replica.in_flight.iter().rev() {
            if let Some(task) = self.tasks.get_mut(task_id) {
                self.deadlines.remove(&(task.deadline, task_id.clone()));
                task.state = TaskState::Queued;
                task.deadline = now + self.command_ttl;
                self.deadlines.insert((task.deadline, task_id.clone()));
                self.queue.push_front(task_id.clone());
                actions.push(Action::Redelivered);
            }
        }
        self.refresh(&name, &mut actions);
        self.pump(now, &mut actions);
        actions
    }

    /// Sets a replica's self-reported state.
    pub fn set_status(
        &mut self,
        conn_id: u64,
        state: AgentState,
        now: Instant,
        now_ms: u64,
    ) -> Result<Vec<Action>, Refusal> {
        let name = self.replica_of.get(&conn_id).cloned().ok_or(Refusal::NotRegistered)?;
        let agent = self.agents.get_mut(&name).ok_or(Refusal::NotRegistered)?;
        agent.last_seen_ms = now_ms;
        if let Some(r) = agent.replicas.get_mut(&conn_id) {
            r.state = state;
        }
        let mut actions = Vec::new();
        self.refresh(&name, &mut actions);
        self.pump(now, &mut actions);
        Ok(actions)
    }

    /// Notes that a replica was heard from.
    pub fn touch(&mut self, conn_id: u64, now_ms: u64) {
        if let Some(agent) = self.replica_of.get(&conn_id).and_then(|n| self.agents.get_mut(n)) {
            agent.last_seen_ms = now_ms;
        }
    }

    /// Queues an accepted command and dispatches it if a replica is free.
    pub fn enqueue(&mut self, cmd: PendingCommand, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.tasks.contains_key(&cmd.task_id) {
            return actions;
        }
        let task_id = cmd.task_id.clone();
        let deadline = now + self.command_ttl;
        self.tasks.insert(
            task_id.clone(),
            Task {
                cmd,
                state: TaskState::Queued,
                deadline,
            },
        );
        self.deadlines.insert((deadline, task_id.clone()));
        self.queue.push_back(task_id);
        self.pump(now, &mut actions);
        actions
    }

    /// An agent's answer to a task.
    pub fn task_result(
        &mut self,
        conn_id: u64,
        task_id: &str,
        outcome: Result<Value, AgentError>,
        now: Instant,
        now_ms: u64,
    ) -> Result<Vec<Action>, Refusal> {
        let (name, since) = self.in_flight_on(conn_id, task_id)?;
        let task = self.tasks.remove(task_id).expect("in flight");
        self.deadlines.remove(&(task.deadline, task_id.to_owned()));
        let agent = self.agents.get_mut(&name).expect("replica's agent");
        agent.last_seen_ms = now_ms;
        if let Some(r) = agent.replicas.get_mut(&conn_id) {
            r.in_flight.remove(task_id);
        }
        agent.latency_total_ms += now.saturating_duration_since(since).as_secs_f64() * 1000.0;
        agent.latency_count += 1;
        let (outcome, label) = match outcome {
            Ok(data) => {
                agent.processed += 1;
                (Outcome::Data { data }, "ok")
            }
            Err(e) => {
                agent.failed += 1;
                (
                    Outcome::AgentError {
                        code: e.code,
                        message: e.message,
                    },
                    "agent_error",
                )
            }
        };
        let mut actions = vec![
            Action::Complete {
                task_id: task_id.to_owned(),
                outcome,
            },
            Action::Finished(label),
        ];
        self.refresh(&name, &mut actions);
        self.pump(now, &mut actions);
        Ok(actions)
    }

    /// An agent's progress report, published on `agent:<name>`.
    pub fn task_progress(
        &mut self,
        conn_id: u64,
        task_id: &str,
        data: Value,
        now_ms: u64,
    ) -> Result<Vec<Action>, Refusal> {
        let (name, _) = self.in_flight_on(conn_id, task_id)?;
        let command = self.tasks[task_id].cmd.command.clone();
        self.touch(conn_id, now_ms);
        let data = json!({"kind": "task_progress", "task": task_id, "command": command, "data": data});
        Ok(vec![Action::AgentEvent { name, data }])
    }

    fn in_flight_on(&self, conn_id: u64, task_id: &str) -> Result<(String, Instant), Refusal> {
        if !self.replica_of.contains_key(&conn_id) {
            return Err(Refusal::NotRegistered);
        }
        match self.tasks.get(task_id).map(|t| &t.state) {
            Some(TaskState::InFlight { agent, conn, since }) if *conn == conn_id => Ok((agent.clone(), *since)),
            _ => Err(Refusal::UnknownTask),
        }
    }

    /// The earliest deadline, for the timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Ends every command whose deadline passed and forgets long-offline agents.
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some((deadline, task_id)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(task) = self.tasks.remove(&task_id) else {
                continue;
            };
            match task.state {
                TaskState::Queued => {
                    self.queue.retain(|t| t != &task_id);
                    let message = format!("no agent took `{}` within command_ttl", task.cmd.command);
                    actions.push(Action::Complete {
                        task_id,
                        outcome: Outcome::Gateway {
                            code: ErrorCode::NoHandler,
                            message,
                        },
                    });
                    actions.push(Action::Finished("no_handler"));
                }
                TaskState::InFlight { agent, conn, .. } => {
                    if let Some(a) = self.agents.get_mut(&agent) {
                        a.failed += 1;
                        if let Some(r) = a.replicas.get_mut(&conn) {
                            r.in_flight.remove(&task_id);
                        }
                    }
                    let message = format!("`{}` got no result within task_timeout", task.cmd.command);
                    actions.push(Action::Complete {
                        task_id,
                        outcome: Outcome::Gateway {
                            code: ErrorCode::Timeout,
                            message,
                        },
                    });
                    actions.push(Action::Finished("timeout"));
                    self.refresh(&agent, &mut actions);
                }
            }
        }
        let before = self.agents.len();
        self.agents.retain(|_, a| {
            a.offline_since
                .is_none_or(|t| now.saturating_duration_since(t) < OFFLINE_RETENTION)
        });
        if self.agents.len() != before {
            actions.push(Action::AgentsChanged);
        }
        self.pump(now, &mut actions);
        actions
    }

    /// The replicas that could start tasks now: (free slots, commands) for
    /// each one not in `error`; empty while tasks wait in the local queue
    /// (they go first). With a shared store, this node claims at most that
    /// many tasks from the cluster's queues, each slot counted once.
    pub fn free_replicas(&self) -> Vec<(u32, Vec<String>)> {
        if !self.queue.is_empty() {
            return Vec::new();
        }
        self.agents
            .values()
            .flat_map(|a| a.replicas.values())
            .filter(|r| r.state != AgentState::Error)
            .map(|r| {
                (
                    r.concurrency.saturating_sub(r.in_flight.len() as u32),
                    r.commands.clone(),
                )
            })
            .filter(|(n, _)| *n > 0)
            .collect()
    }

    /// Whether the registry holds `task_id` (queued or in flight).
    pub fn has_task(&self, task_id: &str) -> bool {
        self.tasks.contains_key(task_id)
    }

    /// Removes and returns the queued tasks that no local replica handles any
    /// more (their replica left): with a shared store they go back to the
    /// cluster's queue for another node instead of waiting here.
    pub fn take_stranded(&mut self) -> Vec<PendingCommand> {
        if self.queue.is_empty() {
            return Vec::new(); // the usual case, on every poll
        }
        let handled: BTreeSet<&String> = self
            .agents
            .values()
            .flat_map(|a| a.replicas.values())
            .flat_map(|r| r.commands.iter())
            .collect();
        let stranded: Vec<String> = self
            .queue
            .iter()
            .filter(|t| {
                self.tasks
                    .get(*t)
                    .is_some_and(|task| !handled.contains(&task.cmd.command))
            })
            .cloned()
            .collect();
        if stranded.is_empty() {
            return Vec::new();
        }
        self.queue.retain(|t| !stranded.contains(t));
        let mut out = Vec::new();
        for task_id in stranded {
            if let Some(task) = self.tasks.remove(&task_id) {
                self.deadlines.remove(&(task.deadline, task_id));
                out.push(task.cmd);
            }
        }
        out
    }

    /// Agents with at least one replica.
    pub fn online(&self) -> usize {
        self.agents.values().filter(|a| !a.replicas.is_empty()).count()
    }

    /// The `agent_status` array, sorted by name.
    pub fn snapshot(&self) -> Vec<AgentStatusEntry> {
        self.agents.iter().map(|(name, a)| entry(name, a)).collect()
    }

    /// Dispatches queued tasks to free replicas, in queue order.
    fn pump(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let mut i = 0;
        let mut touched = BTreeSet::new();
        while i < self.queue.len() {
            let task_id = self.queue[i].clone();
            let Some(command) = self.tasks.get(&task_id).map(|t| t.cmd.command.clone()) else {
                self.queue.remove(i);
                continue;
            };
            let Some((name, conn_id)) = self.pick(&command) else {
                i += 1;
                continue;
            };
            self.queue.remove(i);
            let task = self.tasks.get_mut(&task_id).expect("queued task");
            self.deadlines.remove(&(task.deadline, task_id.clone()));
            task.deadline = now + self.task_timeout;
            task.state = TaskState::InFlight {
                agent: name.clone(),
                conn: conn_id,
                since: now,
            };
            self.deadlines.insert((task.deadline, task_id.clone()));
            let replica = self
                .agents
                .get_mut(&name)
                .and_then(|a| a.replicas.get_mut(&conn_id))
                .expect("picked");
            replica.in_flight.insert(task_id.clone());
            let data = TaskData {
                command: task.cmd.command.clone(),
                payload: task.cmd.payload.clone(),
                from: task.cmd.principal.clone(),
            };
            let frame = json!({"type": "task", "id": task_id, "data": data}).to_string();
            actions.push(Action::SendTask {
                conn: replica.conn.clone(),
                frame,
            });
            touched.insert(name);
        }
        for name in touched {
            self.refresh(&name, actions);
        }
    }

    fn pick(&self, command: &str) -> Option<(String, u64)> {
        self.agents
            .iter()
            .flat_map(|(name, a)| a.replicas.iter().map(move |(id, r)| (name, *id, r)))
            .filter(|(_, _, r)| {
                r.state != AgentState::Error
                    && (r.in_flight.len() as u32) < r.concurrency
                    && r.commands.iter().any(|c| c == command)
            })
            .min_by_key(|(_, id, r)| (r.state == AgentState::Busy, r.in_flight.len(), *id))
            .map(|(name, id, _)| (name.clone(), id))
    }

    /// Recomputes an agent's visible status; reports changes.
    fn refresh(&mut self, name: &str, actions: &mut Vec<Action>) {
        let Some(agent) = self.agents.get_mut(name) else {
            return;
        };
        if !agent.replicas.is_empty() {
            let mut commands: Vec<String> = agent
                .replicas
                .values()
                .flat_map(|r| r.commands.iter().cloned())
                .collect();
            commands.sort();
            commands.dedup();
            agent.commands = commands;
        }
        let e = entry(name, agent);
        let key = (e.status.clone(), e.replicas, e.commands.clone());
        if agent.published.as_ref() != Some(&key) {
            agent.published = Some(key);
            let mut data = serde_json::to_value(&e).expect("entries serialize");
            data["kind"] = "status".into();
            actions.push(Action::AgentEvent {
                name: name.to_owned(),
                data,
            });
        }
        actions.push(Action::AgentsChanged);
    }
}

fn entry(name: &str, a: &Agent) -> AgentStatusEntry {
    let replicas = &a.replicas;
    let status = if replicas.is_empty() {
        "offline"
    } else if replicas.values().all(|r| r.state == AgentState::Error) {
        state_word(AgentState::Error)
    } else if replicas
        .values()
        .filter(|r| r.state != AgentState::Error)
        .all(|r| r.state == AgentState::Busy || r.in_flight.len() as u32 >= r.concurrency)
    {
        state_word(AgentState::Busy)
    } else {
        state_word(AgentState::Idle)
    };
    AgentStatusEntry {
        name: name.to_owned(),
        status: status.to_owned(),
        replicas: replicas.len() as u32,
        commands: a.commands.clone(),
        in_flight: replicas.values().map(|r| r.in_flight.len() as u32).sum(),
        processed: a.processed,
        failed: a.failed,
        avg_latency_ms: if a.latency_count == 0 {
            0.0
        } else {
            (a.latency_total_ms / a.latency_count as f64 * 10.0).round() / 10.0
        },
        last_seen: a.last_seen_ms,
    }
}
