//! The ledger: the one writer of the store. It sequences events, deduplicates
//! `(principal, id)`, records commands and their outcomes, and commits in groups.
//!
//! Operations queue up while a commit is in flight; the next commit takes all of
//! them at once (group commit), so concurrent publishers share one fsync instead
//! of paying one each. Only after a commit succeeds are its effects released, in
//! order, to the dispatcher: deliveries to subscribers, then replies. So an `ack`
//! always means durable, and a subscriber never sees an event that a crash could
//! take back.
//!
//! **Invariant:** seqs are assigned only here, inside the write that stores the
//! event; a failed write assigns nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Value};
use tether_protocol::server::{ack_frame, encode_event, error_frame, EventRef, PublishAck};
use tether_protocol::validate::inbox_channel;
use tether_protocol::ErrorCode;
use tokio::sync::mpsc;

use crate::clock::{now_ms, random_id};
use crate::config::Config;
use crate::connection::outbound::ConnHandle;
use crate::hub::Hub;
use crate::metrics::{Metrics, Sent};
use crate::store::{DedupEntry, Outcome, PendingCommand, Store, StoreError, StoreWrite};

/// Most operations in one commit: bounds the latency a single commit adds.
const MAX_GROUP: usize = 4096;
/// Committed batches waiting for the dispatcher.
const DISPATCH_QUEUE: usize = 256;
/// Waiting commands looked up per sweep (shared store).
const RECONCILE_PER_SWEEP: usize = 500;
/// Times a group is run again after losing a race with another node before
/// its operations are answered `internal` (retryable).
const MAX_CONFLICT_RETRIES: u32 = 50;

/// Where a reply goes.
#[derive(Clone)]
pub enum Reply {
    /// A WebSocket connection.
    Conn(ConnHandle),
    /// Slot `index` of an HTTP request's reply array.
    Http(mpsc::Sender<(usize, String)>, usize),
}

impl Reply {
    fn send(&self, kind: Sent, frame: String) {
        match self {
            Reply::Conn(c) => {
                c.send(kind, frame);
            }
            Reply::Http(tx, i) => {
                let _ = tx.try_send((*i, frame));
            }
        }
    }
}

/// A publish (or an event the gateway makes itself, with no `id`).
pub struct PublishOp {
    /// Whose `(principal, id)` key this is.
    pub principal: String,
    /// The client's id; `None` for gateway-made events (no dedup, no reply).
    pub id: Option<String>,
    /// The channel.
    pub channel: String,
    /// The payload.
    pub data: Value,
    /// The publisher's principal, shown as `from`; `None` for gateway events.
    pub from: Option<String>,
    /// Where the ack goes.
    pub reply: Option<Reply>,
    /// When the frame arrived, for `tether_publish_ack_seconds`.
    pub received: Instant,
}

/// A command from a client.
pub struct CommandOp {
    /// The requester.
    pub principal: String,
    /// The requester's id.
    pub id: String,
    /// The command type.
    pub command: String,
    /// Its data.
    pub data: Value,
    /// A connection waits for the `result`; HTTP gets `accepted` at once.
    pub reply: Reply,
}

/// The end of a command.
pub struct CompleteOp {
    /// The task.
    pub task_id: String,
    /// How it ended.
    pub outcome: Outcome,
}

enum Op {
    Publish(PublishOp),
    Command(CommandOp),
    Complete(CompleteOp),
    /// Another node committed a command's outcome (shared store): answer the
    /// requesters waiting here. Writes nothing.
    Finished(CompleteOp),
    Sweep,
    /// Commit what came before, then stop.
    Stop,
}

/// Post-commit work, in commit order: what the dispatcher does, and what the
/// writer itself must update once the commit is certain.
enum Post {
    Out(Out),
    Wait {
        task_id: String,
        waiter: Waiter,
    },
    Finish {
        task_id: String,
        /// `None` for an outcome committed by another node.
        request_id: Option<String>,
        outcome: Outcome,
    },
    Dispatch(PendingCommand),
    /// A metric, counted once the commit is certain (a write lost to a
    /// conflict runs again and must not count twice).
    Count(Count),
}

/// A metric of [`Post::Count`].
enum Count {
    Error(ErrorCode),
    DedupHit,
}

/// An error frame; its `tether_errors_total` is counted when the posts are
/// released (after the commit, or the failure's answers).
fn counted_error(posts: &mut Vec<Post>, id: Option<&str>, code: ErrorCode, message: &str) -> String {
    posts.push(Post::Count(Count::Error(code)));
    error_frame(id, code, message)
}

/// What the dispatcher does after a commit.
enum Out {
    Deliver {
        channel: String,
        seq: u64,
        frame: String,
    },
    Reply {
        to: Reply,
        kind: Sent,
        frame: String,
        received: Option<Instant>,
    },
}

#[derive(Clone)]
struct Waiter {
    to: Reply,
    principal: String,
    request_id: String,
    duplicate: bool,
}

/// The ledger's queue was closed: the gateway is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the gateway is shutting down")]
pub struct Stopped;

/// The handle through which everything writes.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Op>,
    healthy: Arc<AtomicBool>,
}

/// The running writer thread and dispatcher; [`LedgerTasks::join`] waits for
/// both to drain after every [`Ledger`] handle is dropped.
pub struct LedgerTasks {
    writer: std::thread::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl LedgerTasks {
    /// Waits until every queued operation is committed and dispatched.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || self.writer.join()).await;
        let _ = self.dispatcher.await;
    }
}

impl Ledger {
    /// Starts the writer thread and the dispatcher. Accepted commands (new, and
    /// those pending in the store from before a restart) come out of `dispatch`.
    pub fn start(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        queue: usize,
    ) -> Result<(Ledger, LedgerTasks, mpsc::UnboundedReceiver<PendingCommand>), StoreError> {
        let pending = store.pending_commands()?;
        let (tx, rx) = mpsc::channel(queue);
        let (out_tx, out_rx) = mpsc::channel(DISPATCH_QUEUE);
        let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let pending_ids = pending
            .iter()
            .map(|c| (c.task_id.clone(), (c.principal.clone(), c.request_id.clone())))
            .collect();
        for cmd in pending {
            let _ = dispatch_tx.send(cmd);
        }
        let shared = store.shared();
        let mut writer = Writer {
            store,
            shared,
            accepted: pending_ids,
            config,
            metrics: metrics.clone(),
            healthy: healthy.clone(),
            waiters: HashMap::new(),
            retry: Vec::new(),
            out: out_tx,
            dispatch: dispatch_tx,
        };
        let writer = std::thread::Builder::new()
            .name("tether-ledger".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Failed(format!("cannot start the ledger thread: {e}")))?;
        let dispatcher = tokio::spawn(dispatch(out_rx, hub, metrics));
        Ok((Ledger { tx, healthy }, LedgerTasks { writer, dispatcher }, dispatch_rx))
    }

    /// Whether the last commit succeeded.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Queues a publish; waits while the ledger's queue is full.
    pub async fn publish(&self, op: PublishOp) -> Result<(), Stopped> {
        self.tx.send(Op::Publish(op)).await.map_err(|_| Stopped)
    }

    /// Queues a gateway-made event without waiting; returns false (and the
    /// event is dropped) when the queue is full.
    pub fn publish_now(&self, channel: String, data: Value) -> bool {
        let op = PublishOp {
            principal: String::new(),
            id: None,
            channel,
            data,
            from: None,
            reply: None,
            received: Instant::now(),
        };
        self.tx.try_send(Op::Publish(op)).is_ok()
    }

    /// Queues a command.
    pub async fn command(&self, op: CommandOp) -> Result<(), Stopped> {
        self.tx.send(Op::Command(op)).await.map_err(|_| Stopped)
    }

    /// Queues the end of a command.
    pub async fn complete(&self, op: CompleteOp) -> Result<(), Stopped> {
        self.tx.send(Op::Complete(op)).await.map_err(|_| Stopped)
    }

    /// Another node finished a command: its requesters waiting on this node
    /// get the result. Never waits: when the queue is full the message is
    /// dropped, and the next sweep's reconcile answers them instead.
    pub fn finished_elsewhere(&self, op: CompleteOp) -> bool {
        self.tx.try_send(Op::Finished(op)).is_ok()
    }

    /// Asks for a retention and dedup sweep.
    pub fn sweep(&self) {
        let _ = self.tx.try_send(Op::Sweep);
    }

    /// Commits everything queued so far, then stops the writer; later
    /// operations are refused.
    pub async fn stop(&self) {
        let _ = self.tx.send(Op::Stop).await;
    }
}

struct Writer {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    healthy: Arc<AtomicBool>,
    /// Connections waiting for a command's result, by task id.
    waiters: HashMap<String, Vec<Waiter>>,
    /// Completions whose commit failed, tried again with the next batch.
    retry: Vec<Op>,
    /// Commands this node accepted and has not seen finish (its size is what
    /// `max_pending_commands` bounds): task id → (principal, request id).
    accepted: HashMap<String, (String, String)>,
    /// Whether other nodes share the store.
    shared: bool,
    out: mpsc::Sender<Vec<Out>>,
    dispatch: mpsc::UnboundedSender<PendingCommand>,
}

impl Writer {
    fn run(&mut self, mut rx: mpsc::Receiver<Op>) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut ops = std::mem::take(&mut self.retry);
            ops.push(first);
            while ops.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            if let Some(i) = ops.iter().position(|op| matches!(op, Op::Stop)) {
                ops.truncate(i);
                stopping = true;
                rx.close();
            }
            self.commit(ops);
        }
        if !self.retry.is_empty() {
            let ops = std::mem::take(&mut self.retry);
            self.commit(ops);
        }
        tracing::debug!("ledger drained");
    }

    fn commit(&mut self, ops: Vec<Op>) {
        let mut conflicts = 0;
        let result = loop {
            let now = now_ms();
            let mut posts = Vec::with_capacity(ops.len());
            let attempt = self
                .store
                .write(&mut |w| {
                    prefetch(w, &ops)?;
                    let mut new_commands = 0;
                    for op in &ops {
                        self.apply(w, op, now, &mut new_commands, &mut posts)?;
                    }
                    Ok(())
                })
                .map(|()| posts);
            match attempt {
                // Another node wrote a key this write read (a shared store):
                // nothing was written, so the same operations run again on
                // fresh reads. `apply` changes nothing but `posts`.
                Err(e) if e.is_conflict() && conflicts < MAX_CONFLICT_RETRIES => {
                    conflicts += 1;
                    self.metrics.store_conflicts.inc();
                    if conflicts > 3 {
                        std::thread::sleep(std::time::Duration::from_micros(200 * conflicts as u64));
                    }
                }
                other => break other,
            }
        };
        match result {
            Ok(mut posts) => {
                self.healthy.store(true, Ordering::Relaxed);
                // Outside the write (its reads are not part of it, and a
                // conflict retry must not repeat them), once per sweep.
                if self.shared && ops.iter().any(|op| matches!(op, Op::Sweep)) {
                    self.reconcile(&mut posts);
                }
                self.release(posts);
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, ops = ops.len(), "store commit failed; answering `internal`");
                self.fail(ops);
            }
        }
    }

    /// Answers a failed commit's operations `internal` (retryable); command
    /// completions are tried again with the next batch.
    fn fail(&mut self, ops: Vec<Op>) {
        let mut posts = Vec::new();
        let refuse = |posts: &mut Vec<Post>, to: Reply, id: &str| {
            let frame = counted_error(posts, Some(id), ErrorCode::Internal, "the store failed; retry");
            posts.push(Post::Out(Out::Reply {
                to,
                kind: Sent::Error,
                frame,
                received: None,
            }));
        };
        for op in ops {
            match op {
                Op::Publish(p) => {
                    if let (Some(to), Some(id)) = (p.reply, p.id) {
                        refuse(&mut posts, to, &id);
                    }
                }
                Op::Command(c) => refuse(&mut posts, c.reply, &c.id),
                Op::Complete(_) => self.retry.push(op),
                // Wrote nothing: the waiters get their result all the same.
                Op::Finished(f) => posts.push(Post::Finish {
                    task_id: f.task_id,
                    request_id: None,
                    outcome: f.outcome,
                }),
                Op::Sweep | Op::Stop => {}
            }
        }
        self.release(posts);
    }

    fn apply(
        &self,
        w: &mut dyn StoreWrite,
        op: &Op,
        now: u64,
        new_commands: &mut usize,
        posts: &mut Vec<Post>,
    ) -> Result<(), StoreError> {
        match op {
            Op::Publish(p) => self.apply_publish(w, p, now, posts),
            Op::Command(c) => self.apply_command(w, c, now, new_commands, posts),
            Op::Complete(c) => self.apply_complete(w, c, now, posts),
            Op::Stop => Ok(()),
            Op::Finished(f) => {
                posts.push(Post::Finish {
                    task_id: f.task_id.clone(),
                    request_id: None,
                    outcome: f.outcome.clone(),
                });
                Ok(())
            }
            Op::Sweep => {
                let config = self.config.clone();
                let stats = w.sweep(now, &move |ch| config.retention_for(ch))?;
                if stats.events + stats.dedup_keys > 0 {
                    tracing::debug!(events = stats.events, dedup_keys = stats.dedup_keys, "retention sweep");
                }
                Ok(())
            }
        }
    }

    /// With a shared store, outcomes committed by other nodes arrive as
    /// `tether:done` messages, which Pub/Sub may lose (a reconnect, an outage).
    /// Every sweep therefore looks up the commands this node still waits for
    /// and finishes those whose outcome is stored: no requester waits forever
    /// and `pending` does not leak.
    fn reconcile(&self, posts: &mut Vec<Post>) {
        let mut asked: HashMap<&str, (&str, &str)> = HashMap::new();
        for (task, (principal, id)) in &self.accepted {
            asked.insert(task, (principal, id));
        }
        for (task, waiters) in &self.waiters {
            if let Some(w) = waiters.first() {
                asked.entry(task).or_insert((&w.principal, &w.request_id));
            }
        }
        // Bounded per sweep; whatever is left is looked up by the next one.
        for (task, (principal, id)) in asked.into_iter().take(RECONCILE_PER_SWEEP) {
            match self.store.dedup_read(principal, id) {
                Ok(Some(DedupEntry::Command {
                    task_id,
                    outcome: Some(outcome),
                })) if task_id == task => posts.push(Post::Finish {
                    task_id,
                    request_id: None,
                    outcome,
                }),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reconciling waiting commands failed; next sweep");
                    return;
                }
            }
        }
    }

    fn expires(&self, now: u64) -> u64 {
        now + self.config.dedup_window.as_millis() as u64
    }

    /// Appends one event and returns its seq.
    fn append(
        &self,
        w: &mut dyn StoreWrite,
        channel: &str,
        from: Option<&str>,
        data: &Value,
        now: u64,
        posts: &mut Vec<Post>,
    ) -> Result<(u64, String), StoreError> {
        let seq = w.last_seq(channel)? + 1;
        let epoch = self.store.epoch(channel);
        let frame = encode_event(EventRef {
            channel,
            seq,
            epoch: &epoch,
            ts: now,
            from,
            data,
        });
        let retention = self.config.retention_for(channel);
        let stored = crate::store::StoredEvent { seq, ts: now, frame };
        w.append(channel, &stored, retention.history_size)?;
        posts.push(Post::Out(Out::Deliver {
            channel: channel.to_owned(),
            seq,
            frame: stored.frame,
        }));
        Ok((seq, epoch))
    }

    fn apply_publish(
        &self,
        w: &mut dyn StoreWrite,
        p: &PublishOp,
        now: u64,
        posts: &mut Vec<Post>,
    ) -> Result<(), StoreError> {
        let Some(id) = &p.id else {
            self.append(w, &p.channel, p.from.as_deref(), &p.data, now, posts)?;
            return Ok(());
        };
        let reply = |frame: String, kind: Sent| {
            Post::Out(Out::Reply {
                to: p.reply.clone().expect("client publishes have a reply"),
                kind,
                frame,
                received: Some(p.received),
            })
        };
        match w.dedup_get(&p.principal, id, now)? {
            Some(DedupEntry::Published { channel, seq, epoch }) => {
                posts.push(Post::Count(Count::DedupHit));
                let data = PublishAck {
                    channel: &channel,
                    seq,
                    epoch: &epoch,
                    duplicate: true,
                };
                posts.push(reply(ack_frame(id, data), Sent::Ack));
            }
            Some(DedupEntry::Command { .. }) => {
                let frame = counted_error(
                    posts,
                    Some(id),
                    ErrorCode::BadRequest,
                    "this id was already used by a command",
                );
                posts.push(reply(frame, Sent::Error));
            }
            None => {
                let (seq, epoch) = self.append(w, &p.channel, p.from.as_deref(), &p.data, now, posts)?;
                let entry = DedupEntry::Published {
                    channel: p.channel.clone(),
                    seq,
                    epoch: epoch.clone(),
                };
                w.dedup_put(&p.principal, id, &entry, self.expires(now))?;
                let data = PublishAck {
                    channel: &p.channel,
                    seq,
                    epoch: &epoch,
                    duplicate: false,
                };
                posts.push(reply(ack_frame(id, data), Sent::Ack));
            }
        }
        Ok(())
    }

    fn apply_command(
        &self,
        w: &mut dyn StoreWrite,
        c: &CommandOp,
        now: u64,
        new_commands: &mut usize,
        posts: &mut Vec<Post>,
    ) -> Result<(), StoreError> {
        let http = matches!(c.reply, Reply::Http(..));
        let accepted = |duplicate: bool| {
            let data = if duplicate {
                json!({"accepted": true, "duplicate": true})
            } else {
                json!({"accepted": true})
            };
            Post::Out(Out::Reply {
                to: c.reply.clone(),
                kind: Sent::Ack,
                frame: ack_frame(&c.id, data),
                received: None,
            })
        };
        let waiter = |duplicate| Waiter {
            to: c.reply.clone(),
            principal: c.principal.clone(),
            request_id: c.id.clone(),
            duplicate,
        };
        match w.dedup_get(&c.principal, &c.id, now)? {
            Some(DedupEntry::Command { task_id, outcome }) => {
                posts.push(Post::Count(Count::DedupHit));
                match (http, outcome) {
                    (true, _) => posts.push(accepted(true)),
                    (false, None) => posts.push(Post::Wait {
                        task_id,
                        waiter: waiter(true),
                    }),
                    (false, Some(o)) => {
                        let (kind, frame) = result_frame(&c.id, &o, true);
                        posts.push(Post::Out(Out::Reply {
                            to: c.reply.clone(),
                            kind,
                            frame,
                            received: None,
                        }));
                    }
                }
            }
            Some(DedupEntry::Published { .. }) => {
                let frame = counted_error(
                    posts,
                    Some(&c.id),
                    ErrorCode::BadRequest,
                    "this id was already used by a publish",
                );
                posts.push(Post::Out(Out::Reply {
                    to: c.reply.clone(),
                    kind: Sent::Error,
                    frame,
                    received: None,
                }));
            }
            None if self.accepted.len() + *new_commands >= self.config.max_pending_commands => {
                let frame = counted_error(
                    posts,
                    Some(&c.id),
                    ErrorCode::Overloaded,
                    "too many commands pending; retry later",
                );
                posts.push(Post::Out(Out::Reply {
                    to: c.reply.clone(),
                    kind: Sent::Error,
                    frame,
                    received: None,
                }));
            }
            None => {
                *new_commands += 1;
                let cmd = PendingCommand {
                    task_id: random_id("t-"),
                    principal: c.principal.clone(),
                    request_id: c.id.clone(),
                    command: c.command.clone(),
                    payload: c.data.clone(),
                    accepted_ms: now,
                };
                w.command_put(&cmd)?;
                let entry = DedupEntry::Command {
                    task_id: cmd.task_id.clone(),
                    outcome: None,
                };
                w.dedup_put(&c.principal, &c.id, &entry, self.expires(now))?;
                if http {
                    posts.push(accepted(false));
                } else {
                    posts.push(Post::Wait {
                        task_id: cmd.task_id.clone(),
                        waiter: waiter(false),
                    });
                }
                posts.push(Post::Dispatch(cmd));
            }
        }
        Ok(())
    }

    fn apply_complete(
        &self,
        w: &mut dyn StoreWrite,
        c: &CompleteOp,
        now: u64,
        posts: &mut Vec<Post>,
    ) -> Result<(), StoreError> {
        let Some(cmd) = w.command_take(&c.task_id)? else {
            return Ok(()); // already finished (a late result after a timeout)
        };
        let entry = DedupEntry::Command {
            task_id: cmd.task_id.clone(),
            outcome: Some(c.outcome.clone()),
        };
        w.dedup_put(&cmd.principal, &cmd.request_id, &entry, self.expires(now))?;
        let inbox = inbox_data(&cmd.request_id, &c.outcome);
        self.append(w, &inbox_channel(&cmd.principal), None, &inbox, now, posts)?;
        w.command_done(&cmd.task_id, &c.outcome)?;
        posts.push(Post::Finish {
            task_id: cmd.task_id,
            request_id: Some(cmd.request_id),
            outcome: c.outcome.clone(),
        });
        Ok(())
    }

    fn release(&mut self, posts: Vec<Post>) {
        let mut outs = Vec::with_capacity(posts.len());
        for post in posts {
            match post {
                Post::Out(out) => outs.push(out),
                Post::Wait { task_id, waiter } => self.waiters.entry(task_id).or_default().push(waiter),
                Post::Finish {
                    task_id,
                    request_id,
                    outcome,
                } => {
                    // With a shared store the node that accepted a command may
                    // not be the one that finishes it: each counts its own.
                    self.accepted.remove(&task_id);
                    if request_id.is_some() {
                        if let Outcome::Gateway { code, .. } = &outcome {
                            self.metrics.error(*code);
                        }
                    }
                    for w in self.waiters.remove(&task_id).unwrap_or_default() {
                        debug_assert!(request_id.as_ref().is_none_or(|r| *r == w.request_id));
                        let (kind, frame) = result_frame(&w.request_id, &outcome, w.duplicate);
                        outs.push(Out::Reply {
                            to: w.to,
                            kind,
                            frame,
                            received: None,
                        });
                    }
                }
                Post::Count(Count::Error(code)) => self.metrics.error(code),
                Post::Count(Count::DedupHit) => self.metrics.dedup_hits.inc(),
                Post::Dispatch(cmd) => {
                    self.accepted
                        .insert(cmd.task_id.clone(), (cmd.principal.clone(), cmd.request_id.clone()));
                    // A shared store queued it for the cluster (see `tasks`).
                    if !self.shared {
                        let _ = self.dispatch.send(cmd);
                    }
                }
            }
        }
        if !outs.is_empty() {
            let _ = self.out.blocking_send(outs);
        }
    }
}

/// Tells the write which keys the group reads (one round trip for a
/// networked store).
fn prefetch(w: &mut dyn StoreWrite, ops: &[Op]) -> Result<(), StoreError> {
    let mut channels: Vec<&str> = Vec::new();
    let mut dedup: Vec<(&str, &str)> = Vec::new();
    let mut tasks: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            Op::Publish(p) => {
                channels.push(&p.channel);
                if let Some(id) = &p.id {
                    dedup.push((&p.principal, id));
                }
            }
            Op::Command(c) => dedup.push((&c.principal, &c.id)),
            Op::Complete(c) => tasks.push(&c.task_id),
            Op::Finished(_) | Op::Sweep | Op::Stop => {}
        }
    }
    channels.sort_unstable();
    channels.dedup();
    dedup.sort_unstable();
    dedup.dedup();
    tasks.sort_unstable();
    tasks.dedup();
    w.prefetch(&channels, &dedup, &tasks)
}

/// The frame a requester gets for an outcome.
fn result_frame(id: &str, outcome: &Outcome, duplicate: bool) -> (Sent, String) {
    let mut v = match outcome {
        Outcome::Data { data } => json!({"type": "result", "id": id, "data": data}),
        Outcome::AgentError { code, message } => {
            json!({"type": "result", "id": id, "error": {"code": code, "message": message}})
        }
        Outcome::Gateway { code, message } => {
            serde_json::from_str(&error_frame(Some(id), *code, message)).expect("error frames are JSON")
        }
    };
    if duplicate {
        v["duplicate"] = true.into();
    }
    let kind = if matches!(outcome, Outcome::Gateway { .. }) {
        Sent::Error
    } else {
        Sent::Result
    };
    (kind, v.to_string())
}

/// The `data` of the inbox event for an outcome.
fn inbox_data(id: &str, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Data { data } => json!({"kind": "result", "id": id, "data": data}),
        Outcome::AgentError { code, message } => {
            json!({"kind": "result", "id": id, "error": {"code": code, "message": message}})
        }
        Outcome::Gateway { code, message } => json!({"kind": "result", "id": id,
            "error": {"code": code, "message": message, "retryable": code.retryable()}}),
    }
}

/// Releases committed work in commit order: deliveries and replies.
async fn dispatch(mut rx: mpsc::Receiver<Vec<Out>>, hub: Arc<Hub>, metrics: Arc<Metrics>) {
    while let Some(outs) = rx.recv().await {
        for out in outs {
            match out {
                Out::Deliver { channel, seq, frame } => hub.deliver(&channel, seq, &Utf8Bytes::from(frame)),
                Out::Reply {
                    to,
                    kind,
                    frame,
                    received,
                } => {
                    if let Some(t) = received {
                        metrics.publish_ack_seconds.observe(t.elapsed().as_secs_f64());
                    }
                    to.send(kind, frame);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::StoredEvent;

    /// The embedded store, but every other write loses a race (as a shared
    /// store's may): the ledger then runs the same operations again.
    struct ConflictEveryOther {
        inner: EmbeddedStore,
        lose: AtomicBool,
    }

    impl Store for ConflictEveryOther {
        fn epoch(&self, channel: &str) -> String {
            self.inner.epoch(channel)
        }
        fn last_seq(&self, channel: &str) -> Result<u64, StoreError> {
            self.inner.last_seq(channel)
        }
        fn read_events(
            &self,
            channel: &str,
            after: u64,
            upto: u64,
            not_before_ms: u64,
            limit: usize,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            self.inner.read_events(channel, after, upto, not_before_ms, limit)
        }
        fn first_retained(&self, channel: &str, not_before_ms: u64) -> Result<Option<u64>, StoreError> {
            self.inner.first_retained(channel, not_before_ms)
        }
        fn pending_commands(&self) -> Result<Vec<PendingCommand>, StoreError> {
            self.inner.pending_commands()
        }
        fn write(&self, body: &mut dyn FnMut(&mut dyn StoreWrite) -> Result<(), StoreError>) -> Result<(), StoreError> {
            if self.lose.fetch_xor(true, Ordering::SeqCst) {
                // The body runs (and counts, if it counts) but nothing is written.
                return self.inner.write(&mut |w| {
                    body(w)?;
                    Err(StoreError::conflict())
                });
            }
            self.inner.write(body)
        }
    }

    #[tokio::test]
    async fn metrics_count_once_when_a_write_runs_again_after_a_conflict() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(ConflictEveryOther {
            inner: EmbeddedStore::open(dir.path()).expect("store"),
            lose: AtomicBool::new(true),
        });
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(store.clone(), metrics.clone()));
        let (ledger, tasks, _dispatch) =
            Ledger::start(store, Arc::new(Config::default()), hub, metrics.clone(), 64).expect("ledger");
        let (tx, mut replies) = mpsc::channel(8);
        let publish = |id: &str| PublishOp {
            principal: "p".into(),
            id: Some(id.into()),
            channel: "c".into(),
            data: json!(1),
            from: Some("p".into()),
            reply: Some(Reply::Http(tx.clone(), 0)),
            received: Instant::now(),
        };
        ledger.publish(publish("x")).await.expect("queued");
        let (_, ack) = replies.recv().await.expect("ack");
        assert!(ack.contains(r#""type":"ack""#), "{ack}");
        ledger.publish(publish("x")).await.expect("queued");
        let (_, again) = replies.recv().await.expect("ack");
        assert!(again.contains(r#""duplicate":true"#), "{again}");
        let command = CommandOp {
            principal: "p".into(),
            id: "x".into(),
            command: "echo".into(),
            data: Value::Null,
            reply: Reply::Http(tx.clone(), 0),
        };
        ledger.command(command).await.expect("queued");
        let (_, refused) = replies.recv().await.expect("error");
        assert!(refused.contains("already used by a publish"), "{refused}");

        assert!(
            metrics.store_conflicts.get() >= 3,
            "every commit lost once and ran again"
        );
        assert_eq!(metrics.dedup_hits.get(), 1, "one duplicate publish");
        assert_eq!(metrics.error_count(ErrorCode::BadRequest), 1, "one refused command");
        ledger.stop().await;
        drop(ledger);
        tasks.join().await;
    }
}
