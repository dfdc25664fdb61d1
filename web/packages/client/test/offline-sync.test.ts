// OfflineSync on fake-indexeddb with a hand-switched OnlineSource and fake
// senders: offline fallback, replay semantics, automatic replays, one replay at
// a time, HTTP replay, Background Sync registration, the shared instance.

import "fake-indexeddb/auto";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  BACKGROUND_SYNC_TAG,
  GatewayError,
  InvalidOfflineMessageError,
  ManualOnlineSource,
  OfflineQueue,
  OfflineQueueFullError,
  OfflineSync,
  type OfflineFrame,
  type OfflineSyncOptions,
  browserOnlineSource,
  getOfflineSync,
} from "../src/index";

let counter = 0;
function dbName(): string {
  counter += 1;
  return `tether-sync-test-${counter}-${Math.random().toString(36).slice(2)}`;
}

const made: OfflineSync[] = [];
async function controller(options: OfflineSyncOptions = {}): Promise<OfflineSync> {
  const sync = new OfflineSync({ dbName: dbName(), serviceWorker: null, retryDelayMs: 0, ...options });
  made.push(sync);
  await sync.ready();
  return sync;
}

afterEach(() => {
  for (const s of made.splice(0)) s.close();
  vi.restoreAllMocks();
});

const ack = (frame: OfflineFrame) => Promise.resolve({ type: "ack", id: frame.id, data: {} });
const rejection = (code = "forbidden") =>
  new GatewayError({ code, message: "refused", retryable: false });

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("sendMessageWithOfflineFallback", () => {
  it("queues at once while offline without calling sendFn, with an id assigned first", async () => {
    const online = new ManualOnlineSource(false);
    const sync = await controller({ online });
    const sendFn = vi.fn(ack);
    const outcome = await sync.sendMessageWithOfflineFallback({ type: "test" }, sendFn);
    expect(outcome.status).toBe("queued");
    expect(sendFn).not.toHaveBeenCalled();
    const queue = sync.getSnapshot().offlineQueue;
    expect(queue).toHaveLength(1);
    expect(queue[0]?.id).toBe(outcome.id);
    expect(queue[0]?.frame).toEqual({ type: "test", id: outcome.id });
  });

  it("sends when online and queues nothing", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const sendFn = vi.fn(ack);
    const outcome = await sync.sendMessageWithOfflineFallback({ type: "publish", channel: "orders", data: 1 }, sendFn);
    expect(outcome.status).toBe("sent");
    expect(sendFn).toHaveBeenCalledTimes(1);
    expect(sendFn.mock.calls[0]?.[0]).toEqual({ type: "publish", channel: "orders", data: 1, id: outcome.id });
    expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
  });

  it("queues with the same id when sendFn fails (timeout, closed, full, network)", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const seen: string[] = [];
    const sendFn = vi.fn((frame: OfflineFrame) => {
      seen.push(frame.id);
      return Promise.reject(new Error("no reply to request within 30000 ms"));
    });
    const a = await sync.sendMessageWithOfflineFallback({ type: "process_receipt", data: { imageUrl: "a" } }, sendFn);
    const b = await sync.sendMessageWithOfflineFallback({ type: "process_receipt", id: "given-id" }, () => {
      throw new Error("socket closed"); // a synchronous throw counts too
    });
    expect(a.status).toBe("queued");
    expect(b).toEqual({ status: "queued", id: "given-id" });
    const queue = sync.getSnapshot().offlineQueue;
    expect(queue.map((m) => m.id)).toEqual([seen[0], "given-id"]);
    expect(queue[0]?.attempts).toBe(1);
    expect(queue[0]?.lastError).toMatch(/no reply/);
  });

  it("queues on a retryable gateway error", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const out = await sync.sendMessageWithOfflineFallback({ type: "process_receipt" }, () =>
      Promise.reject(new GatewayError({ code: "overloaded", message: "busy", retryable: true })),
    );
    expect(out.status).toBe("queued");
    expect(sync.getSnapshot().offlineQueue).toHaveLength(1);
  });

  it("rethrows the gateway's final refusal and queues nothing", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await expect(
      sync.sendMessageWithOfflineFallback({ type: "process_receipt" }, () => Promise.reject(rejection())),
    ).rejects.toBeInstanceOf(GatewayError);
    // Matched by shape, not class.
    const lookalike = Object.assign(new Error("bad_request: nope"), { name: "GatewayError", retryable: false });
    await expect(
      sync.sendMessageWithOfflineFallback({ type: "process_receipt" }, () => Promise.reject(lookalike)),
    ).rejects.toBe(lookalike);
    expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("rethrows a command's no_handler / timeout and a duplicate error, and queues nothing (a resend could not succeed)", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const errors = [
      new GatewayError({ code: "no_handler", message: "no replica", retryable: true }),
      new GatewayError({ code: "timeout", message: "no result", retryable: true }),
      new GatewayError({ code: "internal", message: "stored", retryable: true }, true),
    ];
    for (const e of errors) {
      await expect(sync.sendMessageWithOfflineFallback({ type: "process_receipt" }, () => Promise.reject(e))).rejects.toBe(e);
    }
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("queues a new message behind queued ones (same id) and replays them in order instead of overtaking", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await sync.cacheOfflineMessage({ type: "publish", id: "old", channel: "orders" });
    const sendFn = vi.fn(ack);
    const outcome = await sync.sendMessageWithOfflineFallback({ type: "publish", id: "new", channel: "orders" }, sendFn);
    expect(outcome).toEqual({ status: "queued", id: "new" });
    await vi.waitFor(() => {
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
      expect(sync.getSnapshot().isSyncing).toBe(false);
    });
    expect(sendFn.mock.calls.map((c) => c[0].id)).toEqual(["old", "new"]);
  });

  it("queues a new message during a replay and sends it after the replay's messages (HTTP replay chained)", async () => {
    const bodies: string[][] = [];
    const gate = deferred<undefined>();
    const fetch = vi.fn(async (_url: string | URL | Request, init?: RequestInit) => {
      const frames = JSON.parse(String(init?.body)) as { id: string }[];
      bodies.push(frames.map((f) => f.id));
      if (bodies.length === 1) await gate.promise;
      return new Response(JSON.stringify(frames.map((f) => ({ type: "ack", id: f.id, data: {} }))));
    });
    const sync = await controller({
      online: new ManualOnlineSource(true),
      httpEndpoint: "http://gw.test/api/v1/messages?client_id=me",
      fetch: fetch as unknown as typeof globalThis.fetch,
    });
    await sync.cacheOfflineMessage({ type: "publish", id: "old", channel: "orders" });
    const replay = sync.syncOfflineMessages();
    await vi.waitFor(() => {
      expect(fetch).toHaveBeenCalledTimes(1);
    });
    const sendFn = vi.fn(ack);
    const outcome = await sync.sendMessageWithOfflineFallback({ type: "publish", id: "new", channel: "orders" }, sendFn);
    expect(outcome).toEqual({ status: "queued", id: "new" });
    gate.resolve(undefined);
    await replay;
    await vi.waitFor(() => {
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
    });
    // The chained replay used sendFn (the message's own sender); HTTP carried the older one.
    expect(bodies).toEqual([["old"]]);
    expect(sendFn.mock.calls.map((c) => c[0].id)).toEqual(["new"]);
  });

  it("rethrows the original send error of a message that cannot be queued, with the reason as its cause", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const sendError = new Error("socket closed");
    let thrown: unknown;
    try {
      await sync.sendMessageWithOfflineFallback({ type: "subscribe", channel: "orders" }, () => Promise.reject(sendError));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBe(sendError);
    expect((thrown as Error).cause).toBeInstanceOf(InvalidOfflineMessageError);
    expect(String(((thrown as Error).cause as Error).message)).toMatch(/only publish and command/);
    // A thrown non-Error is wrapped, naming both.
    await expect(
      sync.sendMessageWithOfflineFallback({ type: "ping" }, () => Promise.reject("gone")),
    ).rejects.toThrow(/sending failed: gone; not queued: only publish and command/);
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("rejects an invalid message without sending or queueing", async () => {
    const sync = await controller({ online: new ManualOnlineSource(false) });
    const sendFn = vi.fn(ack);
    await expect(sync.sendMessageWithOfflineFallback({ type: "Bad Type" }, sendFn)).rejects.toThrow(/invalid message/);
    expect(sendFn).not.toHaveBeenCalled();
    expect(await (await sync.getQueue()).size()).toBe(0);
  });

  it("rejects with OfflineQueueFullError when the queue is full (never drops silently)", async () => {
    const sync = await controller({ online: new ManualOnlineSource(false), maxMessages: 1 });
    await sync.sendMessageWithOfflineFallback({ type: "test", id: "one" }, ack);
    await expect(sync.sendMessageWithOfflineFallback({ type: "test", id: "two" }, ack)).rejects.toBeInstanceOf(
      OfflineQueueFullError,
    );
    expect(sync.getSnapshot().offlineQueue.map((m) => m.id)).toEqual(["one"]);
  });
});

describe("syncOfflineMessages", () => {
  it("sends oldest first with the queued ids; removes answered and finally refused messages", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    for (const id of ["a", "b", "c"]) await sync.cacheOfflineMessage({ type: "process_receipt", id });
    const sent: string[] = [];
    const sender = vi.fn((frame: OfflineFrame) => {
      sent.push(frame.id);
      if (frame.id === "b") return Promise.reject(rejection("forbidden"));
      return Promise.resolve({ type: "result", id: frame.id, data: { ok: true } });
    });
    const before = Date.now();
    const result = await sync.syncOfflineMessages(sender);
    expect(sent).toEqual(["a", "b", "c"]);
    expect(result).toEqual({ sent: 2, rejected: [{ id: "b", error: "forbidden: refused" }], remaining: 0 });
    const snap = sync.getSnapshot();
    expect(snap.offlineQueue).toHaveLength(0);
    expect(snap.isSyncing).toBe(false);
    expect(snap.lastSyncTime).toBeGreaterThanOrEqual(before);
    expect(snap.lastError).toMatch(/b rejected: forbidden/);
  });

  it("stops at the first other failure and keeps the rest in order", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    for (const id of ["a", "b", "c"]) await sync.cacheOfflineMessage({ type: "publish", id, channel: "orders" });
    const sender = vi.fn((frame: OfflineFrame) =>
      frame.id === "b" ? Promise.reject(new Error("no reply within 30000 ms")) : ack(frame),
    );
    const result = await sync.syncOfflineMessages(sender);
    expect(sender.mock.calls.map((c) => c[0].id)).toEqual(["a", "b"]);
    expect(result.sent).toBe(1);
    expect(result.remaining).toBe(2);
    expect(result.error).toMatch(/no reply/);
    const snap = sync.getSnapshot();
    expect(snap.offlineQueue.map((m) => [m.id, m.attempts])).toEqual([
      ["b", 1],
      ["c", 0],
    ]);
    expect(snap.lastError).toMatch(/no reply/);
    expect(snap.lastSyncTime).toBeNull();
  });

  it("treats a transient gateway error as a failure that keeps the message", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await sync.cacheOfflineMessage({ type: "process_receipt", id: "x" });
    const result = await sync.syncOfflineMessages(() =>
      Promise.reject(new GatewayError({ code: "overloaded", message: "busy", retryable: true })),
    );
    expect(result.remaining).toBe(1);
    expect(sync.getSnapshot().offlineQueue[0]?.lastError).toMatch(/overloaded/);
    // A publish's timeout is transient too.
    await sync.clearOfflineQueue();
    await sync.cacheOfflineMessage({ type: "publish", id: "p", channel: "orders" });
    const again = await sync.syncOfflineMessages(() =>
      Promise.reject(new GatewayError({ code: "timeout", message: "slow", retryable: true })),
    );
    expect(again).toMatchObject({ sent: 0, rejected: [], remaining: 1 });
  });

  it("removes and reports a duplicate error and a command's no_handler / timeout: a resend can never succeed", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    for (const id of ["dup", "no-handler", "timed-out", "dup-frame", "after"]) {
      await sync.cacheOfflineMessage({ type: "process_receipt", id });
    }
    const sender = vi.fn((frame: OfflineFrame): Promise<unknown> => {
      switch (frame.id) {
        case "dup":
          // What the gateway answers, forever, to a resend of an id whose outcome was an error.
          return Promise.reject(new GatewayError({ code: "internal", message: "stored", retryable: true }, true));
        case "no-handler":
          return Promise.reject(new GatewayError({ code: "no_handler", message: "no replica", retryable: true }));
        case "timed-out":
          return Promise.reject(new GatewayError({ code: "timeout", message: "no result", retryable: true }));
        case "dup-frame":
          // A sender that resolves with the error frame instead of rejecting.
          return Promise.resolve({
            type: "error",
            id: frame.id,
            error: { code: "no_handler", message: "none", retryable: true },
            duplicate: true,
          });
        default:
          return Promise.resolve({ type: "result", id: frame.id, data: {} });
      }
    });
    const result = await sync.syncOfflineMessages(sender);
    expect(sender.mock.calls.map((c) => c[0].id)).toEqual(["dup", "no-handler", "timed-out", "dup-frame", "after"]);
    expect(result.sent).toBe(1);
    expect(result.remaining).toBe(0);
    expect(result.error).toBeUndefined();
    expect(result.rejected.map((r) => r.id)).toEqual(["dup", "no-handler", "timed-out", "dup-frame"]);
    expect(result.rejected[0]?.error).toMatch(/internal: stored \(the stored outcome of this id\)/);
    expect(result.rejected[3]?.error).toMatch(/no_handler: none \(the stored outcome of this id\)/);
    expect(sync.getSnapshot().lastError).toMatch(/dup-frame rejected: no_handler/);
  });

  it("counts a send without an answer within attemptTimeoutMs as a transient failure: stops and keeps", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true), attemptTimeoutMs: 30 });
    for (const id of ["a", "b"]) await sync.cacheOfflineMessage({ type: "process_receipt", id });
    const sender = vi.fn(() => new Promise<never>(() => undefined)); // never settles
    const result = await sync.syncOfflineMessages(sender);
    expect(sender).toHaveBeenCalledTimes(1);
    expect(result).toEqual({ sent: 0, rejected: [], remaining: 2, error: "a: no answer within 30 ms" });
    const snap = sync.getSnapshot();
    expect(snap.isSyncing).toBe(false);
    expect(snap.offlineQueue.map((m) => [m.id, m.attempts])).toEqual([
      ["a", 1],
      ["b", 0],
    ]);
    expect(() => new OfflineSync({ attemptTimeoutMs: 0, serviceWorker: null })).toThrow(RangeError);
  });

  it("bounds an HTTP replay's request by attemptTimeoutMs", async () => {
    const fetch = vi.fn(() => new Promise<Response>(() => undefined));
    const sync = await controller({
      online: new ManualOnlineSource(true),
      httpEndpoint: "http://gw.test/api/v1/messages?client_id=me",
      fetch: fetch as unknown as typeof globalThis.fetch,
      attemptTimeoutMs: 30,
    });
    await sync.cacheOfflineMessage({ type: "test", id: "h" });
    const result = await sync.syncOfflineMessages();
    expect(result).toEqual({ sent: 0, rejected: [], remaining: 1, error: "no answer within 30 ms" });
  });

  it("isSyncing is true exactly while a replay runs: a request while it shows true joins that replay", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await sync.cacheOfflineMessage({ type: "test", id: "a" });
    // Hold the snapshot refresh that ends the replay, once the replay has sent everything.
    const internals = sync as unknown as { refresh: () => Promise<void> };
    const refresh = internals.refresh.bind(sync);
    const gate = deferred<undefined>();
    let holding = false;
    vi.spyOn(internals, "refresh").mockImplementation(async () => {
      if (holding) await gate.promise;
      return refresh();
    });
    const first = sync.syncOfflineMessages((frame) => {
      holding = true;
      return ack(frame);
    });
    const queue = await sync.getQueue();
    await vi.waitFor(async () => {
      expect(await queue.size()).toBe(0);
    });
    await new Promise((r) => setTimeout(r, 20)); // the replay is now in its final refresh
    expect(sync.getSnapshot().isSyncing).toBe(true);
    const second = sync.syncOfflineMessages(ack);
    expect(second).toBe(first);
    gate.resolve(undefined);
    await first;
    expect(sync.getSnapshot().isSyncing).toBe(false);
  });

  it("uses the default sender from setSender, and withdrawing it restores the previous one", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    const first = vi.fn(ack);
    const second = vi.fn(ack);
    sync.setSender(first);
    const undo = sync.setSender(second);
    await sync.cacheOfflineMessage({ type: "test", id: "1" });
    await sync.syncOfflineMessages();
    expect(second).toHaveBeenCalledTimes(1);
    undo();
    await sync.cacheOfflineMessage({ type: "test", id: "2" });
    await sync.syncOfflineMessages();
    expect(first).toHaveBeenCalledTimes(1);
    expect(first.mock.calls[0]?.[0].id).toBe("2");
  });

  it("runs one replay at a time: a second call joins the running one", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    for (const id of ["a", "b"]) await sync.cacheOfflineMessage({ type: "test", id });
    const gates = [deferred<unknown>(), deferred<unknown>()];
    let inFlight = 0;
    let maxInFlight = 0;
    let calls = 0;
    const sender = vi.fn(async (frame: OfflineFrame) => {
      const gate = gates[calls++];
      inFlight += 1;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await gate?.promise;
      inFlight -= 1;
      return { type: "ack", id: frame.id };
    });
    const one = sync.syncOfflineMessages(sender);
    const two = sync.syncOfflineMessages(sender);
    expect(two).toBe(one);
    await vi.waitFor(() => {
      expect(sync.getSnapshot().isSyncing).toBe(true);
      expect(sender).toHaveBeenCalledTimes(1);
    });
    gates[0]?.resolve(undefined);
    await vi.waitFor(() => {
      expect(sender).toHaveBeenCalledTimes(2);
    });
    gates[1]?.resolve(undefined);
    const [r1, r2] = await Promise.all([one, two]);
    expect(r1).toBe(r2);
    expect(r1.sent).toBe(2);
    expect(maxInFlight).toBe(1);
    expect(sender).toHaveBeenCalledTimes(2);
    expect(sync.getSnapshot().isSyncing).toBe(false);
  });

  it("sends nothing while offline", async () => {
    const sync = await controller({ online: new ManualOnlineSource(false) });
    await sync.cacheOfflineMessage({ type: "test", id: "a" });
    const sender = vi.fn(ack);
    const result = await sync.syncOfflineMessages(sender);
    expect(sender).not.toHaveBeenCalled();
    expect(result).toMatchObject({ sent: 0, remaining: 1 });
    expect(result.error).toMatch(/offline/);
  });

  it("replays over HTTP when no sender is set", async () => {
    const fetch = vi.fn((_url: string | URL | Request, init?: RequestInit) => {
      const frames = JSON.parse(String(init?.body)) as { id: string }[];
      return Promise.resolve(
        new Response(JSON.stringify(frames.map((f) => ({ type: "ack", id: f.id, data: { accepted: true } })))),
      );
    });
    const sync = await controller({
      online: new ManualOnlineSource(true),
      httpEndpoint: "http://gw.test/api/v1/messages?client_id=me",
      token: "tok",
      fetch: fetch as unknown as typeof globalThis.fetch,
    });
    await sync.cacheOfflineMessage({ type: "test", id: "h1" });
    const result = await sync.syncOfflineMessages();
    expect(result).toEqual({ sent: 1, rejected: [], remaining: 0 });
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(String(fetch.mock.calls[0]?.[0])).toBe("http://gw.test/api/v1/messages?client_id=me");
    expect(sync.getSnapshot().lastSyncTime).not.toBeNull();
  });

  it("reports when there is nothing to send with", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await sync.cacheOfflineMessage({ type: "test", id: "a" });
    const result = await sync.syncOfflineMessages();
    expect(result.error).toMatch(/no sender/);
    expect(result.remaining).toBe(1);
    expect(sync.getSnapshot().lastError).toMatch(/no sender/);
  });

  it("ignores a non-function argument (e.g. a click event)", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true), sender: ack });
    await sync.cacheOfflineMessage({ type: "test", id: "a" });
    const result = await sync.syncOfflineMessages({ type: "click" } as unknown as () => unknown);
    expect(result.sent).toBe(1);
  });
});

describe("automatic replay", () => {
  it("replays when the OnlineSource goes online", async () => {
    const online = new ManualOnlineSource(false);
    const sender = vi.fn(ack);
    const sync = await controller({ online, sender });
    await sync.sendMessageWithOfflineFallback({ type: "test", id: "o1" }, sender);
    await sync.sendMessageWithOfflineFallback({ type: "test", id: "o2" }, sender);
    expect(sender).not.toHaveBeenCalled();
    expect(sync.getSnapshot().isOnline).toBe(false);
    online.set(true);
    expect(sync.getSnapshot().isOnline).toBe(true);
    await vi.waitFor(() => {
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
      expect(sync.getSnapshot().isSyncing).toBe(false);
    });
    expect(sender.mock.calls.map((c) => c[0].id)).toEqual(["o1", "o2"]);
  });

  it("replays on notifyConnected()", async () => {
    const sync = await controller({ online: new ManualOnlineSource(true) });
    await sync.cacheOfflineMessage({ type: "test", id: "c1" });
    const sender = vi.fn(ack);
    sync.setSender(sender);
    sync.notifyConnected();
    await vi.waitFor(() => {
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
    });
    expect(sender).toHaveBeenCalledTimes(1);
  });

  it("replays what an earlier page left in the database at start", async () => {
    const name = dbName();
    const q = await OfflineQueue.open({ dbName: name });
    await q.add({ type: "test", id: "left-over" });
    q.close();
    const sender = vi.fn(ack);
    const sync = await controller({ dbName: name, online: new ManualOnlineSource(true), sender });
    await vi.waitFor(() => {
      expect(sender).toHaveBeenCalledTimes(1);
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
    });
    expect(sender.mock.calls[0]?.[0].id).toBe("left-over");
  });

  it("retries after retryDelayMs while messages are left", async () => {
    let fail = true;
    const sender = vi.fn((frame: OfflineFrame) => (fail ? Promise.reject(new Error("timeout")) : ack(frame)));
    const sync = await controller({ online: new ManualOnlineSource(true), sender, retryDelayMs: 20 });
    await sync.cacheOfflineMessage({ type: "test", id: "r1" });
    const first = await sync.syncOfflineMessages();
    expect(first.remaining).toBe(1);
    fail = false;
    await vi.waitFor(() => {
      expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
    });
    expect(sender.mock.calls.length).toBeGreaterThanOrEqual(2);
  });
});

describe("store and helpers", () => {
  it("gives frozen snapshots that change only when something changed", async () => {
    const online = new ManualOnlineSource(true);
    const sync = await controller({ online });
    const s1 = sync.getSnapshot();
    expect(Object.isFrozen(s1)).toBe(true);
    expect(sync.getSnapshot()).toBe(s1);
    online.set(true); // no change
    expect(sync.getSnapshot()).toBe(s1);
    const listener = vi.fn();
    sync.subscribe(listener);
    online.set(false);
    expect(listener).toHaveBeenCalled();
    expect(sync.getSnapshot()).not.toBe(s1);
    expect(sync.getSnapshot().isOnline).toBe(false);
    await sync.cacheOfflineMessage({ type: "test", id: "f" });
    expect(Object.isFrozen(sync.getSnapshot().offlineQueue)).toBe(true);
    await sync.clearOfflineQueue();
    expect(sync.getSnapshot().offlineQueue).toHaveLength(0);
  });

  it("registers a Background Sync after queueing, and ignores its failures", async () => {
    const register = vi.fn(() => Promise.resolve());
    const sync = await controller({
      online: new ManualOnlineSource(false),
      serviceWorker: { getRegistration: () => Promise.resolve({ sync: { register } }) },
    });
    await sync.cacheOfflineMessage({ type: "test", id: "bg" });
    await vi.waitFor(() => {
      expect(register).toHaveBeenCalledWith(BACKGROUND_SYNC_TAG);
    });
    expect(BACKGROUND_SYNC_TAG).toBe("tether-offline-sync");

    const failing = await controller({
      online: new ManualOnlineSource(false),
      serviceWorker: { getRegistration: () => Promise.reject(new Error("no SW")) },
    });
    await expect(failing.cacheOfflineMessage({ type: "test", id: "bg2" })).resolves.toMatchObject({ id: "bg2" });
  });

  it("shares one controller per database name", () => {
    const name = dbName();
    const a = getOfflineSync({ dbName: name, serviceWorker: null, online: new ManualOnlineSource() });
    made.push(a);
    expect(getOfflineSync({ dbName: name })).toBe(a);
    const other = getOfflineSync({ dbName: dbName(), serviceWorker: null });
    made.push(other);
    expect(other).not.toBe(a);
    a.close();
    const fresh = getOfflineSync({ dbName: name, serviceWorker: null });
    made.push(fresh);
    expect(fresh).not.toBe(a);
  });

  it("passes ttlMs to the queue it opens", async () => {
    const sync = await controller({ online: new ManualOnlineSource(false), ttlMs: 40 });
    expect((await sync.getQueue()).limits.ttlMs).toBe(40);
    await sync.cacheOfflineMessage({ type: "test", id: "old" });
    await new Promise((r) => setTimeout(r, 60));
    await sync.ready();
    expect(sync.getSnapshot().offlineQueue).toHaveLength(0); // dropped unsent: past the (shortened) window
  });

  it("reports a queue that cannot open in lastError", async () => {
    const sync = new OfflineSync({
      dbName: dbName(),
      serviceWorker: null,
      online: new ManualOnlineSource(true),
      indexedDB: {
        open: () => {
          throw new Error("IndexedDB disabled");
        },
      } as unknown as IDBFactory,
    });
    made.push(sync);
    await expect(sync.ready()).rejects.toThrow(/disabled/);
    expect(sync.getSnapshot().lastError).toMatch(/disabled/);
    await expect(sync.cacheOfflineMessage({ type: "test" })).rejects.toThrow(/disabled/);
  });
});

describe("browserOnlineSource", () => {
  it("is always online without navigator.onLine, and follows online/offline events of its target", () => {
    const target = new EventTarget();
    const source = browserOnlineSource(target as unknown as Parameters<typeof browserOnlineSource>[0]);
    expect(source.isOnline()).toBe(true);
    const seen: boolean[] = [];
    const off = source.subscribe((on) => seen.push(on));
    target.dispatchEvent(new Event("offline"));
    target.dispatchEvent(new Event("online"));
    off();
    target.dispatchEvent(new Event("offline"));
    expect(seen).toEqual([false, true]);
  });

  it("reads navigator.onLine when there is one", () => {
    vi.stubGlobal("navigator", { onLine: false });
    try {
      expect(browserOnlineSource(new EventTarget() as never).isOnline()).toBe(false);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
