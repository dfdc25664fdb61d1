//! A TCP proxy that silently stops forwarding (no FIN, no RST) between the client
//! and the gateway: the client's heartbeat must notice within interval + timeout
//! and reconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tether_client::state::State;
use tether_client::{Client, ClientConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(20);

/// Forwards connections to `target`; connections accepted before `freeze` is
/// raised past their number stop forwarding but stay open.
async fn proxy(target: std::net::SocketAddr, freeze: Arc<AtomicU64>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((client, _)) = listener.accept().await {
            n += 1;
            let Ok(server) = TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, n, freeze.clone()));
            tokio::spawn(pipe(sr, cw, n, freeze.clone()));
        }
    });
    addr
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    n: u64,
    freeze: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(k) = from.read(&mut buf).await else { return };
        if k == 0 {
            return;
        }
        if freeze.load(Ordering::SeqCst) >= n {
            // Black hole: keep both sockets open, forward nothing, for a while.
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        if to.write_all(&buf[..k]).await.is_err() {
            return;
        }
    }
}

/// A gateway behind a [`proxy`] and a client config for it with a 300 ms
/// heartbeat; `freeze` darkens connections, `stop` ends the gateway.
struct Rig {
    _dir: tempfile::TempDir,
    freeze: Arc<AtomicU64>,
    stop: tokio::sync::oneshot::Sender<()>,
    gw: tokio::task::JoinHandle<Result<(), tether_gateway::GatewayError>>,
    config: ClientConfig,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gw_addr = listener.local_addr().expect("addr");
    let config = tether_gateway::Config {
        data_dir: dir.path().to_owned(),
        ..tether_gateway::Config::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gw = tokio::spawn(tether_gateway::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let freeze = Arc::new(AtomicU64::new(0));
    let proxy_addr = proxy(gw_addr, freeze.clone()).await;
    let mut c = ClientConfig::new(format!("ws://{proxy_addr}/ws"));
    c.heartbeat_interval = Duration::from_millis(300);
    c.heartbeat_timeout = Duration::from_millis(300);
    c.reconnect_interval = Duration::from_millis(50);
    c.max_reconnect_delay = Duration::from_millis(200);
    Rig {
        _dir: dir,
        freeze,
        stop,
        gw,
        config: c,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_path_is_detected_by_the_heartbeat_and_the_client_reconnects() {
    let Rig {
        _dir,
        freeze,
        stop,
        gw,
        config: c,
    } = rig().await;
    let client = Client::start(c).expect("start");
    client.wait_connected(WAIT).await.expect("connected");
    let first = match client.state() {
        State::Connected { session, .. } => session,
        other => panic!("{other:?}"),
    };
    let mut transitions = client.transitions();

    freeze.store(1, Ordering::SeqCst); // the first connection goes dark
    let lost = tokio::time::timeout(WAIT, async {
        loop {
            let t = transitions.recv().await.expect("transitions");
            if matches!(t.old, State::Connected { .. }) {
                return t;
            }
        }
    })
    .await
    .expect("the dead path is noticed");
    assert!(lost.reason.contains("heartbeat"), "{lost:?}");
    assert_eq!(lost.code, None);
    let second = tokio::time::timeout(WAIT, async {
        loop {
            let t = transitions.recv().await.expect("transitions");
            if let State::Connected { session, .. } = t.new {
                return session;
            }
        }
    })
    .await
    .expect("reconnected");
    assert_ne!(first, second, "a new connection");
    let ack = client.publish("after", json!(1)).await.expect("works again");
    assert_eq!(ack["seq"], 1);
    client.close().await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_path_is_detected_while_the_client_keeps_sending() {
    let Rig {
        _dir,
        freeze,
        stop,
        gw: _gw,
        config: c,
    } = rig().await;
    let client = Arc::new(Client::start(c).expect("start"));
    client.wait_connected(WAIT).await.expect("connected");
    let mut transitions = client.transitions();

    freeze.store(1, Ordering::SeqCst);
    // A publish every 100 ms (under the 300 ms interval), each one unanswered.
    let busy = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = c.publish("busy", json!(i)).await;
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let lost = tokio::time::timeout(WAIT, async {
        loop {
            let t = transitions.recv().await.expect("transitions");
            if matches!(t.old, State::Connected { .. }) {
                return t;
            }
        }
    })
    .await
    .expect("the dead path is noticed although frames keep being sent");
    assert!(lost.reason.contains("heartbeat"), "{lost:?}");
    busy.abort();
    let _ = stop.send(());
}
