// OfflineQueue on fake-indexeddb (the global IndexedDB of these tests) and
// replayOverHttp against a fake fetch that answers like POST /api/v1/messages.
// Every test uses its own database name.

import "fake-indexeddb/auto";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  InvalidOfflineMessageError,
  OFFLINE_DB_NAME,
  OfflineQueue,
  OfflineQueueFullError,
  httpEndpointFor,
  replayOverHttp,
} from "../src/index";

let counter = 0;
function dbName(): string {
  counter += 1;
  return `tether-offline-test-${counter}-${Math.random().toString(36).slice(2)}`;
}

const opened: OfflineQueue[] = [];
async function open(options: Parameters<typeof OfflineQueue.open>[0] = {}): Promise<OfflineQueue> {
  const q = await OfflineQueue.open(options);
  opened.push(q);
  return q;
}

afterEach(() => {
  for (const q of opened.splice(0)) q.close();
});

const publish = (id: string, data: unknown = { n: id }): Record<string, unknown> => ({
  type: "publish",
  id,
  channel: "orders",
  data,
});

/** Resolves on the next call of a subscribe listener. */
function nextChange(q: OfflineQueue): Promise<void> {
  return new Promise((resolve) => {
    const off = q.subscribe(() => {
      off();
      resolve();
    });
  });
}

describe("OfflineQueue storage", () => {
  it("uses the fixed schema the Service Worker reads", async () => {
    const name = dbName();
    await open({ dbName: name });
    const raw = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(name);
      req.onsuccess = () => {
        resolve(req.result);
      };
      req.onerror = () => {
        reject(req.error ?? new Error("open failed"));
      };
    });
    try {
      expect(raw.version).toBe(1);
      expect([...raw.objectStoreNames]).toEqual(["messages"]);
      const store = raw.transaction("messages").objectStore("messages");
      expect(store.keyPath).toBe("id");
      expect([...store.indexNames]).toEqual(["queuedAt"]);
      expect(store.index("queuedAt").keyPath).toBe("queuedAt");
    } finally {
      raw.close();
    }
  });

  it("defaults to the database name tether-offline", () => {
    expect(OFFLINE_DB_NAME).toBe("tether-offline");
  });

  it("survives a page reload: a new instance on the same database sees the messages", async () => {
    const name = dbName();
    const first = await open({ dbName: name });
    await first.add(publish("a"));
    await first.add({ type: "process_receipt", id: "b", data: { imageUrl: "x.jpg" } });
    first.close();

    const second = await open({ dbName: name });
    const list = await second.list();
    expect(list.map((m) => m.id)).toEqual(["a", "b"]);
    expect(list[1]?.frame).toEqual({ type: "process_receipt", id: "b", data: { imageUrl: "x.jpg" } });
    expect(list[0]?.attempts).toBe(0);
    expect(typeof list[0]?.queuedAt).toBe("number");
    expect(await second.size()).toBe(2);
  });

  it("drops messages older than ttlMs (the gateway's dedup window) instead of replaying them", async () => {
    const name = dbName();
    const first = await open({ dbName: name });
    await first.add(publish("old"));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const strict = await open({ dbName: name, ttlMs: 10 });
    await strict.add(publish("new"));
    expect((await strict.list()).map((m) => m.id)).toEqual(["new"]);
    expect(await first.size()).toBe(1);
    // The default window (24 h) keeps everything.
    expect((await first.list()).map((m) => m.id)).toEqual(["new"]);
  });

  it("keeps a given id and assigns a printable one when missing", async () => {
    const q = await open({ dbName: dbName() });
    const kept = await q.add(publish("my-id-1"));
    expect(kept.id).toBe("my-id-1");
    expect(kept.frame["id"]).toBe("my-id-1");

    const assigned = await q.add({ type: "test" });
    expect(assigned.id).toMatch(/^[\x20-\x7e]{1,128}$/);
    expect(assigned.frame).toEqual({ type: "test", id: assigned.id, });
    const other = await q.add({ type: "test" });
    expect(other.id).not.toBe(assigned.id);
    expect((await q.list()).map((m) => m.id)).toEqual(["my-id-1", assigned.id, other.id]);
  });

  it("is idempotent: adding a queued id again returns the queued record", async () => {
    const q = await open({ dbName: dbName() });
    const first = await q.add(publish("dup", { v: 1 }));
    const again = await q.add(publish("dup", { v: 2 }));
    expect(again).toEqual(first);
    expect(await q.size()).toBe(1);
    expect((await q.list())[0]?.frame["data"]).toEqual({ v: 1 });
  });

  it("lists oldest first, in queueing order even within one millisecond", async () => {
    const q = await open({ dbName: dbName() });
    const now = vi.spyOn(Date, "now").mockReturnValue(1_000);
    let list;
    try {
      for (const id of ["z", "y", "x", "w"]) await q.add(publish(id));
      list = await q.list();
    } finally {
      now.mockRestore();
    }
    expect(list.map((m) => m.id)).toEqual(["z", "y", "x", "w"]);
    expect(list.map((m) => m.queuedAt)).toEqual([1000, 1001, 1002, 1003]);
  });

  it("refuses a message when maxMessages is reached and stores nothing", async () => {
    const q = await open({ dbName: dbName(), maxMessages: 2 });
    await q.add(publish("1"));
    await q.add(publish("2"));
    const err = await q.add(publish("3")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OfflineQueueFullError);
    expect((err as OfflineQueueFullError).limit).toBe("maxMessages");
    expect((err as OfflineQueueFullError).id).toBe("3");
    expect((await q.list()).map((m) => m.id)).toEqual(["1", "2"]);
    // An id already queued is still idempotent when full.
    await expect(q.add(publish("2"))).resolves.toMatchObject({ id: "2" });
    // Room again after a removal.
    await q.remove(["1"]);
    await expect(q.add(publish("3"))).resolves.toMatchObject({ id: "3" });
  });

  it("refuses a message when maxBytes would be exceeded and stores nothing", async () => {
    const q = await open({ dbName: dbName(), maxBytes: 220 });
    await q.add(publish("a", "x".repeat(100)));
    const err = await q.add(publish("b", "y".repeat(100))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OfflineQueueFullError);
    expect((err as OfflineQueueFullError).limit).toBe("maxBytes");
    expect(await q.size()).toBe(1);
    // A small one still fits.
    await q.add(publish("c", 1));
    expect((await q.list()).map((m) => m.id)).toEqual(["a", "c"]);
  });

  it("rejects invalid frames with a clear error and stores nothing", async () => {
    const q = await open({ dbName: dbName(), maxMessageBytes: 1000 });
    const cases: unknown[] = [
      { type: "Not A Type", id: "1" },
      { type: "publish", id: "2" }, // no channel
      { type: "publish", id: "3", channel: "bad channel!" },
      { type: "publish", id: "", channel: "orders" }, // empty id
      { type: "publish", id: "é", channel: "orders" }, // not printable ASCII
      { type: "welcome", id: "4" }, // a server type
      { type: "subscribe", id: "5", channel: "orders" }, // valid, but not queueable
      { type: "batch", data: [{ type: "ping", id: "6" }] },
      { id: "7" },
      publish("8", "z".repeat(2000)), // over maxMessageBytes
    ];
    for (const c of cases) {
      const err = await q.add(c as object).catch((e: unknown) => e);
      expect(err, JSON.stringify(c).slice(0, 80)).toBeInstanceOf(InvalidOfflineMessageError);
      expect((err as Error).message.length).toBeGreaterThan(10);
    }
    await expect(q.add([] as unknown as object)).rejects.toThrow(InvalidOfflineMessageError);
    const cyclic: Record<string, unknown> = { type: "publish", id: "c", channel: "orders" };
    cyclic["data"] = cyclic;
    await expect(q.add(cyclic)).rejects.toThrow(/JSON/);
    expect(await q.size()).toBe(0);
  });

  it("removes, clears and records failures", async () => {
    const q = await open({ dbName: dbName() });
    for (const id of ["a", "b", "c"]) await q.add(publish(id));
    expect(await q.remove(["a", "missing"])).toBe(1);
    expect(await q.markFailed("b", new Error("timeout"))).toBe(true);
    expect(await q.markFailed("b", "again")).toBe(true);
    expect(await q.markFailed("missing", "x")).toBe(false);
    const list = await q.list();
    expect(list.map((m) => [m.id, m.attempts, m.lastError])).toEqual([
      ["b", 2, "again"],
      ["c", 0, undefined],
    ]);
    await q.clear();
    expect(await q.size()).toBe(0);
  });

  it("notifies its own listeners and those of other instances (other tabs)", async () => {
    const name = dbName();
    const tabA = await open({ dbName: name });
    const tabB = await open({ dbName: name });
    const own = vi.fn();
    tabA.subscribe(own);
    const elsewhere = nextChange(tabB);
    await tabA.add(publish("shared"));
    expect(own).toHaveBeenCalledTimes(1);
    await elsewhere; // delivered through the BroadcastChannel named after the database
    expect((await tabB.list()).map((m) => m.id)).toEqual(["shared"]);
  });

  it("rejects every call after close()", async () => {
    const q = await open({ dbName: dbName() });
    q.close();
    await expect(q.size()).rejects.toThrow(/closed/);
    await expect(q.add(publish("x"))).rejects.toThrow(/closed/);
  });

  it("validates its bounds", async () => {
    await expect(OfflineQueue.open({ dbName: dbName(), maxMessages: 0 })).rejects.toThrow(RangeError);
    await expect(OfflineQueue.open({ dbName: dbName(), maxBytes: -1 })).rejects.toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// replayOverHttp
// ---------------------------------------------------------------------------

type Replier = (frames: Record<string, unknown>[]) => Response | Promise<Response>;

/** A fetch that records each request and answers with `replier`. */
function fakeFetch(replier: Replier) {
  const calls: { url: string; headers: Record<string, string>; frames: Record<string, unknown>[] }[] = [];
  const fn = vi.fn(async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const frames = JSON.parse(String(init?.body)) as Record<string, unknown>[];
    calls.push({ url: String(input), headers: { ...(init?.headers as Record<string, string>) }, frames });
    return replier(frames);
  });
  return { fetch: fn as unknown as typeof fetch, calls };
}

const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

const ENDPOINT = "http://gw.test/api/v1/messages?client_id=alice";

describe("replayOverHttp", () => {
  it("removes acks, duplicates and results; keeps retryable errors; removes and reports non-retryable ones", async () => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("ok"));
    await q.add(publish("dup"));
    await q.add({ type: "process_receipt", id: "cmd" });
    await q.add(publish("busy"));
    await q.add(publish("bad"));
    const { fetch, calls } = fakeFetch((frames) =>
      json(
        frames.map((f) => {
          const id = f["id"];
          switch (id) {
            case "ok":
              return { type: "ack", id, data: { channel: "orders", seq: 1, epoch: "e1" } };
            case "dup":
              return { type: "ack", id, data: { channel: "orders", seq: 1, epoch: "e1", duplicate: true } };
            case "cmd":
              return { type: "ack", id, data: { accepted: true } };
            case "busy":
              return { type: "error", id, error: { code: "overloaded", message: "busy", retryable: true } };
            default:
              return { type: "error", id, error: { code: "forbidden", message: "not yours", retryable: false } };
          }
        }),
      ),
    );
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch, token: "tok" });
    expect(result).toEqual({
      sent: 3,
      rejected: [{ id: "bad", error: "forbidden: not yours" }],
      remaining: 1,
      error: "busy: overloaded: busy", // the replay stopped at it (nothing after this batch)
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]?.url).toBe(ENDPOINT);
    expect(calls[0]?.headers["authorization"]).toBe("Bearer tok");
    expect(calls[0]?.headers["content-type"]).toBe("application/json");
    expect(calls[0]?.frames.map((f) => f["id"])).toEqual(["ok", "dup", "cmd", "busy", "bad"]);
    const left = await q.list();
    expect(left.map((m) => [m.id, m.attempts, m.lastError])).toEqual([["busy", 1, "overloaded: busy"]]);
  });

  it("removes and reports a duplicate error and, for a command, no_handler / timeout: resending can never succeed", async () => {
    const q = await open({ dbName: dbName() });
    await q.add({ type: "process_receipt", id: "dup-cmd" });
    await q.add(publish("dup-pub"));
    await q.add({ type: "process_receipt", id: "no-handler" });
    await q.add({ type: "process_receipt", id: "timed-out" });
    await q.add(publish("pub-timeout"));
    const { fetch, calls } = fakeFetch((frames) =>
      json(
        frames.map((f) => {
          const id = f["id"];
          switch (id) {
            case "dup-cmd":
              // The stored outcome of an id already seen: sent again on every resend, forever.
              return { type: "error", id, error: { code: "no_handler", message: "none", retryable: true }, duplicate: true };
            case "dup-pub":
              return { type: "error", id, error: { code: "internal", message: "stored", retryable: true }, duplicate: true };
            case "no-handler":
              return { type: "error", id, error: { code: "no_handler", message: "no replica", retryable: true } };
            case "timed-out":
              return { type: "error", id, error: { code: "timeout", message: "no result", retryable: true } };
            default:
              // A publish's timeout is transient: kept.
              return { type: "error", id, error: { code: "timeout", message: "slow store", retryable: true } };
          }
        }),
      ),
    );
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch });
    expect(calls).toHaveLength(1);
    expect(result.sent).toBe(0);
    expect(result.rejected).toEqual([
      { id: "dup-cmd", error: "no_handler: none (the stored outcome of this id)" },
      { id: "dup-pub", error: "internal: stored (the stored outcome of this id)" },
      { id: "no-handler", error: "no_handler: no replica" },
      { id: "timed-out", error: "timeout: no result" },
    ]);
    expect(result.remaining).toBe(1);
    expect(result.error).toBe("pub-timeout: timeout: slow store");
    expect((await q.list()).map((m) => m.id)).toEqual(["pub-timeout"]);
  });

  it("sends no further batch after a retryable error, so newer messages do not overtake it", async () => {
    const q = await open({ dbName: dbName() });
    for (let i = 0; i < 4; i++) await q.add(publish(`m${i}`));
    const { fetch, calls } = fakeFetch((frames) =>
      json(
        frames.map((f) =>
          f["id"] === "m1"
            ? { type: "error", id: f["id"], error: { code: "rate_limited", message: "slow down", retryable: true } }
            : { type: "ack", id: f["id"], data: {} },
        ),
      ),
    );
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch, batchSize: 1 });
    expect(calls.map((c) => c.frames.map((f) => f["id"]))).toEqual([["m0"], ["m1"]]);
    expect(result).toEqual({ sent: 1, rejected: [], remaining: 3, error: "m1: rate_limited: slow down" });
    expect((await q.list()).map((m) => [m.id, m.attempts])).toEqual([
      ["m1", 1],
      ["m2", 0],
      ["m3", 0],
    ]);
  });

  it("stops and keeps everything when a request gets no answer within timeoutMs", async () => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("a"));
    let signal: AbortSignal | null | undefined;
    const fetch = vi.fn((_input: string | URL | Request, init?: RequestInit) => {
      signal = init?.signal;
      return new Promise<Response>(() => undefined); // never settles
    }) as unknown as typeof globalThis.fetch;
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch, timeoutMs: 30 });
    expect(result).toEqual({ sent: 0, rejected: [], remaining: 1, error: "no answer within 30 ms" });
    expect(signal?.aborted).toBe(true);
    expect(await q.size()).toBe(1);
  });

  it("sends batches of batchSize in queue order and asks a token function each time", async () => {
    const q = await open({ dbName: dbName() });
    for (let i = 0; i < 5; i++) await q.add(publish(`m${i}`));
    const { fetch, calls } = fakeFetch((frames) => json(frames.map((f) => ({ type: "ack", id: f["id"], data: {} }))));
    const token = vi.fn(() => Promise.resolve("t"));
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch, token, batchSize: 2 });
    expect(result).toEqual({ sent: 5, rejected: [], remaining: 0 });
    expect(calls.map((c) => c.frames.map((f) => f["id"]))).toEqual([["m0", "m1"], ["m2", "m3"], ["m4"]]);
    expect(token).toHaveBeenCalledTimes(3);
  });

  it("sends no Authorization header without a token", async () => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("a"));
    const { fetch, calls } = fakeFetch((frames) => json(frames.map((f) => ({ type: "ack", id: f["id"] }))));
    await replayOverHttp(q, { endpoint: ENDPOINT, fetch });
    expect(calls[0]?.headers["authorization"]).toBeUndefined();
  });

  it("stops and keeps everything on a 5xx", async () => {
    const q = await open({ dbName: dbName() });
    for (let i = 0; i < 3; i++) await q.add(publish(`m${i}`));
    let n = 0;
    const { fetch, calls } = fakeFetch((frames) => {
      n += 1;
      if (n === 1) return json(frames.map((f) => ({ type: "ack", id: f["id"] })));
      return new Response("unavailable", { status: 503 });
    });
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch, batchSize: 1 });
    expect(result.sent).toBe(1);
    expect(result.remaining).toBe(2);
    expect(result.error).toMatch(/503/);
    expect(calls).toHaveLength(2); // stopped after the failure
    expect((await q.list()).map((m) => m.id)).toEqual(["m1", "m2"]);
  });

  it.each([400, 401, 403, 413])("stops, keeps and reports an HTTP %i", async (status) => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("a"));
    await q.add(publish("b"));
    const { fetch } = fakeFetch(() => json({ error: { code: "unauthorized", message: "no token" } }, status));
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch });
    expect(result.sent).toBe(0);
    expect(result.rejected).toEqual([]);
    expect(result.remaining).toBe(2);
    expect(result.error).toContain(String(status));
    expect(await q.size()).toBe(2);
  });

  it("stops and keeps everything on a network failure", async () => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("a"));
    const fetch = vi.fn(() => Promise.reject(new TypeError("Failed to fetch"))) as unknown as typeof globalThis.fetch;
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch });
    expect(result).toMatchObject({ sent: 0, remaining: 1 });
    expect(result.error).toMatch(/Failed to fetch/);
    expect(await q.size()).toBe(1);
  });

  it("keeps everything when the reply does not match the batch", async () => {
    const q = await open({ dbName: dbName() });
    await q.add(publish("a"));
    await q.add(publish("b"));
    const { fetch } = fakeFetch(() => json([{ type: "ack", id: "a" }]));
    const result = await replayOverHttp(q, { endpoint: ENDPOINT, fetch });
    expect(result.sent).toBe(0);
    expect(result.error).toMatch(/2 replies/);
    expect(await q.size()).toBe(2);
  });

  it("does nothing on an empty queue", async () => {
    const q = await open({ dbName: dbName() });
    const { fetch, calls } = fakeFetch(() => json([]));
    expect(await replayOverHttp(q, { endpoint: ENDPOINT, fetch })).toEqual({ sent: 0, rejected: [], remaining: 0 });
    expect(calls).toHaveLength(0);
  });
});

describe("httpEndpointFor", () => {
  it("maps WebSocket URLs to POST /api/v1/messages", () => {
    expect(httpEndpointFor("ws://localhost:8001/ws/dashboard?x=1", "me")).toBe(
      "http://localhost:8001/api/v1/messages?client_id=me",
    );
    expect(httpEndpointFor("wss://gw.example.com/ws")).toBe("https://gw.example.com/api/v1/messages");
    expect(httpEndpointFor("wss://gw.example.com/tether/ws?client_id=abc&access_token=secret")).toBe(
      "https://gw.example.com/tether/api/v1/messages?client_id=abc",
    );
    expect(httpEndpointFor("ws://h/ws", "a b")).toBe("http://h/api/v1/messages?client_id=a+b");
  });

  it("refuses other schemes and invalid client ids", () => {
    expect(() => httpEndpointFor("ftp://h/ws")).toThrow();
    expect(() => httpEndpointFor("ws://h/ws", "")).toThrow();
  });
});
