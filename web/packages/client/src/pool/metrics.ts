// What the pool reports about itself: the `PoolMetricsSnapshot` (one
// `ConnectionMetrics` per member connection) and its Prometheus text
// exposition (format 0.0.4), with the Rust pool's metric names
// (crates/client/src/pool/metrics.rs) plus the request counters of the guide.
//
// Not here: taking the snapshot (`TetherPool.getSnapshot`, which reads the
// pool's state) and serving or downloading the text (the caller's job).

import { PrometheusWriter, escapeLabel } from "../prometheus.js";
import { type State } from "../state.js";
import { type LoadBalancingStrategy } from "./config.js";

/** One member connection in a `PoolMetricsSnapshot`. */
export interface ConnectionMetrics {
  /** The connection's id within the pool (increasing, never reused). */
  readonly id: number;
  /** Its gateway URL. */
  readonly url: string;
  /** Its URL's priority (higher preferred). */
  readonly priority: number;
  /** Its client's state (`connecting`, `connected`, `reconnecting`, `circuit-open`, …). */
  readonly state: State["kind"];
  /** Connected and not being replaced, so it may be chosen. */
  readonly healthy: boolean;
  /** Failed too many health checks in a row: no new requests; closed once its requests are done. */
  readonly replacing: boolean;
  /** The health score, in (0, 1]; 0 when unhealthy. */
  readonly score: number;
  /** The smoothed health-ping round trip in ms, null until measured. */
  readonly rtt: number | null;
  /** Errors within the error window. */
  readonly errors: number;
  /** Requests in flight through the pool. */
  readonly inFlight: number;
  /** Requests sent through it, ever (health pings not counted). */
  readonly requests: number;
}

/** A snapshot of the pool; frozen, and a new object only when something changed. */
export interface PoolMetricsSnapshot {
  /** The configured strategy. */
  readonly strategy: LoadBalancingStrategy;
  readonly minConnections: number;
  readonly maxConnections: number;
  /** Connections started and not closed, whatever their state. */
  readonly totalConnections: number;
  /** Connections whose socket is open (connected), including ones being replaced. */
  readonly activeConnections: number;
  /** Connections that may be chosen: connected and not being replaced. */
  readonly healthyConnections: number;
  /** Connections waiting to reconnect after a failure (`reconnecting` or `circuit-open`). */
  readonly failedConnections: number;
  /** Requests accepted by `send` plus one per connection reached by `broadcast`, ever. */
  readonly totalRequests: number;
  /** Of those, the ones that failed (error reply, timeout, closed, full queue, no connection in time). */
  readonly failedRequests: number;
  /** Mean ms from `send`/`broadcast` to a successful reply (queue wait included); 0 before the first. */
  readonly averageResponseTime: number;
  /** Requests sent and not yet answered. */
  readonly inFlight: number;
  /** Requests waiting in the queue for a connection. */
  readonly queued: number;
  /** The queue's capacity. */
  readonly queueCapacity: number;
  /** Requests refused or displaced because the queue was full, ever. */
  readonly rejected: number;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  /** URLs given up on because their connection closed for good (e.g. 4003); the pool does not use them again. */
  readonly abandonedUrls: readonly string[];
  /** One entry per connection, oldest first. */
  readonly connections: readonly ConnectionMetrics[];
}

/** The metrics of a pool that does not exist (disabled) or has not started: all zeros. */
export const EMPTY_POOL_METRICS: PoolMetricsSnapshot = Object.freeze({
  strategy: "round-robin",
  minConnections: 0,
  maxConnections: 0,
  totalConnections: 0,
  activeConnections: 0,
  healthyConnections: 0,
  failedConnections: 0,
  totalRequests: 0,
  failedRequests: 0,
  averageResponseTime: 0,
  inFlight: 0,
  queued: 0,
  queueCapacity: 0,
  rejected: 0,
  closed: false,
  abandonedUrls: Object.freeze([]),
  connections: Object.freeze([]),
});

/** `snapshot` as Prometheus text exposition (format 0.0.4); every name starts with `tether_pool_`. */
export function renderPoolMetrics(m: PoolMetricsSnapshot): string {
  const w = new PrometheusWriter();
  w.series("tether_pool_connections", "gauge", "Connections started and not closed", m.totalConnections);
  w.series("tether_pool_active_connections", "gauge", "Connections with an open socket", m.activeConnections);
  w.series("tether_pool_healthy_connections", "gauge", "Connections that may be chosen", m.healthyConnections);
  w.series("tether_pool_failed_connections", "gauge", "Connections waiting to reconnect after a failure", m.failedConnections);
  w.series("tether_pool_queued_requests", "gauge", "Requests waiting for a healthy connection", m.queued);
  w.series("tether_pool_in_flight_requests", "gauge", "Requests sent and not yet answered", m.inFlight);
  w.series("tether_pool_requests_total", "counter", "Requests sent through the pool", m.totalRequests);
  w.series("tether_pool_failed_requests_total", "counter", "Requests through the pool that failed", m.failedRequests);
  w.series("tether_pool_rejected_total", "counter", "Requests refused or displaced by a full queue", m.rejected);
  w.series(
    "tether_pool_average_response_seconds",
    "gauge",
    "Mean time from send to a successful reply",
    m.averageResponseTime / 1000,
  );
  const label = (c: ConnectionMetrics, extra = ""): string =>
    `{connection="${String(c.id)}",url="${escapeLabel(c.url)}"${extra}}`;
  const per = (name: string, type: "gauge" | "counter", help: string, value: (c: ConnectionMetrics) => number | null): void => {
    const samples: (readonly [string, number])[] = [];
    for (const c of m.connections) {
      const v = value(c);
      if (v !== null) samples.push([label(c), v]);
    }
    w.family(name, type, help, samples);
  };
  per("tether_pool_endpoint_healthy", "gauge", "1 while the connection may be chosen", (c) => (c.healthy ? 1 : 0));
  per("tether_pool_endpoint_score", "gauge", "Health score (0 when unhealthy)", (c) => c.score);
  per("tether_pool_endpoint_rtt_seconds", "gauge", "Smoothed ping round trip", (c) => (c.rtt === null ? null : c.rtt / 1000));
  per("tether_pool_endpoint_errors", "gauge", "Errors in the error window", (c) => c.errors);
  per("tether_pool_endpoint_in_flight", "gauge", "Requests in flight", (c) => c.inFlight);
  w.family(
    "tether_pool_endpoint_state",
    "gauge",
    "1 for the connection's current state",
    m.connections.map((c) => [label(c, `,state="${escapeLabel(c.state)}"`), 1] as const),
  );
  per("tether_pool_endpoint_requests_total", "counter", "Requests sent to the connection", (c) => c.requests);
  return w.text();
}
