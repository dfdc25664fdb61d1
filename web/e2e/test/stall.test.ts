// Scenario 5, a stalled connection: the proxy stops carrying bytes on the live
// connection without closing it (no FIN, no RST). Only the heartbeat can
// notice: the page must drop it, open a new connection (which works) and
// receive what is published afterwards.

import { describe, expect, it } from "vitest";
import { WAIT, eventSeqs, readNumber, readText, useE2E } from "../harness/page.js";
import { SKIP } from "../harness/paths.js";

describe.skipIf(SKIP)("stalled connection", () => {
  const env = useE2E();

  it("is detected by the heartbeat and replaced by a new connection", async () => {
    const e = env();
    const channel = "e2e-stall";
    const { page } = await e.openPage({ channel, heartbeatInterval: 1000, heartbeatTimeout: 1000 });
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readText(page, "subscribed"), WAIT).toBe("true");
    await e.publish(channel, { n: 1 });
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1]);

    const accepted = e.proxy.accepted;
    expect(await readNumber(page, "disconnects")).toBe(0);
    e.proxy.stall();

    // The heartbeat gives up on the silent connection...
    await expect.poll(() => readNumber(page, "disconnects"), WAIT).toBe(1);
    expect(await readText(page, "last-loss")).toMatch(/heartbeat/);
    // ...and a new one is made and welcomed.
    await expect.poll(() => e.proxy.accepted, WAIT).toBeGreaterThan(accepted);
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    await expect.poll(() => readNumber(page, "connects"), WAIT).toBe(2);

    await e.publish(channel, { n: 2 });
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1, 2]);
  });
});
