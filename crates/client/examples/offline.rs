//! The durable offline queue: messages sent while the gateway is unreachable are
//! kept on disk (surviving a restart of this program) and delivered once, in
//! order, after reconnecting.
//!
//! `cargo run -p tether-client --example offline` (with or without a gateway).

use std::time::Duration;

use serde_json::json;
use tether_client::{Client, ClientConfig, SendOutcome};

#[tokio::main]
async fn main() -> Result<(), tether_client::ClientError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8001/ws".into());
    let mut config = ClientConfig::new(url);
    config.offline_path = Some(std::env::temp_dir().join("tether-example-queue.redb"));
    let client = Client::start(config)?;
    println!("client id (stable across restarts): {}", client.client_id());
    let frame = json!({"type": "publish", "channel": "offline-demo", "data": {"at": "now"}});
    match client.send_with_offline_fallback(frame).await? {
        SendOutcome::Sent => println!("sent (kept queued until the gateway acks it)"),
        SendOutcome::Queued => println!("queued on disk; it goes out after reconnecting"),
        SendOutcome::Rejected(reason) => println!("refused by the offline queue: {reason}"),
    }
    for _ in 0..50 {
        if client.queue_len() == 0 {
            println!("queue flushed at {:?}", client.last_sync_time());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{} message(s) still queued", client.queue_len());
    client.close().await;
    Ok(())
}
