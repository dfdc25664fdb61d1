//! The `fanout` scenario against the peers `bench/compare` measures Tether
//! against, with the same subscribers, payloads, checks and report:
//!
//! - `--protocol broadcast`: a plain broadcast server (the Node `ws`
//!   reference): every text frame a client sends goes to every other client.
//!   The publisher is one more client.
//! - `--protocol pusher` (sockudo): subscribers speak the Pusher WebSocket
//!   protocol (`pusher:subscribe` to a public channel); the publisher uses the
//!   Pusher HTTP events API, signed with the app's secret, one request at a
//!   time on one keep-alive connection.
//!
//! Neither acknowledges durably, so "as fast as possible" is paced by
//! delivery instead: the publisher keeps at most `--window` messages sent and
//! not yet received by every subscriber. Each message's JSON carries its seq
//! (`bench_seq`, 1, 2, 3, … from the one publisher) and the publisher's
//! timestamp, so that every subscriber checks every seq and measures latency
//! as on Tether.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::{FutureExt, SinkExt};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::cpu::measure_cpu;
use super::frame::padded;
use super::net::{close_reason, connect, next_text, Conn, CONNECT_CONCURRENCY, CONNECT_TIMEOUT};
use super::plan::{Plan, Protocol, PusherApp};
use super::report::Report;
use super::rss::measure_rss;
use super::shared::Shared;
use super::stats::{Counters, Percentiles, SeqTracker};
use super::DRAIN_LIMIT;

/// The Pusher event name the benchmark publishes.
const EVENT: &str = "bench";
/// How often a paced publisher looks again at the subscribers' progress.
const PACE_POLL: Duration = Duration::from_micros(500);

/// `{"bench_seq":N,"t":T,"pad":"xx…"}`, `size` bytes when that leaves room.
pub(super) fn peer_payload(seq: u64, t: u64, size: usize, pad: &str) -> String {
    padded(format!(r#"{{"bench_seq":{seq},"t":{t},"pad":""#), size, pad)
}

/// The seq and timestamp of a benchmark message, as sent or wrapped by a
/// Pusher frame (where `data` is a JSON string, so the quotes are escaped).
pub(super) fn scan_peer(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.find("bench_seq")? + "bench_seq".len()..];
    let (seq, rest) = next_number(rest)?;
    let (t, _) = next_number(rest)?;
    Some((seq, t))
}

/// The first decimal number in `text` (after any non-digits), and what follows it.
fn next_number(text: &str) -> Option<(u64, &str)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let len = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((rest[..len].parse().ok()?, &rest[len..]))
}

/// What subscribers are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Sending is over; the last seq sent is this.
    Drain(u64),
    Stop,
}

/// Subscribes a fresh connection to `channel` (Pusher) or just opens it (broadcast).
async fn open_subscriber(plan: &Plan, channel: &str, i: usize) -> anyhow::Result<Conn> {
    let who = format!("subscriber {i}");
    let mut conn = connect(plan, &who).await?;
    if let Protocol::Pusher(_) = plan.protocol {
        let subscribe = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        conn.ws
            .send(Message::text(subscribe))
            .await
            .with_context(|| format!("{who}: send failed"))?;
        tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                let text = next_text(&mut conn.ws, &who).await?;
                if text.contains("pusher_internal:subscription_succeeded") {
                    return Ok(());
                }
                if text.contains("pusher:error") {
                    bail!("{who}: subscribing to {channel} was refused: {text}");
                }
            }
        })
        .await
        .map_err(|_| anyhow!("{who}: no subscription_succeeded within {CONNECT_TIMEOUT:?}"))??;
    }
    Ok(conn)
}

/// What one subscriber saw.
struct Seen {
    tracker: SeqTracker,
    last_delivery: Option<Instant>,
}

/// Reads messages until told to stop or the connection ends; records every
/// seq and latency, and publishes its highest seq in `progress[index]`.
async fn subscriber(
    index: usize,
    mut conn: Conn,
    shared: Arc<Shared>,
    progress: Arc<Vec<AtomicU64>>,
    mut phase: watch::Receiver<Phase>,
    first_disconnect: Arc<OnceLock<String>>,
) -> Seen {
    let mut tracker = SeqTracker::after(0);
    let mut last_delivery = None;
    let mut samples = Vec::with_capacity(128);
    let mut pings = 0;
    let pinger = tokio::time::sleep(conn.ping_every);
    tokio::pin!(pinger);
    let mut on_message = |msg: Option<Result<Message, WsError>>, now: Instant, samples: &mut Vec<u64>| {
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(f))) => {
                return Some(format!("the server closed the connection ({})", close_reason(f)))
            }
            Some(Ok(_)) => return None,
            Some(Err(e)) => return Some(format!("connection failed: {e}")),
            None => return Some("the server closed the connection".to_owned()),
        };
        let (seq, t) = scan_peer(text.as_str())?;
        shared.counters.seen(tracker.observe(seq));
        Counters::add(&shared.counters.delivered, 1);
        progress[index].store(tracker.highest(), Ordering::Relaxed);
        samples.push(shared.us_at(now).saturating_sub(t));
        last_delivery = Some(now);
        None
    };
    loop {
        match *phase.borrow_and_update() {
            Phase::Stop => break,
            Phase::Drain(last) if progress[index].load(Ordering::Relaxed) >= last => break,
            _ => {}
        }
        let ended = tokio::select! {
            msg = conn.ws.next() => {
                // One clock reading per wake-up and per 32 frames, as on Tether.
                let mut now = Instant::now();
                let mut ended = on_message(msg, now, &mut samples);
                let mut handled = 1;
                while ended.is_none() {
                    let Some(msg) = conn.ws.next().now_or_never() else { break };
                    if handled % 32 == 0 {
                        now = Instant::now();
                    }
                    ended = on_message(msg, now, &mut samples);
                    handled += 1;
                }
                if samples.len() >= 128 {
                    shared.latency.record_all(index, &samples);
                    samples.clear();
                }
                ended
            }
            changed = phase.changed() => changed.err().map(|_| "the run ended".to_owned()),
            () = &mut pinger => {
                pinger.as_mut().reset((Instant::now() + conn.ping_every).into());
                pings += 1;
                let ping = conn.ping_message(pings);
                match tokio::time::timeout(CONNECT_TIMEOUT, conn.ws.send(ping)).await {
                    Ok(sent) => sent.err().map(|e| format!("ping failed: {e}")),
                    Err(_) => Some(format!("ping not sent within {CONNECT_TIMEOUT:?}")),
                }
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
    // Gone (or done): no longer holds the publisher's window back; what it
    // missed counts as lost at the end.
    progress[index].store(u64::MAX, Ordering::Relaxed);
    shared.latency.record_all(index, &samples);
    Seen { tracker, last_delivery }
}

/// An HTTP/1.1 connection's request handle.
type HttpSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Signs and sends Pusher `POST /apps/<id>/events` requests, one at a time on
/// a keep-alive connection (a new one when the server closed it).
struct PusherPublisher {
    app: PusherApp,
    channel: String,
    host: String,
    sender: HttpSender,
}

/// Opens an HTTP/1.1 connection to `host`.
async fn http_connect(host: &str) -> anyhow::Result<HttpSender> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(host))
        .await
        .map_err(|_| anyhow!("publisher: no connection to {host} within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("publisher: cannot connect to {host}"))?;
    tcp.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .context("publisher: HTTP handshake failed")?;
    tokio::spawn(connection);
    Ok(sender)
}

impl PusherPublisher {
    async fn open(plan: &Plan, app: &PusherApp, channel: &str) -> anyhow::Result<PusherPublisher> {
        let host = plan
            .url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let sender = http_connect(&host).await?;
        Ok(PusherPublisher {
            app: app.clone(),
            channel: channel.to_owned(),
            host,
            sender,
        })
    }

    /// Publishes `data` as event [`EVENT`]; an error unless the server answered 2xx.
    async fn publish(&mut self, data: String) -> anyhow::Result<()> {
        let body = serde_json::json!({"name": EVENT, "channel": self.channel, "data": data}).to_string();
        let path = format!("/apps/{}/events", self.app.id);
        let query = signed_query(&self.app, "POST", &path, &body, unix_seconds());
        let request = hyper::Request::post(format!("{path}?{query}"))
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("publisher: building the request")?;
        // A request the connection never took (the server closed the idle
        // connection meanwhile) is resent once on a new one; one that may
        // have been sent is not, so that no seq is published twice.
        let mut request = Some(request);
        let mut response = None;
        for attempt in 0..2 {
            let Some(req) = request.take() else { break };
            if attempt > 0 || self.sender.ready().await.is_err() {
                self.sender = http_connect(&self.host).await?;
            }
            let sent = tokio::time::timeout(CONNECT_TIMEOUT, self.sender.try_send_request(req))
                .await
                .map_err(|_| anyhow!("publisher: no HTTP response within {CONNECT_TIMEOUT:?}"))?;
            match sent {
                Ok(r) => {
                    response = Some(r);
                    break;
                }
                Err(mut e) => match e.take_message() {
                    Some(req) => request = Some(req),
                    None => return Err(anyhow!("publisher: HTTP request failed: {}", e.error())),
                },
            }
        }
        let response = response.ok_or_else(|| anyhow!("publisher: the server keeps closing the HTTP connection"))?;
        let status = response.status();
        let bytes = tokio::time::timeout(CONNECT_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| anyhow!("publisher: the HTTP response did not end within {CONNECT_TIMEOUT:?}"))?
            .context("publisher: reading the response")?
            .to_bytes();
        if !status.is_success() {
            bail!(
                "publisher: the server answered {status}: {}{}",
                String::from_utf8_lossy(&bytes),
                if status.as_u16() == 429 {
                    " (its API rate limiter is on)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The Pusher HTTP API's signed query string: `auth_key`, `auth_timestamp`,
/// `auth_version`, `body_md5` (sorted), then `auth_signature`, the hex
/// HMAC-SHA256 with the app secret of `METHOD\nPATH\nQUERY`.
pub(super) fn signed_query(app: &PusherApp, method: &str, path: &str, body: &str, timestamp: u64) -> String {
    let body_md5: String = Md5::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let query = format!(
        "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}",
        app.key
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(app.secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{method}\n{path}\n{query}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("{query}&auth_signature={signature}")
}

/// Where the publisher sends.
enum Sender {
    Broadcast(Conn),
    Pusher(PusherPublisher),
}

/// Sends seqs 1, 2, … at the plan's rate (or as fast as the window of
/// undelivered messages allows) until `--duration` or `--count`; returns the
/// last seq sent.
async fn publish(
    plan: &Plan,
    mut sender: Sender,
    shared: &Shared,
    progress: &[AtomicU64],
    start: Instant,
) -> anyhow::Result<u64> {
    let pad = "x".repeat(plan.payload);
    let stop = start + plan.duration;
    let quota = plan.quota(0).unwrap_or(u64::MAX);
    let interval = plan.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut seq = 0;
    let mut last_ping = Instant::now();
    while seq < quota {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        if let Some(every) = interval {
            let due = start + every.mul_f64(seq as f64);
            if due > now {
                tokio::time::sleep_until(due.min(stop).into()).await;
                continue;
            }
        }
        let slowest = progress.iter().map(|p| p.load(Ordering::Relaxed)).min().unwrap_or(seq);
        if seq >= slowest.saturating_add(plan.window as u64) {
            tokio::time::sleep(PACE_POLL).await;
            continue;
        }
        seq += 1;
        let text = peer_payload(seq, shared.now_us(), plan.payload, &pad);
        match &mut sender {
            Sender::Broadcast(conn) => {
                tokio::time::timeout(CONNECT_TIMEOUT, conn.ws.send(Message::text(text)))
                    .await
                    .map_err(|_| anyhow!("publisher: the server took no frame within {CONNECT_TIMEOUT:?}"))?
                    .context("publisher: send failed")?;
                if last_ping.elapsed() >= conn.ping_every {
                    conn.ws
                        .send(conn.ping_message(seq))
                        .await
                        .context("publisher: ping failed")?;
                    last_ping = Instant::now();
                }
                // Drop what the server sends back (nothing, for a broadcast to others).
                while let Some(Some(_)) = conn.ws.next().now_or_never() {}
            }
            Sender::Pusher(p) => p.publish(text).await?,
        }
        Counters::add(&shared.counters.sent, 1);
        Counters::add(&shared.counters.acked, 1);
    }
    if let Sender::Broadcast(mut conn) = sender {
        let _ = conn.ws.close(None).await;
    }
    Ok(seq)
}

/// The `fanout` scenario against a peer.
pub(super) async fn run(plan: &Plan, shared: &Arc<Shared>) -> anyhow::Result<Report> {
    let channel = format!("bench-{}", plan.run_id);
    let open = async {
        let subs: Vec<Conn> = stream::iter(0..plan.subscribers)
            .map(|i| {
                let channel = &channel;
                async move {
                    let conn = open_subscriber(plan, channel, i).await?;
                    Counters::add(&shared.counters.connected, 1);
                    Ok::<_, anyhow::Error>(conn)
                }
            })
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await?;
        let sender = match &plan.protocol {
            Protocol::Pusher(app) => Sender::Pusher(PusherPublisher::open(plan, app, &channel).await?),
            _ => Sender::Broadcast(connect(plan, "publisher").await?),
        };
        Counters::add(&shared.counters.connected, 1);
        Ok((subs, sender))
    };
    let ((subs, sender), rss) = measure_rss(plan, open).await?;

    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..subs.len()).map(|_| AtomicU64::new(0)).collect());
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let first_disconnect = Arc::new(OnceLock::new());
    let start = Instant::now();
    let _ = shared.started.set(start);
    let readers: Vec<_> = subs
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(subscriber(
                i,
                conn,
                shared.clone(),
                progress.clone(),
                phase_rx.clone(),
                first_disconnect.clone(),
            ))
        })
        .collect();
    let measured = measure_cpu(plan, async {
        let last_seq = match publish(plan, sender, shared, &progress, start).await {
            Ok(seq) => seq,
            Err(e) => {
                let _ = phase_tx.send(Phase::Stop);
                return Err(e);
            }
        };
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
        Ok((last_seq, seen))
    })
    .await?;
    let ((last_seq, seen), cpu) = measured;

    let mut report = Report {
        rss,
        cpu,
        ..Report::default()
    };
    let mut last_delivery = None;
    for mut s in seen {
        report.count_subscriber(&mut s.tracker, last_seq, 0);
        last_delivery = last_delivery.max(s.last_delivery);
    }
    report.sent = last_seq;
    report.acked = last_seq;
    report.disconnects = Counters::get(&shared.counters.disconnects);
    report.elapsed = last_delivery.map_or(Duration::ZERO, |t| t - start);
    report.ack_elapsed = report.elapsed;
    report.latency = Percentiles::of(&shared.latency.merged());
    if let Some(first) = first_disconnect.get() {
        eprintln!(
            "tether bench fanout: {} subscriber(s) lost their connection; the first: {first}",
            report.disconnects
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_seq_and_time_plain_and_wrapped_by_pusher() {
        let pad = "x".repeat(200);
        let p = peer_payload(42, 123_456, 100, &pad);
        assert_eq!(p.len(), 100);
        assert_eq!(scan_peer(&p), Some((42, 123_456)));
        let wrapped = serde_json::json!({"event": "bench", "channel": "bench-1", "data": p}).to_string();
        assert!(wrapped.contains(r#"\"bench_seq\":42"#), "{wrapped}");
        assert_eq!(scan_peer(&wrapped), Some((42, 123_456)));
        assert_eq!(scan_peer(r#"{"event":"pusher:pong","data":{}}"#), None);
    }

    /// The example of the Pusher HTTP API reference (key 278d425bdf160c739803,
    /// secret 7ad3773142a6692b25b8, timestamp 1353088179).
    #[test]
    fn signs_like_the_pusher_reference() {
        let app = PusherApp {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = signed_query(&app, "POST", "/apps/3/events", body, 1_353_088_179);
        assert_eq!(
            q,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }
}
