//! The `fanout` scenario: S subscribers on one channel, P publishers at a
//! target rate (or as fast as their windows allow). Each subscriber checks
//! every seq it receives ([`SeqTracker`]) and records the latency from the
//! timestamp the publisher embedded in the event's `data` to its delivery.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::{FutureExt, SinkExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::cpu::measure_cpu;
use super::frame::{parse, scan_event};
use super::net::{close_reason, connect, next_text, ping, Conn, CONNECT_CONCURRENCY, CONNECT_TIMEOUT};
use super::plan::{Plan, Protocol};
use super::publish::{open_publishers, run_publishers, Spec, Timing};
use super::report::Report;
use super::rss::measure_rss;
use super::shared::Shared;
use super::stats::{Counters, Percentiles, SeqTracker};
use super::DRAIN_LIMIT;

/// What subscribers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Publishers are sending.
    Running,
    /// Publishing is over and the channel's last seq is this: stop once it is
    /// received.
    Drain(u64),
    /// Stop now (the drain limit passed, or the run failed).
    Stop,
}

/// What one subscriber saw.
struct Seen {
    tracker: SeqTracker,
    start_seq: u64,
    last_delivery: Option<Instant>,
}

/// Subscribes on a fresh connection; returns it with the seq in the ack.
async fn open_subscriber(plan: &Plan, channel: &str, i: usize) -> anyhow::Result<(Conn, u64)> {
    let who = format!("subscriber {i}");
    let mut conn = connect(plan, &who).await?;
    let subscribe = format!(r#"{{"type":"subscribe","id":"s","channel":"{channel}"}}"#);
    conn.ws
        .send(Message::text(subscribe))
        .await
        .with_context(|| format!("{who}: send failed"))?;
    let seq = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let text = next_text(&mut conn.ws, &who).await?;
            let Some(f) = parse(&text) else { continue };
            match f.kind.as_ref() {
                "ack" if f.id.as_deref() == Some("s") => return Ok(f.data_seq.unwrap_or(0)),
                "error" => {
                    let e = f.error.unwrap_or_default();
                    bail!("{who}: subscribing to {channel} was refused: {}: {}", e.code, e.message)
                }
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("{who}: no subscribe ack within {CONNECT_TIMEOUT:?}"))??;
    Ok((conn, seq))
}

/// Latency samples a subscriber collects before recording them (one lock).
const SAMPLE_BATCH: usize = 128;

/// One subscriber's bookkeeping.
struct Reader {
    index: usize,
    shared: Arc<Shared>,
    tracker: SeqTracker,
    last_delivery: Option<Instant>,
    /// Latencies not yet recorded in `shared.latency`.
    samples: Vec<u64>,
}

impl Reader {
    /// Handles what the socket gave at `now` (µs timestamp `now_us`); `Some(why)`
    /// when the connection ended.
    fn on_message(&mut self, msg: Option<Result<Message, WsError>>, now: Instant, now_us: u64) -> Option<String> {
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(f))) => {
                return Some(format!("the gateway closed the connection ({})", close_reason(f)))
            }
            Some(Ok(_)) => return None,
            Some(Err(e)) => return Some(format!("connection failed: {e}")),
            None => return Some("the gateway closed the connection".to_owned()),
        };
        let (seq, t) = match scan_event(text.as_str()) {
            Some(found) => found,
            None => match parse(text.as_str()) {
                Some(f) if f.kind == "event" && f.seq.is_some() => (f.seq.unwrap_or_default(), f.t),
                _ => return None,
            },
        };
        let c = &self.shared.counters;
        c.seen(self.tracker.observe(seq));
        Counters::add(&c.delivered, 1);
        if let Some(t) = t {
            self.samples.push(now_us.saturating_sub(t));
            if self.samples.len() >= SAMPLE_BATCH {
                self.flush_samples();
            }
        }
        self.last_delivery = Some(now);
        None
    }

    fn flush_samples(&mut self) {
        self.shared.latency.record_all(self.index, &self.samples);
        self.samples.clear();
    }
}

/// Reads events until told to stop, or until the connection ends (counted as
/// a disconnect; what it did not receive counts as lost at the end).
async fn subscriber(
    index: usize,
    mut conn: Conn,
    start_seq: u64,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    first_disconnect: Arc<OnceLock<String>>,
) -> Seen {
    let mut reader = Reader {
        index,
        shared: shared.clone(),
        tracker: SeqTracker::after(start_seq),
        last_delivery: None,
        samples: Vec::with_capacity(SAMPLE_BATCH),
    };
    let pinger = tokio::time::sleep(conn.ping_every);
    tokio::pin!(pinger);
    loop {
        match *phase.borrow_and_update() {
            Phase::Stop => break,
            Phase::Drain(last) if reader.tracker.highest() >= last => break,
            _ => {}
        }
        let ended = tokio::select! {
            msg = conn.ws.next() => {
                // One clock reading per wake-up (and per 32 frames): the frames
                // handled below had all arrived by then, give or take
                // microseconds.
                let mut now = Instant::now();
                let mut now_us = shared.us_at(now);
                let mut ended = reader.on_message(msg, now, now_us);
                // Frames already buffered: handle them without another round
                // through select (the gateway writes many frames at once).
                let mut handled = 1;
                while ended.is_none() {
                    let Some(msg) = conn.ws.next().now_or_never() else { break };
                    if handled % 32 == 0 {
                        now = Instant::now();
                        now_us = shared.us_at(now);
                    }
                    ended = reader.on_message(msg, now, now_us);
                    handled += 1;
                }
                ended
            }
            changed = phase.changed() => changed.err().map(|_| "the run ended".to_owned()),
            () = &mut pinger => {
                pinger.as_mut().reset((Instant::now() + conn.ping_every).into());
                ping(&mut conn.ws).await.err().map(|e| format!("ping failed: {e}"))
            }
        };
        if let Some(why) = ended {
            if *phase.borrow() != Phase::Stop {
                Counters::add(&shared.counters.disconnects, 1);
                let _ = first_disconnect.set(format!("subscriber {index}: {why}"));
            }
            break;
        }
    }
    reader.flush_samples();
    Seen {
        tracker: reader.tracker,
        start_seq,
        last_delivery: reader.last_delivery,
    }
}

/// The `fanout` scenario (against a peer: [`super::peer`]).
pub(super) async fn run(plan: &Plan, shared: &Arc<Shared>) -> anyhow::Result<Report> {
    if plan.protocol != Protocol::Tether {
        return super::peer::run(plan, shared).await;
    }
    let channel = format!("bench-{}", plan.run_id);
    let open = async {
        let subs: Vec<(Conn, u64)> = stream::iter(0..plan.subscribers)
            .map(|i| {
                let channel = &channel;
                async move {
                    let opened = open_subscriber(plan, channel, i).await?;
                    Counters::add(&shared.counters.connected, 1);
                    Ok::<_, anyhow::Error>(opened)
                }
            })
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await?;
        let pubs = open_publishers(plan, shared).await?;
        Ok((subs, pubs))
    };
    let ((subs, pubs), rss) = measure_rss(plan, open).await?;
    let first_seq = subs.iter().map(|(_, seq)| *seq).max().unwrap_or(0);

    let timing = Timing::starting_now(plan);
    let _ = shared.started.set(timing.start);
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let first_disconnect = Arc::new(OnceLock::new());
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, (conn, seq))| {
            tokio::spawn(subscriber(
                i,
                conn,
                seq,
                shared.clone(),
                phase_rx.clone(),
                first_disconnect.clone(),
            ))
        })
        .collect();
    let pad: Arc<str> = "x".repeat(plan.payload).into();
    let spec = |i: usize| Spec {
        index: i,
        channel: channel.clone(),
        id_prefix: format!("{}-{i}-", plan.run_id),
        quota: plan.quota(i),
        rate: plan.rate.map(|r| r / plan.publishers as f64),
        window: plan.window,
        payload: plan.payload,
        pad: pad.clone(),
        own_channel: false,
    };
    let measured = measure_cpu(plan, async {
        let outcomes = match run_publishers(pubs, spec, shared, timing).await {
            Ok(o) => o,
            Err(e) => {
                let _ = phase_tx.send(Phase::Stop);
                return Err(e);
            }
        };
        // Every acked publish is on the channel by now; wait for the subscribers
        // to receive up to the last one, for DRAIN_LIMIT at most.
        let last_seq = outcomes.iter().map(|o| o.max_seq).max().unwrap_or(0).max(first_seq);
        let _ = phase_tx.send(Phase::Drain(last_seq));
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(DRAIN_LIMIT).await;
            let _ = phase_tx.send(Phase::Stop);
        });
        let mut seen = Vec::with_capacity(readers.len());
        for reader in readers {
            seen.push(reader.await.context("a subscriber task failed")?);
        }
        stopper.abort();
        Ok((outcomes, last_seq, seen))
    })
    .await?;
    let ((outcomes, last_seq, seen), cpu) = measured;
    let mut report = Report {
        rss,
        cpu,
        ..Report::default()
    };
    let mut last_delivery = None;
    for mut seen in seen {
        report.count_subscriber(&mut seen.tracker, last_seq, seen.start_seq);
        last_delivery = last_delivery.max(seen.last_delivery);
    }
    let mut last_ack = None;
    for o in &outcomes {
        report.sent += o.sent;
        report.acked += o.acked;
        report.unacked += o.unacked;
        report.duplicate_acks += o.duplicate_acks;
        report.retried += o.retried;
        last_ack = last_ack.max(o.last_ack);
    }
    report.disconnects = Counters::get(&shared.counters.disconnects);
    report.elapsed = last_delivery.map_or(Duration::ZERO, |t| t - timing.start);
    report.ack_elapsed = last_ack.map_or(Duration::ZERO, |t| t - timing.start);
    report.latency = Percentiles::of(&shared.latency.merged());
    if let Some(first) = first_disconnect.get() {
        eprintln!(
            "tether bench fanout: {} subscriber(s) lost their connection; the first: {first}",
            report.disconnects
        );
    }
    Ok(report)
}
