//! The Tether gateway as a library: [`run`] serves the protocol of
//! `shared/protocol.md` on a bound listener until `shutdown` resolves.
//!
//! Layers, top-down: [`http`] (routes, upgrade) → [`connection`] (socket
//! tasks) → [`handlers`] (one file per message kind) → [`hub`] (fan-out),
//! [`agents`] (routing) and [`ledger`] (sequencing, dedup, group commit) →
//! [`store`] (durable state).

pub mod agents;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod fanout;
pub mod handlers;
pub mod http;
pub mod hub;
pub mod ledger;
pub mod metrics;
pub mod state;
pub mod store;
pub mod system;
pub mod tasks;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::GatewayError;

use crate::agents::Agents;
use crate::hub::Hub;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::state::{Gateway, Phase};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisStore, DONE_TOPIC, QUEUED_TOPIC};
use crate::store::Store;
use crate::system::SystemSampler;

/// How long connections get to close (1001) during shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(6);
/// How long the store gets to commit what is queued during shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Period of the retention and dedup sweep.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Serves on `listener` with `config` until `shutdown` resolves, then drains:
/// `/readyz` 503, no new connections, 1001 to every client, the store flushed.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate()?;
    let authenticator = auth::Authenticator::from_settings(&config.auth).map_err(|e| config::ConfigError {
        field: "jwt-secret/jwt-public-key",
        reason: e.0,
    })?;
    let auth_on = authenticator.is_some();
    let tls = match &config.tls {
        None => None,
        Some(files) => Some(tls::server_config(files).map_err(|e| config::ConfigError {
            field: "tls-cert/tls-key",
            reason: e.0,
        })?),
    };
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let background = CancellationToken::new();
    let (store, redis): (Arc<dyn Store>, Option<redis::Client>) = match config.redis_url.clone() {
        None => {
            let dir = config.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                .await
                .map_err(|e| store::StoreError::Failed(format!("opening the store panicked: {e}")))??;
            (Arc::new(store), None)
        }
        Some(url) => {
            let node = config.node_id.clone();
            let store = tokio::task::spawn_blocking(move || RedisStore::open(&url, &node))
                .await
                .map_err(|e| store::StoreError::Failed(format!("connecting to redis panicked: {e}")))??;
            let client = store.client();
            (Arc::new(store), Some(client))
        }
    };
    let hub = Arc::new(Hub::new(store.clone(), metrics.clone()));
    let (ledger, ledger_tasks, accepted) = Ledger::start(
        store.clone(),
        config.clone(),
        hub.clone(),
        metrics.clone(),
        config::DEFAULT_LEDGER_QUEUE,
    )?;
    let agents = Agents::new(config.command_ttl, config.task_timeout, ledger.clone(), metrics.clone());
    let cluster = match redis {
        None => None,
        Some(client) => {
            let wake = Arc::new(tokio::sync::Notify::new());
            let on_message = cluster_messages(ledger.clone(), wake.clone());
            let topics = vec![QUEUED_TOPIC.to_owned(), DONE_TOPIC.to_owned()];
            fanout::start(client.clone(), &hub, topics, on_message, background.clone())
                .map_err(|e| store::StoreError::Failed(format!("cannot start the fan-out thread: {e}")))?;
            let cluster = cluster::Cluster::new(client.clone(), &config.node_id);
            tasks::spawn(
                client,
                config.node_id.clone(),
                config.command_ttl,
                agents.clone(),
                ledger.clone(),
                cluster.clone(),
                wake,
                background.clone(),
            );
            Some(cluster)
        }
    };
    let system = Arc::new(SystemSampler::new(config.node_id.clone(), metrics.clone()));
    let gw = Arc::new(
        Gateway::new(
            config.clone(),
            metrics,
            store,
            hub,
            ledger.clone(),
            agents.clone(),
            system,
            authenticator,
        )
        .with_cluster(cluster.clone()),
    );

    if let Some(c) = &cluster {
        agents.set_cluster(c.clone(), &config.node_id);
        cluster::spawn(c.clone(), gw.clone(), background.clone());
    }
    agents.spawn(accepted, background.clone());
    system::spawn_pusher(gw.clone(), config.system_metrics_interval, background.clone());
    spawn_sweeper(ledger.clone(), background.clone());

    if config.allowed_origins.is_empty() {
        tracing::debug!("no origin allowlist: upgrades from any origin are accepted");
    }
    if !auth_on {
        tracing::warn!("authentication is off (development mode): every connection may do everything");
    }
    gw.set_phase(Phase::Ready);

    let stop_accepting = CancellationToken::new();
    let server = tokio::spawn(http::listener::serve(
        listener,
        http::router(gw.clone()),
        tls,
        config.handshake_timeout,
        stop_accepting.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down: draining connections");
    gw.set_phase(Phase::Draining);
    stop_accepting.cancel();
    gw.draining.cancel();
    gw.connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, gw.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = gw.connections.len(),
            "drain timeout: dropping remaining connections"
        );
    }
    background.cancel();
    let _ = server.await;
    ledger.stop().await;
    drop(gw);
    if tokio::time::timeout(FLUSH_TIMEOUT, ledger_tasks.join()).await.is_err() {
        tracing::error!("store flush timed out; queued operations may be lost (none was acknowledged)");
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the fan-out thread does with the cluster's own topics: a queued task
/// wakes the claiming loop; an outcome goes to the requesters waiting here.
fn cluster_messages(ledger: Ledger, wake: Arc<tokio::sync::Notify>) -> fanout::OnMessage {
    Box::new(move |topic, payload| {
        if topic == QUEUED_TOPIC {
            wake.notify_one();
        } else if topic == DONE_TOPIC {
            #[derive(serde::Deserialize)]
            struct Done {
                task_id: String,
                outcome: store::Outcome,
            }
            match serde_json::from_str::<Done>(payload) {
                Ok(d) => {
                    let op = ledger::CompleteOp {
                        task_id: d.task_id,
                        outcome: d.outcome,
                    };
                    if !ledger.finished_elsewhere(op) {
                        tracing::warn!("ledger queue full: a remote outcome waits for the next sweep");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "malformed command outcome announcement ignored"),
            }
        }
    })
}

fn spawn_sweeper(ledger: Ledger, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => ledger.sweep(),
            }
        }
    });
}
