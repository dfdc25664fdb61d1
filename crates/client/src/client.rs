//! The typed API: [`Client`] hands requests to the driver task and awaits their
//! replies; subscriptions are streams that survive reconnects.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde_json::{json, Value};
use tether_protocol::server::Event;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::{ClientConfig, DEFAULT_COMMAND_QUEUE};
use crate::driver::{Cmd, Driver, Shared};
use crate::metrics::ClientMetrics;
use crate::offline_queue::{OfflineQueue, QueuedMessage};
use crate::state::{State, Transition};
use crate::ClientError;

/// One item of a [`Subscription`].
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionItem {
    /// The next event, in seq order, never twice.
    Event(Event),
    /// After a reconnect, the gateway could (`true`) or could not (`false`)
    /// replay what was missed. On `false` events were lost: refetch state.
    Recovered(bool),
}

/// What became of a message given to [`Client::send_with_offline_fallback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Written to the open connection (and kept in the queue until acked).
    Sent,
    /// Kept in the durable offline queue; sent on reconnect.
    Queued,
    /// Refused by the offline queue (full under `RejectNew`, or larger than
    /// its byte bound); nothing was stored or sent. The reason says which.
    Rejected(String),
}

/// A handle to a connection (or pool-less set of URLs) to Tether. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Cmd>,
    state: watch::Receiver<State>,
    transitions: broadcast::Sender<Transition>,
    shared: Arc<Shared>,
    request_timeout: Duration,
    driver: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Client {
    /// Starts the client: it connects (and reconnects) in the background.
    /// Must be called inside a Tokio runtime.
    pub fn start(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let queue = match &config.offline_path {
            Some(path) => {
                Some(OfflineQueue::open(path, config.offline.clone()).map_err(|e| ClientError::Queue(e.to_string()))?)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(DEFAULT_COMMAND_QUEUE);
        let (state_tx, state) = watch::channel(State::Idle);
        let (transitions, _) = broadcast::channel(256);
        let shared = Arc::new(Shared::new(ClientMetrics::new(), queue));
        let request_timeout = config.request_timeout;
        let driver = Driver::new(config, rx, state_tx, transitions.clone(), shared.clone());
        let driver = std::sync::Mutex::new(Some(tokio::spawn(driver.run())));
        Ok(Client {
            inner: Arc::new(Inner {
                tx,
                state,
                transitions,
                shared,
                request_timeout,
                driver,
            }),
        })
    }

    /// The connection state now.
    pub fn state(&self) -> State {
        self.inner.state.borrow().clone()
    }

    /// Whether a connection is open.
    pub fn is_online(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Connected { .. })
    }

    /// Every state transition from now on.
    pub fn transitions(&self) -> broadcast::Receiver<Transition> {
        self.inner.transitions.subscribe()
    }

    /// Waits until connected, or fails after `timeout` or once closed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut rx = self.inner.state.clone();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    State::Connected { .. } => return Ok(()),
                    State::Closed { reason, .. } => return Err(ClientError::Closed(reason.clone())),
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(ClientError::Closed("the client stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Hands `cmd` to the driver and waits for its answer on `rx`.
    async fn call<T>(&self, cmd: Cmd, rx: oneshot::Receiver<Result<T, ClientError>>) -> Result<T, ClientError> {
        let stopped = || ClientError::Closed("the client stopped".into());
        self.inner.tx.send(cmd).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.inner.request_timeout
    }

    async fn request(&self, frame: Value) -> Result<Value, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.call(
            Cmd::Request {
                frame,
                reply,
                deadline: self.deadline(),
            },
            rx,
        )
        .await
    }

    /// Publishes `data` on `channel`; resolves with the ack's `data`
    /// (`{channel, seq, epoch}`) once the event is durable. Across reconnects the
    /// same id is resent, so it takes effect once.
    pub async fn publish(&self, channel: &str, data: Value) -> Result<Value, ClientError> {
        let id = self.inner.shared.next_id("p");
        let reply = self
            .request(json!({"type": "publish", "id": id, "channel": channel, "data": data}))
            .await?;
        Ok(reply["data"].clone())
    }

    /// Sends command `command` and resolves with its `result` frame
    /// (`{"type":"result","id",…,"data"|"error"}`); a gateway failure such as
    /// `no_handler` is a [`ClientError::Gateway`].
    pub async fn command(&self, command: &str, data: Value) -> Result<Value, ClientError> {
        let id = self.inner.shared.next_id("c");
        self.request(json!({"type": command, "id": id, "data": data})).await
    }

    /// Any request with an id (ping, request_agent_status, …); resolves with the
    /// reply frame.
    pub async fn send_request(&self, mut frame: Value) -> Result<Value, ClientError> {
        if frame.get("id").is_none() {
            frame["id"] = self.inner.shared.next_id("r").into();
        }
        self.request(frame).await
    }

    /// Registers this client as a replica of agent `name` handling `commands`,
    /// at most `concurrency` tasks at once; the registration is renewed after
    /// every reconnect. Answer each [`Task`] with [`Client::task_result`].
    pub async fn register(&self, name: &str, commands: &[&str], concurrency: u32) -> Result<Tasks, ClientError> {
        let (tasks, rx) = mpsc::channel(concurrency.max(1) as usize * 2 + 16);
        let frame = json!({"type": "register", "id": self.inner.shared.next_id("reg"),
            "data": {"name": name, "commands": commands, "concurrency": concurrency}});
        let (reply, acked) = oneshot::channel();
        self.call(
            Cmd::Register {
                frame,
                tasks,
                reply,
                deadline: self.deadline(),
            },
            acked,
        )
        .await?;
        Ok(Tasks { rx })
    }

    /// Answers task `task_id` with data, or with an agent error `(code, message)`.
    pub async fn task_result(&self, task_id: &str, outcome: Result<Value, (String, String)>) {
        let frame = match outcome {
            Ok(data) => json!({"type": "task_result", "id": task_id, "data": data}),
            Err((code, message)) => {
                json!({"type": "task_result", "id": task_id, "error": {"code": code, "message": message}})
            }
        };
        let _ = self.inner.tx.send(Cmd::Fire { frame }).await;
    }

    /// Reports progress of task `task_id` (published on `agent:<name>`).
    pub async fn task_progress(&self, task_id: &str, data: Value) {
        let frame = json!({"type": "task_progress", "id": task_id, "data": data});
        let _ = self.inner.tx.send(Cmd::Fire { frame }).await;
    }

    /// Subscribes to `channel` from its current position.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ClientError> {
        self.subscribe_from(channel, None).await
    }

    /// Subscribes to `channel`, recovering the events after `seq` of `epoch`.
    /// The first item is `Recovered(true|false)`.
    pub async fn subscribe_since(
        &self,
        channel: &str,
        seq: u64,
        epoch: Option<String>,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_from(channel, Some((seq, epoch))).await
    }

    async fn subscribe_from(
        &self,
        channel: &str,
        since: Option<(u64, Option<String>)>,
    ) -> Result<Subscription, ClientError> {
        let (items, rx) = mpsc::channel(crate::config::DEFAULT_SUBSCRIPTION_BUFFER);
        let (reply, acked) = oneshot::channel();
        let cmd = Cmd::Subscribe {
            channel: channel.to_owned(),
            since,
            items,
            reply,
            deadline: self.deadline(),
        };
        self.call(cmd, acked).await?;
        Ok(Subscription { rx })
    }

    /// Queues `frame` (a `publish` or a command, with or without an `id`) in the
    /// durable offline queue and sends it when connected. It is removed from the
    /// queue once the gateway acknowledged it; resends use the same id.
    pub async fn send_with_offline_fallback(&self, mut frame: Value) -> Result<SendOutcome, ClientError> {
        if self.inner.shared.queue.is_none() {
            return Err(ClientError::Config("no offline queue configured (offline_path)".into()));
        }
        if frame.get("id").is_none() {
            frame["id"] = self.inner.shared.next_id("q").into();
        }
        let (reply, rx) = oneshot::channel();
        self.call(Cmd::Offline { frame, reply }, rx).await
    }

    /// Messages waiting in the offline queue.
    pub fn queue_len(&self) -> usize {
        self.inner.shared.queue.as_ref().map_or(0, |q| q.len())
    }

    /// The offline queue's contents, oldest first.
    pub fn queued(&self) -> Vec<QueuedMessage> {
        let now = crate::driver::now_ms();
        self.inner
            .shared
            .queue
            .as_ref()
            .and_then(|q| q.peek_all(now).ok())
            .unwrap_or_default()
    }

    /// Whether queued messages are being flushed now.
    pub fn is_syncing(&self) -> bool {
        self.inner.shared.syncing()
    }

    /// When the offline queue was last emptied by a flush (ms since the epoch).
    pub fn last_sync_time(&self) -> Option<u64> {
        self.inner.shared.last_sync()
    }

    /// Flushes the offline queue now if connected.
    pub async fn sync_now(&self) {
        let _ = self.inner.tx.send(Cmd::Sync).await;
    }

    /// Empties the offline queue.
    pub fn clear_queue(&self) -> Result<(), ClientError> {
        match &self.inner.shared.queue {
            Some(q) => q.clear().map(|_| ()).map_err(|e| ClientError::Queue(e.to_string())),
            None => Ok(()),
        }
    }

    /// The stable client id in use (from the offline queue, the config, or random).
    pub fn client_id(&self) -> String {
        self.inner.shared.client_id()
    }

    /// Client metrics as Prometheus text.
    pub fn metrics_text(&self) -> String {
        if let Some(q) = &self.inner.shared.queue {
            self.inner.shared.metrics.queue_size.set(q.len() as i64);
        }
        self.inner.shared.metrics.render()
    }

    /// Closes the connection, stops reconnecting, and waits (up to 5 s) for the
    /// driver to finish, so that the offline queue's file is released once the
    /// last handle is dropped.
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Cmd::Close).await;
        let driver = self.inner.driver.lock().expect("driver lock").take();
        if let Some(driver) = driver {
            let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        }
    }
}

/// A task for this agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The gateway's task id (stable across redeliveries: deduplicate on it).
    pub id: String,
    /// The command type.
    pub command: String,
    /// The command's data.
    pub payload: Value,
    /// The requester's principal.
    pub from: String,
}

/// The tasks routed to this agent, across reconnects.
pub struct Tasks {
    rx: mpsc::Receiver<Value>,
}

impl Tasks {
    /// The next task (`None` once the client is closed).
    pub async fn next(&mut self) -> Option<Task> {
        loop {
            let v = self.rx.recv().await?;
            let (Some(id), Some(command)) = (v["id"].as_str(), v["data"]["command"].as_str()) else {
                continue;
            };
            return Some(Task {
                id: id.to_owned(),
                command: command.to_owned(),
                payload: v["data"]["payload"].clone(),
                from: v["data"]["from"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
}

/// The events of one channel; survives reconnects (resubscribing with `since`).
/// Ends with an error item if the subscriber falls too far behind.
pub struct Subscription {
    rx: mpsc::Receiver<Result<SubscriptionItem, ClientError>>,
}

impl Subscription {
    /// The next item (`None` once the client is closed).
    pub async fn next(&mut self) -> Option<Result<SubscriptionItem, ClientError>> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionItem, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
