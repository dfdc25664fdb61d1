//! The HTTP side: the WebSocket upgrade (with the origin allowlist and the
//! per-IP cap), probes, `/metrics`, the dashboard, and the `/api/v1` routes.

mod api;
mod autobahn;
pub mod dashboard;
pub mod listener;
mod read_ahead;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tether_protocol::validate::is_valid_principal;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{request_token, AuthError};
use crate::connection::{serve, Peer, PeerAuth};
use crate::state::{Gateway, Phase};

/// Bytes tungstenite reads per call, allocated for every connection. Small on
/// purpose: an idle connection should cost a few KiB, not the 128 KiB default.
/// A larger frame grows the buffer to its size, and its many small reads are
/// served from one socket read by [`read_ahead::ReadAhead`] (without it, a
/// 256-byte buffer cost 17 % of publish throughput with 4 KiB payloads).
pub const READ_BUFFER: usize = 256;
/// Bytes tungstenite gathers before writing to the socket.
pub const WRITE_BUFFER: usize = 8 * 1024;

/// The gateway's routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    let router = if gw.config.autobahn_echo {
        Router::new().route("/autobahn", get(autobahn::upgrade))
    } else {
        Router::new()
    };
    let api = Router::new()
        .route("/api/v1/messages", post(api::messages))
        .route("/api/v1/agents", get(api::agents))
        .route("/api/v1/channels/{channel}/history", get(api::history))
        .layer(cors(&gw.config.allowed_origins));
    router
        .route("/ws", get(ws_upgrade))
        .route("/ws/dashboard", get(ws_upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .merge(api)
        .with_state(gw)
}

/// CORS for `/api/v1/*`, so that a page on another origin than the gateway
/// (an app on :3000, the gateway on :8001) can replay its offline queue and
/// read history: the origins of `allowed_origins`, or any origin when it is
/// empty (as for upgrades). Credentials are a bearer token, never cookies, so
/// no `Allow-Credentials`.
fn cors(allowed: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = allowed.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let origin = if allowed.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(allowed)
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = match gw.phase() {
            Phase::Starting => "starting",
            Phase::Draining => "draining",
            Phase::Ready => "store unavailable",
        };
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        gw.metrics.render(),
    )
        .into_response()
}

async fn ws_upgrade(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let reject = |status: StatusCode, reason: &'static str, message: &'static str| {
        gw.metrics.rejected_upgrades.with_label_values(&[reason]).inc();
        tracing::warn!(peer = %addr, reason, "upgrade refused");
        (status, message).into_response()
    };
    if gw.phase() != Phase::Ready {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the gateway is not accepting connections",
        );
    }
    if !gw.config.allowed_origins.is_empty() {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let listed = origin
                .to_str()
                .is_ok_and(|o| gw.config.allowed_origins.iter().any(|a| a == o));
            if !listed {
                return reject(StatusCode::FORBIDDEN, "origin", "origin not allowed");
            }
        }
    }
    // With auth on, a bad token still gets its upgrade, then a 4001/4003 close
    // (browsers cannot read an HTTP status); `client_id` is ignored.
    let auth = match &gw.auth {
        None => {
            let client_id = query.get("client_id").cloned();
            if client_id.as_deref().is_some_and(|c| !is_valid_principal(c)) {
                let msg = "client_id must be 1 to 128 printable ASCII characters";
                return reject(StatusCode::BAD_REQUEST, "client_id", msg);
            }
            PeerAuth::Unchecked { client_id }
        }
        Some(a) => match request_token(&headers, &query) {
            None => PeerAuth::Refused(AuthError::Invalid("missing token".into())),
            Some(token) => match a.authenticate(token) {
                Ok(identity) => PeerAuth::Checked(identity),
                Err(e) => PeerAuth::Refused(e),
            },
        },
    };
    let Some(slot) = gw.take_ip_slot(addr.ip()) else {
        return reject(
            StatusCode::TOO_MANY_REQUESTS,
            "per_ip",
            "too many connections from this address",
        );
    };
    let peer = Peer { auth, addr };
    configure(ws, &gw).on_upgrade(move |socket| {
        let tracker = gw.connections.clone();
        tracker.track_future(serve(socket, gw, peer, slot))
    })
}

/// The WebSocket settings every endpoint shares: small buffers, the size limit.
fn configure(ws: WebSocketUpgrade, gw: &Gateway) -> WebSocketUpgrade {
    let max = gw.config.max_message_bytes;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
}
