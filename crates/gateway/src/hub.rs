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

/// All channels of this node.
pub struct Hub {
    channels: DashMap<String, Arc<Channel>>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub over `store`.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Hub {
        Hub {
            channels: DashMap::new(),
            store,
            metrics,
        }
    }

    fn channel(&self, name: &str) -> Result<Arc<Channel>, StoreError> {
        if let Some(c) = self.channels.get(name) {
            return Ok(c.clone());
        }
        // The seq is read while the map shard is locked, so a delivery that
        // misses this entry was committed before the read and is counted in it.
        let entry = self.channels.entry(name.to_owned());
        let c = match entry {
            dashmap::Entry::Occupied(o) => o.get().clone(),
            dashmap::Entry::Vacant(v) => {
                let seq = self.store.last_seq(name)?;
                let c = Arc::new(Channel {
                    state: Mutex::new(ChannelState {
                        seq,
                        subscribers: HashMap::new(),
                        dead: false,
                    }),
                });
                v.insert(c.clone());
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
        loop {
            let ch = self.channel(channel)?;
            let mut st = ch.state.lock().expect("channel lock");
            if !st.dead {
                return self.subscribe_locked(&mut st, conn, id, channel, since);
            }
        }
    }

    fn subscribe_locked(
        &self,
        st: &mut ChannelState,
        conn: &ConnHandle,
        id: &str,
        channel: &str,
        since: Option<RecoverFrom>,
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
                        || self
                            .store
                            .first_retained(channel, from.not_before_ms)?
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
        self.channels.remove_if(channel, |_, c| {
            let mut st = c.state.lock().expect("channel lock");
            st.dead = st.subscribers.is_empty();
            st.dead
        });
    }

    /// Hands one committed event to every subscriber. Events of a channel must
    /// come in seq order; one at or below the delivered seq is skipped.
    pub fn deliver(&self, channel: &str, seq: u64, frame: &Utf8Bytes) {
        let Some(ch) = self.channels.get(channel).map(|c| c.clone()) else {
            return;
        };
        let mut st = ch.state.lock().expect("channel lock");
        if seq <= st.seq {
            return;
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
