// `<PoolMetrics/>`: the connection pool at a glance: how many connections are
// open and healthy, the strategy, requests and the wait queue, and one table
// row per connection (URL, state, health score, RTT, requests). Reads the
// nearest `<WebSocketPoolProvider>`; plain semantic HTML for the app to style.
//
// Not here: measuring anything (the pool's metrics store does that) or
// exporting Prometheus text (`pool.toPrometheus()`).

import { type ConnectionMetrics } from "@tether/client";
import { type ReactNode, useContext } from "react";
import { WebSocketPoolContext } from "../pool-provider.js";

function ms(value: number | null): string {
  return value === null ? "–" : `${value.toFixed(1)} ms`;
}

function stateLabel(c: ConnectionMetrics): string {
  return c.replacing ? `${c.state} (replacing)` : c.state;
}

/**
 * The pool's metrics. Outside a `<WebSocketPoolProvider>`, or with the pool
 * disabled, it says so instead of throwing, so that a monitoring page can
 * always include it.
 */
export function PoolMetrics(): ReactNode {
  const context = useContext(WebSocketPoolContext);
  if (context === null) {
    return (
      <section data-testid="pool-metrics" aria-label="Connection pool metrics">
        <h2>Connection pool</h2>
        <p>No connection pool here (no &lt;WebSocketPoolProvider&gt; above this component).</p>
      </section>
    );
  }
  const { pool, metrics: m } = context;
  return (
    <section data-testid="pool-metrics" aria-label="Connection pool metrics">
      <h2>Connection pool</h2>
      {pool === null && <p>The connection pool is disabled.</p>}
      <dl>
        <dt>Total connections</dt>
        <dd data-testid="pool-total-connections">{m.totalConnections}</dd>
        <dt>Healthy connections</dt>
        <dd data-testid="pool-healthy-connections">{m.healthyConnections}</dd>
        <dt>Reconnecting</dt>
        <dd>{m.failedConnections}</dd>
        <dt>Strategy</dt>
        <dd data-testid="pool-strategy">{pool === null ? "–" : m.strategy}</dd>
        <dt>Requests (failed)</dt>
        <dd data-testid="pool-requests">
          {m.totalRequests} ({m.failedRequests})
        </dd>
        <dt>Average response time</dt>
        <dd>{m.totalRequests === 0 ? "–" : ms(m.averageResponseTime)}</dd>
        <dt>In flight</dt>
        <dd>{m.inFlight}</dd>
        <dt>Queued</dt>
        <dd data-testid="pool-queued">
          {m.queued} / {m.queueCapacity}
        </dd>
        <dt>Rejected (queue full)</dt>
        <dd>{m.rejected}</dd>
        {m.abandonedUrls.length > 0 && (
          <>
            <dt>Abandoned URLs (closed for good)</dt>
            <dd data-testid="pool-abandoned">{m.abandonedUrls.join(", ")}</dd>
          </>
        )}
      </dl>
      <table>
        <caption>Connections</caption>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">URL</th>
            <th scope="col">State</th>
            <th scope="col">Health</th>
            <th scope="col">RTT</th>
            <th scope="col">Errors</th>
            <th scope="col">In flight</th>
            <th scope="col">Requests</th>
          </tr>
        </thead>
        <tbody>
          {m.connections.map((c) => (
            <tr key={c.id} data-testid="pool-connection">
              <td>{c.id}</td>
              <td>{c.url}</td>
              <td>{stateLabel(c)}</td>
              <td>{c.healthy ? c.score.toFixed(2) : "unhealthy"}</td>
              <td>{ms(c.rtt)}</td>
              <td>{c.errors}</td>
              <td>{c.inFlight}</td>
              <td>{c.requests}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
