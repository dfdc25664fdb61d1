// The channels the dashboard follows on behalf of its user (the Channels view
// and an agent's stream), with their logs. Lives outside React so that a
// subscription and its log survive switching views; the views read it through
// useSyncExternalStore.
//
// Items are buffered and applied every FLUSH_MS, so that a replay of a
// thousand retained events renders once, not a thousand times.

import type { SubscriptionItem, TetherClient } from "@tether/client";
import { type ChannelLog, DEFAULT_LOG_SIZE, EMPTY_LOG, appendItem } from "./channel-log.js";

const FLUSH_MS = 50;

/** Which view follows a channel: each lists only its own. */
export type Owner = "channels" | "agents";

export interface Followed {
  readonly channel: string;
  readonly owner: Owner;
  /** Whether the first subscribe asked for the retained history. */
  readonly history: boolean;
  readonly log: ChannelLog;
}

interface Entry {
  followed: Followed;
  readonly off: () => void;
  pending: SubscriptionItem[];
  /** Events dropped from `pending` before a flush (a hidden tab's timers are throttled). */
  pendingDropped: number;
}

export class Subscriptions {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<() => void>();
  private snapshot: readonly Followed[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly client: TetherClient,
    private readonly maxEntries = DEFAULT_LOG_SIZE,
  ) {}

  /**
   * Follows `channel` (a no-op when already followed). With `history`, the
   * first subscribe replays what the gateway retains (`since` seq 0); when the
   * dashboard itself already listens to the channel (`agents`, `system`), it
   * joins at the live position and the log says so. Throws on an invalid name.
   */
  follow(channel: string, history: boolean, owner: Owner): void {
    if (this.entries.has(channel)) return;
    const listener = (item: SubscriptionItem): void => {
      const entry = this.entries.get(channel);
      if (entry === undefined) return;
      entry.pending.push(item);
      // Bounded like the log: beyond twice its size, the oldest events go
      // (markers stay, so a recovery is never hidden).
      if (entry.pending.length > 2 * this.maxEntries) {
        const keep: SubscriptionItem[] = [];
        let excess = entry.pending.length - this.maxEntries;
        for (const p of entry.pending) {
          if (excess > 0 && p.kind === "event") {
            excess -= 1;
            entry.pendingDropped += 1;
          } else {
            keep.push(p);
          }
        }
        entry.pending = keep;
      }
      this.scheduleFlush();
    };
    let off: () => void;
    let joinedLive = false;
    try {
      off = history ? this.client.subscribe(channel, listener, { seq: 0 }) : this.client.subscribe(channel, listener);
    } catch (e) {
      if (!history || !(e instanceof Error) || !e.message.startsWith("already subscribed")) throw e;
      off = this.client.subscribe(channel, listener);
      joinedLive = true;
    }
    let log = EMPTY_LOG;
    if (joinedLive) {
      log = {
        ...log,
        entries: [
          {
            kind: "marker",
            key: `live:${channel}`,
            tone: "gap",
            at: Date.now(),
            text: "The dashboard already listens to this channel: showing live events only",
          },
        ],
      };
    }
    this.entries.set(channel, {
      followed: { channel, owner, history: history && !joinedLive, log },
      off,
      pending: [],
      pendingDropped: 0,
    });
    this.publish();
  }

  /** Stops following `channel` and forgets its log. */
  unfollow(channel: string): void {
    const entry = this.entries.get(channel);
    if (entry === undefined) return;
    this.entries.delete(channel);
    entry.off();
    this.publish();
  }

  /** Stops everything (the client is going away). */
  close(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const entry of this.entries.values()) entry.off();
    this.entries.clear();
    this.publish();
  }

  get(channel: string): Followed | null {
    return this.entries.get(channel)?.followed ?? null;
  }

  // useSyncExternalStore shape.
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = (): readonly Followed[] => this.snapshot;

  private scheduleFlush(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, FLUSH_MS);
  }

  private flush(): void {
    const now = Date.now();
    let changed = false;
    for (const entry of this.entries.values()) {
      if (entry.pending.length === 0) continue;
      let log = entry.followed.log;
      for (const item of entry.pending) log = appendItem(log, item, now, entry.followed.history, this.maxEntries);
      log = { ...log, dropped: log.dropped + entry.pendingDropped };
      entry.pending = [];
      entry.pendingDropped = 0;
      entry.followed = { ...entry.followed, log };
      changed = true;
    }
    if (changed) this.publish();
  }

  private publish(): void {
    this.snapshot = [...this.entries.values()].map((e) => e.followed);
    for (const l of this.listeners) l();
  }
}
