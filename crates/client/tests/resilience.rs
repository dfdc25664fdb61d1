//! Tokens, the circuit breaker, and a client process killed with messages in
//! its offline queue.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tether_client::circuit::CircuitConfig;
use tether_client::state::State;
use tether_client::{Client, ClientConfig, SendOutcome};
use tether_gateway::auth::AuthSettings;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "client-secret";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn token(ttl: u64) -> String {
    let claims = json!({"sub": "svc", "exp": now() + ttl});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

async fn gateway(
    dir: &std::path::Path,
    listen: &str,
    auth: AuthSettings,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tether_gateway::GatewayError>>,
) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = tether_gateway::Config {
        data_dir: dir.to_owned(),
        auth,
        ..tether_gateway::Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let join = tokio::spawn(tether_gateway::run(listener, config, async move {
        let _ = stopped.await;
    }));
    (format!("ws://{addr}/ws"), stop, join)
}

fn fast(mut c: ClientConfig) -> ClientConfig {
    c.reconnect_interval = Duration::from_millis(50);
    c.max_reconnect_delay = Duration::from_millis(200);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_provider_renews_in_band_before_exp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, stop, _join) = gateway(dir.path(), "127.0.0.1:0", AuthSettings::Hs256 { secret: SECRET.into() }).await;
    let mut c = fast(ClientConfig::new(url.clone()));
    c.token_provider = Some(Arc::new(|| Some(token(4))));
    let client = Client::start(c).expect("start");
    client.wait_connected(WAIT).await.expect("connected");
    let mut transitions = client.transitions();
    // Well past the first token's exp: still the same connection.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let t = transitions.try_recv();
    assert!(
        matches!(t, Err(tokio::sync::broadcast::error::TryRecvError::Empty)),
        "no disconnect: the token was renewed in-band, got {t:?}"
    );
    assert_eq!(client.publish("kept", json!(1)).await.expect("publish")["seq"], 1);
    client.close().await;

    // A fixed token that expires, with no provider: closed with 4001, no reconnect.
    let mut fixed = fast(ClientConfig::new(url));
    fixed.token = Some(token(1));
    let client = Client::start(fixed).expect("start");
    client.wait_connected(WAIT).await.expect("connected");
    let closed = tokio::time::timeout(WAIT, async {
        let mut rx = client.transitions();
        loop {
            let t = rx.recv().await.expect("transition");
            if let State::Closed { .. } = t.new {
                return t;
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(closed.code, Some(4001));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_at_the_upgrade_closes_the_client_without_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, stop, _join) = gateway(dir.path(), "127.0.0.1:0", AuthSettings::Hs256 { secret: SECRET.into() }).await;
    let mut c = fast(ClientConfig::new(url));
    c.token = Some("not-a-jwt".into());
    let client = Client::start(c).expect("start");
    let mut rx = client.transitions();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let t = rx.recv().await.expect("transition");
            if let State::Closed { .. } = t.new {
                return t;
            }
        }
    })
    .await
    .expect("closed in time, not retrying with backoff");
    assert_eq!(closed.code, Some(4001), "{closed:?}");
    assert!(
        client
            .metrics_text()
            .contains("\ntether_client_connect_attempts_total 1\n"),
        "one connect attempt only:\n{}",
        client.metrics_text()
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_n_failed_connects_and_half_opens_after_the_cooldown() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe); // nothing listens there
    let mut c = fast(ClientConfig::new(format!("ws://{addr}/ws")));
    c.circuit = CircuitConfig::try_new(3, Duration::from_millis(400)).expect("circuit");
    let client = Client::start(c).expect("start");
    let mut rx = client.transitions();
    let mut failures_before_open = 0;
    let opened = tokio::time::timeout(WAIT, async {
        loop {
            let t = rx.recv().await.expect("transition");
            if matches!(t.old, State::Connecting { .. }) {
                failures_before_open += 1;
            }
            if let State::CircuitOpen { until } = t.new {
                return until;
            }
        }
    })
    .await
    .expect("the breaker opens");
    assert_eq!(failures_before_open, 3, "after exactly N failed connects");
    let probe_at = tokio::time::timeout(WAIT, async {
        loop {
            let t = rx.recv().await.expect("transition");
            if matches!(t.old, State::CircuitOpen { .. }) {
                assert!(matches!(t.new, State::Connecting { .. }), "the half-open probe: {t:?}");
                return std::time::Instant::now();
            }
        }
    })
    .await
    .expect("half-opens");
    assert!(probe_at >= opened, "not before the cooldown");
    // The probe hits the same dead port, so the breaker may already have
    // re-opened: at least one open is counted.
    let opens = client
        .metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("tether_client_circuit_opens_total ")
                .map(|v| v.trim().parse::<u64>())
        })
        .expect("the metric is exported")
        .expect("a number");
    assert!(opens >= 1, "opens counted: {opens}");
    client.close().await;
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child half of the next test: queue messages, report, wait to be killed.
async fn child_main(queue: &str, url: &str) {
    let mut c = fast(ClientConfig::new(url));
    c.offline_path = Some(queue.into());
    let client = Client::start(c).expect("start");
    for i in 0..5 {
        let frame = json!({"type": "publish", "channel": "killed", "data": i});
        let outcome = client.send_with_offline_fallback(frame).await.expect("queued");
        assert_eq!(outcome, SendOutcome::Queued);
    }
    println!("queued");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_with_a_full_offline_queue_delivers_it_after_it_starts_again() {
    if let (Ok(queue), Ok(url)) = (std::env::var("TETHER_CHILD_QUEUE"), std::env::var("TETHER_CHILD_URL")) {
        return child_main(&queue, &url).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = dir.path().join("queue.redb");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe); // the gateway is down while the child queues
    let url = format!("ws://{addr}/ws");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_client_killed_with_a_full_offline_queue_delivers_it_after_it_starts_again",
            "--nocapture",
        ])
        .env("TETHER_CHILD_QUEUE", &queue)
        .env("TETHER_CHILD_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child");
    // Killed however this test ends (a failed assertion included), not left
    // to sleep out its 60 s.
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let queued = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("queued"))
    });
    assert!(
        tokio::time::timeout(WAIT, queued)
            .await
            .expect("child reports")
            .expect("join"),
        "the child queued"
    );
    child.0.kill().expect("kill -9");
    child.0.wait().expect("reap");

    let (_, stop, _join) = gateway(&dir.path().join("gw"), &addr.to_string(), AuthSettings::Off).await;
    let mut c = fast(ClientConfig::new(url));
    c.offline_path = Some(queue);
    let client = Client::start(c).expect("restart");
    let mut sub = client.subscribe_since("killed", 0, None).await.expect("subscribe");
    let mut got = Vec::new();
    while got.len() < 5 {
        match tokio::time::timeout(WAIT, sub.next()).await.expect("events") {
            Some(Ok(tether_client::SubscriptionItem::Event(e))) => got.push(e.data),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got,
        (0..5).map(|i| json!(i)).collect::<Vec<Value>>(),
        "each queued message once, in order"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while client.queue_len() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the queue empties");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.close().await;
    let _ = stop.send(());
}

#[tokio::test]
async fn a_full_offline_queue_rejects_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = fast(ClientConfig::new("ws://127.0.0.1:9/ws"));
    c.offline_path = Some(dir.path().join("q.redb"));
    c.offline.max_messages = 2;
    let client = Client::start(c).expect("start");
    for i in 0..2 {
        let frame = json!({"type": "publish", "channel": "x", "data": i});
        assert_eq!(
            client.send_with_offline_fallback(frame).await.expect("ok"),
            SendOutcome::Queued
        );
    }
    let third = client
        .send_with_offline_fallback(json!({"type": "publish", "channel": "x", "data": 2}))
        .await;
    match third.expect("an outcome, not an error") {
        SendOutcome::Rejected(reason) => assert!(reason.contains("full"), "{reason}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(client.queue_len(), 2, "nothing silently dropped or added");
    client.close().await;
}
