//! Cross-node fan-out over Redis Pub/Sub: one listener thread per node, one
//! Redis subscription per channel that has local subscribers (never one per
//! client). Events committed by any node are announced on
//! `tether:ev:<channel>` inside their commit (see `store::redis`), so they
//! arrive in seq order; the hub skips what it delivered already and fills
//! holes from the store.
//!
//! Pub/Sub is at-most-once: a message sent while this node was not
//! subscribed (just before a `SUBSCRIBE`, during a Redis outage) is lost. So
//! after every `SUBSCRIBE` and after every reconnect the listener asks the hub
//! to catch up from the store: no event is missed, none is repeated.
//!
//! **Boundary:** this thread only reads Redis and calls the hub; it never
//! writes the store.

use std::collections::HashSet;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Watcher};
use crate::store::redis::{connect, event_topic, parse_announcement, topic_channel};

/// How often the listener looks at its command queue while no message comes.
const POLL: Duration = Duration::from_millis(50);
/// How long a (un)subscribe confirmation may take.
const CONFIRM: Duration = Duration::from_secs(2);
/// Wait before reconnecting after Redis failed.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);

enum Cmd {
    Watch(String),
    Unwatch(String),
}

/// The hub's [`Watcher`]: forwards to the listener thread.
pub struct FanoutWatcher {
    tx: Sender<Cmd>,
}

impl Watcher for FanoutWatcher {
    fn watch(&self, channel: &str) {
        let _ = self.tx.send(Cmd::Watch(channel.to_owned()));
    }

    fn unwatch(&self, channel: &str) {
        let _ = self.tx.send(Cmd::Unwatch(channel.to_owned()));
    }
}

/// Receives the messages of the extra topics: `(topic, payload)`.
pub type OnMessage = Box<dyn Fn(&str, &str) + Send>;

/// Starts the listener thread for `hub` and installs its watcher; messages on
/// `topics` (not channels) go to `on_message`. The thread ends when `stop` is
/// cancelled or the hub is dropped.
pub fn start(
    client: redis::Client,
    hub: &Arc<Hub>,
    topics: Vec<String>,
    on_message: OnMessage,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let weak = Arc::downgrade(hub);
    let extra = Extra { topics, on_message };
    std::thread::Builder::new()
        .name("tether-fanout".into())
        .spawn(move || listen(client, weak, rx, &extra, stop))?;
    hub.set_watcher(Box::new(FanoutWatcher { tx }));
    Ok(())
}

/// Topics listened to for the whole life of the node.
struct Extra {
    topics: Vec<String>,
    on_message: OnMessage,
}

fn listen(client: redis::Client, hub: Weak<Hub>, rx: Receiver<Cmd>, extra: &Extra, stop: CancellationToken) {
    let mut wanted: HashSet<String> = HashSet::new();
    let mut first = true;
    while !stop.is_cancelled() {
        if !first {
            std::thread::sleep(RECONNECT_DELAY);
        }
        first = false;
        drain(&rx, &mut wanted);
        let mut con = match connect(&client) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "fan-out: cannot reach redis; retrying");
                continue;
            }
        };
        match session(&mut con, &hub, &rx, &mut wanted, extra, &stop) {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "fan-out: redis connection lost; reconnecting"),
        }
    }
}

/// Applies queued commands to `wanted` without a connection.
fn drain(rx: &Receiver<Cmd>, wanted: &mut HashSet<String>) {
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Cmd::Watch(c) => wanted.insert(c),
            Cmd::Unwatch(c) => wanted.remove(&c),
        };
    }
}

/// One connection's life: subscribe to everything wanted, catch up, then
/// relay messages and (un)subscribe as told. `Ok` means stop.
fn session(
    con: &mut redis::Connection,
    hub: &Weak<Hub>,
    rx: &Receiver<Cmd>,
    wanted: &mut HashSet<String>,
    extra: &Extra,
    stop: &CancellationToken,
) -> redis::RedisResult<()> {
    let mut ps = con.as_pubsub();
    ps.set_read_timeout(Some(CONFIRM))?;
    let mut topics: Vec<String> = extra.topics.clone();
    topics.extend(wanted.iter().map(|c| event_topic(c)));
    ps.subscribe(&topics)?;
    ps.set_read_timeout(Some(POLL))?;
    for channel in wanted.iter() {
        catch_up(hub, channel)?;
    }
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let Some(h) = hub.upgrade() else { return Ok(()) };
        drop(h);
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Cmd::Watch(c) => {
                    if wanted.insert(c.clone()) {
                        ps.set_read_timeout(Some(CONFIRM))?;
                        ps.subscribe(event_topic(&c))?;
                        ps.set_read_timeout(Some(POLL))?;
                        catch_up(hub, &c)?;
                    }
                }
                Cmd::Unwatch(c) => {
                    if wanted.remove(&c) {
                        ps.set_read_timeout(Some(CONFIRM))?;
                        ps.unsubscribe(event_topic(&c))?;
                        ps.set_read_timeout(Some(POLL))?;
                    }
                }
            }
        }
        match ps.get_message() {
            Ok(msg) => {
                let topic = msg.get_channel_name().to_owned();
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let Some(channel) = topic_channel(&topic) else {
                    (extra.on_message)(&topic, &payload);
                    continue;
                };
                let Some((seq, frame)) = parse_announcement(&payload) else {
                    tracing::warn!(%topic, "fan-out: malformed announcement ignored");
                    continue;
                };
                if let Some(h) = hub.upgrade() {
                    h.deliver(channel, seq, &Utf8Bytes::from(frame.to_owned()));
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
}

/// Catches `channel` up from the store; a failure ends the connection, so
/// that the reconnect catches every channel up again.
fn catch_up(hub: &Weak<Hub>, channel: &str) -> redis::RedisResult<()> {
    if let Some(h) = hub.upgrade() {
        if let Err(e) = h.catch_up(channel) {
            tracing::warn!(%channel, error = %e, "fan-out: catching up from the store failed; reconnecting");
            return Err(redis::RedisError::from((redis::ErrorKind::Io, "catch-up failed")));
        }
    }
    Ok(())
}
