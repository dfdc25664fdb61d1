//! Commands across nodes (a shared Redis store). A command accepted on any
//! node is queued in Redis (`q:<command>`, with the commit that accepts it);
//! every node claims from those queues as many tasks as its own agents have
//! free slots, and hands them to its registry, which dispatches them as on a
//! single node. The outcome is committed by the node whose agent answered and
//! announced on `tether:done`, so the requester gets its `result` on whatever
//! node it waits.
//!
//! This loop also keeps the queues honest, on every node:
//! - a task still waiting after `command_ttl` is ended with `no_handler`
//!   (atomically taken out of the queue first, so only one node ends it);
//! - the claims of a node whose presence expired (it died) go back to the
//!   front of their queues with the same task id, for a replica on any node;
//! - a task claimed here whose replica left, with no other local replica for
//!   it, goes back to the queue at once.
//!
//! All moves between `q:<command>`, `queued` and `claimed:<node>` are Lua
//! scripts, so a task is in exactly one place at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};
use tether_protocol::ErrorCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agents::Agents;
use crate::clock::now_ms;
use crate::cluster::{presence_key, Cluster};
use crate::ledger::{CompleteOp, Ledger};
use crate::store::redis::{claimed_key, command_key, connect, queue_key, CLAIMANTS_KEY, QUEUED_KEY};
use crate::store::{Outcome, PendingCommand, StoreError};

/// How often the loop looks for work without being woken.
const POLL: Duration = Duration::from_millis(100);
/// How often expired tasks and dead nodes are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Expired tasks ended per look.
const REAP_BATCH: usize = 100;
/// How long a reaped task is not taken for an orphan claim.
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// Takes the oldest live task of a queue for a node: KEYS[1] = `q:<command>`,
/// KEYS[2] = `claimed:<node>`, ARGV[1] = node. Returns the command's JSON, or
/// nil when the queue is empty. Ids whose command vanished are dropped.
const CLAIM: &str = r"
while true do
  local t = redis.call('LPOP', KEYS[1])
  if not t then return false end
  redis.call('ZREM', 'tether:queued', t)
  local j = redis.call('GET', 'tether:cmd:' .. t)
  if j then
    redis.call('SADD', KEYS[2], t)
    redis.call('SADD', 'tether:claimants', ARGV[1])
    return j
  end
end
";

/// Puts every task claimed by a node back at the front of its queue:
/// KEYS[1] = `claimed:<node>`, ARGV[1] = now (ms), ARGV[2] = node.
const REQUEUE_CLAIMS: &str = r"
local n = 0
for _, t in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local j = redis.call('GET', 'tether:cmd:' .. t)
  if j then
    redis.call('LPUSH', 'tether:q:' .. cjson.decode(j)['command'], t)
    redis.call('ZADD', 'tether:queued', ARGV[1], t)
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', 'tether:claimants', ARGV[2])
return n
";

/// Puts one task claimed by this node back at the front of its queue:
/// KEYS[1] = `claimed:<node>`, KEYS[2] = `q:<command>`, ARGV = task, now.
const REQUEUE_ONE: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', 'tether:cmd:' .. ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('ZADD', 'tether:queued', ARGV[2], ARGV[1])
  return 1
end
return 0
";

/// Takes a waiting task out of its queue, if nobody claimed it meanwhile,
/// into this node's claims (so that it is never nowhere: if this node dies
/// before its `no_handler` commits, another node requeues it): ARGV[1] =
/// task, KEYS[1] = `claimed:<node>`, ARGV[2] = node. Returns the command's
/// JSON, or nil.
const REAP: &str = r"
if redis.call('ZREM', 'tether:queued', ARGV[1]) == 1 then
  local j = redis.call('GET', 'tether:cmd:' .. ARGV[1])
  if j then
    redis.call('LREM', 'tether:q:' .. cjson.decode(j)['command'], 0, ARGV[1])
    redis.call('SADD', KEYS[1], ARGV[1])
    redis.call('SADD', 'tether:claimants', ARGV[2])
    return j
  end
end
return false
";

fn parse(json: &str) -> Option<PendingCommand> {
    serde_json::from_str(json).ok()
}

/// Puts `node`'s claims back in their queues (it died, or it starts again).
pub fn requeue_claims(c: &mut Connection, node: &str, now_ms: u64) -> RedisResult<u64> {
    redis::cmd("EVAL")
        .arg(REQUEUE_CLAIMS)
        .arg(1)
        .arg(claimed_key(node))
        .arg(now_ms)
        .arg(node)
        .query(c)
}

/// Claims one task for `command`, if any waits.
fn claim_one(c: &mut Connection, node: &str, command: &str) -> RedisResult<Option<PendingCommand>> {
    let json: Option<String> = redis::cmd("EVAL")
        .arg(CLAIM)
        .arg(2)
        .arg(queue_key(command))
        .arg(claimed_key(node))
        .arg(node)
        .query(c)?;
    Ok(json.as_deref().and_then(parse))
}

/// Which of `commands` have tasks waiting (one round trip).
fn waiting(c: &mut Connection, commands: &[String]) -> RedisResult<Vec<String>> {
    let mut pipe = redis::pipe();
    for command in commands {
        pipe.cmd("LLEN").arg(queue_key(command));
    }
    let lens: Vec<u64> = pipe.query(c)?;
    Ok(commands
        .iter()
        .zip(lens)
        .filter(|(_, n)| *n > 0)
        .map(|(c, _)| c.clone())
        .collect())
}

fn requeue_one(c: &mut Connection, node: &str, cmd: &PendingCommand, now_ms: u64) -> RedisResult<()> {
    redis::cmd("EVAL")
        .arg(REQUEUE_ONE)
        .arg(2)
        .arg(claimed_key(node))
        .arg(queue_key(&cmd.command))
        .arg(&cmd.task_id)
        .arg(now_ms)
        .query::<i64>(c)
        .map(|_| ())
}

/// Tasks that waited longer than `ttl`, moved into this node's claims.
fn reap(c: &mut Connection, node: &str, ttl: Duration, now_ms: u64, out: &mut Vec<PendingCommand>) -> RedisResult<()> {
    let cutoff = now_ms.saturating_sub(ttl.as_millis() as u64);
    let expired: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(QUEUED_KEY)
        .arg("-inf")
        .arg(cutoff)
        .arg("LIMIT")
        .arg(0)
        .arg(REAP_BATCH)
        .query(c)?;
    for task in expired {
        let json: Option<String> = redis::cmd("EVAL")
            .arg(REAP)
            .arg(1)
            .arg(claimed_key(node))
            .arg(&task)
            .arg(node)
            .query(c)?;
        if let Some(cmd) = json.as_deref().and_then(parse) {
            out.push(cmd);
        }
    }
    Ok(())
}

/// Claimants other than `me` whose presence expired.
fn dead_claimants(c: &mut Connection, me: &str) -> RedisResult<Vec<String>> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(CLAIMANTS_KEY).query(c)?;
    let mut dead = Vec::new();
    for node in nodes.into_iter().filter(|n| n != me) {
        let alive: bool = redis::cmd("EXISTS").arg(presence_key(&node)).query(c)?;
        if !alive {
            dead.push(node);
        }
    }
    Ok(dead)
}

/// This node's claims.
fn my_claims(c: &mut Connection, me: &str) -> RedisResult<Vec<String>> {
    redis::cmd("SMEMBERS").arg(claimed_key(me)).query(c)
}

/// What one turn of the loop did; kept even when a later step failed, so
/// that nothing taken out of Redis is dropped on the floor.
#[derive(Default)]
struct Turn {
    claimed: Vec<PendingCommand>,
    expired: Vec<PendingCommand>,
    /// Stranded tasks that could not be handed back (they stay here).
    kept: Vec<PendingCommand>,
    /// Claims of this node that its registry does not hold.
    orphans: Vec<String>,
    error: Option<StoreError>,
}

/// The loop's Redis side: one connection, re-made after a failure.
struct Redis {
    client: redis::Client,
    con: Option<Connection>,
}

impl Redis {
    fn run<T>(&mut self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, StoreError> {
        if self.con.is_none() {
            self.con = Some(connect(&self.client)?);
        }
        let con = self.con.as_mut().expect("just set");
        f(con).map_err(|e| {
            self.con = None;
            StoreError::Failed(format!("redis: {e}"))
        })
    }
}

/// Starts the loop. `wake` is notified when a task was queued somewhere.
#[allow(clippy::too_many_arguments)] // the loop's eight collaborators, each used once
pub fn spawn(
    client: redis::Client,
    node: String,
    command_ttl: Duration,
    agents: Arc<Agents>,
    ledger: Ledger,
    cluster: Arc<Cluster>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let redis = Arc::new(std::sync::Mutex::new(Redis { client, con: None }));
        let mut last_reap = Instant::now();
        // Tasks this node reaped: their `no_handler` is on its way through
        // the ledger, so the orphan check leaves them alone for a while.
        let mut reaped: HashMap<String, Instant> = HashMap::new();
        // Orphans seen at the previous check: a claim is handed back only when
        // it is an orphan twice in a row (a task just answered is briefly held
        // neither by the registry nor yet released by its commit).
        let mut suspects: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            let free = agents.free_replicas();
            let stranded = agents.take_stranded();
            let reap_now = last_reap.elapsed() >= REAP_EVERY;
            if reap_now {
                last_reap = Instant::now();
                reaped.retain(|_, at| at.elapsed() < ORPHAN_GRACE);
            }
            if free.is_empty() && stranded.is_empty() && !reap_now {
                continue;
            }
            let judge = cluster.may_judge();
            let r = redis.clone();
            let me = node.clone();
            let turn = tokio::task::spawn_blocking(move || {
                let mut r = r.lock().expect("tasks redis");
                let mut turn = Turn::default();
                if let Err(e) = r.turn(&me, &free, stranded, reap_now, judge, command_ttl, &mut turn) {
                    turn.error = Some(e);
                }
                turn
            })
            .await;
            let turn = match turn {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster tasks: panicked");
                    continue;
                }
            };
            if let Some(e) = &turn.error {
                tracing::debug!(error = %e, "cluster tasks: redis failed; retrying");
            }
            for cmd in turn.claimed.into_iter().chain(turn.kept) {
                agents.enqueue(cmd).await;
            }
            for cmd in turn.expired {
                reaped.insert(cmd.task_id.clone(), Instant::now());
                let outcome = Outcome::Gateway {
                    code: ErrorCode::NoHandler,
                    message: format!("no agent took `{}` within command_ttl", cmd.command),
                };
                if ledger
                    .complete(CompleteOp {
                        task_id: cmd.task_id,
                        outcome,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // A claim the registry does not hold (a reply lost after Redis ran
            // the script, a failed hand-back): back to its queue.
            if !reap_now {
                continue;
            }
            let seen: std::collections::HashSet<String> = turn
                .orphans
                .into_iter()
                .filter(|t| !agents.has_task(t) && !reaped.contains_key(t))
                .collect();
            let orphans: Vec<String> = seen.intersection(&suspects).cloned().collect();
            suspects = seen;
            if !orphans.is_empty() {
                let r = redis.clone();
                let me = node.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let mut r = r.lock().expect("tasks redis");
                    r.requeue_orphans(&me, &orphans)
                })
                .await;
            }
        }
    });
}

impl Redis {
    /// One turn: hand back stranded tasks, claim for free replicas, and (every
    /// [`REAP_EVERY`]) reap expired tasks, requeue dead nodes' claims and list
    /// this node's claims for the orphan check.
    #[allow(clippy::too_many_arguments)] // one turn's inputs and its output
    fn turn(
        &mut self,
        me: &str,
        free: &[(u32, Vec<String>)],
        stranded: Vec<PendingCommand>,
        reap_now: bool,
        judge: bool,
        command_ttl: Duration,
        turn: &mut Turn,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut stranded = stranded.into_iter();
        while let Some(cmd) = stranded.next() {
            if let Err(e) = self.run(|c| requeue_one(c, me, &cmd, now)) {
                turn.kept.push(cmd);
                turn.kept.extend(stranded);
                return Err(e);
            }
        }
        if !free.is_empty() {
            let mut commands: Vec<String> = free.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
            commands.sort();
            commands.dedup();
            let mut open = self.run(|c| waiting(c, &commands))?;
            // Each replica's free slots count once, whichever command fills them.
            for (slots, handles) in free {
                let mut left = *slots;
                let mut i = 0;
                while left > 0 && !open.is_empty() && i < handles.len() * (*slots as usize) + handles.len() {
                    let command = &handles[i % handles.len()];
                    i += 1;
                    if !open.contains(command) {
                        continue;
                    }
                    match self.run(|c| claim_one(c, me, command))? {
                        Some(cmd) => {
                            turn.claimed.push(cmd);
                            left -= 1;
                        }
                        None => open.retain(|c| c != command),
                    }
                }
            }
        }
        if reap_now {
            let mut expired = Vec::new();
            let r = self.run(|c| reap(c, me, command_ttl, now, &mut expired));
            turn.expired = expired;
            r?;
            if judge {
                for dead in self.run(|c| dead_claimants(c, me))? {
                    let n = self.run(|c| requeue_claims(c, &dead, now))?;
                    if n > 0 {
                        tracing::warn!(node = %dead, tasks = n, "a node died with tasks in flight: redelivering them");
                    }
                }
            }
            turn.orphans = self.run(|c| my_claims(c, me))?;
        }
        Ok(())
    }

    fn requeue_orphans(&mut self, me: &str, tasks: &[String]) -> Result<(), StoreError> {
        let now = now_ms();
        for task in tasks {
            let json: Option<String> = self.run(|c| redis::cmd("GET").arg(command_key(task)).query(c))?;
            match json.as_deref().and_then(parse) {
                Some(cmd) => self.run(|c| requeue_one(c, me, &cmd, now))?,
                None => self.run(|c| redis::cmd("SREM").arg(claimed_key(me)).arg(task).query::<()>(c))?,
            }
        }
        Ok(())
    }
}
