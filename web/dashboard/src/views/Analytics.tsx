// Analytics: the dashboard's own connection as the guide's monitoring page
// shows it: <WebSocketMetrics/> (with the Prometheus download), the pool
// (<PoolMetrics/> over a WebSocketPoolProvider to this gateway, open while the
// page is shown) and the offline queue (<OfflineStatus/>).

import { OfflineStatus, PoolMetrics, WebSocketMetrics, WebSocketPoolProvider } from "@tether/react";
import type { ReactNode } from "react";
import { useDashboard } from "../context.js";
import { storedToken } from "../lib/auth.js";

/** The page's shared offline controller; its HTTP replay asks for the token in force each time. */
const OFFLINE_OPTIONS = { token: (): Promise<string | null> => Promise.resolve(storedToken()) };

export function AnalyticsView(): ReactNode {
  const { wsUrl, token } = useDashboard();
  const poolConfig = token === null ? { urls: [wsUrl], minConnections: 1, maxConnections: 2 } : { urls: [wsUrl], minConnections: 1, maxConnections: 2, token };
  return (
    <div className="analytics">
      <div className="panel">
        <WebSocketMetrics />
      </div>
      <div className="panel">
        <OfflineStatus options={OFFLINE_OPTIONS} />
      </div>
      <div className="panel wide">
        <WebSocketPoolProvider config={poolConfig}>
          <PoolMetrics />
        </WebSocketPoolProvider>
      </div>
      <p className="muted">
        The gateway's own counters: <a href="/metrics">/metrics</a> (Prometheus text).
      </p>
    </div>
  );
}
