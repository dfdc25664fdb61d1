// The dashboard scenario's environment: the real gateway serving its embedded
// dashboard (so the page's origin is the gateway's, and a restart must come
// back on the same port), demo agents (`tether agent`), and chromium. Short
// heartbeats and a 1 s system sample period keep the scenarios quick.
// Screenshots go to the output directory (TETHER_E2E_OUTPUT, default
// web/e2e/output/dashboard).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import WebSocket from "ws";
import { CHROMIUM_ARGS } from "./env.js";
import { Gateway } from "./gateway.js";
import { Log } from "./log.js";
import { CHROMIUM, E2E_DIR, GATEWAY_BIN } from "./paths.js";

/** Heartbeat of the dashboard gateway: an agent that stops answering is gone within 3 s. */
export const HEARTBEAT_INTERVAL_MS = 2000;
export const HEARTBEAT_TIMEOUT_MS = 1000;
/** How long `agents` pushes may be held back (the protocol's coalescing). */
export const AGENTS_COALESCING_MS = 250;

/** Where screenshots are written. */
export const OUTPUT_DIR = process.env["TETHER_E2E_OUTPUT"] ?? join(E2E_DIR, "output", "dashboard");

export interface PageOptions {
  readonly width?: number;
  readonly colorScheme?: "light" | "dark";
  readonly bypassCSP?: boolean;
}

/** A `tether agent` process. */
export class AgentProcess {
  private constructor(
    private readonly proc: ChildProcess,
    readonly name: string,
  ) {}

  static start(gatewayUrl: string, name: string, command: string, log: Log, extra: readonly string[] = []): AgentProcess {
    const proc = spawn(GATEWAY_BIN, ["agent", "--url", gatewayUrl, "--name", name, "--command", command, ...extra], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    if (proc.stderr !== null) {
      createInterface({ input: proc.stderr }).on("line", (line) => {
        log.add(`[agent ${name}]`, line);
      });
    }
    proc.once("error", (e) => {
      log.add(`[agent ${name}]`, `cannot start: ${e.message}`);
    });
    return new AgentProcess(proc, name);
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Sends `signal`; for SIGKILL/SIGTERM resolves once the process is gone. */
  signal(signal: NodeJS.Signals): Promise<void> {
    return new Promise((resolve) => {
      if (!this.running) {
        resolve();
        return;
      }
      if (signal === "SIGSTOP" || signal === "SIGCONT") {
        this.proc.kill(signal);
        resolve();
        return;
      }
      this.proc.once("exit", () => {
        resolve();
      });
      this.proc.kill(signal);
    });
  }
}

/**
 * An agent written against the wire protocol (the demo agent sends no
 * progress): registers `name` for `command` and answers each task with one
 * `task_progress` (`{"percent": 50}`) and, `delayMs` later, a result (or the
 * agent error `bad_input` when the payload has `"fail": true`). Pings every
 * second, as the gateway closes a silent connection after its heartbeat
 * deadline.
 */
export class ProgressAgent {
  private constructor(
    private readonly ws: WebSocket,
    private readonly pinger: ReturnType<typeof setInterval>,
  ) {}

  static start(origin: string, name: string, command: string, delayMs: number, log: Log): Promise<ProgressAgent> {
    const ws = new WebSocket(`${origin.replace(/^http/, "ws")}/ws?client_id=${name}`);
    let pings = 0;
    const pinger = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", id: `ping-${String(++pings)}` }));
    }, 1000);
    ws.on("error", (e) => {
      log.add(`[agent ${name}]`, `error: ${e.message}`);
    });
    ws.on("close", (code) => {
      clearInterval(pinger);
      log.add(`[agent ${name}]`, `closed ${String(code)}`);
    });
    return new Promise((resolve, reject) => {
      ws.once("close", (code) => {
        reject(new Error(`agent ${name} closed (${String(code)}) before registering`));
      });
      ws.on("message", (raw: Buffer) => {
        const msg = JSON.parse(raw.toString()) as { type: string; id?: string; data?: { payload?: { fail?: boolean } } };
        if (msg.type === "welcome") {
          ws.send(JSON.stringify({ type: "register", id: "r1", data: { name, commands: [command], concurrency: 1 } }));
        } else if (msg.type === "ack" && msg.id === "r1") {
          resolve(new ProgressAgent(ws, pinger));
        } else if (msg.type === "task" && msg.id !== undefined) {
          const task = msg.id;
          const payload = msg.data?.payload ?? null;
          ws.send(JSON.stringify({ type: "task_progress", id: task, data: { percent: 50 } }));
          setTimeout(() => {
            const answer =
              payload?.fail === true
                ? { type: "task_result", id: task, error: { code: "bad_input", message: "the payload asked to fail" } }
                : { type: "task_result", id: task, data: { done: payload } };
            ws.send(JSON.stringify(answer));
          }, delayMs);
        }
      });
    });
  }

  close(): void {
    clearInterval(this.pinger);
    this.ws.close();
  }
}

export class DashboardEnv {
  readonly log = new Log();
  private dataDir: string | null = null;
  private gw: Gateway | null = null;
  private addr: string | null = null;
  private chrome: Browser | null = null;
  private readonly agents: AgentProcess[] = [];
  private readonly contexts = new Set<BrowserContext>();

  private constructor(private readonly extraArgs: readonly string[]) {}

  /** Starts the gateway (with `extraArgs`, e.g. `--jwt-secret`) and chromium. */
  static async start(extraArgs: readonly string[] = []): Promise<DashboardEnv> {
    const e = new DashboardEnv(extraArgs);
    try {
      mkdirSync(OUTPUT_DIR, { recursive: true });
      e.dataDir = mkdtempSync(join(tmpdir(), "tether-dash-"));
      await e.startGateway();
      e.chrome = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      return e;
    } catch (err) {
      await e.close();
      throw err;
    }
  }

  /** `http://127.0.0.1:PORT`: the dashboard's origin. */
  get origin(): string {
    if (this.addr === null) throw new Error("the gateway never started");
    return `http://${this.addr}`;
  }

  get gateway(): Gateway {
    if (this.gw === null) throw new Error("no gateway");
    return this.gw;
  }

  /** Starts the gateway: on a free port the first time, then on the same one. */
  async startGateway(): Promise<Gateway> {
    if (this.dataDir === null) throw new Error("no data dir");
    if (this.gw?.running === true) throw new Error("the gateway is still running");
    const args = [
      "--heartbeat-interval",
      `${String(HEARTBEAT_INTERVAL_MS)}ms`,
      "--heartbeat-timeout",
      `${String(HEARTBEAT_TIMEOUT_MS)}ms`,
      "--system-metrics-interval",
      "1s",
      ...this.extraArgs,
    ];
    // The old port may be briefly taken by a TIME_WAIT peer: retry a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        this.gw = await Gateway.start(this.dataDir, this.log, { listen: this.addr ?? "127.0.0.1:0", args });
        this.addr = this.gw.addr;
        return this.gw;
      } catch (e) {
        if (this.addr === null || attempt >= 10) throw e;
        this.log.add("[harness]", `restart on ${this.addr} failed (${String(e)}), retrying`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** A demo agent for `command`, connected to this gateway. */
  startAgent(name: string, command = "process_receipt", extra: readonly string[] = []): AgentProcess {
    const agent = AgentProcess.start(this.origin, name, command, this.log, extra);
    this.agents.push(agent);
    return agent;
  }

  /**
   * A fresh context (own storage) at `width`×900, its console in the log.
   * `bypassCSP` lets a test inject a checker script (the page's CSP forbids
   * inline scripts, rightly).
   */
  async newContext(options: PageOptions = {}): Promise<BrowserContext> {
    if (this.chrome === null) throw new Error("no browser");
    const context = await this.chrome.newContext({
      viewport: { width: options.width ?? 1280, height: 900 },
      colorScheme: options.colorScheme ?? "light",
      acceptDownloads: true,
      bypassCSP: options.bypassCSP ?? false,
    });
    this.contexts.add(context);
    context.on("console", (msg) => {
      this.log.add("[browser:page]", `${msg.type()}: ${msg.text()}`);
    });
    context.on("weberror", (err) => {
      this.log.add("[browser:error]", String(err.error()));
    });
    return context;
  }

  /** A new context with one page at `path` of the dashboard. */
  async openPage(path = "/", options: PageOptions = {}): Promise<Page> {
    const context = await this.newContext(options);
    const page = await context.newPage();
    await page.goto(`${this.origin}${path}`);
    return page;
  }

  /** Writes a full-page screenshot `<name>.png` into the output directory. */
  async screenshot(page: Page, name: string): Promise<string> {
    const path = join(OUTPUT_DIR, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    this.log.add("[harness]", `screenshot ${path}`);
    return path;
  }

  /** Releases everything started; safe after a failed start. */
  async close(): Promise<void> {
    for (const c of this.contexts) await c.close().catch(() => undefined);
    this.contexts.clear();
    await this.chrome?.close().catch(() => undefined);
    this.chrome = null;
    for (const a of this.agents) {
      await a.signal("SIGCONT");
      await a.signal("SIGKILL");
    }
    await this.gw?.kill();
    this.gw = null;
    if (this.dataDir !== null) rmSync(this.dataDir, { recursive: true, force: true });
    this.dataDir = null;
  }
}
