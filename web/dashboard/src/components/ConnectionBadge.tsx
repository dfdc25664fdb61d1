import { useWebSocketContext } from "@tether/react";
import { type ReactNode, useEffect, useRef, useSyncExternalStore } from "react";
import { connectionStatus } from "../lib/status.js";
import { useNow } from "../lib/use-now.js";

/** The dashboard's own connection: Live, Connecting, Reconnecting, Paused, Refused or Disconnected. */
export function ConnectionBadge(): ReactNode {
  const { client } = useWebSocketContext();
  const snapshot = useSyncExternalStore(client.subscribeState, client.getSnapshot);
  const everConnected = useRef(false);
  useEffect(() => {
    if (snapshot.isConnected) everConnected.current = true;
  }, [snapshot.isConnected]);
  const now = useNow(1000);
  const status = connectionStatus(snapshot, everConnected.current || snapshot.isConnected, performance.now());
  void now; // re-render every second for the countdown
  return (
    <span className={`badge badge-${status.kind}`} data-testid="connection-status" data-state={status.kind} title={status.detail}>
      <span className="dot" aria-hidden="true" />
      {/* Only the label is announced: the detail has a countdown that changes every second. */}
      <span role="status" aria-live="polite">
        <span className="visually-hidden">Connection: </span>
        {status.label}
      </span>
    </span>
  );
}
