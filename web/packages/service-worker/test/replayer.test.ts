// Replayer: the worker's replay against a real OfflineQueue (on fake-indexeddb)
// and a fake gateway that deduplicates by id as the real one does by
// (principal, id).
import "fake-indexeddb/auto";
import { OfflineQueue } from "@tether/client";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it } from "vitest";
import { Replayer, mergeOutcomes, syncShouldRetry } from "../src/replayer.js";

const ENDPOINT = "https://app.example/api/v1/messages?client_id=page-1";

/** POST /api/v1/messages with the gateway's dedup; records every request. */
class FakeGateway {
  readonly published: string[] = [];
  readonly requests: { url: string; auth: string | null; ids: string[] }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  down = false;
  /** Resolved by the test to let a request answer. */
  gate: Promise<void> = Promise.resolve();

  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await this.gate;
      if (this.down) throw new TypeError("Failed to fetch");
      const frames = JSON.parse(String(init?.body)) as { id: string; type: string }[];
      const headers = new Headers(init?.headers);
      this.requests.push({ url: String(input), auth: headers.get("authorization"), ids: frames.map((f) => f.id) });
      const replies = frames.map((f) => {
        const duplicate = this.published.includes(f.id);
        if (!duplicate) this.published.push(f.id);
        return { type: "ack", id: f.id, data: { channel: "c", seq: this.published.indexOf(f.id) + 1, epoch: "e", ...(duplicate ? { duplicate } : {}) } };
      });
      return new Response(JSON.stringify(replies), { status: 200, headers: { "content-type": "application/json" } });
    } finally {
      this.inFlight -= 1;
    }
  };
}

const open: { queue: OfflineQueue; replayer: Replayer }[] = [];

async function setup(): Promise<{ queue: OfflineQueue; replayer: Replayer; gateway: FakeGateway; results: unknown[] }> {
  const factory = new IDBFactory();
  const queue = await OfflineQueue.open({ indexedDB: factory });
  const gateway = new FakeGateway();
  const results: unknown[] = [];
  const replayer = new Replayer({
    endpoint: ENDPOINT,
    dbName: "tether-offline",
    openQueue: (dbName) => OfflineQueue.open({ dbName, indexedDB: factory }),
    fetch: gateway.fetch,
    onResult: (r) => {
      results.push(r);
    },
  });
  open.push({ queue, replayer });
  return { queue, replayer, gateway, results };
}

function publish(id: string, n: number): object {
  return { type: "publish", id, channel: "e2e-offline", data: { n } };
}

afterEach(async () => {
  for (const { queue, replayer } of open.splice(0)) {
    queue.close();
    await replayer.close();
  }
});

describe("Replayer", () => {
  it("replays the queue oldest first with the original ids and empties it", async () => {
    const { queue, replayer, gateway, results } = await setup();
    await queue.add(publish("a", 1));
    await queue.add(publish("b", 2));
    await queue.add(publish("c", 3));
    const outcome = await replayer.run("test");
    expect(outcome).toEqual({ sent: 3, rejected: [], remaining: 0 });
    expect(gateway.requests).toEqual([{ url: ENDPOINT, auth: null, ids: ["a", "b", "c"] }]);
    expect(await queue.size()).toBe(0);
    expect(results).toEqual([outcome]);
  });

  it("does not fetch at all when the queue is empty", async () => {
    const { replayer, gateway, results } = await setup();
    expect(await replayer.run("test")).toEqual({ sent: 0, rejected: [], remaining: 0 });
    expect(gateway.requests).toEqual([]);
    expect(results).toEqual([]);
  });

  it("takes a message the gateway already has (a duplicate ack) out of the queue without publishing it again", async () => {
    const { queue, replayer, gateway } = await setup();
    gateway.published.push("a"); // the page's own send got through, its reply was lost
    await queue.add(publish("a", 1));
    await queue.add(publish("b", 2));
    expect(await replayer.run("test")).toMatchObject({ sent: 2, remaining: 0 });
    expect(gateway.published).toEqual(["a", "b"]);
  });

  it("runs one replay at a time; triggers during a replay join it and a message queued meanwhile is sent once", async () => {
    const { queue, replayer, gateway } = await setup();
    await queue.add(publish("a", 1));
    let release = (): void => undefined;
    gateway.gate = new Promise((r) => {
      release = r;
    });
    const first = replayer.run("sync");
    await expect.poll(() => gateway.inFlight).toBe(1);
    await queue.add(publish("b", 2));
    const joined = [replayer.run("message"), replayer.run("activate"), replayer.run("worker start")];
    release();
    const outcomes = await Promise.all([first, ...joined]);
    expect(gateway.maxInFlight).toBe(1);
    expect(gateway.published).toEqual(["a", "b"]);
    expect(gateway.requests.map((r) => r.ids)).toEqual([["a"], ["b"]]);
    // One answer for the two runs that every caller waited for.
    for (const o of outcomes) expect(o).toEqual({ sent: 2, rejected: [], remaining: 0 });
    expect(replayer.running).toBe(false);
  });

  it("keeps the queue on a network failure and asks the browser to retry the sync", async () => {
    const { queue, replayer, gateway } = await setup();
    await queue.add(publish("a", 1));
    gateway.down = true;
    const outcome = await replayer.run("sync");
    expect(outcome.error).toMatch(/network error/);
    expect(outcome.remaining).toBe(1);
    expect(syncShouldRetry(outcome)).toBe(true);
    expect(await queue.size()).toBe(1);

    gateway.down = false;
    const again = await replayer.run("sync");
    expect(again).toEqual({ sent: 1, rejected: [], remaining: 0 });
    expect(syncShouldRetry(again)).toBe(false);
    expect(gateway.published).toEqual(["a"]);
  });

  it("sends the token handed over by a page as a bearer token, and none after it is cleared", async () => {
    const { queue, replayer, gateway } = await setup();
    replayer.token = "t0k3n";
    await queue.add(publish("a", 1));
    await replayer.run("test");
    replayer.token = null;
    await queue.add(publish("b", 2));
    await replayer.run("test");
    expect(gateway.requests.map((r) => r.auth)).toEqual(["Bearer t0k3n", null]);
  });

  it("reports a queue that cannot be opened, and tries to open it again next time", async () => {
    let attempts = 0;
    const gateway = new FakeGateway();
    const factory = new IDBFactory();
    const replayer = new Replayer({
      endpoint: ENDPOINT,
      dbName: "tether-offline",
      openQueue: (dbName) => {
        attempts += 1;
        if (attempts === 1) return Promise.reject(new Error("IndexedDB is unavailable"));
        return OfflineQueue.open({ dbName, indexedDB: factory });
      },
      fetch: gateway.fetch,
    });
    const failed = await replayer.run("test");
    expect(failed).toEqual({ sent: 0, rejected: [], remaining: null, error: "replay failed: IndexedDB is unavailable" });
    expect(syncShouldRetry(failed)).toBe(true);
    expect(await replayer.run("test")).toEqual({ sent: 0, rejected: [], remaining: 0 });
    expect(attempts).toBe(2);
    await replayer.close();
  });
});

describe("mergeOutcomes", () => {
  it("adds what both runs did and keeps what the later one left and said", () => {
    const a = { sent: 2, rejected: [{ id: "x", error: "bad_request: no" }], remaining: 1, error: "network error" };
    expect(mergeOutcomes(a, { sent: 1, rejected: [], remaining: 0 })).toEqual({
      sent: 3,
      rejected: [{ id: "x", error: "bad_request: no" }],
      remaining: 0,
    });
    expect(mergeOutcomes({ sent: 1, rejected: [], remaining: 0 }, { sent: 0, rejected: [], remaining: null, error: "e" })).toEqual({
      sent: 1,
      rejected: [],
      remaining: null,
      error: "e",
    });
  });
});
