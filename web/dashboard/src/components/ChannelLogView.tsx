import type { ReactNode } from "react";
import type { ChannelLog } from "../lib/channel-log.js";
import { clockTime, preview } from "../lib/format.js";

export interface ChannelLogViewProps {
  readonly log: ChannelLog;
  /** Renders an event's data; default: one-line JSON. */
  readonly describe?: (data: unknown) => string;
  readonly empty: string;
  readonly label: string;
}

/** A channel's events, newest first, with seq and time, and the recovery markers in place. */
export function ChannelLogView({ log, describe = (d) => preview(d), empty, label }: ChannelLogViewProps): ReactNode {
  const entries = [...log.entries].reverse();
  return (
    <div className="log" aria-label={label} role="log" aria-live="off">
      {entries.length === 0 && <p className="muted">{empty}</p>}
      <ol>
        {entries.map((e) =>
          e.kind === "event" ? (
            <li key={e.key} className="log-event" data-testid="log-event" data-seq={e.event.seq}>
              <span className="seq" title={`epoch ${e.event.epoch}`}>
                #{e.event.seq}
              </span>
              <time dateTime={new Date(e.event.ts).toISOString()}>{clockTime(e.event.ts)}</time>
              {e.event.from !== undefined && <span className="from">{e.event.from}</span>}
              <code>{describe(e.event.data)}</code>
            </li>
          ) : (
            <li key={e.key} className={`log-marker marker-${e.tone}`} data-testid="log-marker" data-tone={e.tone}>
              <span aria-hidden="true">{e.tone === "replayed" ? "↺" : "⚠"}</span> {e.text}
              <time dateTime={new Date(e.at).toISOString()}>{clockTime(e.at)}</time>
            </li>
          ),
        )}
      </ol>
      {log.dropped > 0 && <p className="muted">{log.dropped} older entries not shown.</p>}
    </div>
  );
}
