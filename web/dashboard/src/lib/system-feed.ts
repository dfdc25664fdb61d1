// Feeds a SystemHistory: live samples from the `system` channel, and once the
// connection is first up, the channel's retained history of the last window
// (so the charts are not empty on load). A failed history fetch only means the
// charts start empty; it is logged, not shown as an error.

import { type Event, type SubscriptionItem, type TetherClient, createLogger } from "@tether/client";
import { useEffect, useSyncExternalStore } from "react";
import type { SystemHistory } from "./system-history.js";

const log = createLogger("[Dashboard]");

/** Retained samples fetched at start, at most (the history route's maximum). */
const PREFILL = 1000;

interface HistoryPage {
  readonly seq: number;
  readonly events: readonly Event[];
}

async function fetchHistory(path: string, token: string | null, signal: AbortSignal): Promise<HistoryPage> {
  const headers: Record<string, string> = token === null ? {} : { Authorization: `Bearer ${token}` };
  const res = await fetch(path, { headers, signal });
  if (!res.ok) throw new Error(`${path}: HTTP ${String(res.status)}`);
  return (await res.json()) as HistoryPage;
}

/** The retained `system` samples of the last window: the current seq first, then the tail. */
export async function loadSystemHistory(token: string | null, signal: AbortSignal): Promise<readonly Event[]> {
  const head = await fetchHistory("/api/v1/channels/system/history?limit=1", token, signal);
  const since = Math.max(0, head.seq - PREFILL);
  const tail = await fetchHistory(`/api/v1/channels/system/history?since=${String(since)}&limit=${String(PREFILL)}`, token, signal);
  return tail.events;
}

export function useSystemFeed(client: TetherClient, history: SystemHistory, token: string | null): void {
  const connected = useSyncExternalStore(client.subscribeState, () => client.getSnapshot().isConnected);

  useEffect(() => {
    const off = client.subscribe("system", (item: SubscriptionItem) => {
      if (item.kind === "event") {
        history.observeClock(item.event.ts, Date.now());
        history.setError(null);
        history.add([item.event], history.serverNow());
      } else if (item.kind === "error") {
        history.setError(item.error.message);
      }
    });
    const prune = setInterval(() => {
      history.prune(history.serverNow());
    }, 5000);
    return () => {
      off();
      clearInterval(prune);
    };
  }, [client, history]);

  useEffect(() => {
    if (!connected || history.all().length > 0) return undefined;
    const abort = new AbortController();
    loadSystemHistory(token, abort.signal).then(
      (events) => {
        history.add(events, history.serverNow());
      },
      (e: unknown) => {
        if (!abort.signal.aborted) log("could not load the system history", e);
      },
    );
    return () => {
      abort.abort();
    };
  }, [connected, history, token]);
}
