//! `tether-client`: what a Rust service, agent or tool uses to talk to a Tether
//! gateway.
//!
//! Layers, top-down: [`Client`] (the typed API) → the driver task (the only
//! owner of the socket: I/O, timers, routing) → [`state::Machine`] (sans-IO
//! connection state), which consults [`backoff`] and [`circuit`]; the
//! [`offline_queue`] keeps messages on disk while offline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tether_client::ClientError> {
//! use tether_client::{Client, ClientConfig, SubscriptionItem};
//! let client = Client::start(ClientConfig::new("ws://127.0.0.1:8001/ws"))?;
//! let mut orders = client.subscribe("orders").await?;
//! let ack = client.publish("orders", serde_json::json!({"id": 42})).await?;
//! println!("durable as seq {}", ack["seq"]);
//! while let Some(Ok(SubscriptionItem::Event(e))) = orders.next().await {
//!     println!("{} {}", e.seq, e.data);
//! }
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod circuit;
mod client;
pub mod config;
mod driver;
mod error;
pub mod metrics;
pub mod offline_queue;
pub mod pool;
pub mod state;
mod token;

pub use client::{Client, SendOutcome, Subscription, SubscriptionItem, Task, Tasks};
pub use config::ClientConfig;
pub use error::ClientError;
pub use pool::{LoadBalancingStrategy, Pool, PoolConfig};
