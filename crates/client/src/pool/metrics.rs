//! What the pool reports about itself: the [`PoolMetrics`] snapshot, one
//! [`EndpointMetrics`] per URL, and their Prometheus text exposition.
//!
//! Not here: taking the snapshot ([`Pool::metrics`], which reads the pool's
//! state) and serving the text over HTTP (the caller's job).

use std::time::Duration;

#[cfg(doc)]
use super::Pool;

/// A snapshot of the pool ([`Pool::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolMetrics {
    /// Endpoints started and not closed.
    pub total_connections: usize,
    /// Endpoints connected now.
    pub healthy_connections: usize,
    /// Requests waiting for a healthy endpoint.
    pub queued: usize,
    /// Requests refused or displaced because the queue was full, ever.
    pub rejected: u64,
    /// Subscription moves from one endpoint to another, ever.
    pub failovers: u64,
    /// One entry per URL, in URL order.
    pub endpoints: Vec<EndpointMetrics>,
}

/// One endpoint in [`PoolMetrics`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointMetrics {
    /// The endpoint's URL.
    pub url: String,
    /// Its priority (higher preferred).
    pub priority: i32,
    /// The client's state name (`idle` when not started).
    pub state: &'static str,
    /// Connected, so it may be chosen.
    pub healthy: bool,
    /// The health score; 0 when unhealthy.
    pub score: f64,
    /// The smoothed ping round trip, once measured.
    pub rtt: Option<Duration>,
    /// Errors in the error window.
    pub errors: usize,
    /// Requests in flight through the pool.
    pub in_flight: usize,
    /// Requests sent to it, ever.
    pub requests: u64,
}

pub(super) fn render_metrics(m: &PoolMetrics) -> String {
    use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
    let registry = Registry::new();
    let int_gauge = |name: &str, help: &str, v: usize| {
        let g = IntGauge::new(name, help).expect("valid metric");
        g.set(v as i64);
        registry.register(Box::new(g)).expect("unique metric");
    };
    let counter = |name: &str, help: &str, v: u64| {
        let c = IntCounter::new(name, help).expect("valid metric");
        c.inc_by(v);
        registry.register(Box::new(c)).expect("unique metric");
    };
    let gauges = |name: &str, help: &str, labels: &[&str]| {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
        registry.register(Box::new(g.clone())).expect("unique metric");
        g
    };
    int_gauge(
        "tether_pool_connections",
        "Endpoints started and not closed",
        m.total_connections,
    );
    int_gauge(
        "tether_pool_healthy_connections",
        "Endpoints connected now",
        m.healthy_connections,
    );
    int_gauge(
        "tether_pool_queued_requests",
        "Requests waiting for a healthy endpoint",
        m.queued,
    );
    counter(
        "tether_pool_rejected_total",
        "Requests refused or displaced by a full queue",
        m.rejected,
    );
    counter(
        "tether_pool_failovers_total",
        "Subscription moves between endpoints",
        m.failovers,
    );
    let healthy = gauges(
        "tether_pool_endpoint_healthy",
        "1 while the endpoint may be chosen",
        &["url"],
    );
    let score = gauges(
        "tether_pool_endpoint_score",
        "Health score (0 when unhealthy)",
        &["url"],
    );
    let rtt = gauges("tether_pool_endpoint_rtt_seconds", "Smoothed ping round trip", &["url"]);
    let errors = gauges("tether_pool_endpoint_errors", "Errors in the error window", &["url"]);
    let in_flight = gauges("tether_pool_endpoint_in_flight", "Requests in flight", &["url"]);
    let state = gauges(
        "tether_pool_endpoint_state",
        "1 for the endpoint's current state",
        &["url", "state"],
    );
    let requests = IntCounterVec::new(
        Opts::new("tether_pool_endpoint_requests_total", "Requests sent to the endpoint"),
        &["url"],
    )
    .expect("valid metric");
    registry.register(Box::new(requests.clone())).expect("unique metric");
    for e in &m.endpoints {
        let url = [e.url.as_str()];
        healthy.with_label_values(&url).set(f64::from(u8::from(e.healthy)));
        score.with_label_values(&url).set(e.score);
        if let Some(r) = e.rtt {
            rtt.with_label_values(&url).set(r.as_secs_f64());
        }
        errors.with_label_values(&url).set(e.errors as f64);
        in_flight.with_label_values(&url).set(e.in_flight as f64);
        state.with_label_values(&[e.url.as_str(), e.state]).set(1.0);
        requests.with_label_values(&url).inc_by(e.requests);
    }
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(buf).expect("exposition is UTF-8")
}
