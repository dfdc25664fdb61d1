//! Channels in memory: who is subscribed, and the last seq each channel has
//! delivered. The hub fans committed events out; it never stores anything.
//!
//! **Invariant:** per channel, a subscriber gets events in seq order with no gap
//! and no duplicate. Subscribing (ack, replay, registration) and delivering both
//! run under the channel's own lock, and `seq` only grows, so a replay always ends
//! exactly where live delivery starts.
//!
//! There is no global lock on the path publish → deliver: channels live in a
//! sharded map and each has its own mutex.
//!
//! With a shared store (Redis), events also arrive from other nodes, through
//! [`Watcher`] (the Pub/Sub listener), and may arrive late or after a hole (a
//! lost Pub/Sub message): `deliver` fills a hole from the store before the
//! event (a replay item per subscriber), and skips what was delivered already.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use serde_json::json;
use tether_protocol::server::ack_frame;

use crate::connection::outbound::{ConnHandle, Enqueue, Replay};
use crate::metrics::{Metrics, Sent};
use crate::store::{Store, StoreError};

struct ChannelState {
    /// Last seq delivered to subscribers (equal to or behind the store's last).
    seq: u64,
    subscribers: HashMap<u64, ConnHandle>,
    /// Removed from the map (it had no subscribers); a subscribe that finds a
    /// dead channel looks it up again.
    dead: bool,
}

struct Channel {
    state: Mutex<ChannelState>,
}

/// The outcome of a subscribe, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// A plain subscribe.
    Live,
    /// Recovery replayed this many events.
    Recovered(u64),
    /// Recovery was impossible; nothing replayed.
    NotRecovered,
}

/// A `since` as the hub checks it.
#[derive(Debug, Clone)]
pub struct RecoverFrom {
    /// The last seq the client has.
    pub seq: u64,
    /// Its epoch, `None` for "current".
    pub epoch: Option<String>,
    /// Events older than this (ms) count as no longer retained.
    pub not_before_ms: u64,
}

/// Told when this node starts and stops having subscribers on a channel, so
/// that it listens to other nodes' events for exactly those channels.
pub trait Watcher: Send + Sync {
    /// `channel` got its first local subscriber.
    fn watch(&self, channel: &str);
    /// `channel` has no local subscriber any more.
    fn unwatch(&self, channel: &str);
}

/// All channels of this node.
pub struct Hub {
    channels: DashMap<String, Arc<Channel>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    watcher: std::sync::OnceLock<Box<dyn Watcher>>,
}

impl Hub {
    /// An empty hub over `store`.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Hub {
        Hub {
            channels: DashMap::new(),
            store,
            metrics,
            watcher: std::sync::OnceLock::new(),
        }
    }

    /// Sets the watcher (once, at start-up, before any subscribe).
    pub fn set_watcher(&self, watcher: Box<dyn Watcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// The channel's state, created if needed. `known` is the store's last
    /// seq read beforehand (a shared store: no I/O under the map's lock); the
    /// embedded store is read under the lock instead.
    fn channel(&self, name: &str, known: Option<u64>) -> Result<Arc<Channel>, StoreError> {
        if let Some(c) = self.channels.get(name) {
            return Ok(c.clone());
        }
        // The seq is read while the map shard is locked, so a delivery that
        // misses this entry was committed before the read and is counted in it.
        // With a shared store, catching up settles what a stale read missed.
        let entry = self.channels.entry(name.to_owned());
        let c = match entry {
            dashmap::Entry::Occupied(o) => o.get().clone(),
            dashmap::Entry::Vacant(v) => {
                let seq = match known {
                    Some(seq) => seq,
                    None => self.store.last_seq(name)?,
                };
                let c = Arc::new(Channel {
                    state: Mutex::new(ChannelState {
                        seq,
                        subscribers: HashMap::new(),
                        dead: false,
                    }),
                });
                v.insert(c.clone());
                if let Some(w) = self.watcher.get() {
                    w.watch(name);
                }
                c
            }
        };
        Ok(c)
    }

    /// Subscribes `conn` to `channel`: queues the ack (with `recovered` when
    /// `since` was given), then any replay, then registers for live events.
    pub fn subscribe(
        &self,
        conn: &ConnHandle,
        id: &str,
        channel: &str,
        since: Option<RecoverFrom>,
    ) -> Result<Subscribed, StoreError> {
        // With a shared store, Redis is read before any lock is taken (a slow
        // Redis must not hold up other tasks waiting on these locks), and the
        // node's delivered seq is brought up to the store's before the ack,
        // so the ack and `recovered` judge by what is stored, not by what
        // this node's Pub/Sub happened to deliver so far.
        let shared = self.store.shared();
        let (known, first) = if shared {
            let last = self.store.last_seq(channel)?;
            let first = match &since {
                Some(from) => self.store.first_retained(channel, from.not_before_ms)?,
                None => None,
            };
            (Some(last), Some(first))
        } else {
            (None, None)
        };
        loop {
            let ch = self.channel(channel, known)?;
            let mut st = ch.state.lock().expect("channel lock");
            if st.dead {
                continue;
            }
            if let Some(last) = known {
                if last > st.seq {
                    Self::fill(&mut st, channel, last);
                }
            }
            let result = self.subscribe_locked(&mut st, conn, id, channel, since, first);
            if result.is_err() && st.subscribers.is_empty() {
                drop(st);
                self.forget_if_idle(channel);
            }
            return result;
        }
    }

    fn subscribe_locked(
        &self,
        st: &mut ChannelState,
        conn: &ConnHandle,
        id: &str,
        channel: &str,
        since: Option<RecoverFrom>,
        first: Option<Option<u64>>,
    ) -> Result<Subscribed, StoreError> {
        let epoch = self.store.epoch(channel);
        let mut data = json!({"channel": channel, "seq": st.seq, "epoch": epoch});
        let mut replay = None;
        let outcome = match since {
            None => Subscribed::Live,
            Some(from) => {
                let same_epoch = from.epoch.as_deref().is_none_or(|e| e == epoch);
                let recoverable = same_epoch
                    && from.seq <= st.seq
                    && (from.seq == st.seq
                        || match first {
                            Some(known) => known,
                            None => self.store.first_retained(channel, from.not_before_ms)?,
                        }
                        .is_some_and(|first| first <= from.seq + 1));
                data["recovered"] = recoverable.into();
                if recoverable && from.seq < st.seq {
                    replay = Some(Replay {
                        channel: channel.to_owned(),
                        after: from.seq,
                        upto: st.seq,
                        not_before_ms: from.not_before_ms,
                    });
                }
                if recoverable {
                    Subscribed::Recovered(st.seq - from.seq)
                } else {
                    Subscribed::NotRecovered
                }
            }
        };
        if outcome != Subscribed::Live {
            self.metrics.recovery(outcome != Subscribed::NotRecovered);
        }
        // The replay is one queue item that the connection's writer streams
        // from the store; live events queued after it follow it.
        conn.send(Sent::Ack, ack_frame(id, data));
        if let Some(r) = replay {
            conn.replay(r);
        }
        st.subscribers.insert(conn.id(), conn.clone());
        Ok(outcome)
    }

    /// Removes `conn` from `channel`. Returns whether it was subscribed.
    pub fn unsubscribe(&self, conn_id: u64, channel: &str) -> bool {
        let Some(ch) = self.channels.get(channel).map(|c| c.clone()) else {
            return false;
        };
        let removed = ch
            .state
            .lock()
            .expect("channel lock")
            .subscribers
            .remove(&conn_id)
            .is_some();
        self.forget_if_idle(channel);
        removed
    }

    fn forget_if_idle(&self, channel: &str) {
        let watcher = self.watcher.get();
        self.channels.remove_if(channel, |_, c| {
            let mut st = c.state.lock().expect("channel lock");
            st.dead = st.subscribers.is_empty();
            // Told while the map's shard is still locked, so that a subscribe
            // re-creating the channel tells `watch` after this `unwatch`.
            if let (true, Some(w)) = (st.dead, watcher) {
                w.unwatch(channel);
            }
            st.dead
        });
    }

    /// Brings `channel`'s subscribers up to the store's last seq (a replay of
    /// what they missed): after this node starts listening to other nodes'
    /// events on it, and after the listener reconnects.
    pub fn catch_up(&self, channel: &str) -> Result<(), StoreError> {
        let Some(ch) = self.channels.get(channel).map(|c| c.clone()) else {
            return Ok(());
        };
        // Read before locking: the seq only grows, so a stale read at worst
        // leaves the rest to the next event's hole fill.
        let last = self.store.last_seq(channel)?;
        let mut st = ch.state.lock().expect("channel lock");
        if last > st.seq {
            Self::fill(&mut st, channel, last);
        }
        Ok(())
    }

    /// Queues a replay of `(st.seq, upto]` to every subscriber and moves the
    /// delivered seq to `upto`.
    fn fill(st: &mut ChannelState, channel: &str, upto: u64) {
        let after = st.seq;
        st.subscribers.retain(|_, conn| {
            let replay = Replay {
                channel: channel.to_owned(),
                after,
                upto,
                not_before_ms: 0,
            };
            matches!(conn.replay(replay), Enqueue::Sent)
        });
        st.seq = upto;
    }

    /// The channels this node has subscribers on.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|e| e.key().clone()).collect()
    }

    /// Hands one committed event to every subscriber. One at or below the
    /// delivered seq is skipped; one past a hole (events from other nodes that
    /// were lost or are late) first gets the hole replayed from the store.
    pub fn deliver(&self, channel: &str, seq: u64, frame: &Utf8Bytes) {
        let Some(ch) = self.channels.get(channel).map(|c| c.clone()) else {
            return;
        };
        let mut st = ch.state.lock().expect("channel lock");
        if seq <= st.seq {
            return;
        }
        if seq > st.seq + 1 {
            Self::fill(&mut st, channel, seq - 1);
        }
        st.seq = seq;
        let mut delivered = 0;
        st.subscribers
            .retain(|_, conn| match conn.send_event_uncounted(frame.clone()) {
                Enqueue::Sent => {
                    delivered += 1;
                    true
                }
                Enqueue::Slow | Enqueue::Closed => false,
            });
        self.metrics.deliveries.inc_by(delivered);
        self.metrics.sent(Sent::Event, delivered);
    }

    /// Number of subscribers of `channel` (for tests and the status page).
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels
            .get(channel)
            .map_or(0, |c| c.state.lock().expect("channel lock").subscribers.len())
    }
}
