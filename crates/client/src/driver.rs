//! The driver task: the only owner of the socket. It feeds the state machine,
//! performs its actions (connect, disconnect), keeps the heartbeat, routes
//! replies and events, resubscribes with `since` and resends unanswered
//! requests (same ids) after every reconnect, and flushes the offline queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tether_protocol::server::{ErrorBody, Event};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{SendOutcome, SubscriptionItem};
use crate::config::ClientConfig;
use crate::metrics::ClientMetrics;
use crate::offline_queue::{OfflineQueue, QueueError};
use crate::state::{Action, Event as MachineEvent, Machine, State, Transition};
use crate::ClientError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = oneshot::Sender<Result<Value, ClientError>>;
type Items = mpsc::Sender<Result<SubscriptionItem, ClientError>>;

/// Most unanswered requests (sent, or waiting for a connection) at once; more
/// are refused at once with `ClientError::Queue` rather than held without bound.
pub const MAX_PENDING: usize = 10_000;
/// How often request deadlines are checked.
const SWEEP: Duration = Duration::from_millis(250);

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_hex() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// What the API and the driver share.
pub(crate) struct Shared {
    pub metrics: ClientMetrics,
    pub queue: Option<OfflineQueue>,
    prefix: String,
    counter: AtomicU64,
    syncing: AtomicBool,
    last_sync: AtomicU64,
    client_id: Mutex<String>,
}

impl Shared {
    pub fn new(metrics: ClientMetrics, queue: Option<OfflineQueue>) -> Shared {
        Shared {
            metrics,
            queue,
            prefix: random_hex(),
            counter: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
            last_sync: AtomicU64::new(0),
            client_id: Mutex::new(String::new()),
        }
    }

    /// A fresh request id, unique across this client's restarts.
    pub fn next_id(&self, kind: &str) -> String {
        format!(
            "{kind}-{}-{}",
            self.prefix,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn syncing(&self) -> bool {
        self.syncing.load(Ordering::Relaxed)
    }

    pub fn last_sync(&self) -> Option<u64> {
        Some(self.last_sync.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn client_id(&self) -> String {
        self.client_id.lock().expect("client id lock").clone()
    }
}

/// Requests from the API.
pub(crate) enum Cmd {
    Request {
        frame: Value,
        reply: Reply,
        deadline: Instant,
    },
    Subscribe {
        channel: String,
        since: Option<(u64, Option<String>)>,
        items: Items,
        reply: oneshot::Sender<Result<(), ClientError>>,
        deadline: Instant,
    },
    Offline {
        frame: Value,
        reply: oneshot::Sender<Result<SendOutcome, ClientError>>,
    },
    Sync,
    /// Become an agent: `frame` is the `register` frame (re-sent after every
    /// reconnect); tasks go to `tasks`.
    Register {
        frame: Value,
        tasks: mpsc::Sender<Value>,
        reply: Reply,
        deadline: Instant,
    },
    /// A frame with no reply (`task_result`, `task_progress`, `status`); dropped
    /// while disconnected (the gateway redelivers unanswered tasks).
    Fire {
        frame: Value,
    },
    Close,
}

struct Pending {
    frame: Value,
    reply: Option<Reply>,
    deadline: Option<Instant>,
    sent_at: Option<Instant>,
    /// Position in the offline queue, for queued messages.
    queue_seq: Option<u64>,
}

struct Sub {
    items: Items,
    /// Last delivered `(seq, epoch)`.
    last: Option<(u64, String)>,
    /// Recovery asked by the application for the first subscribe.
    since: Option<(u64, Option<String>)>,
    /// Waiting for the first ack.
    reply: Option<(oneshot::Sender<Result<(), ClientError>>, Instant)>,
    /// Whether an ack has been seen (so later acks are resubscriptions).
    acked: bool,
}

pub(crate) struct Driver {
    config: ClientConfig,
    machine: Machine,
    cmds: mpsc::Receiver<Cmd>,
    state: watch::Sender<State>,
    transitions: broadcast::Sender<Transition>,
    shared: std::sync::Arc<Shared>,
    pending: HashMap<String, Pending>,
    order: VecDeque<String>,
    subs: HashMap<String, Sub>,
    sub_ids: HashMap<String, String>,
    connected_once: bool,
    /// The agent registration to renew after reconnects, and where tasks go.
    agent: Option<(Value, mpsc::Sender<Value>)>,
    /// `exp` of the token in force on the open connection.
    token_exp: Option<u64>,
}

enum Ended {
    Lost { code: Option<u16>, reason: String },
    Stop,
}

impl Driver {
    pub fn new(
        config: ClientConfig,
        cmds: mpsc::Receiver<Cmd>,
        state: watch::Sender<State>,
        transitions: broadcast::Sender<Transition>,
        shared: std::sync::Arc<Shared>,
    ) -> Driver {
        let id = match &shared.queue {
            Some(q) => q.client_id(),
            None => config
                .client_id
                .clone()
                .unwrap_or_else(|| format!("c-{}", random_hex())),
        };
        *shared.client_id.lock().expect("client id lock") = id;
        Driver {
            machine: Machine::new(&config),
            config,
            cmds,
            state,
            transitions,
            shared,
            pending: HashMap::new(),
            order: VecDeque::new(),
            subs: HashMap::new(),
            sub_ids: HashMap::new(),
            connected_once: false,
            agent: None,
            token_exp: None,
        }
    }

    pub async fn run(mut self) {
        let mut connect = self.apply(MachineEvent::Start);
        // One interval for the whole life: a sleep re-created per loop turn would
        // never fire while frames keep arriving.
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(url) = connect.take() {
                self.shared.metrics.connect_attempts.inc();
                match self.open(url).await {
                    Ok((ws, welcome)) => {
                        let session = welcome["session"].as_str().unwrap_or_default().to_owned();
                        // Connecting → Connected never asks for another connect.
                        let _ = self.apply(MachineEvent::Opened { session });
                        if self.connected_once {
                            self.shared.metrics.reconnects.inc();
                        }
                        self.connected_once = true;
                        let ended = self.connected(ws, &welcome, &mut sweep).await;
                        connect = match ended {
                            Ended::Lost { code, reason } => self.apply(MachineEvent::Lost { code, reason }),
                            Ended::Stop => self.apply(MachineEvent::Stop),
                        };
                    }
                    Err(ConnectError { reason, code }) => {
                        connect = self.apply(MachineEvent::ConnectFailed { reason, code })
                    }
                }
                continue;
            }
            if matches!(self.machine.state(), State::Closed { .. }) {
                break;
            }
            let wake = self.machine.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = sleep_opt(wake) => connect = self.apply(MachineEvent::Timeout),
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Cmd::Close) => connect = self.apply(MachineEvent::Stop),
                    Some(cmd) => self.accept(cmd, None).await,
                },
                _ = sweep.tick() => self.expire(Instant::now()),
            }
        }
        self.finish();
    }

    /// Feeds the machine; publishes transitions; returns a URL to connect to.
    fn apply(&mut self, event: MachineEvent) -> Option<usize> {
        let mut connect = None;
        for action in self.machine.handle(event, std::time::Instant::now()) {
            match action {
                Action::Connect { url } => connect = Some(url),
                Action::Disconnect => {}
                Action::Transition(t) => {
                    tracing::debug!(old = t.old.name(), new = t.new.name(), code = ?t.code, reason = %t.reason, "client state");
                    self.shared
                        .metrics
                        .connected
                        .set(i64::from(matches!(t.new, State::Connected { .. })));
                    if matches!(t.new, State::CircuitOpen { .. }) && !matches!(t.old, State::CircuitOpen { .. }) {
                        self.shared.metrics.circuit_opens.inc();
                    }
                    // Broadcast before publishing the state: whoever sees the
                    // new state and then calls `transitions()` gets only later
                    // transitions, never this one again.
                    let new = t.new.clone();
                    let _ = self.transitions.send(t);
                    let _ = self.state.send(new);
                }
            }
        }
        connect
    }

    async fn open(&mut self, url: usize) -> Result<(Ws, Value), ConnectError> {
        let base = &self.config.urls[url];
        let sep = if base.contains('?') { '&' } else { '?' };
        let full = format!("{base}{sep}client_id={}", self.shared.client_id());
        let mut request = full.into_client_request().map_err(|e| format!("bad URL: {e}"))?;
        let token = match &self.config.token_provider {
            Some(provider) => provider(),
            None => self.config.token.clone(),
        };
        self.token_exp = token.as_deref().and_then(crate::token::exp);
        if let Some(t) = token {
            let value = format!("Bearer {t}")
                .parse()
                .map_err(|_| "token is not a valid header value".to_owned())?;
            request.headers_mut().insert("Authorization", value);
        }
        let attempt = async {
            let (mut ws, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                        if v["type"] == "welcome" {
                            return Ok((ws, v["data"].clone()));
                        }
                        return Err(format!("expected welcome, got {}", v["type"]).into());
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Err(match f {
                            Some(f) => ConnectError {
                                reason: format!("closed {}: {}", u16::from(f.code), f.reason),
                                code: Some(u16::from(f.code)),
                            },
                            None => "closed".to_owned().into(),
                        })
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string().into()),
                    None => return Err("connection ended before welcome".to_owned().into()),
                }
            }
        };
        tokio::time::timeout(self.config.connection_timeout, attempt)
            .await
            .map_err(|_| ConnectError::from("connection timed out".to_owned()))?
    }

    /// Serves one open connection until it ends.
    async fn connected(&mut self, mut ws: Ws, welcome: &Value, sweep: &mut tokio::time::Interval) -> Ended {
        let server_interval = welcome["heartbeat_interval_ms"].as_u64().map(Duration::from_millis);
        let server_timeout = welcome["heartbeat_timeout_ms"].as_u64().map(Duration::from_millis);
        let interval = server_interval.map_or(self.config.heartbeat_interval, |s| {
            s.min(self.config.heartbeat_interval)
        });
        let timeout = server_timeout.map_or(self.config.heartbeat_timeout, |s| s.min(self.config.heartbeat_timeout));
        let mut last_sent = Instant::now();
        let mut last_received = Instant::now();
        let mut ping: Option<(String, Instant)> = None;
        let mut renew_at = self.renew_at();
        if let Err(reason) = self.resume(&mut ws, &mut last_sent).await {
            return Ended::Lost { code: None, reason };
        }
        loop {
            // An interval after the older of the last frame sent and received:
            // an idle connection is pinged, and so is a busy sender that hears
            // nothing back (a half-open connection swallows frames silently).
            let ping_due = last_sent.min(last_received) + interval;
            let pong_due = ping.as_ref().map(|(_, at)| *at);
            tokio::select! {
                msg = ws.next() => {
                    last_received = Instant::now();
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(f))) => {
                            let (code, reason) = f.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                            return Ended::Lost { code, reason };
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Ended::Lost { code: None, reason: e.to_string() },
                        None => return Ended::Lost { code: None, reason: "connection ended".into() },
                    };
                    self.shared.metrics.frames_in.inc();
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    if v["type"] == "pong" && ping.as_ref().is_some_and(|(id, _)| v["id"] == id.as_str()) {
                        ping = None;
                        continue;
                    }
                    self.on_frame(v);
                }
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Cmd::Close) => {
                        let _ = ws.close(None).await;
                        return Ended::Stop;
                    }
                    Some(cmd) => {
                        self.accept(cmd, Some((&mut ws, &mut last_sent))).await;
                    }
                },
                _ = tokio::time::sleep_until(ping_due), if ping.is_none() => {
                    let id = self.shared.next_id("hb");
                    if send(&mut ws, &json!({"type": "ping", "id": id}), &mut last_sent, &self.shared.metrics).await.is_err() {
                        return Ended::Lost { code: None, reason: "send failed".into() };
                    }
                    ping = Some((id, Instant::now() + timeout));
                }
                _ = sleep_opt(pong_due) => {
                    return Ended::Lost { code: None, reason: "heartbeat timeout: no pong".into() };
                }
                _ = sleep_opt(renew_at) => {
                    renew_at = self.renew_token(&mut ws, &mut last_sent).await;
                }
                _ = sweep.tick() => self.expire(Instant::now()),
            }
        }
    }

    /// When to renew the token in force (a provider is needed to get a new one).
    fn renew_at(&self) -> Option<Instant> {
        self.config.token_provider.as_ref()?;
        let exp = self.token_exp?;
        Some(Instant::now() + crate::token::renew_in(exp, now_ms() / 1000))
    }

    /// Asks the provider for a fresh token and sends it in-band (`auth`).
    /// Returns the next renewal time. While the provider has nothing newer it is
    /// asked again every second until the token in force expires (the gateway
    /// then closes with 4001, and the reconnect asks the provider again).
    async fn renew_token(&mut self, ws: &mut Ws, last_sent: &mut Instant) -> Option<Instant> {
        let current = self.token_exp?;
        let retry = || (now_ms() / 1000 < current).then(|| Instant::now() + Duration::from_secs(1));
        let Some(token) = (self.config.token_provider.as_ref()?)() else {
            return retry();
        };
        let Some(exp) = crate::token::exp(&token) else {
            return retry();
        };
        if exp <= current {
            return retry();
        }
        let frame = json!({"type": "auth", "id": self.shared.next_id("auth"), "data": {"token": token}});
        send(ws, &frame, last_sent, &self.shared.metrics).await.ok()?;
        self.token_exp = Some(exp);
        self.renew_at()
    }

    /// After (re)connecting: resubscribe with `since`, resend what was not
    /// answered (same ids), then flush the offline queue.
    async fn resume(&mut self, ws: &mut Ws, last_sent: &mut Instant) -> Result<(), String> {
        self.sub_ids.clear();
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.send_subscribe(ws, &channel, last_sent).await?;
        }
        let ids: Vec<String> = self
            .order
            .iter()
            .filter(|id| self.pending.contains_key(*id))
            .cloned()
            .collect();
        self.order = ids.iter().cloned().collect();
        for id in ids {
            let frame = self.pending[&id].frame.clone();
            send(ws, &frame, last_sent, &self.shared.metrics).await?;
            if let Some(p) = self.pending.get_mut(&id) {
                p.sent_at = Some(Instant::now());
            }
        }
        if let Some((frame, _)) = &self.agent {
            let mut frame = frame.clone();
            frame["id"] = self.shared.next_id("reg").into();
            send(ws, &frame, last_sent, &self.shared.metrics).await?;
        }
        self.flush_queue(ws, last_sent).await
    }

    async fn send_subscribe(&mut self, ws: &mut Ws, channel: &str, last_sent: &mut Instant) -> Result<(), String> {
        let Some(sub) = self.subs.get(channel) else {
            return Ok(());
        };
        let id = self.shared.next_id("s");
        let mut frame = json!({"type": "subscribe", "id": id, "channel": channel});
        let since = match (&sub.last, &sub.since) {
            (Some((seq, epoch)), _) => Some((*seq, Some(epoch.clone()))),
            (None, since) => since.clone(),
        };
        if let Some((seq, epoch)) = since {
            frame["since"] = json!({"seq": seq, "epoch": epoch});
        }
        self.sub_ids.insert(id, channel.to_owned());
        send(ws, &frame, last_sent, &self.shared.metrics).await
    }

    async fn flush_queue(&mut self, ws: &mut Ws, last_sent: &mut Instant) -> Result<(), String> {
        let Some(queue) = &self.shared.queue else { return Ok(()) };
        let queued = queue.peek_all(now_ms()).map_err(|e| e.to_string())?;
        self.shared.metrics.queue_size.set(queued.len() as i64);
        let fresh: Vec<_> = queued
            .into_iter()
            .filter(|m| !self.pending.contains_key(&m.id))
            .collect();
        if !fresh.is_empty() {
            self.shared.syncing.store(true, Ordering::Relaxed);
        }
        for m in fresh {
            send(ws, &m.frame, last_sent, &self.shared.metrics).await?;
            self.order.push_back(m.id.clone());
            self.pending.insert(
                m.id,
                Pending {
                    frame: m.frame,
                    reply: None,
                    deadline: None,
                    sent_at: Some(Instant::now()),
                    queue_seq: Some(m.seq),
                },
            );
        }
        Ok(())
    }

    /// A command from the API; `ws` when connected.
    async fn accept(&mut self, cmd: Cmd, ws: Option<(&mut Ws, &mut Instant)>) {
        match cmd {
            Cmd::Request { frame, reply, deadline } => {
                if self.pending.len() >= MAX_PENDING {
                    let why = format!("too many unanswered requests ({MAX_PENDING}); this one was not sent");
                    let _ = reply.send(Err(ClientError::Queue(why)));
                    return;
                }
                let id = frame["id"].as_str().unwrap_or_default().to_owned();
                let mut sent_at = None;
                if let Some((ws, last_sent)) = ws {
                    if send(ws, &frame, last_sent, &self.shared.metrics).await.is_ok() {
                        sent_at = Some(Instant::now());
                    }
                }
                self.order.push_back(id.clone());
                self.pending.insert(
                    id,
                    Pending {
                        frame,
                        reply: Some(reply),
                        deadline: Some(deadline),
                        sent_at,
                        queue_seq: None,
                    },
                );
            }
            Cmd::Subscribe {
                channel,
                since,
                items,
                reply,
                deadline,
            } => {
                self.subs.insert(
                    channel.clone(),
                    Sub {
                        items,
                        last: None,
                        since,
                        reply: Some((reply, deadline)),
                        acked: false,
                    },
                );
                if let Some((ws, last_sent)) = ws {
                    let _ = self.send_subscribe(ws, &channel, last_sent).await;
                }
            }
            Cmd::Offline { frame, reply } => {
                let Some(queue) = &self.shared.queue else {
                    let _ = reply.send(Err(ClientError::Config("no offline queue".into())));
                    return;
                };
                match queue.push(frame.clone(), now_ms()) {
                    Err(e @ (QueueError::Full { .. } | QueueError::TooLarge { .. })) => {
                        let _ = reply.send(Ok(SendOutcome::Rejected(e.to_string())));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ClientError::Queue(e.to_string())));
                    }
                    Ok(enqueued) => {
                        self.shared.metrics.queue_size.set(queue.len() as i64);
                        let seq = match enqueued {
                            crate::offline_queue::Enqueued::Queued { seq } => seq,
                            crate::offline_queue::Enqueued::QueuedDroppedOldest { seq, .. } => seq,
                        };
                        let id = frame["id"].as_str().unwrap_or_default().to_owned();
                        let sent = match ws {
                            Some((ws, last_sent)) => send(ws, &frame, last_sent, &self.shared.metrics).await.is_ok(),
                            None => false,
                        };
                        let outcome = if sent {
                            self.order.push_back(id.clone());
                            let sent_at = Some(Instant::now());
                            let p = Pending {
                                frame,
                                reply: None,
                                deadline: None,
                                sent_at,
                                queue_seq: Some(seq),
                            };
                            self.pending.insert(id, p);
                            SendOutcome::Sent
                        } else {
                            SendOutcome::Queued
                        };
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            Cmd::Sync => {
                if let Some((ws, last_sent)) = ws {
                    let _ = self.flush_queue(ws, last_sent).await;
                }
            }
            Cmd::Register {
                frame,
                tasks,
                reply,
                deadline,
            } => {
                self.agent = Some((frame.clone(), tasks));
                // The first registration is a request whose ack the caller awaits.
                Box::pin(self.accept(Cmd::Request { frame, reply, deadline }, ws)).await;
            }
            Cmd::Fire { frame } => {
                if let Some((ws, last_sent)) = ws {
                    let _ = send(ws, &frame, last_sent, &self.shared.metrics).await;
                }
            }
            Cmd::Close => {}
        }
    }

    /// Routes one frame from the gateway.
    fn on_frame(&mut self, v: Value) {
        match v["type"].as_str().unwrap_or_default() {
            "event" => self.on_event(v),
            "task" => {
                if let Some((_, tasks)) = &self.agent {
                    if tasks.try_send(v).is_err() {
                        tracing::warn!("agent task queue full; the gateway will redeliver");
                    }
                }
            }
            "ack" | "error" if v["id"].as_str().is_some_and(|id| self.sub_ids.contains_key(id)) => {
                self.on_subscribed(v)
            }
            "ack" | "error" | "result" | "pong" | "agent_status" | "system_metrics" => {
                let Some(id) = v["id"].as_str().map(str::to_owned) else {
                    return;
                };
                let Some(p) = self.pending.remove(&id) else { return };
                if let Some(t) = p.sent_at {
                    self.shared.metrics.ack_seconds.observe(t.elapsed().as_secs_f64());
                }
                let outcome = if v["type"] == "error" {
                    let body: ErrorBody = serde_json::from_value(v["error"].clone()).unwrap_or_else(|_| ErrorBody {
                        code: "internal".into(),
                        message: v.to_string(),
                        retryable: None,
                        retry_after_ms: None,
                    });
                    Err(ClientError::Gateway(body))
                } else {
                    Ok(v)
                };
                if let Some(seq) = p.queue_seq {
                    self.settle_queued(seq, &id, &outcome);
                }
                if let Some(reply) = p.reply {
                    let _ = reply.send(outcome);
                }
            }
            _ => {}
        }
    }

    /// A queued message was answered: remove it unless the error is retryable.
    fn settle_queued(&mut self, seq: u64, id: &str, outcome: &Result<Value, ClientError>) {
        let Some(queue) = &self.shared.queue else { return };
        let keep = matches!(outcome, Err(e) if e.retryable());
        if !keep {
            if let Err(ClientError::Gateway(body)) = outcome {
                tracing::warn!(id, code = %body.code, "queued message refused by the gateway; dropped");
            }
            if let Err(e) = queue.remove(seq) {
                tracing::warn!(error = %e, "cannot remove a delivered message from the offline queue");
            }
        }
        let left = queue.len();
        self.shared.metrics.queue_size.set(left as i64);
        if !self.pending.values().any(|p| p.queue_seq.is_some()) {
            self.shared.syncing.store(false, Ordering::Relaxed);
            if left == 0 {
                self.shared.last_sync.store(now_ms(), Ordering::Relaxed);
            }
        }
    }

    fn on_subscribed(&mut self, v: Value) {
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        let Some(channel) = self.sub_ids.remove(&id) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(&channel) else { return };
        if v["type"] == "error" {
            let body: Result<ErrorBody, _> = serde_json::from_value(v["error"].clone());
            let err = ClientError::Gateway(body.unwrap_or_else(|_| ErrorBody {
                code: "internal".into(),
                message: v.to_string(),
                retryable: None,
                retry_after_ms: None,
            }));
            if let Some((reply, _)) = sub.reply.take() {
                let _ = reply.send(Err(err));
            } else {
                let _ = sub.items.try_send(Err(err));
            }
            self.subs.remove(&channel);
            return;
        }
        let data = &v["data"];
        let current = (
            data["seq"].as_u64().unwrap_or(0),
            data["epoch"].as_str().unwrap_or_default().to_owned(),
        );
        match data.get("recovered").and_then(Value::as_bool) {
            Some(recovered) => {
                if !recovered {
                    sub.last = Some(current);
                }
                let _ = sub.items.try_send(Ok(SubscriptionItem::Recovered(recovered)));
            }
            None => {
                if sub.last.is_none() {
                    sub.last = Some(current);
                }
            }
        }
        sub.acked = true;
        if let Some((reply, _)) = sub.reply.take() {
            let _ = reply.send(Ok(()));
        }
    }

    fn on_event(&mut self, v: Value) {
        let Ok(event) = serde_json::from_value::<Event>(v) else {
            return;
        };
        let Some(sub) = self.subs.get_mut(&event.channel) else {
            return;
        };
        if let Some((seq, epoch)) = &sub.last {
            if *epoch == event.epoch && event.seq <= *seq {
                return; // already delivered
            }
        }
        sub.last = Some((event.seq, event.epoch.clone()));
        let channel = event.channel.clone();
        if sub.items.try_send(Ok(SubscriptionItem::Event(event))).is_err() {
            tracing::warn!(channel = %channel, "subscriber too slow or gone; subscription ended");
            self.subs.remove(&channel);
        }
    }

    /// Fails requests whose deadline passed.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(Pending { reply: Some(reply), .. }) = self.pending.remove(&id) {
                let _ = reply.send(Err(ClientError::Timeout));
            }
        }
        let late: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.reply.as_ref().is_some_and(|(_, d)| *d <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in late {
            if let Some(Sub {
                reply: Some((reply, _)),
                ..
            }) = self.subs.remove(&channel)
            {
                let _ = reply.send(Err(ClientError::Timeout));
            }
        }
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order.retain(|id| pending.contains_key(id));
        }
    }

    /// The client is closed for good: fail what waits.
    fn finish(&mut self) {
        let reason = match self.machine.state() {
            State::Closed { reason, .. } => reason.clone(),
            _ => "closed".into(),
        };
        for (_, p) in self.pending.drain() {
            if let Some(reply) = p.reply {
                let _ = reply.send(Err(ClientError::Closed(reason.clone())));
            }
        }
        for (_, s) in self.subs.drain() {
            if let Some((reply, _)) = s.reply {
                let _ = reply.send(Err(ClientError::Closed(reason.clone())));
            }
        }
    }
}

async fn send(ws: &mut Ws, frame: &Value, last_sent: &mut Instant, metrics: &ClientMetrics) -> Result<(), String> {
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    *last_sent = Instant::now();
    metrics.frames_out.inc();
    Ok(())
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why a connect attempt failed: the reason, and the close code when the
/// gateway closed the connection before `welcome` (a refused token or role).
struct ConnectError {
    reason: String,
    code: Option<u16>,
}

impl From<String> for ConnectError {
    fn from(reason: String) -> ConnectError {
        ConnectError { reason, code: None }
    }
}
