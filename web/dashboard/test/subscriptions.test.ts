// Subscriptions: follows through the client with or without history, batches
// items into bounded logs, bounds what waits for a flush, and lets go.

import type { Event, SubscriptionListener, TetherClient } from "@tether/client";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Subscriptions } from "../src/lib/subscriptions.js";

/** The part of TetherClient that Subscriptions uses, with the real rule about `since`. */
class FakeClient {
  readonly listeners = new Map<string, SubscriptionListener[]>();
  readonly sinces = new Map<string, unknown>();
  readonly unsubscribed: string[] = [];

  subscribe(channel: string, listener: SubscriptionListener, since?: { seq: number }): () => void {
    const list = this.listeners.get(channel);
    if (list !== undefined && since !== undefined) throw new Error(`already subscribed to ${channel}: since applies only to the first listener`);
    if (list === undefined) this.sinces.set(channel, since);
    this.listeners.set(channel, [...(list ?? []), listener]);
    return () => {
      this.listeners.set(channel, (this.listeners.get(channel) ?? []).filter((l) => l !== listener));
      this.unsubscribed.push(channel);
    };
  }

  emit(channel: string, seq: number): void {
    const event = { type: "event", channel, seq, epoch: "e", ts: 0, data: { seq } } as Event;
    for (const l of this.listeners.get(channel) ?? []) l({ kind: "event", event });
  }

  recovered(channel: string, ok: boolean): void {
    for (const l of this.listeners.get(channel) ?? []) l({ kind: "recovered", ok });
  }
}

function seqs(subs: Subscriptions, channel: string): number[] {
  return (subs.get(channel)?.log.entries ?? []).flatMap((e) => (e.kind === "event" ? [e.event.seq] : []));
}

describe("Subscriptions", () => {
  let fake: FakeClient;
  let subs: Subscriptions;
  beforeEach(() => {
    vi.useFakeTimers();
    fake = new FakeClient();
    subs = new Subscriptions(fake as unknown as TetherClient, 10);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test("history asks for since seq 0; items are applied in one batch after a short delay", () => {
    let renders = 0;
    subs.subscribe(() => {
      renders += 1;
    });
    subs.follow("orders", true, "channels");
    expect(fake.sinces.get("orders")).toEqual({ seq: 0 });
    const afterFollow = renders;
    fake.recovered("orders", true);
    for (let seq = 1; seq <= 5; seq++) fake.emit("orders", seq);
    expect(seqs(subs, "orders")).toEqual([]);
    vi.advanceTimersByTime(60);
    expect(seqs(subs, "orders")).toEqual([1, 2, 3, 4, 5]);
    expect(renders - afterFollow).toBe(1);
    expect(subs.get("orders")?.log.entries[0]).toMatchObject({ kind: "marker", text: "Retained history replayed below" });
    expect(subs.getSnapshot().map((f) => [f.channel, f.owner])).toEqual([["orders", "channels"]]);
  });

  test("a channel the dashboard already listens to is joined live, and the log says so", () => {
    fake.subscribe("system", () => undefined);
    subs.follow("system", true, "channels");
    expect(subs.get("system")?.history).toBe(false);
    expect(subs.get("system")?.log.entries[0]).toMatchObject({ kind: "marker", text: expect.stringContaining("live events only") as string });
    fake.recovered("system", true);
    vi.advanceTimersByTime(60);
    // Not the first subscriber's history answer: a reconnect.
    expect(subs.get("system")?.log.entries[1]).toMatchObject({ kind: "marker", text: expect.stringContaining("Reconnected") as string });
  });

  test("an invalid name still throws", () => {
    const failing = { subscribe: () => { throw new Error("invalid channel name: \"a b\""); } } as unknown as TetherClient;
    expect(() => { new Subscriptions(failing).follow("a b", true, "channels"); }).toThrow("invalid channel name");
  });

  test("what waits for a flush is bounded: old events go, markers stay, the drop is counted", () => {
    subs.follow("busy", false, "channels");
    for (let seq = 1; seq <= 25; seq++) fake.emit("busy", seq);
    fake.recovered("busy", false);
    for (let seq = 26; seq <= 30; seq++) fake.emit("busy", seq);
    vi.advanceTimersByTime(60);
    const log = subs.get("busy")?.log;
    expect(log?.entries).toHaveLength(10);
    expect(seqs(subs, "busy")).toEqual([22, 23, 24, 25, 26, 27, 28, 29, 30]);
    expect(log?.entries.some((e) => e.kind === "marker" && e.tone === "gap")).toBe(true);
    expect(log?.dropped).toBe(21);
  });

  test("following twice is one subscription; unfollow and close let go", () => {
    subs.follow("a", false, "channels");
    subs.follow("a", true, "agents");
    expect(fake.listeners.get("a")).toHaveLength(1);
    expect(subs.get("a")?.owner).toBe("channels");
    subs.follow("b", false, "agents");
    subs.unfollow("a");
    expect(fake.unsubscribed).toEqual(["a"]);
    expect(subs.get("a")).toBeNull();
    fake.emit("b", 1);
    subs.close();
    vi.advanceTimersByTime(60);
    expect(fake.unsubscribed).toEqual(["a", "b"]);
    expect(subs.getSnapshot()).toEqual([]);
  });
});
