// Scenario 4, the Service Worker replays alone: a message is queued while
// offline, the page then navigates (still offline, from the worker's cache) to
// a same-origin page with no script and no WebSocket; back online, a
// Background Sync event (Chromium's own, and one fired through DevTools in
// case it does not fire on emulated connectivity changes) makes the worker
// POST the queue to /api/v1/messages; history shows the message exactly once.

import { describe, expect, it } from "vitest";
import { WAIT, dispatchSync, queuedInIndexedDb, readNumber, readText, sentMessages, useE2E } from "../harness/page.js";
import { SKIP } from "../harness/paths.js";

const CHANNEL = "e2e-offline";
const SYNC_TAG = "tether-offline-sync";

describe.skipIf(SKIP)("Service Worker replay", () => {
  const env = useE2E();

  it("delivers the queue once with no page holding a WebSocket", async () => {
    const e = env();
    const tag = "sw-replay";
    const { context, page } = await e.openPage({ sw: true, sendChannel: CHANNEL, tag });
    const appUrl = page.url();
    const blankUrl = `${e.server.origin}/blank.html`;
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readText(page, "sw-state"), WAIT).toBe("controlled");
    const clientId = await readText(page, "client-id");

    // Visit the blank page once while online (controlled now), so it is cached.
    await page.goto(blankUrl);
    await expect.poll(() => readText(page, "blank"), WAIT).toBe("No WebSocket here.");
    await page.goto(appUrl);
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");

    await e.setNetwork(context, false);
    await expect.poll(() => readText(page, "is-online"), WAIT).toBe("false");
    await page.getByTestId("send").click();
    await expect.poll(async () => (await sentMessages(page))?.[0]?.status, WAIT).toBe("done");
    const id = (await sentMessages(page))?.[0]?.id;
    await expect.poll(() => readNumber(page, "offline-status-queue-size"), WAIT).toBe(1);

    // Leave the app: from here on no page has the SDK or a WebSocket. Offline,
    // the blank page comes from the worker's cache.
    const blank = await page.goto(blankUrl);
    expect(blank?.fromServiceWorker()).toBe(true);
    await expect.poll(() => readText(page, "blank"), WAIT).toBe("No WebSocket here.");
    expect(await queuedInIndexedDb(page)).toBe(1);
    const wsBefore = e.proxy.accepted;
    expect(await e.history(CHANNEL)).toEqual([]);

    await e.setNetwork(context, true);
    // Chromium may fire the sync itself when the emulated network comes back
    // (the replay is then already under way or done); this one makes sure.
    await dispatchSync(context, page, e.server.origin, SYNC_TAG);

    await expect.poll(() => queuedInIndexedDb(page), WAIT).toBe(0);
    const events = await e.history(CHANNEL);
    expect(events.map((h) => (h.data as { id: string }).id)).toEqual([id]);
    expect(events[0]?.from).toBe(clientId);
    expect((events[0]?.data as { tag?: string }).tag).toBe(tag);
    // It came over HTTP from the worker, not over a WebSocket.
    expect(e.proxy.accepted).toBe(wsBefore);
    expect(e.server.hits.get("/api/v1/messages")).toBeGreaterThanOrEqual(1);
  });

  it("replays on a page's tether-sync message, answers on its port, and keeps the original ids", async () => {
    const e = env();
    const tag = "sw-message";
    const { page } = await e.openPage({ sw: true });
    await expect.poll(() => readText(page, "sw-state"), WAIT).toBe("controlled");
    const clientId = await readText(page, "client-id");
    await page.goto(`${e.server.origin}/blank.html`);
    await expect.poll(() => readText(page, "blank"), WAIT).toBe("No WebSocket here.");

    // Queue a record by hand with the fixed schema (what OfflineQueue writes),
    // from a page without the SDK, then ask the worker to replay it.
    const id = `e2e-msg-${String(Date.now())}`;
    const frame = { type: "publish", id, channel: CHANNEL, data: { id, tag } };
    const first = await page.evaluate(syncThroughWorker, frame);
    expect(first).toEqual({ type: "tether-sync-result", sent: 1, rejected: [], remaining: 0 });

    // The same message again (say, a replay whose ack was lost): the worker
    // sends the same id, the gateway answers with its original ack.
    const second = await page.evaluate(syncThroughWorker, frame);
    expect(second).toEqual({ type: "tether-sync-result", sent: 1, rejected: [], remaining: 0 });

    const events = (await e.history(CHANNEL)).filter((h) => (h.data as { tag?: string }).tag === tag);
    expect(events.map((h) => (h.data as { id: string }).id)).toEqual([id]);
    expect(events[0]?.from).toBe(clientId);
    expect(await queuedInIndexedDb(page)).toBe(0);
  });
});

/**
 * Runs in the page: adds `frame` to the offline queue's store, posts
 * `{type: "tether-sync"}` to the active worker with a MessagePort, and
 * resolves with the worker's answer on that port.
 */
async function syncThroughWorker(frame: { id: string }): Promise<unknown> {
  await new Promise<void>((resolve, reject) => {
    const open = indexedDB.open("tether-offline", 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore("messages", { keyPath: "id" }).createIndex("queuedAt", "queuedAt");
    };
    open.onerror = () => {
      reject(new Error(String(open.error)));
    };
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction("messages", "readwrite");
      tx.objectStore("messages").put({ id: frame.id, frame, queuedAt: Date.now(), attempts: 0 });
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => {
        db.close();
        reject(new Error(String(tx.error)));
      };
    };
  });
  const registration = await navigator.serviceWorker.ready;
  const worker = registration.active;
  if (worker === null) throw new Error("no active worker");
  const channel = new MessageChannel();
  const answer = new Promise<unknown>((resolve) => {
    channel.port1.onmessage = (ev: MessageEvent) => {
      resolve(ev.data);
    };
  });
  worker.postMessage({ type: "tether-sync" }, [channel.port2]);
  return answer;
}
