//! `/autobahn`: an echo endpoint for the Autobahn|Testsuite conformance run,
//! present only with `tether serve --autobahn-echo`. It is a testing aid: it
//! goes through the same upgrade settings, size limit and per-IP cap as `/ws`
//! and echoes every text and binary message back, so the suite exercises the
//! WebSocket layer the gateway really uses. It speaks no Tether protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tether_protocol::CloseCode;

use crate::state::Gateway;

pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(slot) = gw.take_ip_slot(addr.ip()) else {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from this address").into_response();
    };
    super::configure(ws, &gw).on_upgrade(move |socket| async move {
        echo(socket).await;
        drop(slot);
    })
}

async fn echo(mut socket: WebSocket) {
    while let Some(msg) = socket.recv().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                let inner = e.into_inner();
                if let Some(tungstenite::Error::Capacity(_)) = inner.downcast_ref::<tungstenite::Error>() {
                    let code = CloseCode::MessageTooBig;
                    let frame = CloseFrame {
                        code: code.code(),
                        reason: code.reason().into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                }
                return;
            }
        };
        let reply = match msg {
            Message::Text(t) => Message::Text(t),
            Message::Binary(b) => Message::Binary(b),
            // Pings are answered by tungstenite; the close reply too.
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
