//! An agent: registers for `process_receipt` and answers each task, reporting
//! progress. Tasks are at-least-once: deduplicate on `task.id`.
//!
//! `cargo run -p tether-client --example agent`, then send a command, e.g.
//! `curl -X POST 'http://127.0.0.1:8001/api/v1/messages?client_id=me' -d '[{"type":"process_receipt","id":"r1","data":{}}]'`

use serde_json::json;
use tether_client::{Client, ClientConfig};

#[tokio::main]
async fn main() -> Result<(), tether_client::ClientError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8001/ws".into());
    let client = Client::start(ClientConfig::new(url))?;
    let mut tasks = client.register("receipt-processor", &["process_receipt"], 4).await?;
    while let Some(task) = tasks.next().await {
        client.task_progress(&task.id, json!({"percent": 50})).await;
        let total = task.payload["lines"].as_array().map_or(0, |l| l.len());
        client
            .task_result(&task.id, Ok(json!({"lines": total, "from": task.from})))
            .await;
    }
    Ok(())
}
