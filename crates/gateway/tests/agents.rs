//! Agents and commands on the real gateway.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use serde_json::{json, Value};

async fn agent(server: &TestServer, name: &str, command: &str, concurrency: u32) -> Client {
    let mut a = server.client().await;
    let ack = a
        .request(json!({"type": "register", "id": "r1",
            "data": {"name": name, "commands": [command], "concurrency": concurrency}}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["data"]["name"], name);
    assert_eq!(ack["data"]["replica"], a.session());
    a
}

async fn task(a: &mut Client) -> Value {
    a.recv_where(|v| v["type"] == "task").await
}

#[tokio::test]
async fn a_command_reaches_an_agent_and_the_result_comes_back_and_to_the_inbox() {
    let server = TestServer::start().await;
    let mut a = agent(&server, "receipt-processor", "process_receipt", 2).await;
    let mut c = server.client_as("carol").await;
    let inbox = c.subscribe("inbox:carol").await;
    assert_eq!(inbox["data"]["seq"], 0);
    c.send(json!({"type": "process_receipt", "id": "9", "data": {"imageUrl": "x.jpg"}}))
        .await;
    let t = task(&mut a).await;
    assert!(t["id"].as_str().is_some_and(|id| id.starts_with("t-")));
    assert_eq!(
        t["data"],
        json!({"command": "process_receipt", "payload": {"imageUrl": "x.jpg"}, "from": "carol"})
    );
    a.send(json!({"type": "task_result", "id": t["id"], "data": {"total": 12}}))
        .await;
    let r = c.reply_to("9").await;
    assert_eq!(r, json!({"type": "result", "id": "9", "data": {"total": 12}}));
    let e = c.event("inbox:carol").await;
    assert_eq!(e["data"], json!({"kind": "result", "id": "9", "data": {"total": 12}}));
    assert!(e.get("from").is_none(), "inbox events carry no from");

    // A duplicate is not dispatched again and gets the original result.
    let dup = c
        .request(json!({"type": "process_receipt", "id": "9", "data": {}}))
        .await;
    assert_eq!(dup["data"], json!({"total": 12}));
    assert_eq!(dup["duplicate"], true);
    assert!(a
        .maybe(Duration::from_millis(200), |v| v["type"] == "task")
        .await
        .is_none());

    // An agent's error comes back as a result with error.
    c.send(json!({"type": "process_receipt", "id": "10"})).await;
    let t = task(&mut a).await;
    a.send(json!({"type": "task_result", "id": t["id"], "error": {"code": "blurry", "message": "cannot read"}}))
        .await;
    let r = c.reply_to("10").await;
    assert_eq!(r["type"], "result");
    assert_eq!(r["error"]["code"], "blurry");

    let status = c.request(json!({"type": "request_agent_status", "id": "s"})).await;
    assert_eq!(status["type"], "agent_status");
    let entry = &status["data"][0];
    assert_eq!(entry["name"], "receipt-processor");
    assert_eq!(entry["status"], "idle");
    assert_eq!(entry["replicas"], 1);
    assert_eq!(entry["processed"], 1);
    assert_eq!(entry["failed"], 1);
    assert_eq!(entry["in_flight"], 0);
    assert_eq!(entry["commands"], json!(["process_receipt"]));
    server.stop().await;
}

#[tokio::test]
async fn an_agent_that_disconnects_mid_task_yields_one_result_via_another_replica() {
    let server = TestServer::start().await;
    let mut a1 = agent(&server, "worker", "crunch", 1).await;
    let mut a2 = agent(&server, "worker", "crunch", 1).await;
    let mut c = server.client_as("dave").await;
    c.subscribe("inbox:dave").await;
    c.send(json!({"type": "crunch", "id": "job", "data": 7})).await;
    // Exactly one replica gets the task first; it disconnects without answering.
    let (first, mut survivor) = match a1.maybe(Duration::from_secs(2), |v| v["type"] == "task").await {
        Some(t) => {
            drop(a1);
            (t, a2)
        }
        None => {
            let t = task(&mut a2).await;
            drop(a2);
            (t, a1)
        }
    };
    let again = task(&mut survivor).await;
    assert_eq!(again["id"], first["id"], "redelivered with the same task id");
    survivor
        .send(json!({"type": "task_result", "id": again["id"], "data": "done"}))
        .await;
    let r = c.reply_to("job").await;
    assert_eq!(r["data"], "done");
    assert_eq!(c.event("inbox:dave").await["data"]["data"], "done");
    assert!(
        c.maybe(Duration::from_millis(300), |v| v["id"] == "job" || v["type"] == "event")
            .await
            .is_none(),
        "exactly one result"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_agent_within_command_ttl_gives_no_handler_also_in_the_inbox() {
    let server = TestServer::start_with(|c| c.command_ttl = Duration::from_millis(300)).await;
    let mut c = server.client_as("erin").await;
    c.subscribe("inbox:erin").await;
    c.send(json!({"type": "resize", "id": "r"})).await;
    let e = c.reply_to("r").await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "no_handler");
    assert_eq!(e["error"]["retryable"], true);
    let inbox = c.event("inbox:erin").await;
    assert_eq!(inbox["data"]["kind"], "result");
    assert_eq!(inbox["data"]["id"], "r");
    assert_eq!(inbox["data"]["error"]["code"], "no_handler");
    server.stop().await;
}

#[tokio::test]
async fn a_task_without_result_within_task_timeout_gives_timeout() {
    let server = TestServer::start_with(|c| c.task_timeout = Duration::from_millis(300)).await;
    let mut a = agent(&server, "slowpoke", "wait", 1).await;
    let mut c = server.client().await;
    c.send(json!({"type": "wait", "id": "w"})).await;
    let t = task(&mut a).await;
    let e = c.reply_to("w").await;
    assert_eq!(e["error"]["code"], "timeout");
    // A late answer is refused and produces nothing for the requester.
    a.send(json!({"type": "task_result", "id": t["id"], "data": 1})).await;
    let refused = a.reply_to(t["id"].as_str().expect("id")).await;
    assert_eq!(refused["error"]["code"], "bad_request");
    assert!(c.maybe(Duration::from_millis(200), |v| v["id"] == "w").await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn concurrency_is_never_exceeded_and_commands_wait_for_a_slot() {
    let server = TestServer::start().await;
    let mut a = agent(&server, "single", "one", 1).await;
    let mut c = server.client().await;
    c.send(json!({"type": "one", "id": "a"})).await;
    c.send(json!({"type": "one", "id": "b"})).await;
    let t1 = task(&mut a).await;
    assert!(
        a.maybe(Duration::from_millis(200), |v| v["type"] == "task")
            .await
            .is_none(),
        "second waits"
    );
    let status = c.request(json!({"type": "request_agent_status", "id": "s"})).await;
    assert_eq!(status["data"][0]["status"], "busy");
    a.send(json!({"type": "task_result", "id": t1["id"], "data": 1})).await;
    let t2 = task(&mut a).await;
    assert_ne!(t1["id"], t2["id"]);
    a.send(json!({"type": "task_result", "id": t2["id"], "data": 2})).await;
    assert_eq!(c.reply_to("a").await["data"], 1);
    assert_eq!(c.reply_to("b").await["data"], 2);
    server.stop().await;
}

#[tokio::test]
async fn status_and_progress_are_published_on_the_agent_channel() {
    let server = TestServer::start().await;
    let mut watcher = server.client().await;
    let ack = watcher
        .request(json!({"type": "subscribe_agent", "id": "sa", "data": {"name": "painter"}}))
        .await;
    assert_eq!(ack["data"]["channel"], "agent:painter");
    let mut a = agent(&server, "painter", "paint", 1).await;
    let online = watcher.event("agent:painter").await;
    assert_eq!(online["data"]["kind"], "status");
    assert_eq!(online["data"]["status"], "idle");
    a.send(json!({"type": "status", "data": {"status": "error", "detail": "out of paint"}}))
        .await;
    let err = watcher.event("agent:painter").await;
    assert_eq!(err["data"]["status"], "error");
    a.send(json!({"type": "status", "data": {"status": "idle"}})).await;
    assert_eq!(watcher.event("agent:painter").await["data"]["status"], "idle");
    let mut c = server.client().await;
    c.send(json!({"type": "paint", "id": "p"})).await;
    let t = task(&mut a).await;
    a.send(json!({"type": "task_progress", "id": t["id"], "data": {"percent": 40}}))
        .await;
    let progress = watcher
        .recv_where(|v| v["type"] == "event" && v["data"]["kind"] == "task_progress")
        .await;
    assert_eq!(
        progress["data"],
        json!({"kind": "task_progress", "task": t["id"], "command": "paint", "data": {"percent": 40}})
    );
    drop(a);
    let offline = watcher
        .recv_where(|v| v["type"] == "event" && v["data"]["status"] == "offline")
        .await;
    assert_eq!(offline["data"]["replicas"], 0);
    server.stop().await;
}

#[tokio::test]
async fn the_agents_channel_and_system_metrics() {
    let server = TestServer::start_with(|c| c.system_metrics_interval = Duration::from_millis(200)).await;
    let mut c = server.client().await;
    c.subscribe("agents").await;
    c.subscribe("system").await;
    let _a = agent(&server, "lister", "list", 1).await;
    let push = c
        .recv_where(|v| v["channel"] == "agents" && v["data"].as_array().is_some_and(|a| !a.is_empty()))
        .await;
    assert_eq!(push["data"][0]["name"], "lister");
    let sys = c.event("system").await;
    assert_eq!(sys["data"]["node"], "gw-test");
    assert!(
        sys["data"]["memory_bytes"].as_u64().is_some_and(|m| m > 1_000_000),
        "real memory figure: {sys}"
    );
    let m = c.request(json!({"type": "request_system_metrics", "id": "m"})).await;
    assert_eq!(m["type"], "system_metrics");
    assert_eq!(m["data"]["connections"], 2);
    assert_eq!(m["data"]["agents"], 1);
    for key in ["cpu_percent", "uptime_s", "messages_in_per_s", "messages_out_per_s"] {
        assert!(m["data"][key].is_number(), "{key} in {m}");
    }
    server.stop().await;
}
