// TetherClient against the real gateway binary (target/debug/tether), started
// once for this file on 127.0.0.1:0 with a temporary data dir, and restarted on
// the same port and data dir where a test needs a gateway restart. Node 20 has
// no global WebSocket: the `ws` package stands in for the browser's.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  ClientClosedError,
  type ConnectionSnapshot,
  type Event,
  QueueFullError,
  RequestTimeoutError,
  TetherClient,
  type TetherClientOptions,
} from "../src/index";

const BIN = fileURLToPath(new URL("../../../../target/debug/tether", import.meta.url));

interface Gateway {
  proc: ChildProcess;
  addr: string;
}

let dataDir = "";
let gateway: Gateway | null = null;
const clients: TetherClient[] = [];

/** Starts the gateway; resolves with its address from the first stdout line. */
function startGateway(listen: string): Promise<Gateway> {
  const proc = spawn(BIN, ["serve", "--listen", listen, "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  return new Promise<Gateway>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error("the gateway did not print its address within 20 s"));
    }, 20_000);
    proc.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited early with ${String(code)}`));
    });
    if (proc.stdout === null) throw new Error("no stdout");
    const lines = createInterface({ input: proc.stdout });
    lines.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on http:\/\/(\S+)$/.exec(line);
      if (m?.[1] === undefined) reject(new Error(`unexpected first line: ${line}`));
      else resolve({ proc, addr: m[1] });
    });
  });
}

function stopGateway(g: Gateway): Promise<void> {
  return new Promise((resolve) => {
    if (g.proc.exitCode !== null || g.proc.signalCode !== null) {
      resolve();
      return;
    }
    g.proc.once("exit", () => {
      resolve();
    });
    g.proc.kill("SIGKILL");
  });
}

/** Kills the gateway (kill -9) and starts it again on the same port and data dir. */
async function restartGateway(downMs: number): Promise<void> {
  if (gateway === null) throw new Error("no gateway");
  const addr = gateway.addr;
  await stopGateway(gateway);
  await sleep(downMs);
  // The port was just freed; retry briefly in case the OS is slow to release it.
  for (let attempt = 0; ; attempt++) {
    try {
      gateway = await startGateway(addr);
      return;
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(250);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what: string, pred: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function client(extra: Partial<TetherClientOptions> = {}): TetherClient {
  if (gateway === null) throw new Error("no gateway");
  const c = new TetherClient({
    url: `ws://${gateway.addr}/ws`,
    WebSocketImpl: WebSocket,
    reconnectInterval: 100,
    maxReconnectDelay: 500,
    circuit: { failureThreshold: 1000, cooldownMs: 1000 },
    ...extra,
  });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`build the gateway first (cargo build at the repository root): ${BIN} is missing`);
  dataDir = mkdtempSync(join(tmpdir(), "tether-ts-"));
  gateway = await startGateway("127.0.0.1:0");
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  if (gateway !== null) await stopGateway(gateway);
  rmSync(dataDir, { recursive: true, force: true });
}, 30_000);

describe("TetherClient against the gateway", () => {
  it("publishes and subscribes", async () => {
    const sub = client();
    const pub = client();
    sub.start();
    pub.start();
    const events: Event[] = [];
    const recovered: boolean[] = [];
    sub.subscribe(
      "rt",
      (item) => {
        if (item.kind === "event") events.push(item.event);
        else if (item.kind === "recovered") recovered.push(item.ok);
      },
      { seq: 0 },
    );
    const acks = [];
    for (let i = 1; i <= 3; i++) acks.push(await pub.publish("rt", { n: i }));
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3]);
    await waitFor("3 events", () => events.length >= 3);
    expect(recovered).toEqual([true]);
    expect(events.map((e) => [e.seq, e.data])).toEqual([
      [1, { n: 1 }],
      [2, { n: 2 }],
      [3, { n: 3 }],
    ]);
    expect(events[0]?.from).toBe(pub.clientId);

    const status = await pub.requestAgentStatus();
    expect(Array.isArray(status)).toBe(true);
    const metrics = await pub.requestSystemMetrics();
    expect(metrics.connections).toBeGreaterThanOrEqual(2);
    const pong = await pub.request({ type: "ping" });
    expect(pong.type).toBe("pong");
  }, 30_000);

  it("survives a gateway restart mid-stream: contiguous seqs, no duplicate, every publish resolves once", async () => {
    const sub = client();
    const pub = client({ clientId: "restart-publisher", requestTimeout: 25_000 });
    const lost: string[] = [];
    for (const c of [sub, pub]) {
      c.onTransition((t) => {
        if (t.old.kind === "connected") lost.push(t.new.kind);
      });
    }
    sub.start();
    pub.start();
    const seqs: number[] = [];
    sub.subscribe(
      "stream",
      (item) => {
        if (item.kind === "event") seqs.push(item.event.seq);
        else if (item.kind === "recovered") expect(item.ok).toBe(true);
      },
      { seq: 0 },
    );
    await waitFor("both connected", () => sub.getSnapshot().isConnected && pub.getSnapshot().isConnected);

    const N = 40;
    const settled = new Array<number>(N).fill(0);
    const ackSeqs: number[] = [];
    const done: Promise<void>[] = [];
    const fire = (i: number): void => {
      done.push(
        pub.publish("stream", { i }).then(
          (ack) => {
            settled[i] = (settled[i] ?? 0) + 1;
            ackSeqs.push(ack.seq);
          },
          (e: unknown) => {
            settled[i] = (settled[i] ?? 0) + 1;
            throw e;
          },
        ),
      );
    };
    for (let i = 0; i < N / 2; i++) {
      fire(i);
      await sleep(10);
    }
    const restarted = restartGateway(300);
    for (let i = N / 2; i < N; i++) {
      fire(i);
      await sleep(10);
    }
    await restarted;
    await Promise.all(done);
    expect(settled).toEqual(new Array<number>(N).fill(1));
    expect([...ackSeqs].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, k) => k + 1));
    await waitFor(`${N} events`, () => seqs.length >= N);
    await sleep(200); // anything extra (a duplicate) would arrive now
    expect(seqs).toEqual(Array.from({ length: N }, (_, k) => k + 1));
    // Both clients really lost their connection and came back.
    expect(lost).toEqual(["reconnecting", "reconnecting"]);
    expect(sub.getSnapshot().isConnected && pub.getSnapshot().isConnected).toBe(true);
  }, 60_000);

  it("exposes connected → reconnecting → connected through a stable snapshot store", async () => {
    const c = client();
    const seen: ConnectionSnapshot[] = [];
    const unsubscribe = c.subscribeState(() => seen.push(c.getSnapshot()));
    const first = c.getSnapshot();
    expect(c.getSnapshot()).toBe(first);
    expect(first.state.kind).toBe("idle");
    c.start();
    await waitFor("connected", () => c.getSnapshot().isConnected);
    const connected = c.getSnapshot();
    expect(connected).not.toBe(first);
    expect(c.getSnapshot()).toBe(connected);
    expect(Object.isFrozen(connected)).toBe(true);
    expect(connected.error).toBeNull();

    await restartGateway(200);
    await waitFor("reconnected", () => c.getSnapshot().isConnected && c.getSnapshot() !== connected);
    unsubscribe();
    const kinds = seen.map((s) => s.state.kind);
    const from = kinds.indexOf("connected");
    const lost = kinds.indexOf("reconnecting", from);
    expect(from).toBeGreaterThanOrEqual(0);
    expect(lost).toBeGreaterThan(from);
    expect(kinds.indexOf("connected", lost)).toBeGreaterThan(lost);
    expect(seen[lost]?.error).not.toBeNull();
    expect(seen.at(-1)?.error).toBeNull();
    // One notification per change, each a new object.
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.at(-1)).toBe(c.getSnapshot());
  }, 60_000);

  it("rejects a request without a reply after requestTimeout", async () => {
    const c = client({ requestTimeout: 400 });
    c.start();
    // No agent handles this command: the gateway holds it for command_ttl (5 min).
    await expect(c.command("nobody_handles_this", { x: 1 })).rejects.toBeInstanceOf(RequestTimeoutError);
  }, 20_000);
});

describe("TetherClient bounds", () => {
  it("rejects when the disconnected queue is full, and everything on close", async () => {
    const c = new TetherClient({ url: "ws://127.0.0.1:9/ws", WebSocketImpl: WebSocket, maxQueued: 2 });
    const a = c.publish("q", 1);
    const b = c.publish("q", 2);
    await expect(c.publish("q", 3)).rejects.toThrow(/queue full \(maxQueued = 2/);
    await expect(c.publish("q", 4)).rejects.toBeInstanceOf(QueueFullError);
    c.close();
    await expect(a).rejects.toBeInstanceOf(ClientClosedError);
    await expect(b).rejects.toBeInstanceOf(ClientClosedError);
    await expect(c.publish("q", 5)).rejects.toBeInstanceOf(ClientClosedError);
  });

  it("rejects when too many requests are unanswered", async () => {
    const c = new TetherClient({
      url: "ws://127.0.0.1:9/ws",
      WebSocketImpl: WebSocket,
      maxPending: 1,
      maxQueued: 5,
    });
    const a = c.publish("q", 1);
    await expect(c.publish("q", 2)).rejects.toThrow(/too many unanswered requests \(maxPending = 1\)/);
    c.close();
    await expect(a).rejects.toBeInstanceOf(ClientClosedError);
  });
});
