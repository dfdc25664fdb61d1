// One scenario environment: the gateway (temp data dir), the TCP proxy in
// front of it (the page's WebSocket URL), the static server (the page's
// origin, /api/* to the gateway), and chromium. `E2E.start()` in a file's
// `beforeAll`, `close()` in its `afterAll`: close() releases everything that
// was started, whatever failed before, and removes the data dir.
//
// Also the test side of the wire: publishing and reading history over the
// gateway's HTTP API, directly (not through the proxy, which scenarios break).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { Gateway } from "./gateway.js";
import { Log } from "./log.js";
import { CHROMIUM, PAGE_DIST } from "./paths.js";
import { TcpProxy } from "./proxy.js";
import { StaticServer } from "./static-server.js";

/** Chromium flags: no sandbox (containers), nothing talking to Google. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** The principal the tests publish as (never the page's). */
export const PUBLISHER = "e2e-publisher";

/** What the page reads from its query string (see page/src/config.ts). */
export interface PageParams {
  /** Channel the page subscribes to (from seq 0) and lists. */
  channel?: string;
  /** Register the Service Worker. */
  sw?: boolean;
  /** heartbeatInterval / heartbeatTimeout in ms. */
  heartbeatInterval?: number;
  heartbeatTimeout?: number;
  /** Channel the "send" button publishes on. */
  sendChannel?: string;
  /** Put into each sent message's data, to tell scenarios apart in history. */
  tag?: string;
}

/** An event as the history route returns it. */
export interface HistoryEvent {
  readonly channel: string;
  readonly seq: number;
  readonly epoch: string;
  readonly from?: string;
  readonly data: unknown;
}

let idCounter = 0;

/** A fresh request id for the test's own publishes. */
export function testId(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${String(process.pid)}-${String(Date.now())}-${String(idCounter)}`;
}

export class E2E {
  readonly log = new Log();
  private dataDir: string | null = null;
  private gw: Gateway | null = null;
  private tcp: TcpProxy | null = null;
  private http: StaticServer | null = null;
  private chrome: Browser | null = null;
  private readonly contexts = new Set<BrowserContext>();

  private constructor() {}

  /** Starts gateway, proxy, static server and chromium; on failure releases what had started. */
  static async start(): Promise<E2E> {
    const e = new E2E();
    try {
      e.dataDir = mkdtempSync(join(tmpdir(), "tether-e2e-"));
      e.gw = await Gateway.start(e.dataDir, e.log);
      e.tcp = await TcpProxy.start(e.gw.addr, e.log);
      e.http = await StaticServer.start(PAGE_DIST, () => e.gateway.addr, e.log);
      e.chrome = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      return e;
    } catch (err) {
      await e.close();
      throw err;
    }
  }

  get gateway(): Gateway {
    if (this.gw === null) throw new Error("no gateway");
    return this.gw;
  }

  get proxy(): TcpProxy {
    if (this.tcp === null) throw new Error("no proxy");
    return this.tcp;
  }

  get server(): StaticServer {
    if (this.http === null) throw new Error("no static server");
    return this.http;
  }

  get browser(): Browser {
    if (this.chrome === null) throw new Error("no browser");
    return this.chrome;
  }

  /** The page's WebSocket URL: through the proxy. */
  get wsUrl(): string {
    return `ws://${this.proxy.addr}/ws`;
  }

  /** The test page's URL with `params` in its query. */
  pageUrl(params: PageParams = {}): string {
    const q = new URLSearchParams({ ws: this.wsUrl });
    if (params.channel !== undefined) q.set("channel", params.channel);
    if (params.sw === true) q.set("sw", "1");
    if (params.heartbeatInterval !== undefined) q.set("hbi", String(params.heartbeatInterval));
    if (params.heartbeatTimeout !== undefined) q.set("hbt", String(params.heartbeatTimeout));
    if (params.sendChannel !== undefined) q.set("send", params.sendChannel);
    if (params.tag !== undefined) q.set("tag", params.tag);
    q.set("debug", "1");
    return `${this.server.origin}/?${q.toString()}`;
  }

  /** A fresh browser context (own storage, own worker registration), its console in the log. */
  async newContext(): Promise<BrowserContext> {
    const context = await this.browser.newContext();
    this.contexts.add(context);
    context.on("console", (msg) => {
      const where = msg.worker() !== null ? "[browser:worker]" : "[browser:page]";
      this.log.add(where, `${msg.type()}: ${msg.text()}`);
    });
    context.on("weberror", (err) => {
      this.log.add("[browser:error]", String(err.error()));
    });
    context.on("serviceworker", (worker) => {
      this.log.add("[browser]", `service worker started: ${worker.url()}`);
    });
    return context;
  }

  /** A new context with one page opened at the test page. */
  async openPage(params: PageParams = {}): Promise<{ context: BrowserContext; page: Page }> {
    const context = await this.newContext();
    const page = await context.newPage();
    await page.goto(this.pageUrl(params));
    return { context, page };
  }

  /** Closes a context made by newContext (also done by close()). */
  async closeContext(context: BrowserContext): Promise<void> {
    this.contexts.delete(context);
    await context.close();
  }

  /** SIGKILLs the gateway (a crash). */
  async killGateway(): Promise<void> {
    await this.gateway.kill();
    this.log.add("[harness]", "gateway killed (SIGKILL)");
  }

  /** Starts the gateway again on the same data dir (new port); the proxy is NOT retargeted. */
  async startGateway(): Promise<Gateway> {
    if (this.dataDir === null) throw new Error("no data dir");
    if (this.gw?.running === true) throw new Error("the gateway is still running");
    this.gw = await Gateway.start(this.dataDir, this.log);
    return this.gw;
  }

  /** Breaks (`false`) or restores (`true`) the network for a context: emulation, proxy and page origin. */
  async setNetwork(context: BrowserContext, online: boolean): Promise<void> {
    if (online) {
      this.server.offline = false;
      this.proxy.refuse(false);
      await context.setOffline(false);
    } else {
      await context.setOffline(true);
      // Chromium's offline emulation freezes an open WebSocket rather than
      // closing it; a real network loss ends it, so cut it here.
      this.proxy.refuse(true);
      this.proxy.cut();
      this.server.offline = true;
    }
    this.log.add("[harness]", `network ${online ? "restored" : "down"}`);
  }

  /** Publishes over POST /api/v1/messages (directly to the gateway); resolves with the ack's data. */
  async publish(channel: string, data: unknown, id = testId("pub")): Promise<{ seq: number; epoch: string }> {
    const res = await fetch(`${this.gateway.httpUrl}/api/v1/messages?client_id=${PUBLISHER}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([{ type: "publish", id, channel, data }]),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`publish: HTTP ${String(res.status)}: ${text}`);
    const replies = JSON.parse(text) as { type?: string; data?: { seq?: number; epoch?: string } }[];
    const ack = replies[0];
    if (ack?.type !== "ack" || typeof ack.data?.seq !== "number" || typeof ack.data.epoch !== "string") {
      throw new Error(`publish: expected an ack, got ${text}`);
    }
    return { seq: ack.data.seq, epoch: ack.data.epoch };
  }

  /** Every retained event of `channel` (GET /api/v1/channels/{channel}/history), oldest first. */
  async history(channel: string): Promise<HistoryEvent[]> {
    const events: HistoryEvent[] = [];
    let since = 0;
    for (;;) {
      const res = await fetch(
        `${this.gateway.httpUrl}/api/v1/channels/${encodeURIComponent(channel)}/history?since=${String(since)}&limit=1000`,
      );
      const text = await res.text();
      if (res.status !== 200) throw new Error(`history: HTTP ${String(res.status)}: ${text}`);
      const page = JSON.parse(text) as { events: HistoryEvent[] };
      events.push(...page.events);
      const last = page.events.at(-1);
      if (page.events.length < 1000 || last === undefined) return events;
      since = last.seq;
    }
  }

  /** Releases everything that was started; never throws (failures go to the log). */
  async close(): Promise<void> {
    const step = async (what: string, f: () => Promise<void> | void): Promise<void> => {
      try {
        await f();
      } catch (e) {
        this.log.add("[harness]", `cleanup: ${what} failed: ${String(e)}`);
      }
    };
    for (const c of [...this.contexts]) await step("context", () => c.close());
    this.contexts.clear();
    if (this.chrome !== null) await step("browser", () => this.chrome?.close());
    if (this.http !== null) await step("static server", () => this.http?.close());
    if (this.tcp !== null) await step("proxy", () => this.tcp?.close());
    if (this.gw !== null) await step("gateway", () => this.gw?.kill());
    if (this.dataDir !== null) {
      const dir = this.dataDir;
      await step("data dir", () => {
        rmSync(dir, { recursive: true, force: true });
      });
    }
    this.chrome = null;
    this.http = null;
    this.tcp = null;
    this.gw = null;
    this.dataDir = null;
  }
}
