// What the Channels view and an agent's stream list: a channel's events with
// seq and time, and markers where recovery replayed events or could not.
// Bounded: at most `max` entries, the oldest dropped first (a marker says so).

import type { Event, SubscriptionItem } from "@tether/client";

export type LogEntry =
  | { readonly kind: "event"; readonly key: string; readonly event: Event }
  | {
      readonly kind: "marker";
      readonly key: string;
      /** `replayed`: recovery filled the gap; `gap`: events were lost; `error`: the gateway refused. */
      readonly tone: "replayed" | "gap" | "error";
      readonly text: string;
      readonly at: number;
    };

export interface ChannelLog {
  readonly entries: readonly LogEntry[];
  /** Recovery items seen so far (the first one answers the initial `since`). */
  readonly recoveries: number;
  /** Entries dropped to stay within the bound. */
  readonly dropped: number;
  readonly lastSeq: number | null;
}

export const EMPTY_LOG: ChannelLog = { entries: [], recoveries: 0, dropped: 0, lastSeq: null };

export const DEFAULT_LOG_SIZE = 200;

let nextKey = 0;
function key(): string {
  nextKey += 1;
  return `m${String(nextKey)}`;
}

/** The log after `item`; `initialSince` says whether the first subscribe asked for history. */
export function appendItem(log: ChannelLog, item: SubscriptionItem, now: number, initialSince: boolean, max = DEFAULT_LOG_SIZE): ChannelLog {
  let entry: LogEntry;
  let recoveries = log.recoveries;
  let lastSeq = log.lastSeq;
  switch (item.kind) {
    case "event":
      entry = { kind: "event", key: `${item.event.epoch}:${String(item.event.seq)}`, event: item.event };
      lastSeq = item.event.seq;
      break;
    case "recovered": {
      const first = recoveries === 0 && initialSince;
      recoveries += 1;
      entry = {
        kind: "marker",
        key: key(),
        tone: item.ok ? "replayed" : "gap",
        at: now,
        text: first
          ? item.ok
            ? "Retained history replayed below"
            : "History not available: showing live events only"
          : item.ok
            ? `Reconnected: caught up from #${String(lastSeq ?? 0)} without a gap`
            : `Reconnected, but events after #${String(lastSeq ?? 0)} were no longer retained: the list has a gap`,
      };
      break;
    }
    case "error":
      entry = { kind: "marker", key: key(), tone: "error", at: now, text: `Subscription refused: ${item.error.code}: ${item.error.message}` };
      break;
  }
  const entries = [...log.entries, entry];
  const overflow = Math.max(0, entries.length - max);
  return {
    entries: overflow > 0 ? entries.slice(overflow) : entries,
    recoveries,
    dropped: log.dropped + overflow,
    lastSeq,
  };
}
