// What the views share besides the WebSocket context: the stores that outlive
// a view (samples, followed channels, the command log) and the auth token.

import { createContext, useContext } from "react";
import type { CommandLog } from "./lib/commands.js";
import type { Subscriptions } from "./lib/subscriptions.js";
import type { SystemHistory } from "./lib/system-history.js";

export interface Dashboard {
  readonly history: SystemHistory;
  readonly subscriptions: Subscriptions;
  readonly commands: CommandLog;
  /** The access token in use, or null (auth off, or not signed in). */
  readonly token: string | null;
  /** The same-origin WebSocket URL the dashboard connects to. */
  readonly wsUrl: string;
}

export const DashboardContext = createContext<Dashboard | null>(null);

export function useDashboard(): Dashboard {
  const d = useContext(DashboardContext);
  if (d === null) throw new Error("useDashboard must be used inside the dashboard's <Shell>");
  return d;
}
