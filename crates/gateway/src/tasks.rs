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

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};
use tether_protocol::ErrorCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agents::Agents;
use crate::clock::now_ms;
use crate::cluster::presence_key;
use crate::ledger::{CompleteOp, Ledger};
use crate::store::redis::{claimed_key, connect, queue_key, CLAIMANTS_KEY, QUEUED_KEY};
use crate::store::{Outcome, PendingCommand, StoreError};

/// How often the loop looks for work without being woken.
const POLL: Duration = Duration::from_millis(100);
/// How often expired tasks and dead nodes are looked for.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Expired tasks ended per look.
const REAP_BATCH: usize = 100;

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

/// Takes a waiting task out of its queue if nobody claimed it meanwhile:
/// ARGV[1] = task. Returns the command's JSON, or nil.
const REAP: &str = r"
if redis.call('ZREM', 'tether:queued', ARGV[1]) == 1 then
  local j = redis.call('GET', 'tether:cmd:' .. ARGV[1])
  if j then
    redis.call('LREM', 'tether:q:' .. cjson.decode(j)['command'], 0, ARGV[1])
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

/// Claims up to `n` tasks for `command`.
fn claim(c: &mut Connection, node: &str, command: &str, n: u32) -> RedisResult<Vec<PendingCommand>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let json: Option<String> = redis::cmd("EVAL")
            .arg(CLAIM)
            .arg(2)
            .arg(queue_key(command))
            .arg(claimed_key(node))
            .arg(node)
            .query(c)?;
        match json.as_deref().and_then(parse) {
            Some(cmd) => out.push(cmd),
            None => break,
        }
    }
    Ok(out)
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

/// Tasks that waited longer than `ttl`, taken out of their queues.
fn reap(c: &mut Connection, ttl: Duration, now_ms: u64) -> RedisResult<Vec<PendingCommand>> {
    let cutoff = now_ms.saturating_sub(ttl.as_millis() as u64);
    let expired: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(QUEUED_KEY)
        .arg("-inf")
        .arg(cutoff)
        .arg("LIMIT")
        .arg(0)
        .arg(REAP_BATCH)
        .query(c)?;
    let mut out = Vec::new();
    for task in expired {
        let json: Option<String> = redis::cmd("EVAL").arg(REAP).arg(0).arg(&task).query(c)?;
        if let Some(cmd) = json.as_deref().and_then(parse) {
            out.push(cmd);
        }
    }
    Ok(out)
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
            StoreError(format!("redis: {e}"))
        })
    }
}

/// Starts the loop. `wake` is notified when a task was queued somewhere.
pub fn spawn(
    client: redis::Client,
    node: String,
    command_ttl: Duration,
    agents: Arc<Agents>,
    ledger: Ledger,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let redis = Arc::new(std::sync::Mutex::new(Redis { client, con: None }));
        let mut last_reap = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            let free = agents.free_slots();
            let stranded = agents.take_stranded();
            let reap_now = last_reap.elapsed() >= REAP_EVERY;
            if reap_now {
                last_reap = Instant::now();
            }
            if free.is_empty() && stranded.is_empty() && !reap_now {
                continue;
            }
            let r = redis.clone();
            let me = node.clone();
            let work = tokio::task::spawn_blocking(move || {
                let mut r = r.lock().expect("tasks redis");
                let now = now_ms();
                for cmd in &stranded {
                    r.run(|c| requeue_one(c, &me, cmd, now))?;
                }
                let mut claimed = Vec::new();
                for (command, n) in &free {
                    claimed.extend(r.run(|c| claim(c, &me, command, *n))?);
                }
                let mut expired = Vec::new();
                if reap_now {
                    expired = r.run(|c| reap(c, command_ttl, now))?;
                    for dead in r.run(|c| dead_claimants(c, &me))? {
                        let n = r.run(|c| requeue_claims(c, &dead, now))?;
                        if n > 0 {
                            tracing::warn!(node = %dead, tasks = n, "a node died with tasks in flight: redelivering them");
                        }
                    }
                }
                Ok::<_, StoreError>((claimed, expired, stranded.len()))
            })
            .await;
            let (claimed, expired, requeued) = match work {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cluster tasks: redis failed; retrying");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster tasks: panicked");
                    continue;
                }
            };
            if requeued > 0 {
                tracing::debug!(
                    tasks = requeued,
                    "handed tasks without a local replica back to the cluster"
                );
            }
            for cmd in claimed {
                agents.enqueue(cmd).await;
            }
            for cmd in expired {
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
        }
    });
}
