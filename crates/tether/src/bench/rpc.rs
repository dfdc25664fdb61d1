//! The `rpc` scenario: N agents, registered for a command type of the run's
//! own, answer every `task` at once with a `task_result` echoing its payload;
//! K clients keep up to `--concurrency` commands in flight each. Every command
//! must get exactly one answer: none by the end is lost, a second one is a
//! duplicate. The latency is from sending a command to its `result`.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::future::try_join_all;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::{FutureExt, SinkExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::frame::{parse, payload, ErrorBody};
use super::net::{close_hint, close_reason, connect, next_text, ping, Conn, CONNECT_CONCURRENCY, CONNECT_TIMEOUT};
use super::plan::Plan;
use super::publish::Timing;
use super::report::Report;
use super::rss::measure_rss;
use super::shared::Shared;
use super::stats::{Counters, Percentiles};

/// The `concurrency` agents register with (the protocol's maximum): the
/// agents should never be what limits the run.
const AGENT_CONCURRENCY: u32 = 10_000;
/// `task_result`s an agent keeps to send again should the gateway answer one
/// with `rate_limited`.
const RECENT_RESULTS: usize = 4096;

/// The command the run's agents register for: unique per run, so that
/// commands an earlier run left pending never reach this run's agents.
fn command_type(plan: &Plan) -> String {
    format!("bench_echo.{}", plan.run_id)
}

/// Opens a connection and registers it as an agent for `command`.
async fn open_agent(plan: &Plan, command: &str, i: usize) -> anyhow::Result<Conn> {
    let who = format!("agent {i}");
    let mut conn = connect(plan, &who).await?;
    let register = json!({"type": "register", "id": "r", "data": {
        "name": format!("bench-{}", plan.run_id), "commands": [command], "concurrency": AGENT_CONCURRENCY}});
    conn.ws
        .send(Message::text(register.to_string()))
        .await
        .with_context(|| format!("{who}: send failed"))?;
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let text = next_text(&mut conn.ws, &who).await?;
            let Some(f) = parse(&text) else { continue };
            match f.kind.as_ref() {
                "ack" if f.id.as_deref() == Some("r") => return Ok(()),
                "error" => {
                    let e = f.error.unwrap_or_default();
                    bail!(
                        "{who}: registering as an agent was refused: {}: {} (with auth on, --token needs role agent)",
                        e.code,
                        e.message
                    )
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("{who}: no register ack within {CONNECT_TIMEOUT:?}"))??;
    Ok(conn)
}

/// The parts of a frame to an agent that it looks at.
#[derive(Deserialize)]
struct AgentInbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    data: Option<TaskData>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct TaskData {
    #[serde(default)]
    payload: Value,
}

/// What one agent did.
#[derive(Debug, Default)]
struct AgentOutcome {
    /// Tasks answered.
    tasks: u64,
    /// `error` replies to its `task_result`s (other than `rate_limited`).
    errors: u64,
}

/// One agent's state while it runs.
struct Agent {
    who: String,
    shared: Arc<Shared>,
    out: AgentOutcome,
    /// The last results sent, oldest first: `(task id, frame)`.
    recent: VecDeque<(String, String)>,
    /// Results to send again (rate-limited): when, and the frame.
    retries: BinaryHeap<Reverse<(Instant, String)>>,
    first_problem: Arc<OnceLock<String>>,
}

impl Agent {
    /// Handles a message; returns a frame to send, or `Err(why)` when the
    /// connection ended.
    fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Result<Option<String>, String> {
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(f))) => {
                let reason = close_reason(f);
                let hint = close_hint(&reason);
                return Err(format!("the gateway closed the connection ({reason}){hint}"));
            }
            Some(Ok(_)) => return Ok(None),
            Some(Err(e)) => return Err(format!("connection failed: {e}")),
            None => return Err("the gateway closed the connection".to_owned()),
        };
        let Ok(frame) = serde_json::from_str::<AgentInbound<'_>>(text.as_str()) else {
            return Ok(None);
        };
        match (frame.kind.as_ref(), frame.id) {
            ("task", Some(id)) => {
                let payload = frame.data.map(|d| d.payload).unwrap_or(Value::Null);
                let reply = json!({"type": "task_result", "id": id, "data": payload}).to_string();
                if self.recent.len() >= RECENT_RESULTS {
                    self.recent.pop_front();
                }
                self.recent.push_back((id.into_owned(), reply.clone()));
                self.out.tasks += 1;
                Ok(Some(reply))
            }
            ("error", id) => {
                let body = frame.error.unwrap_or_default();
                let again = id
                    .filter(|_| body.code == "rate_limited")
                    .and_then(|id| self.recent.iter().rev().find(|(t, _)| *t == id))
                    .map(|(_, reply)| reply.clone());
                match again {
                    Some(reply) => {
                        self.shared.warn_rate_limited();
                        let at = Instant::now() + Duration::from_millis(body.retry_after_ms.unwrap_or(50).max(1));
                        self.retries.push(Reverse((at, reply)));
                    }
                    None => {
                        self.out.errors += 1;
                        let _ = self.first_problem.set(format!(
                            "{}: the gateway refused a task_result: {}: {}",
                            self.who, body.code, body.message
                        ));
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

/// Answers tasks until told to stop, or until the connection ends (counted
/// as a disconnect: the gateway then gives its tasks to another agent).
async fn agent(
    index: usize,
    mut conn: Conn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    first_problem: Arc<OnceLock<String>>,
) -> AgentOutcome {
    let mut agent = Agent {
        who: format!("agent {index}"),
        shared: shared.clone(),
        out: AgentOutcome::default(),
        recent: VecDeque::new(),
        retries: BinaryHeap::new(),
        first_problem: first_problem.clone(),
    };
    let pinger = tokio::time::sleep(conn.ping_every);
    tokio::pin!(pinger);
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let next_retry = agent.retries.peek().map_or(far, |Reverse((at, _))| *at);
        let ended: Result<(), String> = tokio::select! {
            msg = conn.ws.next() => {
                // Answer every frame already buffered, then flush once.
                let mut wrote = false;
                let mut result = Ok(());
                let mut next = Some(msg);
                while let Some(msg) = next.take() {
                    match agent.on_message(msg) {
                        Ok(Some(reply)) => match conn.ws.feed(Message::text(reply)).await {
                            Ok(()) => wrote = true,
                            Err(e) => {
                                result = Err(format!("send failed: {e}"));
                                break;
                            }
                        },
                        Ok(None) => {}
                        Err(why) => {
                            result = Err(why);
                            break;
                        }
                    }
                    next = conn.ws.next().now_or_never();
                }
                if wrote && result.is_ok() {
                    result = conn.ws.flush().await.map_err(|e| format!("send failed: {e}"));
                }
                result
            }
            () = tokio::time::sleep_until(next_retry.into()), if !agent.retries.is_empty() => {
                let now = Instant::now();
                let mut result = Ok(());
                while let Some(Reverse((at, _))) = agent.retries.peek() {
                    if *at > now {
                        break;
                    }
                    let Some(Reverse((_, reply))) = agent.retries.pop() else { break };
                    if let Err(e) = conn.ws.send(Message::text(reply)).await {
                        result = Err(format!("send failed: {e}"));
                        break;
                    }
                }
                result
            }
            changed = stop.changed() => changed.map_err(|_| "the run ended".to_owned()),
            () = &mut pinger => {
                pinger.as_mut().reset((Instant::now() + conn.ping_every).into());
                ping(&mut conn.ws).await.map_err(|e| format!("ping failed: {e}"))
            }
        };
        if let Err(why) = ended {
            if !*stop.borrow() {
                Counters::add(&shared.counters.disconnects, 1);
                let _ = first_problem.set(format!("agent {index}: {why}"));
            }
            break;
        }
    }
    agent.out
}

/// What one client sends.
struct ClientSpec {
    index: usize,
    command: Arc<str>,
    /// Ids are this prefix and a counter: unique per run.
    id_prefix: String,
    quota: Option<u64>,
    window: usize,
    payload: usize,
    pad: Arc<str>,
}

impl ClientSpec {
    fn frame(&self, n: u64, t: u64) -> Message {
        Message::text(format!(
            r#"{{"type":"{}","id":"{}{n}","data":{}}}"#,
            self.command,
            self.id_prefix,
            payload(t, self.payload, &self.pad)
        ))
    }

    /// The counter of one of this client's ids.
    fn number(&self, id: Option<&str>) -> Option<u64> {
        id?.strip_prefix(&self.id_prefix)?.parse().ok()
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientOutcome {
    sent: u64,
    /// Commands answered by a `result`.
    results: u64,
    /// Commands answered by an `error` (`timeout`, `no_handler`).
    failed: u64,
    /// Commands still unanswered at the end.
    lost: u64,
    /// Answers to a command already answered, and results marked `duplicate`.
    duplicates: u64,
    retried: u64,
    last_answer: Option<Instant>,
}

/// Error codes after which the same command (same id) is sent again: it was
/// not accepted (a command's `(principal, id)` deduplication makes a resend
/// of one that was accepted harmless too).
fn resend(code: &str) -> bool {
    matches!(code, "rate_limited" | "overloaded" | "internal")
}

/// Error codes that are a command's final outcome.
fn final_error(code: &str) -> bool {
    matches!(code, "timeout" | "no_handler")
}

/// Sends commands on `conn` until `timing.stop_sending` (or the quota),
/// keeping at most `spec.window` unanswered, then waits for the last answers
/// until `timing.give_up`. Fails on a refused command or a lost connection.
async fn client(
    mut conn: Conn,
    spec: ClientSpec,
    shared: Arc<Shared>,
    timing: Timing,
) -> anyhow::Result<ClientOutcome> {
    let who = format!("client {}", spec.index);
    let c = &shared.counters;
    let mut out = ClientOutcome::default();
    // Unanswered commands: counter → when sent (µs).
    let mut in_flight: HashMap<u64, u64> = HashMap::with_capacity(spec.window);
    let mut retries: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next_n: u64 = 0;
    let mut paused_until = timing.start;
    let mut last_write = Instant::now();
    loop {
        let now = Instant::now();
        let more = now < timing.stop_sending && spec.quota.is_none_or(|q| next_n < q);
        if (!more && in_flight.is_empty()) || now >= timing.give_up {
            break;
        }
        let mut wrote = false;
        while let Some(&Reverse((due, n))) = retries.peek() {
            if due > now {
                break;
            }
            retries.pop();
            if let Some(&t) = in_flight.get(&n) {
                conn.ws
                    .feed(spec.frame(n, t))
                    .await
                    .with_context(|| format!("{who}: send failed"))?;
                wrote = true;
            }
        }
        if more && now >= paused_until {
            let limit = spec.quota.unwrap_or(u64::MAX);
            while in_flight.len() < spec.window && next_n < limit {
                let t = shared.now_us();
                conn.ws
                    .feed(spec.frame(next_n, t))
                    .await
                    .with_context(|| format!("{who}: send failed"))?;
                in_flight.insert(next_n, t);
                next_n += 1;
                out.sent += 1;
                Counters::add(&c.sent, 1);
                wrote = true;
            }
        }
        if wrote {
            conn.ws.flush().await.with_context(|| format!("{who}: send failed"))?;
            last_write = Instant::now();
        }

        // Wait for an answer, or until there is something to send.
        let mut wake = timing.give_up.min(last_write + conn.ping_every);
        if more {
            wake = wake.min(timing.stop_sending);
            if in_flight.len() < spec.window {
                wake = wake.min(paused_until);
            }
        }
        if let Some(&Reverse((due, _))) = retries.peek() {
            wake = wake.min(due);
        }
        let Some(text) = conn.next_text_until(wake, &mut last_write, &who).await? else {
            continue;
        };
        let Some(frame) = parse(text.as_str()) else {
            continue;
        };
        // One of this client's ids (an earlier run's are ignored).
        let n = spec.number(frame.id.as_deref()).filter(|&n| n < next_n);
        match (frame.kind.as_ref(), n) {
            ("result", Some(n)) => {
                let Some(t) = in_flight.remove(&n) else {
                    // A second answer to a command already answered.
                    out.duplicates += 1;
                    Counters::add(&c.duplicates, 1);
                    continue;
                };
                shared.latency.record(spec.index, shared.since_us(t));
                out.results += 1;
                out.last_answer = Some(Instant::now());
                Counters::add(&c.results, 1);
                if frame.duplicate {
                    // Deduplicated by the gateway: the id was never sent before.
                    out.duplicates += 1;
                    Counters::add(&c.duplicates, 1);
                }
            }
            ("error", n) => {
                let body = frame.error.unwrap_or_default();
                let waiting = n.filter(|n| in_flight.contains_key(n));
                match waiting {
                    Some(n) if resend(&body.code) => {
                        let at = Instant::now() + Duration::from_millis(body.retry_after_ms.unwrap_or(50).max(1));
                        if body.code == "rate_limited" {
                            paused_until = paused_until.max(at);
                            shared.warn_rate_limited();
                        }
                        retries.push(Reverse((at, n)));
                        out.retried += 1;
                        Counters::add(&c.retried, 1);
                    }
                    Some(n) if final_error(&body.code) => {
                        in_flight.remove(&n);
                        out.failed += 1;
                        out.last_answer = Some(Instant::now());
                        Counters::add(&c.failed, 1);
                    }
                    None if n.is_some() && final_error(&body.code) => {
                        // A second answer to a command already answered.
                        out.duplicates += 1;
                        Counters::add(&c.duplicates, 1);
                    }
                    None if resend(&body.code) || final_error(&body.code) => {}
                    _ => bail!(
                        "{who}: the gateway refused a command {}: {}: {}",
                        spec.command,
                        body.code,
                        body.message
                    ),
                }
            }
            _ => {}
        }
    }
    out.lost = in_flight.len() as u64;
    Ok(out)
}

/// The `rpc` scenario.
pub(super) async fn run(plan: &Plan, shared: &Arc<Shared>) -> anyhow::Result<Report> {
    let command = command_type(plan);
    let open = async {
        let agents: Vec<Conn> = stream::iter(0..plan.agents)
            .map(|i| {
                let command = &command;
                async move {
                    let conn = open_agent(plan, command, i).await?;
                    Counters::add(&shared.counters.connected, 1);
                    Ok::<_, anyhow::Error>(conn)
                }
            })
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await?;
        let clients: Vec<Conn> = stream::iter(0..plan.clients)
            .map(|i| async move {
                let conn = connect(plan, &format!("client {i}")).await?;
                Counters::add(&shared.counters.connected, 1);
                Ok::<_, anyhow::Error>(conn)
            })
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((agents, clients))
    };
    let ((agents, clients), rss) = measure_rss(plan, open).await?;

    let timing = Timing::starting_now(plan);
    let _ = shared.started.set(timing.start);
    let (stop_tx, stop_rx) = watch::channel(false);
    let first_problem = Arc::new(OnceLock::new());
    let agent_tasks: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(i, conn)| tokio::spawn(agent(i, conn, shared.clone(), stop_rx.clone(), first_problem.clone())))
        .collect();
    let pad: Arc<str> = "x".repeat(plan.payload).into();
    let command: Arc<str> = command.into();
    let client_tasks = clients.into_iter().enumerate().map(|(i, conn)| {
        let spec = ClientSpec {
            index: i,
            command: command.clone(),
            id_prefix: format!("{}-{i}-", plan.run_id),
            quota: plan.quota(i),
            window: plan.window,
            payload: plan.payload,
            pad: pad.clone(),
        };
        let task = tokio::spawn(client(conn, spec, shared.clone(), timing));
        async move { task.await.context("a client task failed")? }
    });
    let outcomes = try_join_all(client_tasks).await;
    let _ = stop_tx.send(true);
    let outcomes = outcomes?;
    let mut report = Report {
        rss,
        ..Report::default()
    };
    for task in agent_tasks {
        let a = task.await.context("an agent task failed")?;
        report.tasks += a.tasks;
        report.agent_errors += a.errors;
    }
    let mut last_answer = None;
    for o in &outcomes {
        report.sent += o.sent;
        report.results += o.results;
        report.failed += o.failed;
        report.lost += o.lost;
        report.duplicates += o.duplicates;
        report.retried += o.retried;
        last_answer = last_answer.max(o.last_answer);
    }
    report.disconnects = Counters::get(&shared.counters.disconnects);
    report.elapsed = last_answer.map_or(Duration::ZERO, |t| t - timing.start);
    report.latency = Percentiles::of(&shared.latency.merged());
    if let Some(first) = first_problem.get() {
        eprintln!(
            "tether bench rpc: {} agent disconnect(s), {} refused task_result(s); the first: {first}",
            report.disconnects, report.agent_errors
        );
    }
    Ok(report)
}
