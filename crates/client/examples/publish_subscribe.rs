//! Publish and subscribe, with recovery across reconnects.
//!
//! Run a gateway (`cargo run --release -- serve`), then:
//! `cargo run -p tether-client --example publish_subscribe`

use serde_json::json;
use tether_client::{Client, ClientConfig, SubscriptionItem};

#[tokio::main]
async fn main() -> Result<(), tether_client::ClientError> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:8001/ws".into());
    let client = Client::start(ClientConfig::new(url))?;
    let mut orders = client.subscribe("orders").await?;
    for i in 0..3 {
        let ack = client.publish("orders", json!({"order": i})).await?;
        println!("published, durable as seq {}", ack["seq"]);
    }
    let mut seen = 0;
    while let Some(item) = orders.next().await {
        match item? {
            SubscriptionItem::Event(e) => {
                println!("event seq {} from {:?}: {}", e.seq, e.from, e.data);
                seen += 1;
                if seen == 3 {
                    break;
                }
            }
            SubscriptionItem::Recovered(false) => println!("missed events beyond history: refetch your state"),
            SubscriptionItem::Recovered(true) => println!("reconnected; missed events replayed"),
        }
    }
    print!("{}", client.metrics_text());
    client.close().await;
    Ok(())
}
