// Client metrics: the same series, names and buckets as the Rust SDK's
// `ClientMetrics` (crates/client/src/metrics.rs), so one Grafana board serves
// both. `TetherClient` feeds them; `toPrometheus()` renders the text
// exposition format 0.0.4 (what `<WebSocketMetrics/>` downloads as
// `websocket_metrics.prom`). Fixed memory: a few numbers and 13 buckets.
//
// Not here: pool metrics (pool.ts has its own), gateway metrics (/metrics),
// the exposition format's details (prometheus.ts).

import { PrometheusWriter } from "./prometheus.js";

/** Upper bounds (seconds) of the ack-latency histogram; the Rust SDK's buckets. */
export const ACK_BUCKETS: readonly number[] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** A plain copy of the metrics, for rendering. */
export interface ClientMetricsSnapshot {
  /** Connection attempts (each WebSocket opened). */
  readonly connectAttempts: number;
  /** Connections welcomed after the first one. */
  readonly reconnects: number;
  readonly framesReceived: number;
  readonly framesSent: number;
  /** Times the connect circuit breaker opened. */
  readonly circuitOpens: number;
  /** 1 while connected, else 0. */
  readonly connected: number;
  /** Messages in the durable offline queue (set by whoever owns the queue). */
  readonly offlineQueueSize: number;
  /** Replies received to requests (the histogram's count). */
  readonly acks: number;
  /** Sum of request-to-reply times, in seconds. */
  readonly ackSecondsSum: number;
  /** Cumulative counts per `ACK_BUCKETS` bound, then +Inf. */
  readonly ackBuckets: readonly number[];
}

export class ClientMetrics {
  private connectAttempts = 0;
  private reconnects = 0;
  private framesReceived = 0;
  private framesSent = 0;
  private circuitOpens = 0;
  private connected = 0;
  private offlineQueueSize = 0;
  private welcomes = 0;
  private ackSum = 0;
  /** Non-cumulative counts per bucket, the last one being +Inf. */
  private readonly ackCounts = new Array<number>(ACK_BUCKETS.length + 1).fill(0);

  /** A WebSocket is being opened. */
  connectAttempt(): void {
    this.connectAttempts += 1;
  }

  /** A `welcome` arrived; every one after the first is a reconnect. */
  welcomed(): void {
    this.welcomes += 1;
    if (this.welcomes > 1) this.reconnects += 1;
    this.connected = 1;
  }

  /** The connection was lost or closed. */
  disconnected(): void {
    this.connected = 0;
  }

  frameReceived(): void {
    this.framesReceived += 1;
  }

  frameSent(): void {
    this.framesSent += 1;
  }

  circuitOpened(): void {
    this.circuitOpens += 1;
  }

  /** Sets the offline queue gauge. */
  setOfflineQueueSize(n: number): void {
    this.offlineQueueSize = Math.max(0, Math.floor(n));
  }

  /** A reply arrived `ms` after its request was first sent. */
  observeAck(ms: number): void {
    const seconds = Math.max(0, ms) / 1000;
    this.ackSum += seconds;
    let i = ACK_BUCKETS.findIndex((le) => seconds <= le);
    if (i < 0) i = ACK_BUCKETS.length;
    this.ackCounts[i] = (this.ackCounts[i] ?? 0) + 1;
  }

  snapshot(): ClientMetricsSnapshot {
    let running = 0;
    const cumulative = this.ackCounts.map((n) => (running += n));
    return {
      connectAttempts: this.connectAttempts,
      reconnects: this.reconnects,
      framesReceived: this.framesReceived,
      framesSent: this.framesSent,
      circuitOpens: this.circuitOpens,
      connected: this.connected,
      offlineQueueSize: this.offlineQueueSize,
      acks: running,
      ackSecondsSum: this.ackSum,
      ackBuckets: cumulative,
    };
  }

  /** Prometheus text exposition format 0.0.4, one trailing newline. */
  toPrometheus(): string {
    const s = this.snapshot();
    const w = new PrometheusWriter();
    w.series("tether_client_connect_attempts_total", "counter", "Connection attempts", s.connectAttempts);
    w.series("tether_client_reconnects_total", "counter", "Successful reconnections", s.reconnects);
    w.series("tether_client_frames_received_total", "counter", "Frames received", s.framesReceived);
    w.series("tether_client_frames_sent_total", "counter", "Frames sent", s.framesSent);
    w.series("tether_client_offline_queue_size", "gauge", "Messages in the offline queue", s.offlineQueueSize);
    w.series("tether_client_connected", "gauge", "1 while connected", s.connected);
    w.series("tether_client_circuit_opens_total", "counter", "Times the circuit breaker opened", s.circuitOpens);
    w.histogram("tether_client_ack_seconds", "Request sent to reply received", ACK_BUCKETS, s.ackBuckets, s.ackSecondsSum, s.acks);
    return w.text();
  }
}
