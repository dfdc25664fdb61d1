//! The monitoring dashboard at `/`: the React app built from `web/dashboard`
//! into `crates/gateway/dashboard/` (committed) and embedded in the binary, so
//! `cargo run --release -- serve` serves it with no Node on the machine.
//!
//! `index.html` answers every view's path (the app routes on the client) and
//! is never cached, so a new binary's bundle is picked up at once; the files
//! under `/assets/` have content-hashed names and are cached for a year.
//! Responses are gzip-compressed when the browser accepts it.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::Embed;
use tower_http::compression::CompressionLayer;

use crate::state::Gateway;

#[derive(Embed)]
#[folder = "dashboard/"]
struct Bundle;

/// The app's views; each path serves `index.html`. Keep in step with
/// `ROUTES` in web/dashboard/src/lib/router.ts.
pub const VIEWS: &[&str] = &["/", "/system", "/channels", "/commands", "/analytics"];

/// What a page of ours may load and talk to: only this origin (the WebSocket
/// included), inline styles for the chart library, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'; object-src 'none'";

/// The dashboard's routes.
pub fn routes() -> Router<Arc<Gateway>> {
    let mut router = Router::new().route("/assets/{*file}", get(asset));
    for view in VIEWS {
        router = router.route(view, get(index));
    }
    router.layer(CompressionLayer::new().gzip(true))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", "no-cache", &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(
        &format!("assets/{file}"),
        "public, max-age=31536000, immutable",
        &headers,
    )
}

/// One embedded file with its type, ETag (its SHA-256) and caching; 304 when
/// the browser already has it; 404 when there is no such file.
fn serve(path: &str, cache: &'static str, request: &HeaderMap) -> Response {
    let Some(file) = Bundle::get(path) else {
        if path == "index.html" {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "this binary was built without the dashboard bundle: run `npm run build -w @tether/dashboard` in web/",
            )
                .into_response();
        }
        return (StatusCode::NOT_FOUND, "no such dashboard file").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if path == "index.html" {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    (headers, file.data).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
