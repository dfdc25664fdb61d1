//! Client metrics, exported as Prometheus text (`Client::metrics_text`).

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};

/// Counters and gauges of one client.
pub struct ClientMetrics {
    registry: Registry,
    /// Connection attempts.
    pub connect_attempts: IntCounter,
    /// Successful connections after the first.
    pub reconnects: IntCounter,
    /// Frames received.
    pub frames_in: IntCounter,
    /// Frames sent.
    pub frames_out: IntCounter,
    /// Request sent → reply received.
    pub ack_seconds: Histogram,
    /// Messages in the offline queue.
    pub queue_size: IntGauge,
    /// 1 while connected.
    pub connected: IntGauge,
    /// Times the circuit breaker opened.
    pub circuit_opens: IntCounter,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientMetrics {
    /// Fresh metrics.
    pub fn new() -> ClientMetrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let connect_attempts = counter("tether_client_connect_attempts_total", "Connection attempts");
        let reconnects = counter("tether_client_reconnects_total", "Successful reconnections");
        let frames_in = counter("tether_client_frames_received_total", "Frames received");
        let frames_out = counter("tether_client_frames_sent_total", "Frames sent");
        let queue_size = gauge("tether_client_offline_queue_size", "Messages in the offline queue");
        let connected = gauge("tether_client_connected", "1 while connected");
        let circuit_opens = counter("tether_client_circuit_opens_total", "Times the circuit breaker opened");
        let ack_seconds = Histogram::with_opts(
            HistogramOpts::new("tether_client_ack_seconds", "Request sent to reply received").buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
        )
        .expect("valid metric");
        registry.register(Box::new(ack_seconds.clone())).expect("unique metric");
        ClientMetrics {
            registry,
            connect_attempts,
            reconnects,
            frames_in,
            frames_out,
            ack_seconds,
            queue_size,
            connected,
            circuit_opens,
        }
    }

    /// Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
}
