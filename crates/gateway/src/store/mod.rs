//! Durable state behind the gateway: channel history and seqs, deduplication
//! keys, and pending commands.
//!
//! **Boundary:** the store never sees a WebSocket, a task or a clock of its own;
//! it stores what the ledger hands it and answers reads. [`Store`] is the seam
//! between engines: [`embedded::EmbeddedStore`] (redb) is the default,
//! [`redis::RedisStore`] lets several nodes share channels.
//!
//! **Invariant:** a [`StoreWrite`] is all-or-nothing: after `commit` returns `Ok`
//! every change in it is on disk and survives `kill -9`; after an error none is.

pub mod embedded;
pub mod redis;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_protocol::ErrorCode;

use crate::config::Retention;

/// A store failure. The ledger answers the affected requests with `internal`
/// (retryable) and `/readyz` turns 503 until a write succeeds again; a
/// conflict is run again instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store failed (I/O, a corrupt record, Redis unreachable).
    #[error("store: {0}")]
    Failed(String),
    /// An optimistic write lost a race with another node (Redis `WATCH`):
    /// nothing was written.
    #[error("store: write conflict: another node changed a key this write read; retry")]
    Conflict,
}

impl StoreError {
    /// An optimistic write lost a race with another node (Redis `WATCH`):
    /// nothing was written; the ledger runs the same operations again.
    pub fn conflict() -> StoreError {
        StoreError::Conflict
    }

    /// Whether this is [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        StoreError::Failed(e.into().to_string())
    }
}

/// One retained event: its seq, accept time and encoded `event` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the channel.
    pub seq: u64,
    /// Accept time, ms since the Unix epoch (for `history_ttl`).
    pub ts: u64,
    /// The complete `event` frame text, as sent to subscribers.
    pub frame: String,
}

/// How a command ended, as remembered for duplicates and sent to the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The agent answered with data.
    Data { data: Value },
    /// The agent answered with an error.
    AgentError { code: String, message: String },
    /// The gateway gave up (`no_handler`, `timeout`, ...).
    Gateway { code: ErrorCode, message: String },
}

/// What a `(principal, id)` key remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DedupEntry {
    /// A publish, with its original ack.
    Published { channel: String, seq: u64, epoch: String },
    /// A command: its task, and its outcome once there is one.
    Command { task_id: String, outcome: Option<Outcome> },
}

/// A command accepted and not yet finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// The gateway's task id (`t-…`), stable across redeliveries and restarts.
    pub task_id: String,
    /// Who sent it.
    pub principal: String,
    /// The requester's `id`.
    pub request_id: String,
    /// The command type.
    pub command: String,
    /// The command's `data`.
    pub payload: Value,
    /// When it was accepted, ms since the Unix epoch.
    pub accepted_ms: u64,
}

/// What a retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Events past their channel's size or age.
    pub events: u64,
    /// Expired deduplication keys.
    pub dedup_keys: u64,
}

/// Reads, and the start of writes. Reads see only committed data and may run
/// concurrently with a write.
pub trait Store: Send + Sync + 'static {
    /// The epoch of `channel`. The embedded store has one epoch for all channels:
    /// it changes only when the data directory is lost, which is exactly when
    /// history is lost.
    fn epoch(&self, channel: &str) -> String;
    /// The last committed seq of `channel` (0 if none).
    fn last_seq(&self, channel: &str) -> Result<u64, StoreError>;
    /// Events with `after < seq <= upto` and `ts >= not_before_ms`, oldest first,
    /// at most `limit`.
    fn read_events(
        &self,
        channel: &str,
        after: u64,
        upto: u64,
        not_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The seq of the oldest retained event with `ts >= not_before_ms`.
    fn first_retained(&self, channel: &str, not_before_ms: u64) -> Result<Option<u64>, StoreError>;
    /// Every pending command, oldest first.
    fn pending_commands(&self) -> Result<Vec<PendingCommand>, StoreError>;
    /// Runs `body` as one all-or-nothing write and commits it: durable when
    /// this returns `Ok`, and nothing written when `body` (or the commit)
    /// fails. Only one runs at a time per node (the ledger's); a shared store
    /// may fail it with [`StoreError::conflict`].
    fn write(&self, body: &mut dyn FnMut(&mut dyn StoreWrite) -> Result<(), StoreError>) -> Result<(), StoreError>;
    /// Whether the store answers now (for `/readyz`). The embedded store
    /// always does; Redis is pinged.
    fn ready(&self) -> bool {
        true
    }
    /// The live entry of `(principal, id)`, read outside any write (a shared
    /// store's ledger looks up outcomes other nodes committed). The embedded
    /// store, never shared, has no need to answer.
    fn dedup_read(&self, _principal: &str, _id: &str) -> Result<Option<DedupEntry>, StoreError> {
        Ok(None)
    }
    /// Whether other nodes share this store: commands then go through the
    /// cluster's queue (see `tasks`) instead of straight to this node's agents.
    fn shared(&self) -> bool {
        false
    }
}

/// The operations of one all-or-nothing write (see [`Store::write`]).
pub trait StoreWrite {
    /// Hints the keys this write is about to read, so that a networked store
    /// can fetch (and watch) them in one round trip instead of one each. The
    /// reads that follow must give the same answers as without it.
    fn prefetch(&mut self, _channels: &[&str], _dedup: &[(&str, &str)], _tasks: &[&str]) -> Result<(), StoreError> {
        Ok(())
    }
    /// The last seq of `channel` as this write sees it.
    fn last_seq(&mut self, channel: &str) -> Result<u64, StoreError>;
    /// Appends `event` as the channel's new last event and drops the event that
    /// falls out of a window of `history_size`.
    fn append(&mut self, channel: &str, event: &StoredEvent, history_size: u64) -> Result<(), StoreError>;
    /// The live entry for `(principal, id)`, if any was stored before `now_ms`
    /// minus the window.
    fn dedup_get(&mut self, principal: &str, id: &str, now_ms: u64) -> Result<Option<DedupEntry>, StoreError>;
    /// Stores `(principal, id)` until `expires_ms`.
    fn dedup_put(&mut self, principal: &str, id: &str, entry: &DedupEntry, expires_ms: u64) -> Result<(), StoreError>;
    /// Stores a pending command.
    fn command_put(&mut self, command: &PendingCommand) -> Result<(), StoreError>;
    /// Removes and returns a pending command.
    fn command_take(&mut self, task_id: &str) -> Result<Option<PendingCommand>, StoreError>;
    /// Announces a command's outcome to the other nodes (their waiting
    /// requesters), with the commit. A store of one node has nobody to tell.
    fn command_done(&mut self, _task_id: &str, _outcome: &Outcome) -> Result<(), StoreError> {
        Ok(())
    }
    /// Drops events beyond each channel's retention and expired dedup keys.
    fn sweep(&mut self, now_ms: u64, retention: &dyn Fn(&str) -> Retention) -> Result<SweepStats, StoreError>;
}
