// Reading the test page's DOM (the data-testids of page/src/App.tsx) and
// poking the browser from the test side: instant reads that return null
// instead of throwing while a navigation is under way, so that they can be
// polled with `expect.poll`.

import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { E2E } from "./env.js";

/** Deadline of one `expect.poll` wait: generous, because a failure is a missing behaviour, not a slow one. */
export const WAIT = { timeout: 30_000, interval: 100 } as const;

/** The text of the element with `data-testid=id`, or null (absent, or the page is navigating). */
export async function readText(page: Page, id: string): Promise<string | null> {
  try {
    return await page.evaluate((testId) => document.querySelector(`[data-testid="${testId}"]`)?.textContent ?? null, id);
  } catch {
    return null;
  }
}

/** A number shown by the page, or null. */
export async function readNumber(page: Page, id: string): Promise<number | null> {
  const text = await readText(page, id);
  return text === null || text === "" ? null : Number(text);
}

/** The seqs of the events the page lists, in order (duplicates would show twice). */
export async function eventSeqs(page: Page): Promise<number[] | null> {
  try {
    return await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('[data-testid="event"]'), (e) => Number(e.dataset["seq"])),
    );
  } catch {
    return null;
  }
}

/** The messages the "send" button sent since the page loaded: id and outcome (`sent`, `queued`, `failed: …`). */
export async function sentMessages(page: Page): Promise<{ id: string; status: string }[] | null> {
  try {
    return await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLElement>('[data-testid="sent"]'), (e) => ({
        id: e.dataset["id"] ?? "",
        status: e.dataset["status"] ?? "",
      })),
    );
  } catch {
    return null;
  }
}

/** Records in the offline queue's IndexedDB store, read by `page` (any same-origin page), or null. */
export async function queuedInIndexedDb(page: Page, dbName = "tether-offline"): Promise<number | null> {
  try {
    return await page.evaluate(
      (name) =>
        new Promise<number>((resolve, reject) => {
          const open = indexedDB.open(name);
          open.onerror = () => {
            reject(new Error(String(open.error)));
          };
          open.onsuccess = () => {
            const db = open.result;
            if (!db.objectStoreNames.contains("messages")) {
              db.close();
              resolve(0);
              return;
            }
            const count = db.transaction("messages").objectStore("messages").count();
            count.onsuccess = () => {
              db.close();
              resolve(count.result);
            };
            count.onerror = () => {
              db.close();
              reject(new Error(String(count.error)));
            };
          };
        }),
      dbName,
    );
  } catch {
    return null;
  }
}

/**
 * Fires a Background Sync event at the origin's Service Worker through the
 * DevTools protocol (`ServiceWorker.dispatchSyncEvent`): headless Chromium
 * does not fire `sync` on emulated connectivity changes.
 */
export async function dispatchSync(context: BrowserContext, page: Page, origin: string, tag: string): Promise<void> {
  const cdp = await context.newCDPSession(page);
  try {
    const registrationId = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no Service Worker registration for ${origin} reported by DevTools`));
      }, 10_000);
      cdp.on("ServiceWorker.workerRegistrationUpdated", (event) => {
        for (const r of event.registrations) {
          if (!r.isDeleted && r.scopeURL.startsWith(origin)) {
            clearTimeout(timer);
            resolve(r.registrationId);
          }
        }
      });
      cdp.send("ServiceWorker.enable").catch(reject);
    });
    await cdp.send("ServiceWorker.dispatchSyncEvent", { origin, registrationId, tag, lastChance: false });
  } finally {
    await cdp.detach().catch(() => undefined);
  }
}

/**
 * The usual file set-up: one environment for the file (started in beforeAll,
 * closed in afterAll whatever happened), its log printed when a test fails
 * (and after every test with TETHER_E2E_LOG=1).
 * Returns the getter for tests.
 */
export function useE2E(): () => E2E {
  let env: E2E | null = null;
  beforeAll(async () => {
    env = await E2E.start();
  });
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      env?.log.dump(`log of "${ctx.task.name}"`);
    });
    if (process.env["TETHER_E2E_LOG"] === "1") {
      ctx.onTestFinished(() => {
        env?.log.dump(`log of "${ctx.task.name}"`);
      });
    }
  });
  afterAll(async () => {
    await env?.close();
    env = null;
  });
  return () => {
    if (env === null) throw new Error("the e2e environment did not start");
    return env;
  };
}
