// Scenario 1, connect and receive: the page connects through the proxy; an
// event the test publishes over POST /api/v1/messages shows up on the page.

import { describe, expect, it } from "vitest";
import { WAIT, eventSeqs, readText, useE2E } from "../harness/page.js";
import { SKIP } from "../harness/paths.js";

describe.skipIf(SKIP)("connect and receive", () => {
  const env = useE2E();

  it("shows an event published over HTTP", async () => {
    const channel = "e2e-connect";
    const { page } = await env().openPage({ channel });
    await expect.poll(() => readText(page, "connected"), WAIT).toBe("true");
    // The subscription (from seq 0) is acked: what follows is live delivery.
    await expect.poll(() => readText(page, "subscribed"), WAIT).toBe("true");
    expect(await eventSeqs(page)).toEqual([]);

    const ack = await env().publish(channel, { hello: "browser" });
    expect(ack.seq).toBe(1);
    await expect.poll(() => eventSeqs(page), WAIT).toEqual([1]);
    expect(await page.locator('[data-testid="event"]').first().textContent()).toContain('"hello":"browser"');
    expect(env().proxy.accepted).toBe(1);
  });
});
