//! The default store: one redb file in `--data-dir`, crash-safe (copy-on-write
//! B-trees, fsync on every commit). The ledger batches many operations into one
//! commit, so concurrent publishers share each fsync.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::{DedupEntry, PendingCommand, Store, StoreError, StoreWrite, StoredEvent, SweepStats};
use crate::config::Retention;

/// `(channel, seq)` → 8-byte big-endian `ts` followed by the event frame text.
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// channel → last seq (kept when retention has dropped every event).
const CHANNELS: TableDefinition<&str, u64> = TableDefinition::new("channels");
/// `(principal, id)` → JSON `{expires_ms, entry}`.
const DEDUP: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dedup");
/// `(expires_ms, principal, id)` → (), to sweep expired keys in order.
const DEDUP_EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("dedup_expiry");
/// task id → JSON [`PendingCommand`].
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
/// Store-wide facts: `epoch`.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The redb-backed [`Store`].
pub struct EmbeddedStore {
    db: Arc<Database>,
    epoch: String,
}

#[derive(serde::Deserialize)]
struct DedupRecord {
    expires_ms: u64,
    entry: DedupEntry,
}

/// A [`DedupRecord`] to write (borrows its entry).
#[derive(serde::Serialize)]
struct DedupRecordRef<'a> {
    expires_ms: u64,
    entry: &'a DedupEntry,
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Failed(format!("corrupt record: {e}"))
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory.
    pub fn open(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Failed(format!("cannot create data dir {}: {e}", dir.display())))?;
        let db = Database::create(dir.join("tether.redb"))?;
        let txn = db.begin_write()?;
        let epoch = {
            txn.open_table(EVENTS)?;
            txn.open_table(CHANNELS)?;
            txn.open_table(DEDUP)?;
            txn.open_table(DEDUP_EXPIRY)?;
            txn.open_table(COMMANDS)?;
            let mut meta = txn.open_table(META)?;
            let existing = meta.get("epoch")?.map(|v| v.value().to_owned());
            match existing {
                Some(e) => e,
                None => {
                    let e = new_epoch();
                    meta.insert("epoch", e.as_str())?;
                    e
                }
            }
        };
        txn.commit()?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            epoch,
        })
    }
}

fn new_epoch() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

fn decode_event(seq: u64, raw: &[u8]) -> Result<StoredEvent, StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Failed("corrupt event record".into()));
    }
    let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
    let frame = String::from_utf8(raw[8..].to_vec()).map_err(|_| StoreError::Failed("corrupt event text".into()))?;
    Ok(StoredEvent { seq, ts, frame })
}

impl Store for EmbeddedStore {
    fn epoch(&self, _channel: &str) -> String {
        self.epoch.clone()
    }

    fn last_seq(&self, channel: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHANNELS)?;
        Ok(table.get(channel)?.map_or(0, |v| v.value()))
    }

    fn read_events(
        &self,
        channel: &str,
        after: u64,
        upto: u64,
        not_before_ms: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        if after >= upto || limit == 0 {
            return Ok(out);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        for row in table.range((channel, after + 1)..=(channel, upto))? {
            let (k, v) = row?;
            let event = decode_event(k.value().1, v.value())?;
            if event.ts >= not_before_ms {
                out.push(event);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn first_retained(&self, channel: &str, not_before_ms: u64) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        for row in table.range((channel, 0)..=(channel, u64::MAX))? {
            let (k, v) = row?;
            let event = decode_event(k.value().1, v.value())?;
            if event.ts >= not_before_ms {
                return Ok(Some(event.seq));
            }
        }
        Ok(None)
    }

    fn pending_commands(&self) -> Result<Vec<PendingCommand>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(COMMANDS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(serde_json::from_slice::<PendingCommand>(v.value()).map_err(json_err)?);
        }
        out.sort_by(|a, b| (a.accepted_ms, &a.task_id).cmp(&(b.accepted_ms, &b.task_id)));
        Ok(out)
    }

    fn write(&self, body: &mut dyn FnMut(&mut dyn StoreWrite) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            // Every table opened once per write, not once per operation:
            // opening one looks it up in the table tree and closing it writes
            // its root back, which was a fifth of the ledger's time.
            let mut w = EmbeddedWrite {
                events: txn.open_table(EVENTS)?,
                channels: txn.open_table(CHANNELS)?,
                dedup: txn.open_table(DEDUP)?,
                dedup_expiry: txn.open_table(DEDUP_EXPIRY)?,
                commands: txn.open_table(COMMANDS)?,
            };
            body(&mut w)?;
        }
        // An error above dropped `txn` unwritten (redb aborts it).
        txn.commit()?;
        Ok(())
    }
}

/// The tables of one write transaction.
struct EmbeddedWrite<'t> {
    events: Table<'t, (&'static str, u64), &'static [u8]>,
    channels: Table<'t, &'static str, u64>,
    dedup: Table<'t, (&'static str, &'static str), &'static [u8]>,
    dedup_expiry: Table<'t, (u64, &'static str, &'static str), ()>,
    commands: Table<'t, &'static str, &'static [u8]>,
}

impl StoreWrite for EmbeddedWrite<'_> {
    fn last_seq(&mut self, channel: &str) -> Result<u64, StoreError> {
        Ok(self.channels.get(channel)?.map_or(0, |v| v.value()))
    }

    fn append(&mut self, channel: &str, event: &StoredEvent, history_size: u64) -> Result<(), StoreError> {
        let mut raw = Vec::with_capacity(8 + event.frame.len());
        raw.extend_from_slice(&event.ts.to_be_bytes());
        raw.extend_from_slice(event.frame.as_bytes());
        self.events.insert((channel, event.seq), raw.as_slice())?;
        if event.seq > history_size {
            self.events.remove((channel, event.seq - history_size))?;
        }
        self.channels.insert(channel, event.seq)?;
        Ok(())
    }

    fn dedup_get(&mut self, principal: &str, id: &str, now_ms: u64) -> Result<Option<DedupEntry>, StoreError> {
        let Some(raw) = self.dedup.get((principal, id))? else {
            return Ok(None);
        };
        let record: DedupRecord = serde_json::from_slice(raw.value()).map_err(json_err)?;
        Ok((record.expires_ms > now_ms).then_some(record.entry))
    }

    fn dedup_put(&mut self, principal: &str, id: &str, entry: &DedupEntry, expires_ms: u64) -> Result<(), StoreError> {
        let record = serde_json::to_vec(&DedupRecordRef { expires_ms, entry }).map_err(json_err)?;
        let old = self
            .dedup
            .insert((principal, id), record.as_slice())?
            .map(|old| serde_json::from_slice::<DedupRecord>(old.value()).map(|r| r.expires_ms));
        if let Some(Ok(old_expiry)) = old {
            self.dedup_expiry.remove((old_expiry, principal, id))?;
        }
        self.dedup_expiry.insert((expires_ms, principal, id), ())?;
        Ok(())
    }

    fn command_put(&mut self, command: &PendingCommand) -> Result<(), StoreError> {
        let raw = serde_json::to_vec(command).map_err(json_err)?;
        self.commands.insert(command.task_id.as_str(), raw.as_slice())?;
        Ok(())
    }

    fn command_take(&mut self, task_id: &str) -> Result<Option<PendingCommand>, StoreError> {
        let Some(raw) = self.commands.remove(task_id)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(raw.value()).map_err(json_err)?))
    }

    fn sweep(&mut self, now_ms: u64, retention: &dyn Fn(&str) -> Retention) -> Result<SweepStats, StoreError> {
        let mut stats = SweepStats::default();
        let channels: Vec<(String, u64)> = self
            .channels
            .iter()?
            .map(|r| r.map(|(k, v)| (k.value().to_owned(), v.value())))
            .collect::<Result<_, _>>()?;
        let events = &mut self.events;
        for (channel, last) in channels {
            let r = retention(&channel);
            let keep_from = last.saturating_sub(r.history_size) + 1;
            let cutoff = now_ms.saturating_sub(r.history_ttl.as_millis() as u64);
            // Seqs and timestamps grow together, so the doomed events are a
            // prefix of the channel's range: stop at the first one to keep.
            let mut doomed = Vec::new();
            for row in events.range((channel.as_str(), 0)..=(channel.as_str(), u64::MAX))? {
                let (k, v) = row?;
                let seq = k.value().1;
                let ts = decode_event(seq, v.value())?.ts;
                if seq >= keep_from && ts >= cutoff {
                    break;
                }
                doomed.push(seq);
            }
            for seq in doomed {
                events.remove((channel.as_str(), seq))?;
                stats.events += 1;
            }
        }
        let expired: Vec<(u64, String, String)> = self
            .dedup_expiry
            .range((0, "", "")..(now_ms + 1, "", ""))?
            .map(|r| {
                r.map(|(k, _)| {
                    let (e, p, i) = k.value();
                    (e, p.to_owned(), i.to_owned())
                })
            })
            .collect::<Result<_, _>>()?;
        for (e, p, i) in &expired {
            self.dedup_expiry.remove((*e, p.as_str(), i.as_str()))?;
            self.dedup.remove((p.as_str(), i.as_str()))?;
            stats.dedup_keys += 1;
        }
        Ok(stats)
    }
}
