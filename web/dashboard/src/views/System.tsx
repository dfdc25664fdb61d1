// System: the gateway's CPU, memory, connections, agents and message rates as
// live charts over the last minutes (one line per node), from the `system`
// channel, with the latest sample of each node as numbers.

import { type SystemMetrics } from "@tether/client";
import { type ReactNode, useMemo, useSyncExternalStore } from "react";
import { Chart } from "../components/Chart.js";
import { useDashboard } from "../context.js";
import { ago, bytes, percent, rate, uptime } from "../lib/format.js";
import { useTheme } from "../lib/theme.js";
import { useNow } from "../lib/use-now.js";

interface ChartSpec {
  readonly title: string;
  readonly testId: string;
  readonly metrics: readonly [string, (m: SystemMetrics) => number][];
  readonly format: (v: number) => string;
}

const CHARTS: readonly ChartSpec[] = [
  { title: "CPU", testId: "chart-cpu", metrics: [["CPU", (m) => m.cpu_percent]], format: (v) => `${v.toFixed(0)} %` },
  { title: "Memory (resident)", testId: "chart-memory", metrics: [["Memory", (m) => m.memory_bytes]], format: bytes },
  {
    title: "Connections and agents",
    testId: "chart-connections",
    metrics: [
      ["Connections", (m) => m.connections],
      ["Agents", (m) => m.agents],
    ],
    format: (v) => v.toFixed(0),
  },
  {
    title: "Messages per second",
    testId: "chart-messages",
    metrics: [
      ["In", (m) => m.messages_in_per_s],
      ["Out", (m) => m.messages_out_per_s],
    ],
    format: rate,
  },
];

export function SystemView(): ReactNode {
  const { history } = useDashboard();
  const version = useSyncExternalStore(history.subscribe, history.getVersion);
  const [theme] = useTheme();
  const now = history.serverNow(useNow(1000));
  const nodes = useMemo(() => history.nodes(), [history, version]);
  const latest = useMemo(() => history.latest(), [history, version]);
  const charts = useMemo(
    () =>
      CHARTS.map((spec) => ({
        spec,
        data: history.aligned(spec.metrics.map(([, pick]) => pick)),
        series: spec.metrics.flatMap(([label]) => nodes.map((node) => ({ label: nodes.length > 1 ? `${label} · ${node}` : label }))),
      })),
    [history, version, nodes],
  );
  const cluster = latest.find((s) => s.metrics.cluster !== undefined)?.metrics.cluster;

  return (
    <>
      <section className="panel" aria-labelledby="nodes-title">
        <h2 id="nodes-title">Gateway nodes</h2>
        {history.error !== null && (
          <p className="error" role="alert">
            No samples: the gateway refused the <code>system</code> channel ({history.error}).
          </p>
        )}
        {latest.length === 0 ? (
          <p className="muted" data-testid="no-samples">
            Waiting for the first sample on the <code>system</code> channel…
          </p>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Node</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Connections</th>
                  <th scope="col">Agents</th>
                  <th scope="col">In</th>
                  <th scope="col">Out</th>
                  <th scope="col">Uptime</th>
                  <th scope="col">Sample</th>
                </tr>
              </thead>
              <tbody>
                {latest.map(({ ts, metrics: m }) => (
                  <tr key={m.node} data-testid="system-node" data-node={m.node} className={now - ts > 30_000 ? "offline" : ""}>
                    <th scope="row">{m.node}</th>
                    <td>{percent(m.cpu_percent)}</td>
                    <td>{bytes(m.memory_bytes)}</td>
                    <td data-testid="system-connections">{m.connections}</td>
                    <td>{m.agents}</td>
                    <td>{rate(m.messages_in_per_s)}</td>
                    <td>{rate(m.messages_out_per_s)}</td>
                    <td>{uptime(m.uptime_s)}</td>
                    <td>
                      <time data-testid="system-sample-time" dateTime={new Date(ts).toISOString()} data-ts={ts}>
                        {ago(ts, now)}
                      </time>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {cluster !== undefined && (
          <p data-testid="cluster-totals">
            Cluster: {cluster.nodes} nodes, {cluster.connections} connections, {cluster.agents} agents,{" "}
            {rate(cluster.messages_in_per_s)} in, {rate(cluster.messages_out_per_s)} out.
          </p>
        )}
      </section>
      <section className="charts" aria-label="Charts of the last 10 minutes">
        {charts.map(({ spec, data, series }) => {
          const last = latest.map((s) => `${spec.metrics.map(([l, pick]) => `${l} ${spec.format(pick(s.metrics))}`).join(", ")} on ${s.metrics.node}`);
          return (
            <Chart
              key={spec.testId}
              testId={spec.testId}
              title={spec.title}
              summary={last.length === 0 ? "no samples yet" : last.join("; ")}
              series={series}
              data={data}
              format={spec.format}
              theme={theme}
            />
          );
        })}
      </section>
    </>
  );
}
