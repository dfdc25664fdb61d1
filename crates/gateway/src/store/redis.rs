//! The Redis store: the state several gateway nodes share, so that any node
//! serves any channel with the same seqs, history and deduplication.
//!
//! **Keys** (all under `tether:`): `seq:<channel>` (last seq), `hist:<channel>`
//! (a stream whose entry ids are `<seq>-0`, fields `ts` and `f` = the encoded
//! `event` frame), `channels` (a set, for the retention sweep), `epoch` (one
//! epoch for the whole store, made when the key is missing: when Redis lost its
//! data, history is gone and clients learn it through `recovered: false`),
//! `dedup:<len(principal)>:<principal>:<id>` (a `(principal, id)` key, expiring
//! after the dedup window), and the cluster's commands: `cmd:<task>` (a pending
//! command), `q:<command>` (task ids waiting for an agent, oldest first),
//! `queued` (a sorted set: waiting task → when it started waiting, for
//! `command_ttl`), `claimed:<node>` (tasks a node took for its agents) and
//! `claimants` (nodes that may hold claims); see `tasks.rs` for who moves them.
//!
//! **Writes are optimistic transactions.** A [`RedisWrite`] `WATCH`es every key
//! it reads (the epoch, each channel's seq, each dedup key), queues its changes
//! and sends them in one `MULTI`/`EXEC` at commit, together with a `PUBLISH` of
//! every new event on `tether:ev:<channel>`. Another node that changed a
//! watched key in between makes `EXEC` fail: nothing is written and the ledger
//! runs the same operations again ([`StoreError::conflict`]). So per channel,
//! seqs are allocated and history appended in one atomic step, an ack follows
//! Redis accepting the write, and the `PUBLISH`es leave Redis in commit order.
//!
//! **Failures are fast.** Connections have a 1 s connect and 2 s I/O timeout;
//! a failed connection is dropped and the next call makes a new one. Reads run
//! on the caller's thread; on a multi-threaded Tokio runtime they tell Tokio
//! first (`block_in_place`) so that other tasks keep running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::{Client, Connection, Pipeline, Value};

use super::{DedupEntry, Outcome, PendingCommand, Store, StoreError, StoreWrite, StoredEvent, SweepStats};
use crate::clock::{now_ms, random_id};
use crate::config::Retention;

/// How long to wait for a TCP connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take before the call fails.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;
/// Stream entries read per step when scanning history by age.
const SCAN_PAGE: usize = 128;
/// Channels looked at per retention sweep.
const SWEEP_PAGE: usize = 200;

const EPOCH_KEY: &str = "tether:epoch";
const CHANNELS_KEY: &str = "tether:channels";

fn seq_key(channel: &str) -> String {
    format!("tether:seq:{channel}")
}

fn hist_key(channel: &str) -> String {
    format!("tether:hist:{channel}")
}

fn dedup_key(principal: &str, id: &str) -> String {
    format!("tether:dedup:{}:{principal}:{id}", principal.len())
}

/// A pending command.
pub fn command_key(task_id: &str) -> String {
    format!("tether:cmd:{task_id}")
}

/// The queue of tasks waiting for an agent that handles `command`.
pub fn queue_key(command: &str) -> String {
    format!("tether:q:{command}")
}

/// Tasks waiting in some queue, scored by when they started waiting (ms).
pub const QUEUED_KEY: &str = "tether:queued";
/// Nodes that may hold claimed tasks.
pub const CLAIMANTS_KEY: &str = "tether:claimants";
/// Announces `<command>` when a task is queued for it.
pub const QUEUED_TOPIC: &str = "tether:queued";
/// Announces `{"task_id":…,"outcome":…}` when a command finished.
pub const DONE_TOPIC: &str = "tether:done";

/// The tasks `node` took for its agents.
pub fn claimed_key(node: &str) -> String {
    format!("tether:claimed:{node}")
}

/// The Pub/Sub channel on which `channel`'s events are announced.
pub fn event_topic(channel: &str) -> String {
    format!("tether:ev:{channel}")
}

/// The channel named by an [`event_topic`], if `topic` is one.
pub fn topic_channel(topic: &str) -> Option<&str> {
    topic.strip_prefix("tether:ev:")
}

/// An announced event: `<seq>\n<frame>`.
pub fn announcement(seq: u64, frame: &str) -> String {
    format!("{seq}\n{frame}")
}

/// Splits an [`announcement`] into seq and frame.
pub fn parse_announcement(payload: &str) -> Option<(u64, &str)> {
    let (seq, frame) = payload.split_once('\n')?;
    Some((seq.parse().ok()?, frame))
}

fn fail(e: redis::RedisError) -> StoreError {
    StoreError::Failed(format!("redis: {e}"))
}

/// Opens a connection with the store's timeouts.
pub fn connect(client: &Client) -> Result<Connection, StoreError> {
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(fail)?;
    con.set_read_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    con.set_write_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    Ok(con)
}

/// Runs blocking Redis I/O; on a multi-threaded runtime Tokio is told first.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct Inner {
    client: Client,
    node: String,
    /// The ledger's connection (one write at a time); `None` after a failure.
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    epoch: RwLock<String>,
    /// Where the retention sweep goes on in `tether:channels`.
    sweep_cursor: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// Runs `f` on a pooled connection; a connection that failed is dropped.
    /// A pooled connection that fails with an I/O error (Redis restarted since
    /// it was opened) empties the pool and `f` runs once more on a fresh one.
    fn read<T>(&self, f: impl Fn(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        blocking(|| {
            let pooled = self.readers.lock().expect("reader pool").pop();
            let (mut con, fresh) = match pooled {
                Some(c) => (c, false),
                None => (connect(&self.client)?, true),
            };
            let out = match f(&mut con) {
                Ok(v) => v,
                Err(e) if !fresh && (e.is_io_error() || e.is_connection_dropped()) => {
                    self.readers.lock().expect("reader pool").clear();
                    con = connect(&self.client)?;
                    f(&mut con).map_err(fail)?
                }
                Err(e) => return Err(fail(e)),
            };
            let mut pool = self.readers.lock().expect("reader pool");
            if pool.len() < MAX_IDLE_READERS {
                pool.push(con);
            }
            Ok(out)
        })
    }

    fn set_epoch(&self, epoch: String) {
        *self.epoch.write().expect("epoch lock") = epoch;
    }
}

/// The shared store on Redis.
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`) for node `node`: fails when
    /// Redis does not answer, so a node never starts without its store.
    pub fn open(url: &str, node: &str) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::Failed(format!("redis url {url:?}: {e}")))?;
        let mut con = connect(&client)?;
        let _: bool = redis::cmd("SET")
            .arg(EPOCH_KEY)
            .arg(random_id("e"))
            .arg("NX")
            .query::<Option<String>>(&mut con)
            .map(|r| r.is_some())
            .map_err(fail)?;
        let epoch: String = redis::cmd("GET").arg(EPOCH_KEY).query(&mut con).map_err(fail)?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                node: node.to_owned(),
                writer: Mutex::new(Some(con)),
                readers: Mutex::new(Vec::new()),
                epoch: RwLock::new(epoch),
                sweep_cursor: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The client, for the Pub/Sub listener.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Entries of `channel`'s history with `after < seq <= upto`, oldest first.
    fn range(&self, channel: &str, after: u64, upto: u64, count: usize) -> Result<Vec<StoredEvent>, StoreError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let key = hist_key(channel);
        let raw: Vec<(String, HashMap<String, String>)> = self.inner.read(|c| {
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("{}-0", after + 1))
                .arg(format!("{upto}-0"))
                .arg("COUNT")
                .arg(count.max(1))
                .query(c)
        })?;
        raw.into_iter().map(|(id, fields)| entry(&id, fields)).collect()
    }

    /// Starts a write: WATCHes the epoch (and makes one if Redis lost it).
    fn begin(&self) -> Result<RedisWrite, StoreError> {
        let taken = self.inner.writer.lock().expect("writer lock").take();
        let reused = taken.is_some();
        let con = match taken {
            Some(c) => c,
            None => connect(&self.inner.client)?,
        };
        let mut w = RedisWrite {
            inner: self.inner.clone(),
            con: Some(con),
            pipe: redis::pipe(),
            queued: 0,
            seqs: HashMap::new(),
            dedup: HashMap::new(),
            commands: HashMap::new(),
        };
        // The epoch is watched by every write: if Redis lost its data, the
        // first write after makes a new one (and no write mixes the two).
        let read_epoch = |c: &mut Connection| -> redis::RedisResult<Option<String>> {
            redis::cmd("WATCH").arg(EPOCH_KEY).query::<()>(c)?;
            redis::cmd("GET").arg(EPOCH_KEY).query(c)
        };
        let epoch = match w.run(read_epoch) {
            Ok(e) => e,
            // The kept connection died with a Redis restart: once more on a
            // fresh one (nothing was queued yet).
            Err(_) if reused => {
                w.con = Some(connect(&self.inner.client)?);
                w.run(read_epoch)?
            }
            Err(e) => return Err(e),
        };
        match epoch {
            Some(e) => self.inner.set_epoch(e),
            None => {
                let fresh = random_id("e");
                tracing::warn!(epoch = %fresh, "redis has no epoch (its data was lost): starting a new one");
                w.pipe.cmd("SET").arg(EPOCH_KEY).arg(&fresh).ignore();
                w.queued += 1;
                self.inner.set_epoch(fresh);
            }
        }
        Ok(w)
    }
}

/// One stream entry as a [`StoredEvent`].
fn entry(id: &str, mut fields: HashMap<String, String>) -> Result<StoredEvent, StoreError> {
    let seq = id
        .split_once('-')
        .and_then(|(s, _)| s.parse().ok())
        .ok_or_else(|| StoreError::Failed(format!("redis: history entry id {id:?} is not <seq>-0")))?;
    let ts = fields.get("ts").and_then(|t| t.parse().ok()).unwrap_or(0);
    let frame = fields
        .remove("f")
        .ok_or_else(|| StoreError::Failed(format!("redis: history entry {id} has no frame")))?;
    Ok(StoredEvent { seq, ts, frame })
}

impl Store for RedisStore {
    fn epoch(&self, _channel: &str) -> String {
        self.inner.epoch.read().expect("epoch lock").clone()
    }

    fn last_seq(&self, channel: &str) -> Result<u64, StoreError> {
        let key = seq_key(channel);
        let seq: Option<u64> = self.inner.read(|c| redis::cmd("GET").arg(&key).query(c))?;
        Ok(seq.unwrap_or(0))
    }

    fn read_events(
        &self,
        channel: &str,
        after: u64,
        upto: u64,
        not_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = self.range(channel, after, upto, limit)?;
        events.retain(|e| e.ts >= not_before_ms);
        Ok(events)
    }

    fn first_retained(&self, channel: &str, not_before_ms: u64) -> Result<Option<u64>, StoreError> {
        let mut after = 0;
        loop {
            let page = self.range(channel, after, u64::MAX - 1, SCAN_PAGE)?;
            let Some(last) = page.last().map(|e| e.seq) else {
                return Ok(None);
            };
            if let Some(e) = page.iter().find(|e| e.ts >= not_before_ms) {
                return Ok(Some(e.seq));
            }
            after = last;
        }
    }

    /// Nothing to dispatch here: the cluster's queue holds pending commands.
    /// A node starting again under the same id first puts back what it had
    /// claimed before (its agents' connections are gone).
    fn pending_commands(&self) -> Result<Vec<PendingCommand>, StoreError> {
        let node = self.inner.node.clone();
        self.inner.read(|c| crate::tasks::requeue_claims(c, &node, now_ms()))?;
        Ok(Vec::new())
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn StoreWrite) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut w = self.begin()?;
        body(&mut w)?;
        w.commit()
    }

    fn shared(&self) -> bool {
        true
    }

    fn dedup_read(&self, principal: &str, id: &str) -> Result<Option<DedupEntry>, StoreError> {
        let key = dedup_key(principal, id);
        let raw: Option<String> = self.inner.read(|c| redis::cmd("GET").arg(&key).query(c))?;
        raw.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Failed(format!("redis: dedup entry: {e}"))))
            .transpose()
    }

    fn ready(&self) -> bool {
        self.inner
            .read(|c| redis::cmd("PING").query::<String>(c))
            .is_ok_and(|p| p == "PONG")
    }
}

/// One optimistic transaction (see the module docs). Reads go to Redis (and
/// are watched) unless this write already changed the key: the overlays hold
/// what the queued commands will have written.
pub struct RedisWrite {
    inner: Arc<Inner>,
    /// `None` once a command failed: the connection is not reused.
    con: Option<Connection>,
    pipe: Pipeline,
    queued: usize,
    seqs: HashMap<String, u64>,
    dedup: HashMap<String, Option<DedupEntry>>,
    commands: HashMap<String, Option<PendingCommand>>,
}

impl RedisWrite {
    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let con = self
            .con
            .as_mut()
            .ok_or_else(|| StoreError::Failed("redis: the connection failed earlier in this write".into()))?;
        match blocking(|| f(con)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.con = None;
                Err(fail(e))
            }
        }
    }

    fn watch_get<T: redis::FromRedisValue>(&mut self, key: &str) -> Result<T, StoreError> {
        self.run(|c| {
            redis::cmd("WATCH").arg(key).query::<()>(c)?;
            redis::cmd("GET").arg(key).query(c)
        })
    }

    /// Runs the queued commands as one MULTI/EXEC; a WATCHed key changed
    /// meanwhile is a conflict (nothing written).
    fn commit(mut self) -> Result<(), StoreError> {
        if self.queued == 0 {
            return self.run(|c| redis::cmd("UNWATCH").query::<()>(c));
        }
        let mut pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        pipe.atomic();
        let reply: Value = self.run(|c| pipe.query(c))?;
        // EXEC ended every WATCH: the connection goes back without UNWATCH.
        if let Some(con) = self.con.take() {
            *self.inner.writer.lock().expect("writer lock") = Some(con);
        }
        if reply == Value::Nil {
            return Err(StoreError::conflict());
        }
        Ok(())
    }
}

impl Drop for RedisWrite {
    fn drop(&mut self) {
        if let Some(mut con) = self.con.take() {
            // A write dropped without commit (an error in the ledger) must not
            // leave its WATCHes on the connection for the next one.
            if redis::cmd("UNWATCH").query::<()>(&mut con).is_ok() {
                *self.inner.writer.lock().expect("writer lock") = Some(con);
            }
        }
    }
}

impl StoreWrite for RedisWrite {
    fn prefetch(&mut self, channels: &[&str], dedup: &[(&str, &str)], tasks: &[&str]) -> Result<(), StoreError> {
        let channels: Vec<&str> = channels
            .iter()
            .copied()
            .filter(|c| !self.seqs.contains_key(*c))
            .collect();
        let dedup: Vec<String> = dedup
            .iter()
            .map(|(p, id)| dedup_key(p, id))
            .filter(|k| !self.dedup.contains_key(k))
            .collect();
        let tasks: Vec<&str> = tasks
            .iter()
            .copied()
            .filter(|t| !self.commands.contains_key(*t))
            .collect();
        let mut keys: Vec<String> = channels.iter().map(|c| seq_key(c)).collect();
        keys.extend(dedup.iter().cloned());
        keys.extend(tasks.iter().map(|t| command_key(t)));
        if keys.is_empty() {
            return Ok(());
        }
        // One WATCH and one MGET for the whole group, however many keys.
        let values: Vec<Option<String>> = self.run(|c| {
            redis::cmd("WATCH").arg(&keys).query::<()>(c)?;
            redis::cmd("MGET").arg(&keys).query(c)
        })?;
        let mut values = values.into_iter();
        for channel in channels {
            let seq = values.next().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
            self.seqs.insert(channel.to_owned(), seq);
        }
        for key in dedup {
            let entry = match values.next().flatten() {
                None => None,
                Some(j) => {
                    Some(serde_json::from_str(&j).map_err(|e| StoreError::Failed(format!("redis: dedup entry: {e}")))?)
                }
            };
            self.dedup.insert(key, entry);
        }
        for task in tasks {
            let cmd = match values.next().flatten() {
                None => None,
                Some(j) => Some(
                    serde_json::from_str(&j).map_err(|e| StoreError::Failed(format!("redis: pending command: {e}")))?,
                ),
            };
            self.commands.insert(task.to_owned(), cmd);
        }
        Ok(())
    }

    fn last_seq(&mut self, channel: &str) -> Result<u64, StoreError> {
        if let Some(seq) = self.seqs.get(channel) {
            return Ok(*seq);
        }
        let seq: Option<u64> = self.watch_get(&seq_key(channel))?;
        let seq = seq.unwrap_or(0);
        self.seqs.insert(channel.to_owned(), seq);
        Ok(seq)
    }

    fn append(&mut self, channel: &str, event: &StoredEvent, history_size: u64) -> Result<(), StoreError> {
        self.seqs.insert(channel.to_owned(), event.seq);
        self.pipe.cmd("SET").arg(seq_key(channel)).arg(event.seq).ignore();
        self.pipe
            .cmd("XADD")
            .arg(hist_key(channel))
            .arg("MAXLEN")
            .arg(history_size)
            .arg(format!("{}-0", event.seq))
            .arg("ts")
            .arg(event.ts)
            .arg("f")
            .arg(&event.frame)
            .ignore();
        self.pipe.cmd("SADD").arg(CHANNELS_KEY).arg(channel).ignore();
        self.pipe
            .cmd("PUBLISH")
            .arg(event_topic(channel))
            .arg(announcement(event.seq, &event.frame))
            .ignore();
        self.queued += 4;
        Ok(())
    }

    fn dedup_get(&mut self, principal: &str, id: &str, _now_ms: u64) -> Result<Option<DedupEntry>, StoreError> {
        let key = dedup_key(principal, id);
        if let Some(entry) = self.dedup.get(&key) {
            return Ok(entry.clone());
        }
        let raw: Option<String> = self.watch_get(&key)?;
        let entry = match raw {
            None => None,
            Some(j) => {
                Some(serde_json::from_str(&j).map_err(|e| StoreError::Failed(format!("redis: dedup entry: {e}")))?)
            }
        };
        self.dedup.insert(key, entry.clone());
        Ok(entry)
    }

    fn dedup_put(&mut self, principal: &str, id: &str, entry: &DedupEntry, expires_ms: u64) -> Result<(), StoreError> {
        let key = dedup_key(principal, id);
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Failed(format!("redis: dedup entry: {e}")))?;
        let ttl = expires_ms.saturating_sub(now_ms()).max(1);
        self.pipe.cmd("SET").arg(&key).arg(json).arg("PX").arg(ttl).ignore();
        self.queued += 1;
        self.dedup.insert(key, Some(entry.clone()));
        Ok(())
    }

    fn command_put(&mut self, command: &PendingCommand) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(command).map_err(|e| StoreError::Failed(format!("redis: pending command: {e}")))?;
        let task = &command.task_id;
        self.pipe.cmd("SET").arg(command_key(task)).arg(json).ignore();
        self.pipe
            .cmd("RPUSH")
            .arg(queue_key(&command.command))
            .arg(task)
            .ignore();
        self.pipe
            .cmd("ZADD")
            .arg(QUEUED_KEY)
            .arg(command.accepted_ms)
            .arg(task)
            .ignore();
        self.pipe
            .cmd("PUBLISH")
            .arg(QUEUED_TOPIC)
            .arg(&command.command)
            .ignore();
        self.queued += 4;
        self.commands.insert(task.clone(), Some(command.clone()));
        Ok(())
    }

    fn command_take(&mut self, task_id: &str) -> Result<Option<PendingCommand>, StoreError> {
        let found = match self.commands.get(task_id) {
            Some(known) => known.clone(),
            None => {
                // Watched: of two nodes finishing one task (a late result and
                // the reaper's no_handler), only one commits.
                let raw: Option<String> = self.watch_get(&command_key(task_id))?;
                match raw {
                    None => None,
                    Some(j) => Some(
                        serde_json::from_str(&j)
                            .map_err(|e| StoreError::Failed(format!("redis: pending command: {e}")))?,
                    ),
                }
            }
        };
        if let Some(cmd) = &found {
            self.pipe.cmd("DEL").arg(command_key(task_id)).ignore();
            self.pipe.cmd("ZREM").arg(QUEUED_KEY).arg(task_id).ignore();
            self.pipe
                .cmd("LREM")
                .arg(queue_key(&cmd.command))
                .arg(0)
                .arg(task_id)
                .ignore();
            self.pipe
                .cmd("SREM")
                .arg(claimed_key(&self.inner.node))
                .arg(task_id)
                .ignore();
            self.queued += 4;
        }
        self.commands.insert(task_id.to_owned(), None);
        Ok(found)
    }

    fn command_done(&mut self, task_id: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let json = serde_json::to_string(&serde_json::json!({"task_id": task_id, "outcome": outcome}))
            .map_err(|e| StoreError::Failed(format!("redis: outcome: {e}")))?;
        self.pipe.cmd("PUBLISH").arg(DONE_TOPIC).arg(json).ignore();
        self.queued += 1;
        Ok(())
    }

    fn sweep(&mut self, now_ms: u64, retention: &dyn Fn(&str) -> Retention) -> Result<SweepStats, StoreError> {
        // Trims are idempotent and never touch an entry newer than the ones
        // they looked at, so they run at once, outside the transaction. Each
        // sweep takes the next page of channels (SSCAN), so its cost is bounded
        // however many channels exist; a full pass takes several sweeps.
        let cursor = self.inner.sweep_cursor.load(std::sync::atomic::Ordering::Relaxed);
        let (next, channels): (u64, Vec<String>) = self.run(|c| {
            redis::cmd("SSCAN")
                .arg(CHANNELS_KEY)
                .arg(cursor)
                .arg("COUNT")
                .arg(SWEEP_PAGE)
                .query(c)
        })?;
        self.inner
            .sweep_cursor
            .store(next, std::sync::atomic::Ordering::Relaxed);
        let mut stats = SweepStats::default();
        for channel in channels {
            let ttl = retention(&channel).history_ttl.as_millis() as u64;
            if ttl == 0 {
                continue;
            }
            let cutoff = now_ms.saturating_sub(ttl);
            let key = hist_key(&channel);
            let oldest: Vec<(String, HashMap<String, String>)> = self.run(|c| {
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(SCAN_PAGE)
                    .query(c)
            })?;
            let mut keep_from = None;
            for (id, fields) in oldest {
                let e = entry(&id, fields)?;
                if e.ts >= cutoff {
                    break;
                }
                keep_from = Some(e.seq + 1);
            }
            if let Some(min) = keep_from {
                let trimmed: u64 = self.run(|c| {
                    redis::cmd("XTRIM")
                        .arg(&key)
                        .arg("MINID")
                        .arg(format!("{min}-0"))
                        .query(c)
                })?;
                stats.events += trimmed;
            }
        }
        Ok(stats)
    }
}
