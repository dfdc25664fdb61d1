//! The accept loop: TCP (`TCP_NODELAY`), optional TLS, then hyper with
//! upgrades. Every stage before a WebSocket exists has a deadline, so a flood of
//! connections that never finish a handshake holds nothing for long.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::read_ahead::ReadAhead;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a connection may take to finish its TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long HTTP connections get to finish their requests during shutdown.
const GRACEFUL_HTTP: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop`; `header_timeout` bounds how long a
/// connection may take to send a complete request head.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let conn = Connection {
            app: app.clone(),
            builder: builder.clone(),
            acceptor: acceptor.clone(),
            addr,
            header_timeout,
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move { conn.run(tcp, watcher).await });
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACEFUL_HTTP, graceful.shutdown()).await;
}

struct Connection {
    app: Router,
    builder: Builder<TokioExecutor>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    addr: SocketAddr,
    header_timeout: Duration,
}

impl Connection {
    async fn run(self, tcp: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let Connection {
            app,
            builder,
            acceptor,
            addr,
            header_timeout,
        } = self;
        // hyper bounds slow request heads, but not a connection that sends no
        // byte at all: the first request must arrive within `header_timeout`.
        let first_request = Arc::new(Notify::new());
        let seen = first_request.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            seen.notify_one();
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req)
        });
        let result = match acceptor {
            None => {
                let conn =
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(ReadAhead::new(tcp)), service));
                first_request_within(conn, &first_request, header_timeout).await
            }
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let conn = watcher
                        .watch(builder.serve_connection_with_upgrades(TokioIo::new(ReadAhead::new(stream)), service));
                    first_request_within(conn, &first_request, header_timeout).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            },
        };
        match result {
            None => tracing::debug!(peer = %addr, "no request head in time; connection dropped"),
            Some(Err(e)) => tracing::debug!(peer = %addr, error = %e, "HTTP connection ended with an error"),
            Some(Ok(())) => {}
        }
    }
}

/// Drives `conn`; gives up (`None`) if no request arrived within `limit`.
async fn first_request_within<F: std::future::Future>(conn: F, first: &Notify, limit: Duration) -> Option<F::Output> {
    tokio::pin!(conn);
    tokio::select! {
        out = &mut conn => return Some(out),
        _ = first.notified() => {}
        _ = tokio::time::sleep(limit) => return None,
    }
    Some(conn.await)
}
