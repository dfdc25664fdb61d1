//! Durability of the real binary: `kill -9` during a publish storm, then a
//! restart on the same data dir.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{connect, http, next_json, send, Gateway};

const WINDOW: usize = 32;

/// Publishes `{"id", "n"}` events as `client_id` until the connection dies or
/// `max` are acked; returns `(id, seq, epoch)` of every ack received.
async fn storm(url: String, client_id: String, max: usize) -> Vec<(String, u64, String)> {
    let (mut ws, _) = connect(&format!("{url}?client_id={client_id}")).await;
    let mut acked = Vec::new();
    let mut sent = 0;
    let mut in_flight = 0;
    while acked.len() < max {
        while in_flight < WINDOW && sent < max {
            let id = format!("{client_id}-{sent}");
            if !send(
                &mut ws,
                &json!({"type": "publish", "id": id, "channel": "storm", "data": {"id": id, "n": sent}}),
            )
            .await
            {
                return acked;
            }
            sent += 1;
            in_flight += 1;
        }
        match next_json(&mut ws).await {
            None => return acked,
            Some(v) if v["type"] == "ack" => {
                in_flight -= 1;
                acked.push((
                    v["id"].as_str().expect("id").to_owned(),
                    v["data"]["seq"].as_u64().expect("seq"),
                    v["data"]["epoch"].as_str().expect("epoch").to_owned(),
                ));
            }
            Some(other) => panic!("unexpected reply during the storm: {other}"),
        }
    }
    acked
}

async fn all_events(gw: &Gateway, channel: &str) -> (u64, String, Vec<Value>) {
    let mut events = Vec::new();
    let mut since = 0;
    loop {
        let (status, body) = http(
            "GET",
            &gw.http(&format!("/api/v1/channels/{channel}/history?since={since}&limit=1000")),
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).expect("json");
        let batch = page["events"].as_array().expect("events").clone();
        if batch.is_empty() {
            return (
                page["seq"].as_u64().expect("seq"),
                page["epoch"].as_str().expect("epoch").to_owned(),
                events,
            );
        }
        since = batch.last().expect("last")["seq"].as_u64().expect("seq");
        events.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_storm_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--history-size",
        "1000000",
        "--rate-limit",
        "1000000",
        "--rate-burst",
        "1000000",
    ];
    let gw = Gateway::spawn(dir.path(), &args);
    let publishers: Vec<_> = (0..4)
        .map(|k| tokio::spawn(storm(gw.ws(), format!("pub{k}"), 1_000_000)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.kill9();
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(20), p)
                .await
                .expect("publisher ends")
                .expect("publisher"),
        );
    }
    eprintln!("{} publishes acknowledged before kill -9", acked.len());
    assert!(
        acked.len() > 200,
        "the storm got going before the kill ({} acks)",
        acked.len()
    );

    let gw = Gateway::spawn(dir.path(), &args);
    let (last, epoch, events) = all_events(&gw, "storm").await;
    assert_eq!(events.len() as u64, last, "every event up to the last seq is there");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "seqs are contiguous from 1");
        assert_eq!(e["epoch"], epoch.as_str());
    }
    let by_seq: HashMap<u64, &Value> = events.iter().map(|e| (e["seq"].as_u64().expect("seq"), e)).collect();
    for (id, seq, ack_epoch) in &acked {
        assert_eq!(ack_epoch, &epoch, "the epoch survives a crash");
        let e = by_seq
            .get(seq)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} ({id}) lost"));
        assert_eq!(e["data"]["id"], id.as_str(), "seq {seq} holds the acknowledged event");
    }

    // Dedup keys survived: resending an acknowledged id is a duplicate.
    let (id, seq, _) = acked[acked.len() / 2].clone();
    let client = id.split('-').next().expect("client").to_owned();
    let (mut ws, _) = connect(&format!("{}?client_id={client}", gw.ws())).await;
    send(
        &mut ws,
        &json!({"type": "publish", "id": id, "channel": "storm", "data": {}}),
    )
    .await;
    let reply = next_json(&mut ws).await.expect("reply");
    assert_eq!(reply["data"]["duplicate"], true, "{reply}");
    assert_eq!(reply["data"]["seq"], seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_commands_survive_a_crash_and_their_result_reaches_the_inbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::spawn(dir.path(), &[]);
    let body = json!([{"type": "process_receipt", "id": "keep-me", "data": {"imageUrl": "a.jpg"}}]).to_string();
    let (status, text) = http("POST", &gw.http("/api/v1/messages?client_id=frank"), &body).await;
    assert_eq!(status, 200);
    assert!(text.contains("\"accepted\":true"), "{text}");
    gw.kill9();

    let gw = Gateway::spawn(dir.path(), &[]);
    let (mut agent, _) = connect(&gw.ws()).await;
    send(
        &mut agent,
        &json!({"type": "register", "id": "r", "data": {"name": "rp", "commands": ["process_receipt"]}}),
    )
    .await;
    let task = loop {
        let v = next_json(&mut agent).await.expect("frame");
        if v["type"] == "task" {
            break v;
        }
    };
    assert_eq!(task["data"]["payload"], json!({"imageUrl": "a.jpg"}));
    assert_eq!(task["data"]["from"], "frank");
    send(
        &mut agent,
        &json!({"type": "task_result", "id": task["id"], "data": {"ok": true}}),
    )
    .await;

    let (mut frank, _) = connect(&format!("{}?client_id=frank", gw.ws())).await;
    send(
        &mut frank,
        &json!({"type": "subscribe", "id": "s", "channel": "inbox:frank", "since": {"seq": 0}}),
    )
    .await;
    let event = loop {
        let v = next_json(&mut frank).await.expect("frame");
        if v["type"] == "event" {
            break v;
        }
    };
    assert_eq!(
        event["data"],
        json!({"kind": "result", "id": "keep-me", "data": {"ok": true}})
    );
}
