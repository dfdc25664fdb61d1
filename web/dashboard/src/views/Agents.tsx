// Agents: every agent with its status and counters (offline ones greyed), and
// the stream of the one being followed (`agent:<name>`: status changes and
// task progress, with its retained history).

import { type AgentStatusEntry, GatewayError, agentChannel } from "@tether/client";
import { useWebSocketContext } from "@tether/react";
import { type ReactNode, useEffect, useState, useSyncExternalStore } from "react";
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

/**
 * The gateway pushes an agent's status when it changes, not its `last_seen`;
 * while this view is open the whole list is refreshed this often.
 */
export const AGENTS_REFRESH_MS = 5000;

export function AgentsView(): ReactNode {
  const { agents, isConnected, requestAgentStatus } = useWebSocketContext();
  const { subscriptions, history } = useDashboard();
  const followed = useSyncExternalStore(subscriptions.subscribe, subscriptions.getSnapshot);
  const now = history.serverNow(useNow(1000));
  const [accessError, setAccessError] = useState<string | null>(null);

  useEffect(() => {
    if (!isConnected) return undefined;
    const refresh = (): void => {
      requestAgentStatus().then(
        () => {
          setAccessError(null);
        },
        (e: unknown) => {
          if (e instanceof GatewayError && e.code === "forbidden") setAccessError(e.message);
        },
      );
    };
    refresh();
    const t = setInterval(refresh, AGENTS_REFRESH_MS);
    return () => {
      clearInterval(t);
    };
  }, [isConnected, requestAgentStatus]);
  const following = followed.filter((f) => f.owner === "agents").map((f) => f.channel.slice("agent:".length));
  const [note, setNote] = useState<string | null>(null);

  const toggle = (name: string): void => {
    const channel = agentChannel(name);
    const owner = subscriptions.get(channel)?.owner;
    setNote(null);
    if (owner === "agents") {
      subscriptions.unfollow(channel);
    } else if (owner === "channels") {
      setNote(`${channel} is followed on the Channels view; its events are listed there.`);
    } else {
      for (const other of following) subscriptions.unfollow(agentChannel(other));
      subscriptions.follow(channel, true, "agents");
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
        {accessError !== null && (
          <p className="error" role="alert">
            This token may not read the agents&apos; status ({accessError}).
          </p>
        )}
        {note !== null && (
          <p className="hint" role="status">
            {note}
          </p>
        )}
        {agents.length === 0 ? (
          <p className="muted" data-testid="no-agents">
            No agents have registered yet. Start one with{" "}
            <code>tether agent --url {window.location.origin} --name receipt-processor --command process_receipt</code>.
          </p>
        ) : (
          <div className="table-wrap">
            <table className="stacked" data-testid="agents-table" role="table">
              <thead role="rowgroup">
                <tr role="row">
                  <th scope="col" role="columnheader">Agent</th>
                  <th scope="col" role="columnheader">Status</th>
                  <th scope="col" role="columnheader">Replicas</th>
                  <th scope="col" role="columnheader">In flight</th>
                  <th scope="col" role="columnheader">Processed</th>
                  <th scope="col" role="columnheader">Failed</th>
                  <th scope="col" role="columnheader">Avg latency</th>
                  <th scope="col" role="columnheader">Last seen</th>
                  <th scope="col" role="columnheader">Commands</th>
                </tr>
              </thead>
              <tbody role="rowgroup">
                {sorted.map((a) => {
                  const selected = following.includes(a.name);
                  return (
                    <tr
                      role="row"
                      key={a.name}
                      data-testid="agent-row"
                      data-name={a.name}
                      data-status={a.status}
                      className={`${a.status === "offline" ? "offline" : ""} ${selected ? "selected" : ""}`}
                    >
                      <th scope="row" role="rowheader">
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
                      <td role="cell" data-label="Status">
                        <span className={`status status-${a.status}`} data-testid="agent-status">
                          {a.status}
                        </span>
                      </td>
                      <td role="cell" data-label="Replicas">{a.replicas}</td>
                      <td role="cell" data-label="In flight">{a.in_flight}</td>
                      <td role="cell" data-label="Processed">{a.processed}</td>
                      <td role="cell" data-label="Failed">{a.failed}</td>
                      <td role="cell" data-label="Avg latency">{a.processed + a.failed === 0 ? "–" : millis(a.avg_latency_ms)}</td>
                      <td role="cell" data-label="Last seen">
                        <time dateTime={new Date(a.last_seen).toISOString()}>
                          {ago(a.last_seen, now)}
                        </time>
                      </td>
                      <td role="cell" data-label="Commands">{a.commands.join(", ")}</td>
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
