// Analytics: the dashboard's own connection as the guide's monitoring page
// shows it: <WebSocketMetrics/> (with the Prometheus download), the pool
// (<PoolMetrics/> over a WebSocketPoolProvider to this gateway, open while the
// page is shown) and the offline queue (<OfflineStatus/>; its HTTP replay asks
// the provider's client for the token in force).

import { OfflineStatus, PoolMetrics, WebSocketMetrics, WebSocketPoolProvider } from "@tether/react";
import type { ReactNode } from "react";
import { useDashboard } from "../context.js";

export function AnalyticsView(): ReactNode {
  const { wsUrl, token } = useDashboard();
  const poolConfig = token === null ? { urls: [wsUrl], minConnections: 1, maxConnections: 2 } : { urls: [wsUrl], minConnections: 1, maxConnections: 2, token };
  return (
    <div className="analytics">
      <div className="panel">
        <WebSocketMetrics />
      </div>
      <div className="panel">
        <OfflineStatus />
      </div>
      <div className="panel wide">
        <WebSocketPoolProvider config={poolConfig}>
          <PoolMetrics />
        </WebSocketPoolProvider>
        <p className="hint">
          This pool opens its own connection to this gateway while the page is shown (so it counts in the
          gateway&apos;s connections).
        </p>
      </div>
      <p className="muted">
        The gateway's own counters: <a href="/metrics">/metrics</a> (Prometheus text).
      </p>
    </div>
  );
}
