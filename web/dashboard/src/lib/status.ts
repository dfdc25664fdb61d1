// The connection badge's words: what the dashboard's own connection is doing,
// from the client's state. Pure, so that every state has a pinned label.

import type { ConnectionSnapshot } from "@tether/client";

export type StatusKind = "live" | "connecting" | "reconnecting" | "paused" | "refused" | "closed";

export interface ConnectionStatus {
  readonly kind: StatusKind;
  /** One or two words for the badge. */
  readonly label: string;
  /** A sentence for the tooltip and screen readers. */
  readonly detail: string;
}

/**
 * `everConnected`: whether this client was ever live, so that a connect
 * attempt after a loss reads "Reconnecting" rather than "Connecting".
 */
export function connectionStatus(snapshot: ConnectionSnapshot, everConnected: boolean, now: number): ConnectionStatus {
  const s = snapshot.state;
  const why = snapshot.error === null ? "" : ` Last error: ${snapshot.error}.`;
  switch (s.kind) {
    case "idle":
      return { kind: "connecting", label: "Connecting", detail: "Starting the connection." };
    case "connecting":
      return everConnected || snapshot.reconnectAttempts > 0
        ? { kind: "reconnecting", label: "Reconnecting", detail: `Connection lost; attempt ${String(s.attempt)} under way.${why}` }
        : { kind: "connecting", label: "Connecting", detail: "Opening the WebSocket to the gateway." };
    case "reconnecting": {
      const wait = Math.max(0, Math.ceil((s.at - now) / 1000));
      return {
        kind: "reconnecting",
        label: "Reconnecting",
        detail: `Connection lost; attempt ${String(s.attempt)} in ${String(wait)} s.${why}`,
      };
    }
    case "circuit-open":
      return {
        kind: "paused",
        label: "Paused",
        detail: `Too many failed attempts in a row; trying again in ${String(Math.max(0, Math.ceil((s.until - now) / 1000)))} s.${why}`,
      };
    case "connected":
      return { kind: "live", label: "Live", detail: `Connected (session ${s.session}).` };
    case "closed":
      if (s.code === 4001 || s.code === 4003 || s.code === 1008) {
        return { kind: "refused", label: "Refused", detail: `The gateway refused the connection (${String(s.code)}: ${s.reason}).` };
      }
      return {
        kind: "closed",
        label: "Disconnected",
        detail: `Not reconnecting${s.code === null ? "" : ` after close code ${String(s.code)}`}${s.reason === "" ? "" : ` (${s.reason})`}.`,
      };
  }
}
