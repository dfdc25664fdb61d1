// The dashboard served by the gateway at `/`, in headless chromium, against
// the real gateway and demo agents (`tether agent`): agents appear and go
// offline, a command returns its result, channels show events and recovery,
// /analytics shows the guide's monitoring components, a gateway restart shows
// "reconnecting" and then live data without a page reload. A screenshot of
// each view (light, dark, 390 px) is written to the output directory.

import type { Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import {
  AGENTS_COALESCING_MS,
  DashboardEnv,
  HEARTBEAT_INTERVAL_MS,
  HEARTBEAT_TIMEOUT_MS,
  ProgressAgent,
} from "../harness/dashboard.js";
import { createRequire } from "node:module";
import { SKIP } from "../harness/paths.js";
import { WAIT } from "../harness/page.js";

/** axe-core, injected into the page to audit accessibility. */
const AXE_SCRIPT = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** The views and their paths, as the navigation names them. */
const VIEWS = [
  ["Agents", "/"],
  ["System", "/system"],
  ["Channels", "/channels"],
  ["Commands", "/commands"],
  ["Analytics", "/analytics"],
] as const;

/** An attribute of the first element matching `selector`, or null (absent, or the page is navigating). */
async function attr(page: Page, selector: string, name: string): Promise<string | null> {
  try {
    return await page.evaluate(([s, n]) => document.querySelector(s)?.getAttribute(n) ?? null, [selector, name] as const);
  } catch {
    return null;
  }
}

/** The text of the first element matching `selector`, or null. */
async function text(page: Page, selector: string): Promise<string | null> {
  try {
    return await page.evaluate((s) => document.querySelector(s)?.textContent ?? null, selector);
  } catch {
    return null;
  }
}

/** Waits until the agent's row shows `status`; resolves with the ms it took from `since`. */
async function waitForAgentStatus(page: Page, name: string, status: string, since: number, timeout: number = WAIT.timeout): Promise<number> {
  await expect
    .poll(() => attr(page, `[data-testid="agent-row"][data-name="${name}"]`, "data-status"), { timeout, interval: 50 })
    .toBe(status);
  return Date.now() - since;
}

/** Publishes one event over `POST /api/v1/messages` (auth off). */
async function publishOverHttp(origin: string, channel: string, data: unknown): Promise<void> {
  const res = await fetch(`${origin}/api/v1/messages?client_id=e2e-publisher`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify([{ type: "publish", id: `p-${String(Date.now())}`, channel, data }]),
  });
  if (res.status !== 200) throw new Error(`publish: HTTP ${String(res.status)}: ${await res.text()}`);
}

/** The newest sample time (ms) over the System view's node rows, or 0. */
async function newestSample(page: Page): Promise<number> {
  try {
    return await page.evaluate(() =>
      Math.max(0, ...Array.from(document.querySelectorAll('[data-testid="system-sample-time"]'), (el) => Number(el.getAttribute("data-ts")))),
    );
  } catch {
    return 0;
  }
}

async function go(page: Page, title: string): Promise<void> {
  await page.getByRole("navigation", { name: "Views" }).getByRole("link", { name: title, exact: true }).click();
}

describe.skipIf(SKIP)("the dashboard", () => {
  let env: DashboardEnv | null = null;
  const e = (): DashboardEnv => {
    if (env === null) throw new Error("the dashboard environment did not start");
    return env;
  };
  beforeAll(async () => {
    env = await DashboardEnv.start();
  });
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      env?.log.dump(`log of "${ctx.task.name}"`);
    });
  });
  afterAll(async () => {
    await env?.close();
    env = null;
  });

  test("agents appear within 2 s and go offline within the heartbeat deadline", async () => {
    const page = await e().openPage("/");
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    expect(await text(page, '[data-testid="no-agents"]')).toContain("tether agent");

    const started = Date.now();
    const agent = e().startAgent("receipt-processor");
    const appeared = await waitForAgentStatus(page, "receipt-processor", "idle", started, 2000);
    e().log.add("[test]", `agent shown ${String(appeared)} ms after its start`);
    expect(appeared).toBeLessThanOrEqual(2000);
    expect(await text(page, '[data-testid="agents-online"]')).toBe("1");

    // Killed: its socket closes, the gateway publishes `offline`.
    const deadline = HEARTBEAT_INTERVAL_MS + HEARTBEAT_TIMEOUT_MS;
    const killedAt = Date.now();
    await agent.signal("SIGKILL");
    const offline = await waitForAgentStatus(page, "receipt-processor", "offline", killedAt, deadline);
    e().log.add("[test]", `killed agent shown offline after ${String(offline)} ms`);
    expect(await attr(page, '[data-testid="agent-row"][data-name="receipt-processor"]', "class")).toContain("offline");

    // Frozen (SIGSTOP): its socket stays open but it sends nothing; only the
    // gateway's heartbeat deadline can tell. Shown offline within that
    // deadline plus the `agents` push coalescing.
    const frozen = e().startAgent("frozen-agent");
    await waitForAgentStatus(page, "frozen-agent", "idle", Date.now());
    const stoppedAt = Date.now();
    await frozen.signal("SIGSTOP");
    const gone = await waitForAgentStatus(page, "frozen-agent", "offline", stoppedAt, deadline + AGENTS_COALESCING_MS + 500);
    e().log.add("[test]", `frozen agent shown offline after ${String(gone)} ms`);
    await frozen.signal("SIGCONT");
    await frozen.signal("SIGKILL");

    // A live one again for the screenshot and the next tests; follow its stream.
    e().startAgent("receipt-processor");
    await waitForAgentStatus(page, "receipt-processor", "idle", Date.now());
    await page.getByRole("button", { name: "receipt-processor", exact: true }).click();
    await expect.poll(() => text(page, '[data-testid="agent-stream"]'), WAIT).toContain("Retained history replayed");
    await expect.poll(() => text(page, '[data-testid="agent-stream"]'), WAIT).toContain("status idle");
    await e().screenshot(page, "agents");
  });

  test("a command from the console returns its result and latency", async () => {
    e().startAgent("console-agent");
    const page = await e().openPage("/commands");
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    // The form lists what the agents handle once the agent is registered.
    await expect.poll(() => text(page, "form"), WAIT).toContain("Handled by the agents now: process_receipt");
    await page.getByLabel("Command", { exact: true }).fill("process_receipt");
    await page.getByLabel("Payload (JSON)").fill('{"imageUrl": "s3://receipts/42.jpg", "total": 12.5}');
    await page.getByRole("button", { name: "Send command" }).click();
    await expect.poll(() => attr(page, '[data-testid="command-result"]', "data-status"), WAIT).toBe("ok");
    const row = await text(page, '[data-testid="command-result"]');
    expect(row).toContain('"echo":{"imageUrl":"s3://receipts/42.jpg","total":12.5}');
    expect(await text(page, '[data-testid="command-latency"]')).toMatch(/^\d+(\.\d)? (ms|s)$/);

    // An agent's task progress shows in its followed stream, the result in the console.
    const worker = await ProgressAgent.start(e().origin, "slow-worker", "slow_job", 300, e().log);
    try {
      await go(page, "Agents");
      await waitForAgentStatus(page, "slow-worker", "idle", Date.now());
      await page.getByRole("button", { name: "slow-worker", exact: true }).click();
      await expect.poll(() => text(page, '[data-testid="agent-stream"]'), WAIT).toContain("Retained history replayed");
      await go(page, "Commands");
      await page.getByLabel("Command", { exact: true }).fill("slow_job");
      await page.getByLabel("Payload (JSON)").fill('{"n": 7}');
      await page.getByRole("button", { name: "Send command" }).click();
      await expect.poll(() => attr(page, '[data-testid="command-result"][data-command="slow_job"]', "data-status"), WAIT).toBe("ok");
      expect(await text(page, '[data-testid="command-result"][data-command="slow_job"]')).toContain('{"done":{"n":7}}');
      await go(page, "Agents");
      await expect.poll(() => text(page, '[data-testid="agent-stream"]'), WAIT).toMatch(/slow_job t-\S+: \{"percent":50\}/);
      await e().screenshot(page, "agent-stream");
      await page.getByRole("button", { name: "Stop following" }).click();

      // The agent's error is shown as such, with its code and message.
      await go(page, "Commands");
      await page.getByLabel("Command", { exact: true }).fill("slow_job");
      await page.getByLabel("Payload (JSON)").fill('{"fail": true}');
      await page.getByRole("button", { name: "Send command" }).click();
      await expect.poll(() => attr(page, '[data-testid="command-result"]', "data-status"), WAIT).toBe("agent-error");
      expect(await text(page, '[data-testid="command-result"]')).toContain("Agent error bad_input: the payload asked to fail");
    } finally {
      worker.close();
    }

    // Bad input is refused in the form, with the reason.
    await go(page, "Commands");
    await page.getByLabel("Payload (JSON)").fill("{not json");
    expect(await page.getByRole("button", { name: "Send command" }).isDisabled()).toBe(true);
    expect(await page.getByText("Not valid JSON").count()).toBe(1);
    await page.getByLabel("Payload (JSON)").fill("{}");
    await e().screenshot(page, "commands");
  });

  test("/analytics shows the connection's metrics, pool and offline queue", async () => {
    const page = await e().openPage("/analytics");
    await page.locator('[data-testid="websocket-metrics"]').waitFor({ state: "visible", timeout: WAIT.timeout });
    await expect.poll(() => text(page, '[data-testid="pool-healthy-connections"]'), WAIT).toBe("1");
    expect(await page.locator('[data-testid="offline-status"]').isVisible()).toBe(true);
    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download Prometheus metrics" }).click();
    expect((await download).suggestedFilename()).toBe("websocket_metrics.prom");
    await e().screenshot(page, "analytics");
  });

  test("system charts fill from the system channel", async () => {
    const page = await e().openPage("/system");
    await expect.poll(() => page.locator('[data-testid="system-node"]').count(), WAIT).toBe(1);
    for (const chart of ["chart-cpu", "chart-memory", "chart-connections", "chart-messages"]) {
      expect(await page.locator(`[data-testid="${chart}"] canvas`).count(), chart).toBe(1);
    }
    // Live: a newer sample arrives while we watch.
    const first = await newestSample(page);
    await expect.poll(() => newestSample(page), WAIT).toBeGreaterThan(first);
    await e().screenshot(page, "system");
  });

  test("a gateway restart shows reconnecting, then live data again without a reload", async () => {
    e().startAgent("restart-agent");
    const page = await e().openPage("/channels");
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    await page.evaluate(() => {
      (window as unknown as { loadMarker: string }).loadMarker = "first-load";
    });

    // Follow a channel and publish on it from the form.
    await page.getByLabel("Channel", { exact: true }).first().fill("orders");
    await page.getByRole("button", { name: "Subscribe" }).click();
    await page.getByLabel("Event data (JSON)").fill('{"order": 1}');
    await page.getByRole("button", { name: /^Publish/ }).click();
    await expect.poll(() => attr(page, '[data-testid="publish-result"]', "data-state"), WAIT).toBe("acked");
    expect(await text(page, '[data-testid="publish-result"]')).toContain("orders seq 1");
    await expect.poll(() => page.locator('[data-testid="log-event"]').count(), WAIT).toBe(1);

    await e().gateway.stop();
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("reconnecting");
    expect(await text(page, '[data-testid="connection-status"]')).toContain("Reconnecting");
    await e().screenshot(page, "reconnecting");

    const restartedAt = Date.now();
    await e().startGateway();
    // Published the moment the gateway is back (usually before the page's
    // reconnect, so that it comes as recovery; live otherwise): shown once.
    await publishOverHttp(e().origin, "orders", { order: 2 });
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    await expect.poll(() => text(page, '[data-testid="channel-events"]'), WAIT).toContain("Reconnected: caught up from #1 without a gap");
    await page.getByLabel("Event data (JSON)").fill('{"order": 3}');
    await page.getByRole("button", { name: /^Publish/ }).click();
    await expect
      .poll(() => page.evaluate(() => Array.from(document.querySelectorAll<HTMLElement>('[data-testid="log-event"]'), (el) => Number(el.dataset["seq"]))), WAIT)
      .toEqual([3, 2, 1]);

    // Live data again: a sample of the new gateway process (a new node id, so
    // a second row; the old one greys out), the agent back.
    await go(page, "System");
    await expect.poll(() => newestSample(page), WAIT).toBeGreaterThan(restartedAt);
    await go(page, "Agents");
    await waitForAgentStatus(page, "restart-agent", "idle", Date.now());
    expect(await page.evaluate(() => (window as unknown as { loadMarker?: string }).loadMarker)).toBe("first-load");
    expect(await page.evaluate(() => performance.getEntriesByType("navigation").length)).toBe(1);
  });

  test("every view: labelled controls, keyboard navigation, dark theme, 390 px", async () => {
    const page = await e().openPage("/");
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");

    // Keyboard: the skip link first, then the header's controls and the views' links.
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await page.evaluate(() => document.activeElement?.textContent)) === "Commands";
    }
    expect(reached, "the Commands link is reachable with Tab").toBe(true);
    await page.keyboard.press("Enter");
    await expect.poll(() => page.evaluate(() => window.location.pathname), WAIT).toBe("/commands");

    for (const [title, path] of VIEWS) {
      await go(page, title);
      await expect.poll(() => page.evaluate(() => window.location.pathname), WAIT).toBe(path);
      const unlabelled = await page.evaluate(() =>
        Array.from(document.querySelectorAll<HTMLElement>("input, textarea, select, button"))
          .filter((el) => {
            const labels = (el as HTMLInputElement).labels;
            const named = (labels !== null && labels.length > 0) || el.getAttribute("aria-label") !== null || (el.tagName === "BUTTON" && (el.textContent ?? "").trim() !== "");
            return !named;
          })
          .map((el) => el.outerHTML.slice(0, 120)),
      );
      expect(unlabelled, `unlabelled controls on ${title}`).toEqual([]);
    }

    // Dark theme: the toggle switches and is remembered.
    const lightBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.getByTestId("theme-toggle").click();
    expect(await page.evaluate(() => document.documentElement.dataset["theme"])).toBe("dark");
    const darkBg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(darkBg).not.toBe(lightBg);
    await page.reload();
    expect(await page.evaluate(() => document.documentElement.dataset["theme"])).toBe("dark");
    for (const [title, path] of VIEWS) {
      await go(page, title);
      await expect.poll(() => page.evaluate(() => window.location.pathname), WAIT).toBe(path);
      await page.waitForTimeout(300);
      await e().screenshot(page, `dark-${title.toLowerCase()}`);
    }

    // 390 px wide: nothing wider than the screen.
    const narrow = await e().openPage("/", { width: 390, colorScheme: "light" });
    await expect.poll(() => attr(narrow, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    for (const [title, path] of VIEWS) {
      await go(narrow, title);
      await expect.poll(() => narrow.evaluate(() => window.location.pathname), WAIT).toBe(path);
      await narrow.waitForTimeout(300);
      const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
      expect(width, `${title} at 390 px`).toBeLessThanOrEqual(390);
      await e().screenshot(narrow, `narrow-${title.toLowerCase()}`);
    }
  });

  test("no serious accessibility violations (axe-core, WCAG 2.1 AA) in either theme", async () => {
    e().startAgent("a11y-agent");
    for (const colorScheme of ["light", "dark"] as const) {
      const page = await e().openPage("/", { bypassCSP: true, colorScheme });
      await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
      await waitForAgentStatus(page, "a11y-agent", "idle", Date.now());
      for (const [title, path] of VIEWS) {
        await go(page, title);
        await expect.poll(() => page.evaluate(() => window.location.pathname), WAIT).toBe(path);
        await page.waitForTimeout(300);
        expect(await accessibilityViolations(page), `${title} (${colorScheme})`).toEqual([]);
      }
      await page.context().close();
    }
  });
});

/** axe-core's verdict on `page`: the serious and critical WCAG 2.x A/AA violations, one line each. */
async function accessibilityViolations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: AXE_SCRIPT });
  return page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: unknown) => Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${String(v.impact)}): ${v.help} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")}`);
  });
}

describe.skipIf(SKIP)("the dashboard with auth on", () => {
  let env: DashboardEnv | null = null;
  const SECRET = "dashboard-e2e-secret";
  beforeAll(async () => {
    env = await DashboardEnv.start(["--jwt-secret", SECRET]);
  });
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      env?.log.dump(`log of "${ctx.task.name}"`);
    });
  });
  afterAll(async () => {
    await env?.close();
    env = null;
  });

  test("asks for a token on 4001, takes one from ?access_token= or the form, explains 4003", async () => {
    if (env === null) throw new Error("no environment");
    const { makeToken } = await import("../harness/token.js");
    const page = await env.openPage("/");
    await expect.poll(() => attr(page, '[data-testid="refusal"]', "data-code"), WAIT).toBe("4001");
    expect(await text(page, '[data-testid="sign-in"]')).toContain("requires sign-in");
    expect(await attr(page, '[data-testid="connection-status"]', "data-state")).toBe("refused");
    await env.screenshot(page, "sign-in");

    // From the URL: used, kept for the tab, and removed from the address bar.
    const token = makeToken(SECRET, "dashboard-user", []);
    // The charts are prefilled from the system channel's history, over HTTP with the token.
    const history = page.waitForResponse((r) => r.url().includes("/api/v1/channels/system/history?since="));
    await page.goto(`${env.origin}/system?access_token=${token}`);
    expect((await history).status()).toBe(200);
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    expect(page.url()).toBe(`${env.origin}/system`);
    expect(await page.evaluate(() => sessionStorage.getItem("tether.dashboard.token"))).toBe(token);
    await page.reload();
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");

    // A principal that may not connect (unknown role): 4003, said plainly.
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect.poll(() => attr(page, '[data-testid="refusal"]', "data-code"), WAIT).toBe("4001");
    await page.getByLabel("Access token (JWT)").fill(makeToken(SECRET, "intruder", ["--role", "superuser"]));
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => attr(page, '[data-testid="refusal"]', "data-code"), WAIT).toBe("4003");
    expect(await text(page, '[data-testid="refusal"]')).toContain("4003");

    // A good token through the form.
    await page.getByLabel("Access token (JWT)").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => attr(page, '[data-testid="connection-status"]', "data-state"), WAIT).toBe("live");
    expect(await page.locator('[data-testid="sign-in"]').count()).toBe(0);
  });
});
