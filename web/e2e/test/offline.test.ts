// Scenario 3, offline sends: with the network down (Chromium's offline
// emulation, the proxy cut and refusing, the page's origin unreachable), each
// click of "send" is queued in IndexedDB; a reload while still offline is
// served by the Service Worker's app-shell cache and still shows the queue;
// back online, every message reaches the gateway exactly once (history).

import { describe, expect, it } from "vitest";
import { WAIT, readNumber, readText, sentMessages, useE2E } from "../harness/page.js";
import { SKIP } from "../harness/paths.js";

const CHANNEL = "e2e-offline";
const MESSAGES = 3;

describe.skipIf(SKIP)("offline sends", () => {
  const env = useE2E();

  it("are queued, survive an offline reload, and are delivered exactly once", async () => {
    const e = env();
    const tag = "offline-reload";
    const { context, page } = await e.openPage({ sw: true, sendChannel: CHANNEL, tag });
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readText(page, "sw-state"), WAIT).toBe("controlled");
    // The first load was not controlled by the worker; this one fills its cache.
    await page.reload();
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readText(page, "sw-state"), WAIT).toBe("controlled");
    const clientId = await readText(page, "client-id");

    await e.setNetwork(context, false);
    await expect.poll(() => readText(page, "is-online"), WAIT).toBe("false");
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("false");

    for (let i = 1; i <= MESSAGES; i++) {
      await page.getByTestId("send").click();
      await expect.poll(async () => (await sentMessages(page))?.length, WAIT).toBe(i);
      // Queued, not sent: <OfflineStatus/> shows one more each time.
      await expect.poll(() => readNumber(page, "offline-status-queue-size"), WAIT).toBe(i);
    }
    const sent = (await sentMessages(page)) ?? [];
    expect(sent.map((s) => s.status)).toEqual(Array<string>(MESSAGES).fill("done"));
    expect(await readText(page, "offline-status-network")).toBe("Offline");

    // Offline reload: only the worker's cache can serve the page now.
    const reloaded = await page.reload();
    expect(reloaded?.status()).toBe(200);
    expect(reloaded?.fromServiceWorker()).toBe(true);
    await expect.poll(() => readText(page, "sw-state"), WAIT).toBe("controlled");
    await expect.poll(() => readNumber(page, "offline-status-queue-size"), WAIT).toBe(MESSAGES);
    expect(await readText(page, "client-id")).toBe(clientId);
    expect(await readText(page, "connected")).toBe("false");
    expect(await e.history(CHANNEL)).toEqual([]);

    await e.setNetwork(context, true);
    await expect.poll(() => readText(page, "is-online"), WAIT).toBe("true");
    await expect.poll(() => readNumber(page, "offline-status-queue-size"), WAIT).toBe(0);

    const events = (await e.history(CHANNEL)).filter((h) => (h.data as { tag?: string }).tag === tag);
    const ids = events.map((h) => (h.data as { id: string }).id);
    expect(ids.sort()).toEqual(sent.map((s) => s.id).sort());
    for (const h of events) expect(h.from).toBe(clientId);
    expect(events.map((h) => h.seq)).toEqual([1, 2, 3]);
  });
});
