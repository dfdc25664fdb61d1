//! Several `tether serve` processes on one real `redis-server` (started here on
//! a free port with its own data dir): cross-node delivery and ordering under
//! concurrent publishers, deduplication across nodes, recovery on another node
//! after `kill -9`, and a Redis outage (readyz 503, fast retryable errors, no
//! acknowledged event lost, service resumes without restarts).
//!
//! Needs Debian's `redis-server` on PATH (`scripts/test` installs it).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{connect, http, next_json, send, Gateway, Ws};

const WAIT: Duration = Duration::from_secs(20);

/// A `redis-server` with append-only persistence (`appendfsync always`).
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut r = Redis {
            child: None,
            port,
            dir: dir.to_owned(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install Debian's redis-server (scripts/test does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.pong() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pong(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Stops the server (SIGTERM, waiting for it to exit).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Closes every client connection Redis has (as a Redis restart would),
    /// while Redis itself stays up.
    fn kill_clients(&self) {
        use std::io::{Read, Write};
        for kind in ["pubsub", "normal"] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.write_all(format!("CLIENT KILL TYPE {kind} SKIPME yes\r\n").as_bytes());
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A node on `redis` with its own (unused) data dir.
fn node(redis: &Redis, dir: &Path, name: &str) -> Gateway {
    node_with(redis, dir, name, &[])
}

fn node_with(redis: &Redis, dir: &Path, name: &str, extra: &[&str]) -> Gateway {
    let data = dir.join(name);
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--node-id", name];
    args.extend_from_slice(extra);
    Gateway::spawn(&data, &args)
}

/// Registers an agent replica for `process_receipt` on `url`.
async fn agent(url: &str, name: &str) -> Ws {
    let (mut ws, _) = connect(url).await;
    let ack = request(
        &mut ws,
        json!({"type": "register", "id": "reg", "data": {"name": name, "commands": ["process_receipt"], "concurrency": 1}}),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    ws
}

/// The next `task` frame an agent gets.
async fn task(ws: &mut Ws) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no task arrived");
        let v = next_json(ws).await.expect("task before close");
        if v["type"] == "task" {
            return v;
        }
    }
}

async fn request(ws: &mut Ws, frame: Value) -> Value {
    let id = frame["id"].clone();
    assert!(send(ws, &frame).await, "send");
    let deadline = Instant::now() + WAIT;
    loop {
        // Unrelated frames (events) must not keep this waiting for ever.
        assert!(Instant::now() < deadline, "no reply to {id} within {WAIT:?}");
        let v = next_json(ws).await.expect("reply before close");
        if v["id"] == id {
            return v;
        }
    }
}

async fn subscribe(ws: &mut Ws, channel: &str, since: Option<Value>) -> Value {
    let mut frame = json!({"type": "subscribe", "id": format!("s-{channel}"), "channel": channel});
    if let Some(s) = since {
        frame["since"] = s;
    }
    request(ws, frame).await
}

/// Reads events of `channel` until `n` arrived; their seqs in arrival order.
async fn events(ws: &mut Ws, channel: &str, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seqs.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} events arrived", seqs.len());
        let v = next_json(ws).await.expect("event before close");
        if v["type"] == "event" && v["channel"] == channel {
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_event_in_seq_order_under_four_publishers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let nodes: Vec<Gateway> = ["n1", "n2", "n3"].iter().map(|n| node(&redis, dir.path(), n)).collect();

    let mut subscribers = Vec::new();
    for g in &nodes {
        let (mut ws, welcome) = connect(&g.ws()).await;
        assert_eq!(welcome["data"]["node"], g_name(&nodes, g));
        let ack = subscribe(&mut ws, "orders", None).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        subscribers.push(ws);
    }

    const PER: usize = 150;
    let mut publishers = Vec::new();
    for (p, target) in [0usize, 1, 2, 0].into_iter().enumerate() {
        let url = format!("{}?client_id=pub{p}", nodes[target].ws());
        publishers.push(tokio::spawn(async move {
            let (mut ws, _) = connect(&url).await;
            let mut seqs = Vec::new();
            for i in 0..PER {
                let ack = request(
                    &mut ws,
                    json!({"type": "publish", "id": format!("p{p}-{i}"), "channel": "orders", "data": {"p": p, "i": i}}),
                )
                .await;
                assert_eq!(ack["type"], "ack", "{ack}");
                seqs.push(ack["data"]["seq"].as_u64().expect("seq"));
            }
            seqs
        }));
    }
    let mut acked = BTreeSet::new();
    for p in publishers {
        for seq in p.await.expect("publisher") {
            assert!(acked.insert(seq), "seq {seq} acknowledged twice");
        }
    }
    let total = 4 * PER;
    assert_eq!(acked, (1..=total as u64).collect(), "acks cover 1..={total} once each");

    for (i, ws) in subscribers.iter_mut().enumerate() {
        let seqs = events(ws, "orders", total).await;
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "subscriber on node {i}: contiguous, in order, once"
        );
    }
}

fn g_name<'a>(nodes: &'a [Gateway], g: &Gateway) -> &'a str {
    let i = nodes.iter().position(|n| n.addr == g.addr).expect("node");
    ["n1", "n2", "n3"][i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_to_another_node_is_deduplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");
    let (mut on_a, _) = connect(&format!("{}?client_id=alice", a.ws())).await;
    let (mut on_b, _) = connect(&format!("{}?client_id=alice", b.ws())).await;
    let frame = json!({"type": "publish", "id": "once", "channel": "news", "data": 1});
    let first = request(&mut on_a, frame.clone()).await;
    let again = request(&mut on_b, frame).await;
    assert_eq!(first["data"]["seq"], 1, "{first}");
    assert_eq!(again["data"]["seq"], 1, "{again}");
    assert_eq!(again["data"]["duplicate"], true, "{again}");
    let (status, body) = http("GET", &b.http("/api/v1/channels/news/history"), "").await;
    assert_eq!(status, 200);
    let history: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(history["events"].as_array().map(Vec::len), Some(1), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_node_died_recovers_exactly_the_missed_events_on_another_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");
    let c = node(&redis, dir.path(), "c");

    let (mut sub, _) = connect(&b.ws()).await;
    let ack = subscribe(&mut sub, "feed", None).await;
    let epoch = ack["data"]["epoch"].clone();
    let (mut publisher, _) = connect(&format!("{}?client_id=pub", a.ws())).await;
    for i in 0..5 {
        let r = request(
            &mut publisher,
            json!({"type": "publish", "id": format!("a{i}"), "channel": "feed", "data": i}),
        )
        .await;
        assert_eq!(r["type"], "ack");
    }
    assert_eq!(events(&mut sub, "feed", 5).await, vec![1, 2, 3, 4, 5]);

    b.kill9();
    drop(sub);
    for i in 5..12 {
        let r = request(
            &mut publisher,
            json!({"type": "publish", "id": format!("a{i}"), "channel": "feed", "data": i}),
        )
        .await;
        assert_eq!(r["type"], "ack");
    }

    let (mut again, _) = connect(&c.ws()).await;
    let ack = subscribe(&mut again, "feed", Some(json!({"seq": 5, "epoch": epoch}))).await;
    assert_eq!(ack["data"]["recovered"], true, "{ack}");
    assert_eq!(events(&mut again, "feed", 7).await, (6..=12).collect::<Vec<u64>>());
    // And live from here, once.
    let r = request(
        &mut publisher,
        json!({"type": "publish", "id": "a12", "channel": "feed", "data": 12}),
    )
    .await;
    assert_eq!(r["data"]["seq"], 13);
    assert_eq!(events(&mut again, "feed", 1).await, vec![13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_fast_loses_nothing_acknowledged_and_heals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");

    let (mut sub, _) = connect(&b.ws()).await;
    subscribe(&mut sub, "ledger", None).await;
    let (mut publisher, _) = connect(&format!("{}?client_id=pub", a.ws())).await;
    let mut acked: HashMap<String, u64> = HashMap::new();
    let publish = |i: usize| json!({"type": "publish", "id": format!("e{i}"), "channel": "ledger", "data": i});
    for i in 0..10 {
        let r = request(&mut publisher, publish(i)).await;
        acked.insert(format!("e{i}"), r["data"]["seq"].as_u64().expect("seq"));
    }
    assert_eq!(events(&mut sub, "ledger", 10).await, (1..=10).collect::<Vec<u64>>());

    redis.stop();
    let down = Instant::now();
    // Fast, retryable failures; the WebSocket connections stay up.
    let mut failures = 0;
    for i in 10..15 {
        // A hang (waiting for Redis) instead of an answer fails in `request`.
        let r = request(&mut publisher, publish(i)).await;
        if r["type"] == "ack" {
            acked.insert(format!("e{i}"), r["data"]["seq"].as_u64().expect("seq"));
        } else {
            assert_eq!(r["type"], "error", "{r}");
            assert_eq!(r["error"]["retryable"], true, "{r}");
            failures += 1;
        }
    }
    assert!(failures > 0, "publishes fail while redis is down");
    for g in [&a, &b] {
        let (status, _) = http("GET", &g.http("/readyz"), "").await;
        assert_eq!(status, 503, "readyz during the outage");
    }
    let pong = request(&mut sub, json!({"type": "ping", "id": "still-there"})).await;
    assert_eq!(pong["type"], "pong", "existing connections stay up");

    // The scenario: Redis away for 5 s in all.
    let wait = Duration::from_secs(5).saturating_sub(down.elapsed());
    tokio::time::sleep(wait).await;
    redis.spawn();

    // Both nodes heal by themselves.
    let deadline = Instant::now() + WAIT;
    for g in [&a, &b] {
        loop {
            let (status, _) = http("GET", &g.http("/readyz"), "").await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "readyz back to 200 after redis returned");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut last = 0;
    for i in 15..20 {
        let r = loop {
            let r = request(&mut publisher, publish(i)).await;
            if r["type"] == "ack" || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(r["type"], "ack", "{r}");
        last = r["data"]["seq"].as_u64().expect("seq");
        acked.insert(format!("e{i}"), last);
    }

    // Every acknowledged event is in the history, seqs contiguous.
    let (status, body) = http("GET", &a.http("/api/v1/channels/ledger/history?limit=1000"), "").await;
    assert_eq!(status, 200, "{body}");
    let history: Value = serde_json::from_str(&body).expect("json");
    let stored: Vec<u64> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(stored, (1..=last).collect::<Vec<u64>>(), "contiguous history");
    for (id, seq) in &acked {
        let e = &history["events"][(*seq - 1) as usize];
        assert_eq!(
            e["data"],
            id[1..].parse::<u64>().expect("n"),
            "acked {id} is stored as seq {seq}"
        );
    }
    // The subscriber on the other node saw the rest, in order, once.
    let rest = events(&mut sub, "ledger", (last - 10) as usize).await;
    assert_eq!(rest, (11..=last).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_status_and_system_metrics_show_the_whole_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");

    let (mut agent, _) = connect(&b.ws()).await;
    let ack = request(
        &mut agent,
        json!({"type": "register", "id": "r1", "data": {"name": "receipt-processor", "commands": ["process_receipt"], "concurrency": 2}}),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (mut dashboard, _) = connect(&a.ws()).await;

    // Node a learns node b's agents through presence (refreshed every second).
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    let entry = loop {
        n += 1;
        let status = request(
            &mut dashboard,
            json!({"type": "request_agent_status", "id": format!("q{n}")}),
        )
        .await;
        let found = status["data"]
            .as_array()
            .expect("array")
            .iter()
            .find(|e| e["name"] == "receipt-processor")
            .cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "node a never showed node b's agent: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(entry["replicas"], 1, "{entry}");
    assert_eq!(entry["commands"], json!(["process_receipt"]), "{entry}");

    let metrics = loop {
        n += 1;
        let m = request(
            &mut dashboard,
            json!({"type": "request_system_metrics", "id": format!("m{n}")}),
        )
        .await;
        if m["data"]["cluster"]["connections"].as_u64() >= Some(2) || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(metrics["data"]["node"], "a", "{metrics}");
    assert_eq!(metrics["data"]["agents"], 0, "this node has no agent: {metrics}");
    let cluster = &metrics["data"]["cluster"];
    assert_eq!(cluster["nodes"], 2, "{metrics}");
    assert_eq!(cluster["agents"], 1, "{metrics}");
    assert!(cluster["connections"].as_u64() >= Some(2), "{metrics}");

    // When node b dies, its agents leave the cluster view (presence expires).
    b.kill9();
    let deadline = Instant::now() + WAIT;
    loop {
        n += 1;
        let status = request(
            &mut dashboard,
            json!({"type": "request_agent_status", "id": format!("q{n}")}),
        )
        .await;
        if status["data"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["name"] != "receipt-processor"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b's agent stayed after it died: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reaches_an_agent_on_another_node_and_its_result_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");
    let c = node(&redis, dir.path(), "c");
    let mut worker = agent(&b.ws(), "receipt-processor").await;

    let (mut client, _) = connect(&format!("{}?client_id=shop", a.ws())).await;
    let cmd = json!({"type": "process_receipt", "id": "r-1", "data": {"imageUrl": "1.jpg"}});
    assert!(send(&mut client, &cmd).await);
    let t = task(&mut worker).await;
    assert_eq!(t["data"]["payload"]["imageUrl"], "1.jpg", "{t}");
    assert_eq!(t["data"]["from"], "shop", "{t}");
    let done = json!({"type": "task_result", "id": t["id"], "data": {"total": 42}});
    assert!(send(&mut worker, &done).await);
    let result = loop {
        let v = next_json(&mut client).await.expect("result");
        if v["id"] == "r-1" {
            break v;
        }
    };
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["data"]["total"], 42, "{result}");

    // The same id sent to a third node: the stored outcome, not a second task.
    let (mut again, _) = connect(&format!("{}?client_id=shop", c.ws())).await;
    let dup = request(&mut again, cmd).await;
    assert_eq!(dup["type"], "result", "{dup}");
    assert_eq!(dup["duplicate"], true, "{dup}");
    assert_eq!(dup["data"]["total"], 42, "{dup}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_node_died_goes_to_a_replica_on_another_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");
    let c = node(&redis, dir.path(), "c");
    let mut first = agent(&b.ws(), "receipt-processor").await;

    let (mut client, _) = connect(&format!("{}?client_id=shop", a.ws())).await;
    assert!(
        send(
            &mut client,
            &json!({"type": "process_receipt", "id": "r-9", "data": {"n": 9}})
        )
        .await
    );
    let t1 = task(&mut first).await;

    // Node b dies mid-task (its agent with it); a replica appears on node c.
    b.kill9();
    drop(first);
    let mut second = agent(&c.ws(), "receipt-processor").await;
    let t2 = task(&mut second).await;
    assert_eq!(t2["id"], t1["id"], "redelivered with the same task id");
    assert_eq!(t2["data"]["payload"]["n"], 9);
    assert!(
        send(
            &mut second,
            &json!({"type": "task_result", "id": t2["id"], "data": {"ok": true}})
        )
        .await
    );
    let result = loop {
        let v = next_json(&mut client).await.expect("result");
        if v["id"] == "r-9" {
            break v;
        }
    };
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["data"]["ok"], true, "{result}");
    assert!(result.get("duplicate").is_none(), "answered once: {result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_no_node_can_handle_ends_with_no_handler_after_command_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node_with(&redis, dir.path(), "a", &["--command-ttl", "1s"]);
    let _b = node_with(&redis, dir.path(), "b", &["--command-ttl", "1s"]);
    let (mut client, _) = connect(&format!("{}?client_id=shop", a.ws())).await;
    let reply = request(
        &mut client,
        json!({"type": "process_receipt", "id": "lonely", "data": {}}),
    )
    .await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["error"]["code"], "no_handler", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_redis_connections_heal_without_an_error_or_a_lost_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(dir.path());
    let a = node(&redis, dir.path(), "a");
    let b = node(&redis, dir.path(), "b");
    let (mut sub, _) = connect(&b.ws()).await;
    subscribe(&mut sub, "wire", None).await;
    let (mut publisher, _) = connect(&format!("{}?client_id=pub", a.ws())).await;
    let r = request(
        &mut publisher,
        json!({"type": "publish", "id": "w1", "channel": "wire", "data": 1}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    assert_eq!(events(&mut sub, "wire", 1).await, vec![1]);

    redis.kill_clients();
    // The next publish goes through on a fresh connection: no error.
    let r = request(
        &mut publisher,
        json!({"type": "publish", "id": "w2", "channel": "wire", "data": 2}),
    )
    .await;
    assert_eq!(r["type"], "ack", "{r}");
    // And node b's subscriber gets it, though node b's Pub/Sub was cut.
    assert_eq!(events(&mut sub, "wire", 1).await, vec![2]);
    // A resubscribe on node b with since = the latest is recovered.
    let (mut again, _) = connect(&b.ws()).await;
    let ack = subscribe(&mut again, "wire", Some(json!({"seq": 2}))).await;
    assert_eq!(ack["data"]["recovered"], true, "{ack}");
    assert_eq!(ack["data"]["seq"], 2, "{ack}");
}
