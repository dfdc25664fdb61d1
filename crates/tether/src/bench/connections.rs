//! The `connections` scenario: C idle connections, opened from the loopback
//! source addresses in turn (127.0.0.2, 127.0.0.3, …: each address has its
//! own ephemeral ports, and the gateway's per-IP cap counts each apart), held
//! for `--hold` with a protocol `ping` every half heartbeat interval (spread
//! over the interval, so that the gateway never sees them all at once), then
//! closed with a close handshake. Reports opened and failed connections, the
//! open rate, and the gateway's memory per connection.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use futures_util::SinkExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::cpu::measure_cpu;
use super::net::{close_reason, connect_from, Conn, Keepalive, Ws, CONNECT_CONCURRENCY, CONNECT_TIMEOUT};
use super::plan::Plan;
use super::report::Report;
use super::rss::{vm_rss_kib, Rss};
use super::shared::Shared;
use super::stats::Counters;

/// Read buffer of an idle connection: it only ever reads a `welcome` and `pong`s.
const IDLE_READ_BUFFER: usize = 1024;

/// What one held connection did.
#[derive(Debug, Default)]
struct Held {
    pings: u64,
    pongs: u64,
    /// The gateway answered the close handshake.
    closed: bool,
}

/// Holds `conn` until told to stop, sending a `ping` first after `first_ping`
/// and then every `conn.ping_every`; then closes it. A connection the gateway
/// closes (or that fails) is counted as a disconnect.
async fn hold(
    index: usize,
    mut conn: Conn,
    first_ping: Duration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    first_disconnect: Arc<OnceLock<String>>,
) -> Held {
    let c = &shared.counters;
    let mut held = Held::default();
    let mut next_ping = Instant::now() + first_ping;
    let ended = loop {
        if *stop.borrow_and_update() {
            break None;
        }
        tokio::select! {
            msg = conn.ws.next() => match msg {
                Some(Ok(m)) if conn.keepalive.answered_by(&m) => {
                    held.pongs += 1;
                    Counters::add(&c.pongs, 1);
                }
                Some(Ok(Message::Close(f))) => {
                    break Some(format!("the gateway closed the connection ({})", close_reason(f)))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("connection failed: {e}")),
                None => break Some("the gateway closed the connection".to_owned()),
            },
            () = tokio::time::sleep_until(next_ping.into()) => {
                if let Err(e) = conn.ws.send(conn.ping_message(held.pings)).await {
                    break Some(format!("ping failed: {e}"));
                }
                held.pings += 1;
                Counters::add(&c.pings, 1);
                next_ping += conn.ping_every;
            }
            changed = stop.changed() => if changed.is_err() {
                break None;
            },
        }
    };
    match ended {
        Some(why) => {
            Counters::add(&c.disconnects, 1);
            let _ = first_disconnect.set(format!("connection {index}: {why}"));
        }
        None => held.closed = close(&mut conn.ws, conn.keepalive, &mut held, c).await,
    }
    held
}

/// Sends a close frame and reads until the gateway's close frame and the end
/// of the stream (counting the `pong`s still on their way); true when the
/// gateway answered within [`CONNECT_TIMEOUT`].
async fn close(ws: &mut Ws, keepalive: Keepalive, held: &mut Held, c: &Counters) -> bool {
    let handshake = async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bench done".into(),
        };
        if ws.close(Some(frame)).await.is_err() {
            return false;
        }
        let mut answered = false;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => answered = true,
                Some(Ok(m)) if keepalive.answered_by(&m) => {
                    held.pongs += 1;
                    Counters::add(&c.pongs, 1);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return answered,
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake).await.unwrap_or(false)
}

/// Adds what to do about a failed connect, when the error says.
fn failure_hint(error: &str) -> &'static str {
    if error.contains("429") {
        " (the gateway's per-IP cap: more --source-addrs, or start it with a higher --max-connections-per-ip)"
    } else if error.contains("Address already in use") || error.contains("Cannot assign requested address") {
        " (out of ephemeral ports: more --source-addrs)"
    } else if error.contains("Too many open files") {
        " (out of open files, here or in the gateway: raise its limit, ulimit -n)"
    } else {
        ""
    }
}

/// The `connections` scenario.
pub(super) async fn run(plan: &Plan, shared: &Arc<Shared>) -> anyhow::Result<Report> {
    let c = &shared.counters;
    let before_kib = plan.server_pid.map(vm_rss_kib).transpose()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let first_disconnect = Arc::new(OnceLock::new());
    let first_failure: Mutex<Option<String>> = Mutex::new(None);
    let total = plan.idle;
    let start = Instant::now();
    let mut last_open = start;
    let mut holders: Vec<JoinHandle<Held>> = Vec::with_capacity(total);
    let mut opens = stream::iter(0..total)
        .map(|i| async move {
            let source = match plan.source_addrs.as_slice() {
                [] => None,
                addrs => Some(addrs[i % addrs.len()]),
            };
            (
                i,
                connect_from(plan, &format!("connection {i}"), source, IDLE_READ_BUFFER).await,
            )
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some((i, opened)) = opens.next().await {
        match opened {
            Ok(conn) => {
                last_open = Instant::now();
                Counters::add(&c.connected, 1);
                // Spread the pings over the interval.
                let first_ping = conn.ping_every.mul_f64(i as f64 / total as f64);
                holders.push(tokio::spawn(hold(
                    i,
                    conn,
                    first_ping,
                    shared.clone(),
                    stop_rx.clone(),
                    first_disconnect.clone(),
                )));
            }
            Err(e) => {
                Counters::add(&c.connect_failed, 1);
                let mut first = first_failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    drop(opens);
    let first_failure = first_failure.into_inner().unwrap_or_else(|e| e.into_inner());
    if holders.is_empty() {
        let why = first_failure.unwrap_or_default();
        bail!(
            "no connection could be opened; the first failure: {why}{}",
            failure_hint(&why)
        );
    }
    let opened = holders.len();
    let rss = match (plan.server_pid, before_kib) {
        (Some(pid), Some(before_kib)) => Some(Rss {
            pid,
            before_kib,
            after_kib: vm_rss_kib(pid).context("the gateway's memory after connecting")?,
            connections: opened,
        }),
        _ => None,
    };
    let _ = shared.started.set(Instant::now());
    // The server's CPU while it holds the connections: what their pings cost.
    let ((), cpu) = measure_cpu(plan, async {
        tokio::time::sleep(plan.hold).await;
        Ok(())
    })
    .await?;
    let rss_held_kib = match plan.server_pid {
        Some(pid) => Some(vm_rss_kib(pid).context("the gateway's memory at the end of the hold")?),
        None => None,
    };
    let _ = stop_tx.send(true);
    let mut report = Report {
        rss,
        rss_held_kib,
        cpu,
        opened: opened as u64,
        open_failed: Counters::get(&c.connect_failed),
        open_elapsed: last_open - start,
        ..Report::default()
    };
    for holder in holders {
        let held = holder.await.context("a connection task failed")?;
        report.pings += held.pings;
        report.pongs += held.pongs;
        report.closed += u64::from(held.closed);
    }
    report.disconnects = Counters::get(&c.disconnects);
    if let Some(why) = &first_failure {
        eprintln!(
            "tether bench connections: {} connection(s) could not be opened; the first: {why}{}",
            report.open_failed,
            failure_hint(why)
        );
    }
    if let Some(first) = first_disconnect.get() {
        eprintln!(
            "tether bench connections: the gateway closed {} connection(s) while held; the first: {first}",
            report.disconnects
        );
    }
    Ok(report)
}
