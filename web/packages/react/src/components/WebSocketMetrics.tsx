// `<WebSocketMetrics/>`: the connection's health at a glance (state, reconnect
// attempts, the client's counters and ack latency, the gateway's system
// metrics) and a "Download Prometheus metrics" button that saves the client's
// `toPrometheus()` text as `websocket_metrics.prom`. Reads the nearest
// `<WebSocketProvider>`; plain semantic HTML for the app to style.

import { type ClientMetricsSnapshot } from "@tether/client";
import { type ReactNode, useCallback, useEffect, useState } from "react";
import { useWebSocketContext } from "../provider.js";

export interface WebSocketMetricsProps {
  /** How often the counters are re-read, in ms (default 1000). */
  refreshInterval?: number;
  /** The downloaded file's name (default `websocket_metrics.prom`). */
  fileName?: string;
}

/** Saves `text` as a file through a temporary object URL and link. */
export function downloadText(text: string, fileName: string): void {
  const blob = new Blob([text], { type: "text/plain; version=0.0.4" });
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = fileName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => {
    URL.revokeObjectURL(url);
  }, 0);
}

function averageMs(m: ClientMetricsSnapshot): string {
  return m.acks === 0 ? "–" : `${((m.ackSecondsSum / m.acks) * 1000).toFixed(1)} ms`;
}

export function WebSocketMetrics({ refreshInterval = 1000, fileName = "websocket_metrics.prom" }: WebSocketMetricsProps): ReactNode {
  const { client, isConnected, error, reconnectAttempts, state, systemMetrics } = useWebSocketContext();
  const [metrics, setMetrics] = useState<ClientMetricsSnapshot>(() => client.metrics.snapshot());

  useEffect(() => {
    setMetrics(client.metrics.snapshot());
    const timer = setInterval(() => {
      setMetrics(client.metrics.snapshot());
    }, Math.max(100, refreshInterval));
    return () => {
      clearInterval(timer);
    };
  }, [client, refreshInterval, isConnected]);

  const exportPrometheusMetrics = useCallback(() => {
    downloadText(client.metrics.toPrometheus(), fileName);
  }, [client, fileName]);

  return (
    <section data-testid="websocket-metrics" aria-label="WebSocket metrics">
      <h2>WebSocket</h2>
      <dl>
        <dt>Status</dt>
        <dd data-testid="websocket-status">{isConnected ? "Connected" : state.kind}</dd>
        {error !== null && (
          <>
            <dt>Error</dt>
            <dd>{error}</dd>
          </>
        )}
        <dt>Reconnect attempts</dt>
        <dd>{reconnectAttempts}</dd>
        <dt>Connection attempts</dt>
        <dd>{metrics.connectAttempts}</dd>
        <dt>Reconnects</dt>
        <dd>{metrics.reconnects}</dd>
        <dt>Frames sent / received</dt>
        <dd>
          {metrics.framesSent} / {metrics.framesReceived}
        </dd>
        <dt>Replies (average latency)</dt>
        <dd>
          {metrics.acks} ({averageMs(metrics)})
        </dd>
        <dt>Circuit breaker opened</dt>
        <dd>{metrics.circuitOpens}</dd>
        {systemMetrics !== null && (
          <>
            <dt>Gateway connections</dt>
            <dd>{systemMetrics.connections}</dd>
            <dt>Gateway CPU / memory</dt>
            <dd>
              {systemMetrics.cpu_percent.toFixed(1)} % / {(systemMetrics.memory_bytes / 1048576).toFixed(0)} MiB
            </dd>
          </>
        )}
      </dl>
      <button type="button" onClick={exportPrometheusMetrics}>
        Download Prometheus metrics
      </button>
    </section>
  );
}
