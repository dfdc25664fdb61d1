//! The publisher loop both scenarios use, and the `publish` scenario: K
//! publishers, each the only publisher of its own channel, acked publishes
//! per second and the latency from send to ack.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::future::try_join_all;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::frame::{parse, payload};
use super::net::{connect, Conn, CONNECT_CONCURRENCY};
use super::plan::Plan;
use super::report::Report;
use super::rss::measure_rss;
use super::shared::Shared;
use super::stats::{Counters, Percentiles, SeqTracker};
use super::DRAIN_LIMIT;

/// When a publisher sends and for how long it waits for acks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Time zero of the rate schedule.
    pub start: Instant,
    /// No new publish after this.
    pub stop_sending: Instant,
    /// Publishes still unacknowledged now are given up on (counted as unacked).
    pub give_up: Instant,
}

impl Timing {
    pub fn starting_now(plan: &Plan) -> Timing {
        let start = Instant::now();
        Timing {
            start,
            stop_sending: start + plan.duration,
            give_up: start + plan.duration + DRAIN_LIMIT,
        }
    }
}

/// What one publisher does.
pub(super) struct Spec {
    pub index: usize,
    pub channel: String,
    /// Ids are this prefix and a counter: unique per run, so that neither a
    /// shared principal (`--token`) nor an earlier run deduplicates them.
    pub id_prefix: String,
    /// Publishes to send at most.
    pub quota: Option<u64>,
    /// This publisher's publishes per second; `None`: as fast as the window allows.
    pub rate: Option<f64>,
    pub window: usize,
    pub payload: usize,
    /// `payload` bytes of padding to slice from.
    pub pad: Arc<str>,
    /// The publish scenario: this is the channel's only publisher, so its
    /// acks must carry seqs 1, 2, 3, … (checked), and the send-to-ack latency
    /// is the one reported.
    pub own_channel: bool,
}

impl Spec {
    fn frame(&self, n: u64, t: u64) -> Message {
        Message::text(format!(
            r#"{{"type":"publish","id":"{}{n}","channel":"{}","data":{}}}"#,
            self.id_prefix,
            self.channel,
            payload(t, self.payload, &self.pad)
        ))
    }

    /// The counter of one of this publisher's ids.
    fn number(&self, id: Option<&str>) -> Option<u64> {
        id?.strip_prefix(&self.id_prefix)?.parse().ok()
    }
}

/// What one publisher saw.
#[derive(Debug)]
pub(super) struct Outcome {
    pub sent: u64,
    pub acked: u64,
    /// Still unacknowledged when the publisher gave up.
    pub unacked: u64,
    /// The highest seq in an ack.
    pub max_seq: u64,
    /// The acks' seqs (publish scenario only).
    pub acks: Option<SeqTracker>,
    /// Acks of an id already acknowledged, or with `"duplicate":true`.
    pub duplicate_acks: u64,
    pub retried: u64,
    pub last_ack: Option<Instant>,
}

/// Server error codes after which the same publish (same id) is sent again.
fn retryable(code: &str) -> bool {
    matches!(code, "rate_limited" | "overloaded" | "internal" | "timeout")
}

/// Publishes on `conn` per `spec` until `timing.stop_sending` (or the quota),
/// keeping at most `spec.window` unacknowledged, then waits for the last acks
/// until `timing.give_up`. A rate-limited or otherwise retryable publish is
/// sent again with the same id after `retry_after_ms`. Fails on a refused
/// publish or a lost connection.
pub(super) async fn publisher(
    mut conn: Conn,
    spec: Spec,
    shared: Arc<Shared>,
    timing: Timing,
) -> anyhow::Result<Outcome> {
    let who = format!("publisher {}", spec.index);
    let c = &shared.counters;
    let mut out = Outcome {
        sent: 0,
        acked: 0,
        unacked: 0,
        max_seq: 0,
        acks: spec.own_channel.then(|| SeqTracker::after(0)),
        duplicate_acks: 0,
        retried: 0,
        last_ack: None,
    };
    // Unacknowledged publishes: counter → the timestamp embedded in it.
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
            // How many publishes the rate allows by now (all, without a rate).
            let due = spec
                .rate
                .map_or(u64::MAX, |r| ((now - timing.start).as_secs_f64() * r) as u64 + 1);
            let limit = due.min(spec.quota.unwrap_or(u64::MAX));
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

        // Wait for a reply, or until there is something to send.
        let mut wake = timing.give_up.min(last_write + conn.ping_every);
        if more {
            wake = wake.min(timing.stop_sending);
            if in_flight.len() < spec.window {
                let next_due = match spec.rate {
                    Some(r) => timing.start + Duration::from_secs_f64(next_n as f64 / r),
                    None => now,
                };
                wake = wake.min(next_due.max(paused_until));
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
        match frame.kind.as_ref() {
            "ack" => {
                let Some(n) = spec.number(frame.id.as_deref()) else {
                    continue;
                };
                let Some(t) = in_flight.remove(&n) else {
                    // An ack of a publish already acknowledged.
                    out.duplicate_acks += 1;
                    Counters::add(&c.duplicates, 1);
                    continue;
                };
                out.acked += 1;
                out.last_ack = Some(Instant::now());
                Counters::add(&c.acked, 1);
                if spec.own_channel {
                    shared.latency.record(spec.index, shared.since_us(t));
                }
                if frame.duplicate {
                    // Deduplicated by the gateway: the id was never sent before.
                    out.duplicate_acks += 1;
                    Counters::add(&c.duplicates, 1);
                } else if let Some(seq) = frame.data_seq {
                    out.max_seq = out.max_seq.max(seq);
                    if let Some(acks) = &mut out.acks {
                        c.seen(acks.observe(seq));
                    }
                }
            }
            "error" => {
                let body = frame.error.unwrap_or_default();
                let n = spec.number(frame.id.as_deref()).filter(|n| in_flight.contains_key(n));
                match n {
                    Some(n) if retryable(&body.code) => {
                        let at = Instant::now() + Duration::from_millis(body.retry_after_ms.unwrap_or(50).max(1));
                        if body.code == "rate_limited" {
                            paused_until = paused_until.max(at);
                            shared.warn_rate_limited();
                        }
                        retries.push(Reverse((at, n)));
                        out.retried += 1;
                        Counters::add(&c.retried, 1);
                    }
                    None if retryable(&body.code) => {}
                    _ => bail!(
                        "{who}: the gateway refused a publish on {}: {}: {}",
                        spec.channel,
                        body.code,
                        body.message
                    ),
                }
            }
            _ => {}
        }
    }
    out.unacked = in_flight.len() as u64;
    Ok(out)
}

/// Opens the publishers' connections, `CONNECT_CONCURRENCY` at a time.
pub(super) async fn open_publishers(plan: &Plan, shared: &Shared) -> anyhow::Result<Vec<Conn>> {
    stream::iter(0..plan.publishers)
        .map(|i| async move {
            let conn = connect(plan, &format!("publisher {i}")).await?;
            Counters::add(&shared.counters.connected, 1);
            Ok::<Conn, anyhow::Error>(conn)
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
}

/// Runs every publisher to the end; the first failure ends the run.
pub(super) async fn run_publishers(
    conns: Vec<Conn>,
    spec: impl Fn(usize) -> Spec,
    shared: &Arc<Shared>,
    timing: Timing,
) -> anyhow::Result<Vec<Outcome>> {
    let tasks = conns.into_iter().enumerate().map(|(i, conn)| {
        let task = tokio::spawn(publisher(conn, spec(i), shared.clone(), timing));
        async move { task.await.context("a publisher task failed")? }
    });
    try_join_all(tasks).await
}

/// The `publish` scenario.
pub(super) async fn run(plan: &Plan, shared: &Arc<Shared>) -> anyhow::Result<Report> {
    let (conns, rss) = measure_rss(plan, open_publishers(plan, shared)).await?;
    let timing = Timing::starting_now(plan);
    let _ = shared.started.set(timing.start);
    let pad: Arc<str> = "x".repeat(plan.payload).into();
    let spec = |i: usize| Spec {
        index: i,
        channel: format!("bench-{}-{i}", plan.run_id),
        id_prefix: format!("{}-{i}-", plan.run_id),
        quota: plan.quota(i),
        rate: plan.rate.map(|r| r / plan.publishers as f64),
        window: plan.window,
        payload: plan.payload,
        pad: pad.clone(),
        own_channel: true,
    };
    let outcomes = run_publishers(conns, spec, shared, timing).await?;
    let mut report = Report {
        rss,
        ..Report::default()
    };
    let mut last_ack = None;
    for o in &outcomes {
        report.sent += o.sent;
        report.acked += o.acked;
        report.unacked += o.unacked;
        report.duplicates += o.duplicate_acks;
        report.duplicate_acks += o.duplicate_acks;
        report.retried += o.retried;
        if let Some(acks) = &o.acks {
            report.lost += acks.lost();
            report.duplicates += acks.duplicates();
            report.reordered += acks.reordered();
        }
        last_ack = last_ack.max(o.last_ack);
    }
    report.elapsed = last_ack.map_or(Duration::ZERO, |t| t - timing.start);
    report.ack_elapsed = report.elapsed;
    report.latency = Percentiles::of(&shared.latency.merged());
    Ok(report)
}
