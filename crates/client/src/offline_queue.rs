//! The durable offline queue: client messages (publishes and commands) written
//! while the client is disconnected, kept in one redb file so that they survive a
//! process restart, and flushed in order on reconnect.
//!
//! Messages keep their ORIGINAL `id`. The gateway deduplicates by
//! `(principal, id)` within its dedup window (default 24 h), so replaying a
//! message whose first send was accepted but whose ack was lost is harmless: each
//! message takes effect exactly once as long as it is replayed within that window
//! (hence [`DEFAULT_TTL`]). The same file stores the client's stable `client_id`,
//! which is the principal when auth is off, so that deduplication spans restarts.
//!
//! What it is not: it does not send anything, does not know about connections and
//! does not read the clock (`now_ms` is an argument, so tests control time). The
//! driver decides when to [`OfflineQueue::peek_all`], sends, and calls
//! [`OfflineQueue::remove`] once the gateway answered.
//!
//! Every method is blocking and short: one redb transaction, and every write
//! commits (fsync) before it returns. From async code, call it directly for single
//! messages and use `tokio::task::spawn_blocking` for [`OfflineQueue::open`] and
//! for flushes or purges of large queues.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Default [`OfflineConfig::max_messages`]: 10 000. At the gateway's default rate
/// limit (100 frames/s, burst 200) a full queue flushes in under two minutes, and
/// it holds more than a day of activity for a client sending one message every
/// ten seconds.
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;

/// Default [`OfflineConfig::max_bytes`]: 16 MiB. [`OfflineQueue::peek_all`]
/// loads the whole queue into memory, so this bounds memory as well as disk; it
/// is 256 frames of the gateway's default `max_message_bytes` (64 KiB), or
/// 10 000 messages of 1.6 KiB on average.
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Default [`OfflineConfig::ttl`]: 24 h, the gateway's default dedup window. A
/// message replayed after the gateway has forgotten its `(principal, id)` could
/// take effect twice (when its first send was accepted but the ack was lost), so
/// the TTL must not exceed the gateway's dedup window.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `seq` → 8-byte big-endian `enqueued_ms`, 8-byte big-endian `expires_ms`, then
/// the frame's JSON text (whose length is what [`OfflineQueue::bytes`] counts).
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// Queue-wide facts: `format`, `client_id`.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Queue-wide counters: `next_seq`. Persisted (not derived from the last key) so
/// that a seq is never reused, even after [`OfflineQueue::clear`] and a reopen: a
/// caller holding an old seq must not remove a newer message.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// The on-disk layout version, checked at open.
const FORMAT: &str = "1";
/// Bytes of the record header before the frame text.
const HEADER_LEN: usize = 16;

/// How the queue is bounded. A plain struct; [`Default`] gives the documented
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineConfig {
    /// At most this many messages are held. Default [`DEFAULT_MAX_MESSAGES`]
    /// (bounds the flush time after a reconnect). `0` disables queueing: every
    /// push is refused with [`QueueError::Full`].
    pub max_messages: usize,
    /// At most this many bytes of frame JSON are held. Default
    /// [`DEFAULT_MAX_BYTES`] (bounds disk and the memory of a flush). A single
    /// message larger than this is refused with [`QueueError::TooLarge`].
    pub max_bytes: usize,
    /// How long a message stays replayable after it was queued. Default
    /// [`DEFAULT_TTL`], the gateway's dedup window; never set it higher than the
    /// gateway's, or a replay may take effect twice.
    pub ttl: Duration,
    /// What a push does when the queue is full. Default
    /// [`OverflowPolicy::RejectNew`].
    pub overflow: OverflowPolicy,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            max_messages: DEFAULT_MAX_MESSAGES,
            max_bytes: DEFAULT_MAX_BYTES,
            ttl: DEFAULT_TTL,
            overflow: OverflowPolicy::RejectNew,
        }
    }
}

/// What [`OfflineQueue::push`] does when the new message would exceed
/// `max_messages` or `max_bytes`. Neither drops anything silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// The default: the new message is refused with [`QueueError::Full`] and the
    /// queue is unchanged; the caller reports the send as `Rejected`. Suits
    /// commands and anything where the oldest messages matter most.
    #[default]
    RejectNew,
    /// The oldest queued messages are dropped, as many as needed to make room,
    /// and the new one is queued; the push returns
    /// [`Enqueued::QueuedDroppedOldest`] with how many were dropped (and logs
    /// their ids at WARN). Suits state updates where only recent ones matter.
    DropOldest,
}

/// One queued message, as returned by [`OfflineQueue::peek_all`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Queue position: strictly increasing over the file's lifetime, never
    /// reused. Pass it to [`OfflineQueue::remove`].
    pub seq: u64,
    /// The frame's original `id`, resent unchanged so the gateway deduplicates.
    pub id: String,
    /// The full client frame, e.g.
    /// `{"type":"publish","id":"3","channel":"orders","data":{…}}`.
    pub frame: serde_json::Value,
    /// When it was queued (ms since the epoch, the caller's clock).
    pub enqueued_ms: u64,
    /// From this time on (inclusive) it is expired: not returned, purged.
    pub expires_ms: u64,
}

/// The outcome of a successful [`OfflineQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The message is queued (durably) at `seq`.
    Queued {
        /// The new message's queue position.
        seq: u64,
    },
    /// [`OverflowPolicy::DropOldest`]: the message is queued at `seq` after
    /// `dropped` of the oldest messages (at least one) were removed to make room.
    /// The caller should report those as lost.
    QueuedDroppedOldest {
        /// The new message's queue position.
        seq: u64,
        /// How many of the oldest messages were dropped.
        dropped: u64,
    },
}

impl Enqueued {
    /// The new message's queue position.
    pub fn seq(&self) -> u64 {
        match *self {
            Enqueued::Queued { seq } | Enqueued::QueuedDroppedOldest { seq, .. } => seq,
        }
    }
}

/// Why an [`OfflineQueue`] operation failed. In every case a failed push left
/// the queue unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// [`OverflowPolicy::RejectNew`] and the queue is full (or `max_messages` is
    /// 0). The caller returns `Rejected` for this send; retrying makes sense only
    /// after a flush has emptied the queue.
    #[error("offline queue full (max {max_messages} messages, {max_bytes} bytes)")]
    Full {
        /// The configured message bound.
        max_messages: usize,
        /// The configured byte bound.
        max_bytes: usize,
    },
    /// This one message's JSON is larger than `max_bytes`, so it can never be
    /// queued under either policy. Input error: the caller returns `Rejected` and
    /// should not retry it.
    #[error("message of {bytes} bytes exceeds the offline queue limit of {max_bytes} bytes")]
    TooLarge {
        /// The message's JSON size.
        bytes: usize,
        /// The configured byte bound.
        max_bytes: usize,
    },
    /// The frame has no non-empty string `id`. Programmer error: without its
    /// original id a replay could not be deduplicated; give the frame an id.
    #[error("frame has no string \"id\"; queued messages need one for deduplication")]
    MissingId,
    /// The file could not be opened, read or written (disk full or failing,
    /// another process holding the file, a corrupt record). The operation did not
    /// take effect: the caller returns `Rejected` for a push and may retry later;
    /// at open, it runs without an offline queue or reports the error.
    #[error("offline queue store: {0}")]
    Store(String),
}

impl<E: Into<redb::Error>> From<E> for QueueError {
    fn from(e: E) -> Self {
        QueueError::Store(e.into().to_string())
    }
}

/// The durable, bounded offline queue. Cheap to clone (the clones share one
/// redb [`Database`]), `Send + Sync`. One process per file: a second open of the
/// same file fails with [`QueueError::Store`] while the first is alive.
#[derive(Clone)]
pub struct OfflineQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    config: OfflineConfig,
    client_id: String,
    /// Held for the whole of every write transaction, so that capacity decisions
    /// see the counts of the last commit. Guards `next_seq`.
    write: Mutex<u64>,
    /// Messages held, expired-but-not-purged ones included. Changed only while
    /// `write` is held; read without it.
    len: AtomicUsize,
    /// Frame JSON bytes held, as `len`.
    bytes: AtomicUsize,
}

impl fmt::Debug for OfflineQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfflineQueue")
            .field("client_id", &self.inner.client_id)
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl OfflineQueue {
    /// Opens (or creates) the queue file at `path`, creating its parent
    /// directories, and the `client_id` on first use. Counts are recomputed from
    /// the stored messages (one pass over the file).
    pub fn open(path: &Path, config: OfflineConfig) -> Result<OfflineQueue, QueueError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| QueueError::Store(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        let (client_id, next_seq) = {
            let mut meta = txn.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value().to_owned());
            match format.as_deref() {
                None => {
                    meta.insert("format", FORMAT)?;
                }
                Some(FORMAT) => {}
                Some(other) => {
                    return Err(QueueError::Store(format!(
                        "{} has queue format {other:?}, this version reads {FORMAT:?}",
                        path.display()
                    )))
                }
            }
            let existing = meta.get("client_id")?.map(|v| v.value().to_owned());
            let client_id = match existing {
                Some(id) => id,
                None => {
                    let id = new_client_id();
                    meta.insert("client_id", id.as_str())?;
                    id
                }
            };
            let mut counters = txn.open_table(COUNTERS)?;
            let stored = counters.get("next_seq")?.map(|v| v.value());
            let messages = txn.open_table(MESSAGES)?;
            let after_last = messages.last()?.map_or(1, |(k, _)| k.value() + 1);
            // Normally equal; the max guards against a lost counter.
            let next_seq = stored.unwrap_or(1).max(after_last);
            if stored != Some(next_seq) {
                counters.insert("next_seq", next_seq)?;
            }
            (client_id, next_seq)
        };
        txn.commit()?;

        let (mut len, mut bytes) = (0usize, 0usize);
        {
            let read = db.begin_read()?;
            let messages = read.open_table(MESSAGES)?;
            for row in messages.iter()? {
                let (_, v) = row?;
                len += 1;
                bytes += frame_len(v.value())?;
            }
        }
        tracing::debug!(path = %path.display(), len, bytes, "offline queue opened");
        Ok(OfflineQueue {
            inner: Arc::new(Inner {
                db,
                config,
                client_id,
                write: Mutex::new(next_seq),
                len: AtomicUsize::new(len),
                bytes: AtomicUsize::new(bytes),
            }),
        })
    }

    /// The client's stable id (`c-` and 16 hex digits), generated once per file
    /// and the same after every reopen. SDKs send it as the `client_id` query
    /// parameter so that deduplication spans reconnects and restarts.
    pub fn client_id(&self) -> String {
        self.inner.client_id.clone()
    }

    /// The configuration the queue was opened with.
    pub fn config(&self) -> &OfflineConfig {
        &self.inner.config
    }

    /// Queues `frame` (which must carry a non-empty string `id`) at `now_ms`,
    /// durably: the redb commit has happened when this returns `Ok`. Expired
    /// messages at the head of the queue are purged first, so stale messages do
    /// not make a queue look full. On overflow, [`OfflineConfig::overflow`]
    /// decides; on any error nothing changed.
    pub fn push(&self, frame: serde_json::Value, now_ms: u64) -> Result<Enqueued, QueueError> {
        let id = frame_id(&frame).ok_or(QueueError::MissingId)?;
        let text = serde_json::to_vec(&frame).map_err(|e| QueueError::Store(format!("cannot encode frame: {e}")))?;
        let config = &self.inner.config;
        let size = text.len();
        if size > config.max_bytes {
            return Err(QueueError::TooLarge {
                bytes: size,
                max_bytes: config.max_bytes,
            });
        }
        let full = QueueError::Full {
            max_messages: config.max_messages,
            max_bytes: config.max_bytes,
        };
        if config.max_messages == 0 {
            return Err(full);
        }
        let expires_ms = now_ms.saturating_add(duration_ms(config.ttl));

        let mut next_seq = self.lock_writes();
        let (mut len, mut bytes) = self.counts();
        let txn = self.inner.db.begin_write()?;
        let mut dropped_ids = Vec::new();
        {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut expired = 0u64;
            loop {
                let head = match messages.first()? {
                    Some((k, v)) => Some((k.value(), decode_header(v.value())?)),
                    None => None,
                };
                match head {
                    Some((seq, (_, head_expires, head_bytes))) if head_expires <= now_ms => {
                        messages.remove(seq)?;
                        len -= 1;
                        bytes -= head_bytes;
                        expired += 1;
                    }
                    _ => break,
                }
            }
            if expired > 0 {
                tracing::debug!(expired, "offline queue: purged expired messages at the head");
            }
            let fits = |len: usize, bytes: usize| len < config.max_messages && bytes + size <= config.max_bytes;
            if !fits(len, bytes) {
                if config.overflow == OverflowPolicy::RejectNew {
                    // Dropping `txn` aborts it: the purge above is undone too.
                    return Err(full);
                }
                // `size <= max_bytes` and `max_messages >= 1`, so an empty queue
                // always fits and this loop ends.
                while !fits(len, bytes) {
                    let Some((k, v)) = messages.pop_first()? else {
                        break;
                    };
                    let (seq, raw) = (k.value(), v.value());
                    len -= 1;
                    bytes -= frame_len(raw)?;
                    let old_id = serde_json::from_slice::<serde_json::Value>(&raw[HEADER_LEN..])
                        .ok()
                        .and_then(|f| frame_id(&f).map(str::to_owned))
                        .unwrap_or_default();
                    dropped_ids.push((seq, old_id));
                }
            }
            let mut record = Vec::with_capacity(HEADER_LEN + size);
            record.extend_from_slice(&now_ms.to_be_bytes());
            record.extend_from_slice(&expires_ms.to_be_bytes());
            record.extend_from_slice(&text);
            messages.insert(*next_seq, record.as_slice())?;
            let mut counters = txn.open_table(COUNTERS)?;
            counters.insert("next_seq", *next_seq + 1)?;
        }
        txn.commit()?;

        let seq = *next_seq;
        *next_seq += 1;
        self.set_counts(len + 1, bytes + size);
        if dropped_ids.is_empty() {
            tracing::trace!(seq, id, "offline queue: queued");
            Ok(Enqueued::Queued { seq })
        } else {
            tracing::warn!(
                seq,
                id,
                dropped = dropped_ids.len(),
                dropped_messages = ?dropped_ids,
                "offline queue full: dropped the oldest messages (policy DropOldest)"
            );
            Ok(Enqueued::QueuedDroppedOldest {
                seq,
                dropped: dropped_ids.len() as u64,
            })
        }
    }

    /// Every message not expired at `now_ms`, oldest first: what to replay, in
    /// this order and with these ids, after a reconnect. Reads only; expired
    /// messages stay on disk until [`OfflineQueue::purge_expired`] or a push.
    pub fn peek_all(&self, now_ms: u64) -> Result<Vec<QueuedMessage>, QueueError> {
        let read = self.inner.db.begin_read()?;
        let messages = read.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for row in messages.iter()? {
            let (k, v) = row?;
            let (enqueued_ms, expires_ms, _) = decode_header(v.value())?;
            if expires_ms <= now_ms {
                continue;
            }
            let seq = k.value();
            let frame: serde_json::Value = serde_json::from_slice(&v.value()[HEADER_LEN..])
                .map_err(|e| QueueError::Store(format!("corrupt message {seq}: {e}")))?;
            let id = frame_id(&frame)
                .ok_or_else(|| QueueError::Store(format!("corrupt message {seq}: no id")))?
                .to_owned();
            out.push(QueuedMessage {
                seq,
                id,
                frame,
                enqueued_ms,
                expires_ms,
            });
        }
        Ok(out)
    }

    /// Removes the message at `seq`, durably, once the gateway has answered it
    /// (an `ack`, a `result`, or an `error` that retrying will not fix). Returns
    /// whether it was still queued (`false`: already removed, purged or dropped).
    pub fn remove(&self, seq: u64) -> Result<bool, QueueError> {
        let _writes = self.lock_writes();
        let txn = self.inner.db.begin_write()?;
        let removed = {
            let mut messages = txn.open_table(MESSAGES)?;
            let removed = messages.remove(seq)?;
            match removed {
                Some(v) => Some(frame_len(v.value())?),
                None => None,
            }
        };
        let Some(size) = removed else {
            // Nothing changed: dropping `txn` aborts it without an fsync.
            return Ok(false);
        };
        txn.commit()?;
        let (len, bytes) = self.counts();
        self.set_counts(len - 1, bytes - size);
        Ok(true)
    }

    /// Removes every message expired at `now_ms`, durably, and returns how many.
    /// A full pass over the file: call it at start-up and before a flush, not
    /// per message.
    pub fn purge_expired(&self, now_ms: u64) -> Result<u64, QueueError> {
        let _writes = self.lock_writes();
        let txn = self.inner.db.begin_write()?;
        let (mut purged, mut purged_bytes, mut corrupt) = (0u64, 0usize, false);
        {
            let mut messages = txn.open_table(MESSAGES)?;
            messages.retain(|_, raw| match decode_header(raw) {
                Ok((_, expires_ms, size)) if expires_ms <= now_ms => {
                    purged += 1;
                    purged_bytes += size;
                    false
                }
                Ok(_) => true,
                Err(_) => {
                    corrupt = true;
                    true
                }
            })?;
        }
        if corrupt {
            return Err(QueueError::Store("corrupt message record".into()));
        }
        if purged == 0 {
            return Ok(0);
        }
        txn.commit()?;
        let (len, bytes) = self.counts();
        self.set_counts(len - purged as usize, bytes - purged_bytes);
        tracing::debug!(purged, "offline queue: purged expired messages");
        Ok(purged)
    }

    /// Removes every message, durably, and returns how many. The `client_id`
    /// stays, and seqs keep increasing.
    pub fn clear(&self) -> Result<u64, QueueError> {
        let _writes = self.lock_writes();
        let txn = self.inner.db.begin_write()?;
        let mut cleared = 0u64;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            messages.retain(|_, _| {
                cleared += 1;
                false
            })?;
        }
        txn.commit()?;
        self.set_counts(0, 0);
        Ok(cleared)
    }

    /// How many messages are held, expired ones not yet purged included.
    pub fn len(&self) -> usize {
        self.inner.len.load(Ordering::Acquire)
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held: the sum of the queued frames' JSON sizes (what
    /// [`OfflineConfig::max_bytes`] bounds), without redb's own overhead.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Acquire)
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, u64> {
        // The guarded counter is only changed after a successful commit, so it
        // is consistent even if another writer panicked.
        self.inner.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counts(&self) -> (usize, usize) {
        (self.len(), self.bytes())
    }

    fn set_counts(&self, len: usize, bytes: usize) {
        self.inner.len.store(len, Ordering::Release);
        self.inner.bytes.store(bytes, Ordering::Release);
    }
}

/// The frame's `id` when it is a non-empty string.
fn frame_id(frame: &serde_json::Value) -> Option<&str> {
    frame
        .get("id")
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty())
}

/// `(enqueued_ms, expires_ms, frame bytes)` of a stored record.
fn decode_header(raw: &[u8]) -> Result<(u64, u64, usize), QueueError> {
    let (Some(enqueued), Some(expires)) = (raw.get(0..8), raw.get(8..HEADER_LEN)) else {
        return Err(QueueError::Store("corrupt message record".into()));
    };
    let enqueued = u64::from_be_bytes(enqueued.try_into().expect("8 bytes"));
    let expires = u64::from_be_bytes(expires.try_into().expect("8 bytes"));
    Ok((enqueued, expires, raw.len() - HEADER_LEN))
}

fn frame_len(raw: &[u8]) -> Result<usize, QueueError> {
    decode_header(raw).map(|(_, _, len)| len)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn new_client_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("c-{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: u64 = 60_000;

    fn publish(id: &str, n: u64) -> serde_json::Value {
        json!({"type":"publish","id":id,"channel":"orders","data":{"n":n}})
    }

    fn size(frame: &serde_json::Value) -> usize {
        serde_json::to_vec(frame).unwrap().len()
    }

    fn config(max_messages: usize, max_bytes: usize, overflow: OverflowPolicy) -> OfflineConfig {
        OfflineConfig {
            max_messages,
            max_bytes,
            ttl: Duration::from_secs(600),
            overflow,
        }
    }

    fn open(path: &Path) -> OfflineQueue {
        OfflineQueue::open(path, OfflineConfig::default()).unwrap()
    }

    fn ids(queue: &OfflineQueue, now_ms: u64) -> Vec<String> {
        queue.peek_all(now_ms).unwrap().into_iter().map(|m| m.id).collect()
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = OfflineConfig::default();
        assert_eq!(c.max_messages, 10_000);
        assert_eq!(c.max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.ttl, Duration::from_secs(86_400));
        assert_eq!(c.overflow, OverflowPolicy::RejectNew);
    }

    #[test]
    fn push_then_peek_preserves_order_ids_and_frames() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir.path().join("q.redb"));
        let command = json!({"type":"process_receipt","id":"b","data":{"imageUrl":"x"}});
        assert_eq!(q.push(publish("a", 1), 1_000).unwrap(), Enqueued::Queued { seq: 1 });
        assert_eq!(q.push(command.clone(), 2_000).unwrap(), Enqueued::Queued { seq: 2 });
        assert_eq!(q.push(publish("c", 3), 3_000).unwrap(), Enqueued::Queued { seq: 3 });
        let ttl = DEFAULT_TTL.as_millis() as u64;
        assert_eq!(
            q.peek_all(3_000).unwrap(),
            vec![
                QueuedMessage {
                    seq: 1,
                    id: "a".into(),
                    frame: publish("a", 1),
                    enqueued_ms: 1_000,
                    expires_ms: 1_000 + ttl
                },
                QueuedMessage {
                    seq: 2,
                    id: "b".into(),
                    frame: command.clone(),
                    enqueued_ms: 2_000,
                    expires_ms: 2_000 + ttl
                },
                QueuedMessage {
                    seq: 3,
                    id: "c".into(),
                    frame: publish("c", 3),
                    enqueued_ms: 3_000,
                    expires_ms: 3_000 + ttl
                },
            ]
        );
        assert_eq!(q.len(), 3);
        assert!(!q.is_empty());
        assert_eq!(
            q.bytes(),
            size(&publish("a", 1)) + size(&command) + size(&publish("c", 3))
        );
    }

    #[test]
    fn open_creates_parent_dirs_and_a_client_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("q.redb");
        let q = open(&path);
        assert!(path.exists());
        let id = q.client_id();
        assert_eq!(id.len(), 18, "{id}");
        assert!(id.starts_with("c-"), "{id}");
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        let other = open(&dir.path().join("other.redb"));
        assert_ne!(other.client_id(), id);
    }

    #[test]
    fn reopen_keeps_messages_counts_seq_and_client_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let q = open(&path);
        let client_id = q.client_id();
        q.push(publish("a", 1), 1_000).unwrap();
        q.push(publish("b", 2), 2_000).unwrap();
        let before = q.peek_all(2_000).unwrap();
        let (len, bytes) = (q.len(), q.bytes());
        drop(q);

        let q = open(&path);
        assert_eq!(q.client_id(), client_id);
        assert_eq!(q.peek_all(2_000).unwrap(), before);
        assert_eq!((q.len(), q.bytes()), (len, bytes));
        assert_eq!((len, bytes), (2, size(&publish("a", 1)) + size(&publish("b", 2))));
        assert_eq!(q.push(publish("c", 3), 3_000).unwrap(), Enqueued::Queued { seq: 3 });
        assert_eq!(ids(&q, 3_000), ["a", "b", "c"]);
    }

    #[test]
    fn remove_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let q = open(&path);
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), 0).unwrap();
        q.push(publish("c", 3), 0).unwrap();
        assert!(q.remove(2).unwrap());
        assert!(!q.remove(2).unwrap(), "already removed");
        assert!(!q.remove(99).unwrap(), "never queued");
        assert_eq!(q.len(), 2);
        drop(q);

        let q = open(&path);
        assert_eq!(ids(&q, 0), ["a", "c"]);
        assert_eq!(q.peek_all(0).unwrap().iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            (q.len(), q.bytes()),
            (2, size(&publish("a", 1)) + size(&publish("c", 3)))
        );
    }

    #[test]
    fn reject_new_refuses_when_max_messages_reached() {
        let dir = tempfile::tempdir().unwrap();
        let q = OfflineQueue::open(
            &dir.path().join("q.redb"),
            config(2, 1_000_000, OverflowPolicy::RejectNew),
        )
        .unwrap();
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), 0).unwrap();
        assert_eq!(
            q.push(publish("c", 3), 0),
            Err(QueueError::Full {
                max_messages: 2,
                max_bytes: 1_000_000
            })
        );
        assert_eq!(ids(&q, 0), ["a", "b"]);
        assert_eq!(q.len(), 2);
        // Room again after a removal; the refused push did not use up a seq.
        q.remove(1).unwrap();
        assert_eq!(q.push(publish("c", 3), 0).unwrap(), Enqueued::Queued { seq: 3 });
        assert_eq!(ids(&q, 0), ["b", "c"]);
    }

    #[test]
    fn reject_new_refuses_when_max_bytes_would_be_exceeded() {
        let dir = tempfile::tempdir().unwrap();
        let one = size(&publish("a", 1));
        // Room for exactly two frames of this size, not three.
        let q = OfflineQueue::open(
            &dir.path().join("q.redb"),
            config(100, 2 * one + 1, OverflowPolicy::RejectNew),
        )
        .unwrap();
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), 0).unwrap();
        assert_eq!(q.bytes(), 2 * one);
        assert_eq!(
            q.push(publish("c", 3), 0),
            Err(QueueError::Full {
                max_messages: 100,
                max_bytes: 2 * one + 1
            })
        );
        assert_eq!(ids(&q, 0), ["a", "b"]);
        assert_eq!((q.len(), q.bytes()), (2, 2 * one));
    }

    #[test]
    fn zero_max_messages_refuses_every_push() {
        let dir = tempfile::tempdir().unwrap();
        let q = OfflineQueue::open(&dir.path().join("q.redb"), config(0, 1_000, OverflowPolicy::DropOldest)).unwrap();
        assert_eq!(
            q.push(publish("a", 1), 0),
            Err(QueueError::Full {
                max_messages: 0,
                max_bytes: 1_000
            })
        );
        assert!(q.is_empty());
    }

    #[test]
    fn drop_oldest_drops_the_oldest_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let q = OfflineQueue::open(&path, config(2, 1_000_000, OverflowPolicy::DropOldest)).unwrap();
        assert_eq!(q.push(publish("a", 1), 0).unwrap(), Enqueued::Queued { seq: 1 });
        assert_eq!(q.push(publish("b", 2), 0).unwrap(), Enqueued::Queued { seq: 2 });
        assert_eq!(
            q.push(publish("c", 3), 0).unwrap(),
            Enqueued::QueuedDroppedOldest { seq: 3, dropped: 1 }
        );
        assert_eq!(ids(&q, 0), ["b", "c"]);
        assert_eq!(
            (q.len(), q.bytes()),
            (2, size(&publish("b", 2)) + size(&publish("c", 3)))
        );
        drop(q);
        let q = OfflineQueue::open(&path, config(2, 1_000_000, OverflowPolicy::DropOldest)).unwrap();
        assert_eq!(ids(&q, 0), ["b", "c"]);
    }

    #[test]
    fn drop_oldest_drops_as_many_as_the_bytes_need() {
        let dir = tempfile::tempdir().unwrap();
        let small = publish("a", 1);
        let big = json!({"type":"publish","id":"big","channel":"orders","data":"x".repeat(3 * size(&small))});
        let max_bytes = size(&big) + size(&small);
        let q = OfflineQueue::open(
            &dir.path().join("q.redb"),
            config(100, max_bytes, OverflowPolicy::DropOldest),
        )
        .unwrap();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            q.push(publish(id, 1), i as u64).unwrap();
        }
        // 4 small frames held; the big one needs three of them gone.
        assert_eq!(
            q.push(big.clone(), 10).unwrap(),
            Enqueued::QueuedDroppedOldest { seq: 5, dropped: 3 }
        );
        assert_eq!(ids(&q, 10), ["d", "big"]);
        assert_eq!((q.len(), q.bytes()), (2, size(&publish("d", 1)) + size(&big)));
    }

    #[test]
    fn too_large_is_refused_under_either_policy() {
        let dir = tempfile::tempdir().unwrap();
        let frame = publish("a", 1);
        let bytes = size(&frame);
        for (name, policy) in [("r", OverflowPolicy::RejectNew), ("d", OverflowPolicy::DropOldest)] {
            let q = OfflineQueue::open(&dir.path().join(name), config(10, bytes - 1, policy)).unwrap();
            assert_eq!(
                q.push(frame.clone(), 0),
                Err(QueueError::TooLarge {
                    bytes,
                    max_bytes: bytes - 1
                })
            );
            assert!(q.is_empty());
            // Exactly max_bytes fits.
            let q2 = OfflineQueue::open(&dir.path().join(format!("{name}2")), config(10, bytes, policy)).unwrap();
            assert_eq!(q2.push(frame.clone(), 0).unwrap(), Enqueued::Queued { seq: 1 });
        }
    }

    #[test]
    fn frame_without_a_string_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir.path().join("q.redb"));
        for frame in [
            json!({"type":"publish","channel":"orders","data":1}),
            json!({"type":"publish","id":7,"channel":"orders"}),
            json!({"type":"publish","id":"","channel":"orders"}),
            json!({"type":"publish","id":null}),
            json!(["id"]),
            json!("id"),
        ] {
            assert_eq!(q.push(frame.clone(), 0), Err(QueueError::MissingId), "{frame}");
        }
        assert!(q.is_empty());
        assert_eq!(q.peek_all(0).unwrap(), vec![]);
    }

    #[test]
    fn expired_messages_are_not_returned_and_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let cfg = config(100, 1_000_000, OverflowPolicy::RejectNew); // ttl 10 min
        let q = OfflineQueue::open(&path, cfg.clone()).unwrap();
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), MIN).unwrap();
        q.push(publish("c", 3), 2 * MIN).unwrap();
        assert_eq!(ids(&q, 10 * MIN - 1), ["a", "b", "c"]);
        // Expiry is inclusive: "a" expires at exactly 10 min.
        assert_eq!(ids(&q, 10 * MIN), ["b", "c"]);
        assert_eq!(ids(&q, 11 * MIN), ["c"]);
        // Peeking does not delete.
        assert_eq!(q.len(), 3);
        assert_eq!(ids(&q, 0), ["a", "b", "c"]);

        assert_eq!(q.purge_expired(11 * MIN).unwrap(), 2);
        assert_eq!((q.len(), q.bytes()), (1, size(&publish("c", 3))));
        assert_eq!(ids(&q, 0), ["c"], "purged from disk, not just hidden");
        assert_eq!(q.purge_expired(11 * MIN).unwrap(), 0);
        drop(q);
        let q = OfflineQueue::open(&path, cfg).unwrap();
        assert_eq!(ids(&q, 0), ["c"]);
        assert_eq!((q.len(), q.bytes()), (1, size(&publish("c", 3))));
    }

    #[test]
    fn push_purges_expired_head_before_checking_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let q = OfflineQueue::open(
            &dir.path().join("q.redb"),
            config(2, 1_000_000, OverflowPolicy::RejectNew),
        )
        .unwrap();
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), 5 * MIN).unwrap();
        // "a" has expired at 10 min, so there is room and nothing is "dropped".
        assert_eq!(q.push(publish("c", 3), 10 * MIN).unwrap(), Enqueued::Queued { seq: 3 });
        assert_eq!(ids(&q, 0), ["b", "c"]);
        assert_eq!(q.len(), 2);
        // Still full of live messages: refused, and nothing was purged.
        assert!(matches!(
            q.push(publish("d", 4), 10 * MIN),
            Err(QueueError::Full { .. })
        ));
        assert_eq!(ids(&q, 0), ["b", "c"]);
    }

    #[test]
    fn clear_empties_the_queue_but_keeps_client_id_and_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let q = open(&path);
        let client_id = q.client_id();
        q.push(publish("a", 1), 0).unwrap();
        q.push(publish("b", 2), 0).unwrap();
        assert_eq!(q.clear().unwrap(), 2);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.peek_all(0).unwrap(), vec![]);
        assert_eq!(q.clear().unwrap(), 0);
        drop(q);

        let q = open(&path);
        assert!(q.is_empty());
        assert_eq!(q.client_id(), client_id);
        // Seqs are never reused, so a stale seq can't remove a new message.
        assert_eq!(q.push(publish("c", 3), 0).unwrap(), Enqueued::Queued { seq: 3 });
        assert!(!q.remove(1).unwrap());
        assert_eq!(ids(&q, 0), ["c"]);
    }

    #[test]
    fn a_second_open_of_the_same_file_fails_while_the_first_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let _q = open(&path);
        assert!(matches!(
            OfflineQueue::open(&path, OfflineConfig::default()),
            Err(QueueError::Store(_))
        ));
    }

    #[test]
    fn clones_share_state_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<OfflineQueue>();

        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir.path().join("q.redb"));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..5 {
                        q.push(publish(&format!("t{t}-{i}"), i), 0).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = q.peek_all(0).unwrap();
        assert_eq!(
            all.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
        assert_eq!(q.len(), 20);
        assert_eq!(q.bytes(), all.iter().map(|m| size(&m.frame)).sum::<usize>());
        // Per thread, order is kept.
        for t in 0..4 {
            let mine: Vec<_> = all
                .iter()
                .filter(|m| m.id.starts_with(&format!("t{t}-")))
                .map(|m| &m.id)
                .collect();
            let expected: Vec<_> = (0..5).map(|i| format!("t{t}-{i}")).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>());
        }
    }
}
