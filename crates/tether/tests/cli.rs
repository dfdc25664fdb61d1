//! The operator interface of the real binary: flags, environment, config file,
//! exit codes, the `listening on` line, SIGTERM, and the client subcommands.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{connect, next_json, send, Gateway, BIN};

fn serve_fails(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("serve").args(args).output().expect("run tether");
    assert_eq!(out.status.code(), Some(2), "exit code 2 for {args:?}");
    let stderr = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(
        stderr.lines().count(),
        1,
        "exactly one line on stderr for {args:?}: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn a_bad_flag_or_value_is_one_line_and_exit_2() {
    assert_eq!(
        serve_fails(&["--frobnicate"]).trim(),
        "error: unknown flag --frobnicate"
    );
    assert!(serve_fails(&["--rate-limit", "lots"]).contains("--rate-limit"));
    assert!(serve_fails(&["--heartbeat-interval", "5 parsecs"]).contains("--heartbeat-interval"));
    assert!(serve_fails(&["--history-size", "0"]).contains("history-size"));
    assert!(serve_fails(&["--log-format", "xml"]).contains("--log-format"));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "frobnicate = 1\n").expect("write");
    assert!(serve_fails(&["--config", bad.to_str().expect("utf8")]).contains("frobnicate"));
}

#[tokio::test]
async fn flags_win_over_environment_over_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tether.toml");
    std::fs::write(
        &file,
        "node_id = \"from-file\"\nheartbeat_interval = \"7s\"\nmax_message_bytes = 2048\n\n[[channels]]\npattern = \"orders:*\"\nhistory_size = 2\n",
    )
    .expect("write");
    let gw = Gateway::spawn_env(
        &dir.path().join("data"),
        &["--config", file.to_str().expect("utf8"), "--max-message-bytes", "4096"],
        &[
            ("TETHER_HEARTBEAT_INTERVAL", "8s"),
            ("TETHER_MAX_MESSAGE_BYTES", "3000"),
        ],
    );
    let (mut ws, welcome) = connect(&gw.ws()).await;
    assert_eq!(welcome["data"]["node"], "from-file", "file");
    assert_eq!(welcome["data"]["heartbeat_interval_ms"], 8000, "environment over file");
    assert_eq!(welcome["data"]["max_message_bytes"], 4096, "flag over environment");
    // The per-pattern retention from the file: orders:* keeps 2 events.
    for i in 0..4 {
        send(
            &mut ws,
            &json!({"type": "publish", "id": format!("p{i}"), "channel": "orders:eu", "data": i}),
        )
        .await;
        assert_eq!(next_json(&mut ws).await.expect("ack")["type"], "ack");
    }
    send(
        &mut ws,
        &json!({"type": "subscribe", "id": "s", "channel": "orders:eu", "since": {"seq": 1}}),
    )
    .await;
    let ack = next_json(&mut ws).await.expect("ack");
    assert_eq!(
        ack["data"]["recovered"], false,
        "seq 2 fell out of a 2-event history: {ack}"
    );
}

#[test]
fn sigterm_exits_0_within_10_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &[]);
    let status = gw.term(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_and_agent_subcommands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &[]);
    let http_url = format!("http://{}", gw.addr);
    let mut sub = std::process::Command::new(BIN)
        .args(["sub", "--url", &http_url, "news"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sub");
    // Wait until the subscription exists (the publish would otherwise be live-missed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = Command::new(BIN)
        .args(["pub", "--url", &gw.ws(), "news", "{\"headline\":\"hi\"}"])
        .output()
        .expect("pub");
    assert_eq!(out.status.code(), Some(0));
    let ack: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["data"]["seq"], 1);
    let bad = Command::new(BIN)
        .args(["pub", "--url", &gw.ws(), "bad channel", "{}"])
        .output()
        .expect("pub");
    assert_ne!(bad.status.code(), Some(0), "a refused publish exits non-zero");

    let stdout = sub.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read");
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .expect("sub prints in time")
        .expect("join");
    let event: Value = serde_json::from_str(&line).expect("event JSON line");
    assert_eq!(event["type"], "event");
    assert_eq!(event["data"]["headline"], "hi");
    let _ = sub.kill();
    let _ = sub.wait();

    let mut agent = std::process::Command::new(BIN)
        .args(["agent", "--url", &gw.ws(), "--name", "echoer", "--command", "echo_it"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    let (mut ws, _) = connect(&gw.ws()).await;
    send(&mut ws, &json!({"type": "echo_it", "id": "e1", "data": {"x": 1}})).await;
    let result = loop {
        let v = next_json(&mut ws).await.expect("result");
        if v["id"] == "e1" {
            break v;
        }
    };
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["data"]["echo"], json!({"x": 1}));
    assert!(result["data"]["processed_at"].as_u64().is_some());
    let _ = agent.kill();
    let _ = agent.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_tether_token_open_an_authenticated_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &["--jwt-secret", "cli-secret"]);
    let token = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["token", "--secret", "cli-secret"])
            .args(args)
            .output()
            .expect("token");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    };
    let writer = token(&["--sub", "alice", "--publish", "news", "--ttl", "10m"]);
    let reader = token(&["--sub", "bob", "--channels", ""]);
    let publish = |t: &str, channel: &str| {
        Command::new(BIN)
            .args(["pub", "--url", &gw.ws(), "--token", t, channel, "{}"])
            .output()
            .expect("pub")
    };
    assert_eq!(publish(&writer, "news").status.code(), Some(0), "allowed by --publish");
    let denied = publish(&writer, "sports");
    assert_ne!(denied.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("forbidden"));
    let no_token = Command::new(BIN)
        .args(["pub", "--url", &gw.ws(), "news", "{}"])
        .output()
        .expect("pub");
    assert_ne!(no_token.status.code(), Some(0), "no token, no publish");
    // `--channels ''` is the empty list: bob may read only his own inbox.
    let (mut ws, _) = connect(&format!("{}?access_token={reader}", gw.ws())).await;
    send(&mut ws, &json!({"type": "subscribe", "id": "1", "channel": "news"})).await;
    assert_eq!(next_json(&mut ws).await.expect("reply")["error"]["code"], "forbidden");
    send(
        &mut ws,
        &json!({"type": "subscribe", "id": "2", "channel": "inbox:bob"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await.expect("reply")["type"], "ack");
}

#[test]
fn tls_flags_print_an_https_line_and_bad_files_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--tls-cert",
            cert.to_str().expect("utf8"),
            "--tls-key",
            key.to_str().expect("utf8"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on https://127.0.0.1:"), "{line}");
    // The key given as the certificate: refused at start-up.
    assert!(serve_fails(&[
        "--tls-cert",
        key.to_str().expect("utf8"),
        "--tls-key",
        key.to_str().expect("utf8")
    ])
    .contains("--tls-cert"));
    assert!(serve_fails(&["--tls-cert", cert.to_str().expect("utf8")]).contains("together"));
    assert!(serve_fails(&["--jwt-public-key", "/nonexistent.pem"]).contains("--jwt-public-key"));
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let gw = Gateway::spawn_with(
        &dir.path().join("data"),
        &["--jwt-secret", "log-secret"],
        &[("RUST_LOG", "trace")],
        Stdio::from(log),
    );
    let out = Command::new(BIN)
        .args(["token", "--secret", "log-secret", "--sub", "carol"])
        .output()
        .expect("token");
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let (mut ws, _) = connect(&format!("{}?access_token={token}", gw.ws())).await;
    send(&mut ws, &json!({"type": "auth", "id": "a", "data": {"token": token}})).await;
    assert_eq!(next_json(&mut ws).await.expect("ack")["type"], "ack");
    // A bad token is logged as refused, without its text.
    let bad = format!("{token}tampered");
    let url = format!("{}?access_token={bad}", gw.ws());
    let _ = tokio_tungstenite::connect_async(url).await;
    let (status, _) = support::http("GET", &gw.http(&format!("/api/v1/agents?access_token={token}")), "").await;
    assert_eq!(status, 200);
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = std::fs::read_to_string(&log_path).expect("logs");
    assert!(logs.contains("connection open"), "trace logs were written");
    let signature = token.rsplit('.').next().expect("signature");
    assert!(!logs.contains(signature), "a token's signature appears in the logs");
    assert!(!logs.contains("log-secret"), "the secret appears in the logs");
    assert!(!logs.contains("access_token"), "a query string appears in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_sub_survives_a_gateway_restart_and_prints_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &[]);
    let addr = gw.addr.clone();
    let mut sub = Command::new(BIN)
        .args(["sub", "--url", &gw.ws(), "feed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sub");
    let stdout = sub.stdout.take().expect("stdout");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let publish = |url: String, n: i32| async move {
        let out = Command::new(BIN)
            .args(["pub", "--url", &url, "feed", &n.to_string()])
            .output()
            .expect("pub");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(gw.ws(), 1).await;
    let first: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("in time")
            .expect("line"),
    )
    .expect("json");
    assert_eq!(first["seq"], 1);

    assert_eq!(gw.term(Duration::from_secs(10)).code(), Some(0));
    let gw = Gateway::spawn_at(&addr, dir.path(), &[], &[], Stdio::null());
    for n in 2..=3 {
        publish(gw.ws(), n).await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("in time")
            .expect("line");
        let v: Value = serde_json::from_str(&line).expect("json");
        seqs.push(v["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, [2, 3], "after the restart: the rest, once each");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), lines.recv())
            .await
            .is_err(),
        "nothing printed twice"
    );
    let _ = sub.kill();
    let _ = sub.wait();
}
