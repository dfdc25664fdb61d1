// Scenario 2, recovery after a crash: the gateway is killed (SIGKILL), events
// are published while the page is disconnected (on the restarted gateway, same
// data dir), and once the page can reconnect it shows every missed event
// exactly once with contiguous seqs (resubscribe with `since`).

import { describe, expect, it } from "vitest";
import { WAIT, eventSeqs, readNumber, readText, useE2E } from "../harness/page.js";
import { SKIP } from "../harness/paths.js";

describe.skipIf(SKIP)("gateway crash and restart", () => {
  const env = useE2E();

  it("delivers every event missed while disconnected, once, in seq order", async () => {
    const e = env();
    const channel = "e2e-recovery";
    const { page } = await e.openPage({ channel });
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readText(page, "subscribed"), WAIT).toBe("true");

    for (let n = 1; n <= 3; n++) await e.publish(channel, { n });
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1, 2, 3]);
    const epoch = await page.locator('[data-testid="event"]').first().getAttribute("data-epoch");

    await e.killGateway();
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("false");
    expect(await readNumber(page, "disconnects")).toBe(1);

    // Restarted on the same data dir, on a new port the proxy does not know
    // yet (and refusing, in case the OS handed out the old port again): the
    // page keeps failing to reconnect while these are published.
    e.proxy.refuse(true);
    await e.startGateway();
    for (let n = 4; n <= 8; n++) {
      const ack = await e.publish(channel, { n });
      expect(ack).toEqual({ seq: n, epoch });
    }
    expect(await readText(page, "connected")).toBe("false");
    expect(await eventSeqs(page)).toEqual([1, 2, 3]);

    e.proxy.retarget(e.gateway.addr);
    e.proxy.refuse(false);
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Both subscribes (the first from seq 0, the one after the reconnect) recovered.
    expect(await readText(page, "recoveries")).toBe("true,true");

    // Live delivery goes on after the recovery.
    await e.publish(channel, { n: 9 });
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const epochs = await page.locator('[data-testid="event"]').evaluateAll((els) =>
      els.map((el) => el.getAttribute("data-epoch")),
    );
    expect(new Set(epochs)).toEqual(new Set([epoch]));

    // The gateway's own record agrees: nine events, seqs 1..9.
    const history = await e.history(channel);
    expect(history.map((h) => h.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(history.map((h) => (h.data as { n: number }).n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});
