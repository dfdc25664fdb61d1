//! `tether bench` as a user runs it: against the real gateway (counts, no
//! loss, no duplicates, every report field), against a fake gateway that
//! skips and repeats seqs and drops and repeats command results (the loss and
//! duplicate detection must see them), and its exit codes. No timing is
//! asserted.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{Gateway, BIN};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Runs `tether bench ARGS`; returns the exit code, stdout and stderr.
async fn bench(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(BIN)
            .arg("bench")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("tether bench finished in time")
    .expect("run tether bench");
    let stdout = String::from_utf8(out.stdout).expect("utf8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("utf8 stderr");
    (out.status.code(), stdout, stderr)
}

/// Runs `tether bench ARGS --json`, which must succeed with one JSON line.
async fn bench_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = bench(&all).await;
    assert_eq!(code, Some(0), "tether bench {args:?} failed; stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout:?}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no count {key:?} in {v}"))
}

fn assert_latency_fields(v: &Value) {
    let l = &v["latency_us"];
    for key in ["samples", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(l[key].is_u64(), "latency_us.{key} missing: {v}");
    }
    assert!(count(l, "samples") > 0, "latency samples: {v}");
    assert!(
        count(l, "p50") <= count(l, "p99") && count(l, "p99") <= count(l, "max"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_fanout_against_the_real_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default per-connection rate limit (100 frames/s) would throttle the
    // benchmark; docs/benchmarks.md starts the gateway the same way.
    let gw = Gateway::spawn(dir.path(), &["--rate-limit", "1000000", "--rate-burst", "1000000"]);
    let url = gw.ws();
    let pid = gw.child.id().to_string();

    let v = bench_json(&[
        "publish",
        "--url",
        &url,
        "--publishers",
        "2",
        "--duration",
        "1s",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(v["scenario"], "publish", "{v}");
    assert_eq!(count(&v, "publishers"), 2);
    assert!(count(&v, "acked") > 0, "{v}");
    assert_eq!(count(&v, "acked") + count(&v, "unacked"), count(&v, "sent"), "{v}");
    assert!(v["acks_per_s"].as_f64().expect("acks_per_s") > 0.0, "{v}");
    assert_eq!(count(&v, "lost"), 0, "{v}");
    assert_eq!(count(&v, "duplicates"), 0, "{v}");
    assert_eq!(v["latency_us"]["measured"], "send_to_ack");
    assert_latency_fields(&v);
    let rss = &v["server_rss"];
    assert_eq!(count(rss, "connections"), 2, "{v}");
    assert!(
        count(rss, "after_kib") > 0 && rss["per_connection_bytes"].is_i64(),
        "{v}"
    );

    let v = bench_json(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--rate",
        "200",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(v["scenario"], "fanout", "{v}");
    assert!(count(&v, "acked") > 0, "{v}");
    assert!(count(&v, "deliveries") > 0, "{v}");
    assert_eq!(count(&v, "deliveries"), count(&v, "expected_deliveries"), "{v}");
    assert_eq!(count(&v, "deliveries"), 20 * count(&v, "acked"), "{v}");
    assert!(v["deliveries_per_s"].as_f64().expect("deliveries_per_s") > 0.0, "{v}");
    assert_eq!(count(&v, "lost"), 0, "{v}");
    assert_eq!(count(&v, "duplicates"), 0, "{v}");
    assert_eq!(count(&v, "disconnects"), 0, "{v}");
    assert_eq!(v["latency_us"]["measured"], "publish_to_delivery");
    assert_latency_fields(&v);
    assert!(v["server_rss"].is_null(), "no --server-pid: {v}");

    // Without --json: the table on stdout.
    let (code, stdout, stderr) = bench(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--count",
        "5",
        "--duration",
        "5s",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("tether bench fanout against "), "{stdout}");
    for row in ["deliveries", "latency, publish to delivery", "lost / duplicated"] {
        assert!(stdout.contains(row), "row {row:?} in {stdout}");
    }
    assert!(stdout.contains("10 of 10 expected"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_rpc_against_the_real_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &["--rate-limit", "1000000", "--rate-burst", "1000000"]);
    let url = gw.ws();
    let pid = gw.child.id().to_string();

    let v = bench_json(&[
        "connections",
        "--url",
        &url,
        "--connections",
        "100",
        "--source-addrs",
        "2",
        "--hold",
        "1s",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(v["scenario"], "connections", "{v}");
    assert_eq!(count(&v, "connections"), 100, "{v}");
    assert_eq!(v["source_addrs"], json!(["127.0.0.2", "127.0.0.3"]), "{v}");
    assert_eq!(count(&v, "opened"), 100, "{v}");
    assert_eq!(count(&v, "failed"), 0, "{v}");
    assert_eq!(count(&v, "disconnects"), 0, "{v}");
    assert_eq!(count(&v, "closed"), 100, "every close answered: {v}");
    assert!(count(&v, "pongs") <= count(&v, "pings"), "{v}");
    assert!(v["opens_per_s"].as_f64().expect("opens_per_s") > 0.0, "{v}");
    let rss = &v["server_rss"];
    assert_eq!(count(rss, "connections"), 100, "{v}");
    assert!(
        count(rss, "held_kib") > 0 && rss["held_per_connection_bytes"].is_i64(),
        "{v}"
    );

    let v = bench_json(&[
        "rpc",
        "--url",
        &url,
        "--agents",
        "2",
        "--clients",
        "2",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(v["scenario"], "rpc", "{v}");
    assert_eq!((count(&v, "agents"), count(&v, "clients")), (2, 2), "{v}");
    assert!(count(&v, "results") > 0, "{v}");
    assert_eq!(count(&v, "results"), count(&v, "sent"), "{v}");
    assert_eq!(count(&v, "tasks"), count(&v, "results"), "one task per command: {v}");
    assert_eq!(count(&v, "failed"), 0, "{v}");
    assert_eq!(count(&v, "lost"), 0, "{v}");
    assert_eq!(count(&v, "duplicates"), 0, "{v}");
    assert_eq!(count(&v, "agent_errors"), 0, "{v}");
    assert_eq!(count(&v, "disconnects"), 0, "{v}");
    assert!(v["results_per_s"].as_f64().expect("results_per_s") > 0.0, "{v}");
    assert_eq!(v["latency_us"]["measured"], "send_to_result");
    assert_latency_fields(&v);

    // Without --json: the tables.
    let (code, stdout, stderr) =
        bench(&["rpc", "--url", &url, "--agents", "1", "--clients", "1", "--count", "7"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("tether bench rpc against "), "{stdout}");
    assert!(stdout.contains("7 sent, 7 results, 0 failed"), "{stdout}");
    assert!(stdout.contains("latency, send to result"), "{stdout}");
    let (code, stdout, stderr) = bench(&["connections", "--url", &url, "--connections", "3", "--hold", "0s"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("3 opened, 0 failed"), "{stdout}");
    assert!(stdout.contains("3 closed cleanly"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_count_refused_opens_and_use_every_source_address() {
    // The per-IP cap counts each source address apart: 10 from each of two.
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &["--max-connections-per-ip", "10"]);
    let (code, stdout, stderr) = bench(&[
        "connections",
        "--url",
        &gw.ws(),
        "--connections",
        "30",
        "--source-addrs",
        "2",
        "--hold",
        "0s",
        "--json",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(count(&v, "opened"), 20, "{v}");
    assert_eq!(count(&v, "failed"), 10, "{v}");
    assert_eq!(count(&v, "closed"), 20, "{v}");
    assert!(stderr.contains("10 connection(s) could not be opened"), "{stderr}");
    assert!(stderr.contains("per-IP cap"), "the hint: {stderr}");
}

// ---------------------------------------------------------------------------
// A fake gateway that plants a lost and a duplicated message

#[derive(Default)]
struct FakeChannel {
    seq: u64,
    subscribers: Vec<mpsc::UnboundedSender<String>>,
}

/// A command dispatched to an agent: who asked, its id, and how many results
/// to send back.
struct FakeTask {
    requester: mpsc::UnboundedSender<String>,
    id: Value,
    copies: usize,
}

#[derive(Default)]
struct Fake {
    channels: HashMap<String, FakeChannel>,
    agents: Vec<mpsc::UnboundedSender<String>>,
    tasks: HashMap<String, FakeTask>,
    next_task: u64,
}

type FakeState = Arc<Mutex<Fake>>;

/// A WebSocket server speaking just enough of the protocol for `tether
/// bench`, except that on every channel it skips seq 3 (acks and events jump
/// from 2 to 4: one lost) and sends seq 5 twice (its event to every
/// subscriber, and its ack: one duplicate each), and of each connection's
/// commands it never dispatches the third (lost) and answers the fifth twice
/// (a duplicate). Returns its URL.
async fn fake_gateway() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = FakeState::default();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(fake_connection(tcp, state.clone()));
        }
    });
    format!("ws://{addr}/ws")
}

async fn fake_connection(tcp: TcpStream, state: FakeState) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let welcome = json!({"type": "welcome", "data": {"session": "fake", "node": "fake", "protocol": 1,
        "heartbeat_interval_ms": 30000, "heartbeat_timeout_ms": 10000, "max_message_bytes": 65536,
        "server_time": 0}});
    let _ = tx.send(welcome.to_string());
    let mut commands = 0;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let channel = v["channel"].as_str().unwrap_or_default().to_owned();
        let mut guard = state.lock().expect("state");
        let st = &mut *guard;
        let ch = st.channels.entry(channel.clone()).or_default();
        match v["type"].as_str() {
            Some("register") => {
                st.agents.push(tx.clone());
                let ack = json!({"type": "ack", "id": v["id"], "data": {"name": v["data"]["name"], "replica": "fake"}});
                let _ = tx.send(ack.to_string());
            }
            Some("task_result") => {
                if let Some(task) = v["id"].as_str().and_then(|id| st.tasks.remove(id)) {
                    let result = json!({"type": "result", "id": task.id, "data": v["data"]}).to_string();
                    for _ in 0..task.copies {
                        let _ = task.requester.send(result.clone());
                    }
                }
            }
            Some(kind) if kind.starts_with("bench_echo") => {
                commands += 1;
                if commands == 3 {
                    continue; // never dispatched: lost
                }
                st.next_task += 1;
                let task_id = format!("t-{}", st.next_task);
                let copies = if commands == 5 { 2 } else { 1 }; // answered twice: a duplicate
                let task = json!({"type": "task", "id": task_id, "data": {"command": kind, "payload": v["data"], "from": "fake"}});
                let Some(agent) = st.agents.get(st.next_task as usize % st.agents.len().max(1)) else {
                    continue; // no agent yet (the bench registers its agents first)
                };
                let _ = agent.send(task.to_string());
                st.tasks.insert(
                    task_id,
                    FakeTask {
                        requester: tx.clone(),
                        id: v["id"].clone(),
                        copies,
                    },
                );
            }
            Some("subscribe") => {
                ch.subscribers.push(tx.clone());
                let ack =
                    json!({"type": "ack", "id": v["id"], "data": {"channel": channel, "seq": ch.seq, "epoch": "e1"}});
                let _ = tx.send(ack.to_string());
            }
            Some("publish") => {
                ch.seq += 1;
                if ch.seq == 3 {
                    ch.seq += 1; // seq 3 is never sent: lost
                }
                let seq = ch.seq;
                let copies = if seq == 5 { 2 } else { 1 }; // seq 5 twice: a duplicate
                let event = json!({"type": "event", "channel": channel, "seq": seq, "epoch": "e1", "ts": 0,
                    "from": "fake", "data": v["data"]})
                .to_string();
                let ack =
                    json!({"type": "ack", "id": v["id"], "data": {"channel": channel, "seq": seq, "epoch": "e1"}})
                        .to_string();
                for _ in 0..copies {
                    for sub in &ch.subscribers {
                        let _ = sub.send(event.clone());
                    }
                    let _ = tx.send(ack.clone());
                }
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_loss_and_duplicates_are_detected() {
    let url = fake_gateway().await;

    let v = bench_json(&[
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "3",
        "--rate",
        "200",
        "--count",
        "20",
        "--duration",
        "10s",
    ])
    .await;
    // Publishes 1..=20 got seqs 1, 2, 4, …, 21: each subscriber missed seq 3
    // and got seq 5 twice.
    assert_eq!(count(&v, "acked"), 20, "{v}");
    assert_eq!(count(&v, "lost"), 3, "one lost per subscriber: {v}");
    assert_eq!(count(&v, "duplicates"), 3, "one duplicate per subscriber: {v}");
    assert_eq!(count(&v, "duplicate_acks"), 1, "the repeated ack: {v}");
    assert_eq!(count(&v, "deliveries"), 3 * 21, "20 events and a repeat each: {v}");
    assert_eq!(count(&v, "expected_deliveries"), 3 * 21, "{v}");
    assert_latency_fields(&v);

    let v = bench_json(&[
        "publish",
        "--url",
        &url,
        "--publishers",
        "2",
        "--count",
        "20",
        "--duration",
        "10s",
    ])
    .await;
    // Each publisher's channel skips seq 3 and acks seq 5 twice.
    assert_eq!(count(&v, "acked"), 20, "{v}");
    assert_eq!(count(&v, "lost"), 2, "a gap in each channel's acks: {v}");
    assert_eq!(count(&v, "duplicates"), 2, "a repeated ack on each channel: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_lost_and_duplicated_results_are_detected() {
    let url = fake_gateway().await;
    // Each client sends 10 commands: the fake never dispatches its third
    // (lost, after the 10 s wait for the last results) and answers its fifth
    // twice.
    let v = bench_json(&[
        "rpc",
        "--url",
        &url,
        "--agents",
        "2",
        "--clients",
        "2",
        "--count",
        "20",
        "--duration",
        "200ms",
    ])
    .await;
    assert_eq!(count(&v, "sent"), 20, "{v}");
    assert_eq!(count(&v, "results"), 18, "{v}");
    assert_eq!(count(&v, "lost"), 2, "one lost per client: {v}");
    assert_eq!(count(&v, "duplicates"), 2, "one repeated result per client: {v}");
    assert_eq!(count(&v, "tasks"), 18, "{v}");
    assert_eq!(count(&v, "failed"), 0, "{v}");
}

#[tokio::test]
async fn usage_errors_exit_2_and_runtime_failures_exit_1() {
    for args in [
        &["fanout", "--subscribers", "0"][..],
        &["publish", "--publishers", "0"],
        &["fanout", "--rate", "-5"],
        &["publish", "--window", "0"],
        &["publish", "--duration", "5 parsecs"],
        &["publish", "--url", "ftp://127.0.0.1/"],
        &["publish", "--frobnicate"],
        &["fanout", "--subscribers", "100000000"],
        &["connections", "--connections", "0"],
        &["connections", "--connections", "100000000"],
        &["connections", "--source-addrs", "0"],
        &["connections", "--source-addrs", "300"],
        &["connections", "--url", "ws://192.0.2.1:9/ws", "--source-addrs", "2"],
        &["connections", "--window", "4"],
        &["rpc", "--agents", "0"],
        &["rpc", "--clients", "0"],
        &["rpc", "--concurrency", "0"],
        &["rpc", "--hold", "1s"],
    ] {
        let (code, stdout, stderr) = bench(args).await;
        assert_eq!(code, Some(2), "exit 2 for {args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line for {args:?}: {stderr:?}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    // Nothing listens on port 1.
    let (code, stdout, stderr) = bench(&["publish", "--url", "ws://127.0.0.1:1/ws", "--duration", "1s"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot connect to ws://127.0.0.1:1/ws"), "{stderr}");
}

// A fake broadcast server (the Node `ws` peer of bench/compare) that plants a
// lost and a duplicated message.

/// A connected client of the fake broadcast server: its number and its outbox.
type BroadcastClient = (usize, mpsc::UnboundedSender<String>);

/// Every text frame a client sends goes to every other client, except that
/// the message with `bench_seq` 3 is dropped and the one with 5 is sent twice.
/// Returns its URL.
async fn fake_broadcast() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let clients: Arc<Mutex<Vec<BroadcastClient>>> = Arc::default();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            next += 1;
            let (me, clients) = (next, clients.clone());
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                clients.lock().expect("lock").push((me, tx));
                tokio::spawn(async move {
                    while let Some(text) = rx.recv().await {
                        if sink.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                });
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let copies = if text.contains(r#""bench_seq":3,"#) {
                        0
                    } else if text.contains(r#""bench_seq":5,"#) {
                        2
                    } else {
                        1
                    };
                    for (who, tx) in clients.lock().expect("lock").iter() {
                        for _ in 0..copies {
                            if *who != me {
                                let _ = tx.send(text.to_string());
                            }
                        }
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_loss_and_duplicates_are_detected_on_a_broadcast_peer() {
    let url = fake_broadcast().await;
    let v = bench_json(&[
        "fanout",
        "--protocol",
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "3",
        "--rate",
        "200",
        "--count",
        "20",
        "--duration",
        "10s",
    ])
    .await;
    assert_eq!(v["protocol"], "broadcast", "{v}");
    assert_eq!(count(&v, "sent"), 20, "{v}");
    assert_eq!(count(&v, "lost"), 3, "seq 3 missed by each subscriber: {v}");
    assert_eq!(count(&v, "duplicates"), 3, "seq 5 twice at each subscriber: {v}");
    assert_eq!(count(&v, "deliveries"), 3 * 20, "19 messages and a repeat each: {v}");
    assert_eq!(count(&v, "expected_deliveries"), 3 * 20, "{v}");
    assert_latency_fields(&v);

    // The paced mode (no --rate) and idle connections against the same peer.
    let v = bench_json(&[
        "fanout",
        "--protocol",
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "2",
        "--count",
        "10",
        "--window",
        "4",
    ])
    .await;
    assert_eq!(
        (count(&v, "sent"), count(&v, "lost"), count(&v, "duplicates")),
        (10, 2, 2),
        "{v}"
    );
    let v = bench_json(&[
        "connections",
        "--protocol",
        "broadcast",
        "--url",
        &url,
        "--connections",
        "5",
        "--hold",
        "100ms",
    ])
    .await;
    assert_eq!((count(&v, "opened"), count(&v, "failed")), (5, 0), "{v}");
}
