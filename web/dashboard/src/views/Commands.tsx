// Commands: send a command such as `process_receipt` with a JSON payload and
// see its result or error and its latency (send to result, as the browser saw it).

import { isValidCommandType } from "@tether/client";
import { useWebSocketContext } from "@tether/react";
import { type FormEvent, type ReactNode, useId, useState, useSyncExternalStore } from "react";
import { JsonField, parseJson } from "../components/JsonField.js";
import { useDashboard } from "../context.js";
import { type CommandRecord } from "../lib/commands.js";
import { clockTime, millis, preview } from "../lib/format.js";

function Outcome({ record }: { record: CommandRecord }): ReactNode {
  const o = record.outcome;
  switch (o.kind) {
    case "pending":
      return <span className="muted">Waiting for an agent…</span>;
    case "ok":
      return (
        <code>
          {preview(o.data, 400)}
          {o.duplicate ? " (duplicate)" : ""}
        </code>
      );
    case "agent-error":
      return (
        <span className="error">
          Agent error {o.code}: {o.message}
        </span>
      );
    case "failed":
      return (
        <span className="error">
          {o.code}: {o.message}
        </span>
      );
  }
}

export function CommandsView(): ReactNode {
  const { agents } = useWebSocketContext();
  const { commands } = useDashboard();
  const records = useSyncExternalStore(commands.subscribe, commands.getSnapshot);
  const id = useId();
  const known = [...new Set(agents.flatMap((a) => a.commands))].sort();

  const [type, setType] = useState("process_receipt");
  const [payload, setPayload] = useState('{"imageUrl": "https://example.com/receipt.jpg"}');
  const parsed = parseJson(payload);
  const typeOk = isValidCommandType(type.trim());

  const onSend = (e: FormEvent): void => {
    e.preventDefault();
    if (!parsed.ok || !typeOk) return;
    void commands.send(type.trim(), parsed.value);
  };

  const latest = records[0];
  return (
    <>
      <p className="visually-hidden" role="status" aria-live="polite">
        {latest === undefined || latest.outcome.kind === "pending"
          ? ""
          : `${latest.type}: ${latest.outcome.kind === "ok" ? "result" : "error"} after ${millis(latest.latencyMs)}`}
      </p>
      <section className="panel" aria-labelledby={`${id}-title`}>
        <h2 id={`${id}-title`}>Send a command</h2>
        <form onSubmit={onSend} className="stack">
          <div className="field">
            <label htmlFor={`${id}-type`}>Command</label>
            <input
              id={`${id}-type`}
              list={`${id}-known`}
              value={type}
              autoComplete="off"
              spellCheck={false}
              aria-invalid={!typeOk}
              aria-describedby={`${id}-type-hint`}
              onChange={(e) => {
                setType(e.target.value);
              }}
            />
            <datalist id={`${id}-known`}>
              {known.map((c) => (
                <option key={c} value={c} />
              ))}
            </datalist>
            <p id={`${id}-type-hint`} className={typeOk ? "hint" : "error"}>
              {typeOk
                ? known.length > 0
                  ? `Handled by the agents now: ${known.join(", ")}.`
                  : "No agent is registered yet: a command waits for one (up to the gateway's command TTL)."
                : "A command starts with a lowercase letter, then up to 63 of a-z 0-9 _ . : - (and is not a protocol type such as publish)."}
            </p>
          </div>
          <JsonField label="Payload (JSON)" value={payload} onChange={setPayload} error={parsed.ok ? null : parsed.error} testId="command-payload" rows={5} />
          <button type="submit" disabled={!parsed.ok || !typeOk}>
            Send command
          </button>
        </form>
      </section>
      <section className="panel" aria-labelledby={`${id}-results`}>
        <header className="panel-head">
          <h2 id={`${id}-results`}>Results</h2>
          {records.length > 0 && (
            <button
              type="button"
              className="secondary"
              onClick={() => {
                commands.clear();
              }}
            >
              Clear
            </button>
          )}
        </header>
        {records.length === 0 ? (
          <p className="muted">Commands sent from here and their results appear here, newest first.</p>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Sent</th>
                  <th scope="col">Command</th>
                  <th scope="col">Latency</th>
                  <th scope="col">Result</th>
                </tr>
              </thead>
              <tbody>
                {records.map((r) => (
                  <tr key={r.n} data-testid="command-result" data-status={r.outcome.kind} data-command={r.type}>
                    <td>
                      <time dateTime={new Date(r.sentAt).toISOString()}>{clockTime(r.sentAt)}</time>
                    </td>
                    <td>
                      <code>{r.type}</code>
                    </td>
                    <td data-testid="command-latency">{millis(r.latencyMs)}</td>
                    <td>
                      <Outcome record={r} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </>
  );
}
