// Agents: every agent with its status and counters (offline ones greyed), and
// the stream of the one being followed (`agent:<name>`: status changes and
// task progress, with its retained history).

import { type AgentStatusEntry, agentChannel } from "@tether/client";
import { useWebSocketContext } from "@tether/react";
import { type ReactNode, useSyncExternalStore } from "react";
import { ChannelLogView } from "../components/ChannelLogView.js";
import { useDashboard } from "../context.js";
import { ago, millis, preview } from "../lib/format.js";
import { useNow } from "../lib/use-now.js";

/** One line for an `agent:<name>` event. */
export function describeAgentEvent(data: unknown): string {
  if (data === null || typeof data !== "object") return preview(data);
  const d = data as Record<string, unknown>;
  if (d["kind"] === "status") {
    return `status ${String(d["status"])} · ${String(d["replicas"])} replica(s) · ${String(d["in_flight"])} in flight · ${String(d["processed"])} processed`;
  }
  if (d["kind"] === "task_progress") {
    return `${String(d["command"])} ${String(d["task"])}: ${preview(d["data"], 100)}`;
  }
  return preview(data);
}

function Summary({ agents }: { agents: readonly AgentStatusEntry[] }): ReactNode {
  const online = agents.filter((a) => a.status !== "offline");
  const sum = (f: (a: AgentStatusEntry) => number): number => agents.reduce((n, a) => n + f(a), 0);
  const cards: [string, number, string][] = [
    ["Agents online", online.length, "agents-online"],
    ["Offline", agents.length - online.length, "agents-offline"],
    ["Busy", agents.filter((a) => a.status === "busy").length, "agents-busy"],
    ["Tasks in flight", sum((a) => a.in_flight), "agents-in-flight"],
    ["Processed", sum((a) => a.processed), "agents-processed"],
    ["Failed", sum((a) => a.failed), "agents-failed"],
  ];
  return (
    <dl className="cards">
      {cards.map(([label, value, id]) => (
        <div className="card" key={id}>
          <dt>{label}</dt>
          <dd data-testid={id}>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function Stream({ name, onClose }: { name: string; onClose: () => void }): ReactNode {
  const { subscriptions } = useDashboard();
  const followed = useSyncExternalStore(subscriptions.subscribe, subscriptions.getSnapshot);
  const channel = agentChannel(name);
  const log = followed.find((f) => f.channel === channel)?.log;
  return (
    <section className="panel" data-testid="agent-stream" aria-labelledby="agent-stream-title">
      <header className="panel-head">
        <h2 id="agent-stream-title">
          Stream of <code>{channel}</code>
        </h2>
        <button type="button" className="secondary" onClick={onClose}>
          Stop following
        </button>
      </header>
      {log === undefined ? (
        <p className="muted">Subscribing…</p>
      ) : (
        <ChannelLogView
          log={log}
          describe={describeAgentEvent}
          label={`Events of ${channel}`}
          empty="No status changes or task progress yet."
        />
      )}
    </section>
  );
}

export function AgentsView(): ReactNode {
  const { agents } = useWebSocketContext();
  const { subscriptions } = useDashboard();
  const followed = useSyncExternalStore(subscriptions.subscribe, subscriptions.getSnapshot);
  const now = useNow(1000);
  const following = followed.filter((f) => f.channel.startsWith("agent:")).map((f) => f.channel.slice("agent:".length));

  const toggle = (name: string): void => {
    const channel = agentChannel(name);
    if (subscriptions.get(channel) !== null) {
      subscriptions.unfollow(channel);
    } else {
      for (const other of following) subscriptions.unfollow(agentChannel(other));
      subscriptions.follow(channel, true);
    }
  };
  const sorted = [...agents].sort(
    (a, b) => Number(a.status === "offline") - Number(b.status === "offline") || a.name.localeCompare(b.name),
  );

  return (
    <>
      <Summary agents={agents} />
      <section className="panel" aria-labelledby="agents-title">
        <h2 id="agents-title">Agents</h2>
        {agents.length === 0 ? (
          <p className="muted" data-testid="no-agents">
            No agents have registered yet. Start one with{" "}
            <code>tether agent --url {window.location.origin} --name receipt-processor --command process_receipt</code>.
          </p>
        ) : (
          <div className="table-wrap">
            <table className="stacked" data-testid="agents-table">
              <thead>
                <tr>
                  <th scope="col">Agent</th>
                  <th scope="col">Status</th>
                  <th scope="col">Replicas</th>
                  <th scope="col">In flight</th>
                  <th scope="col">Processed</th>
                  <th scope="col">Failed</th>
                  <th scope="col">Avg latency</th>
                  <th scope="col">Last seen</th>
                  <th scope="col">Commands</th>
                </tr>
              </thead>
              <tbody>
                {sorted.map((a) => {
                  const selected = following.includes(a.name);
                  return (
                    <tr
                      key={a.name}
                      data-testid="agent-row"
                      data-name={a.name}
                      data-status={a.status}
                      className={`${a.status === "offline" ? "offline" : ""} ${selected ? "selected" : ""}`}
                    >
                      <th scope="row">
                        <button
                          type="button"
                          className="link"
                          aria-pressed={selected}
                          title={selected ? `Stop following ${a.name}` : `Follow ${a.name}'s stream`}
                          onClick={() => {
                            toggle(a.name);
                          }}
                        >
                          {a.name}
                        </button>
                      </th>
                      <td data-label="Status">
                        <span className={`status status-${a.status}`} data-testid="agent-status">
                          {a.status}
                        </span>
                      </td>
                      <td data-label="Replicas">{a.replicas}</td>
                      <td data-label="In flight">{a.in_flight}</td>
                      <td data-label="Processed">{a.processed}</td>
                      <td data-label="Failed">{a.failed}</td>
                      <td data-label="Avg latency">{a.processed + a.failed === 0 ? "–" : millis(a.avg_latency_ms)}</td>
                      <td data-label="Last seen">
                        <time dateTime={new Date(a.last_seen).toISOString()}>
                          {ago(a.last_seen, now)}
                        </time>
                      </td>
                      <td data-label="Commands">{a.commands.join(", ")}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {following.map((name) => (
        <Stream
          key={name}
          name={name}
          onClose={() => {
            subscriptions.unfollow(agentChannel(name));
          }}
        />
      ))}
    </>
  );
}
