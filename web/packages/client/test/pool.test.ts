// TetherPool: the pure parts (choice, queue, score, config) as table tests;
// the pool itself against in-memory gateways (`FakeGateway`, one per URL,
// reached through an injected `FakeSocket`) under Vitest's fake timers; and
// one test against two real gateway binaries (target/debug/tether).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import {
  CLIENT_ID_STORAGE_KEY,
  type Clock,
  GatewayError,
  NoHealthyConnectionError,
  PoolClosedError,
  PoolConfigError,
  PoolQueueFullError,
  type ServerMessage,
  setDebug,
  setLogSink,
  TetherPool,
  type TetherPoolOptions,
  type WebSocketLike,
  defaultClientId,
  healthScore,
} from "../src/index";
import { type Candidate, chooseConnection } from "../src/pool/choose";
import { Health } from "../src/pool/health";
import { WaitQueue } from "../src/pool/queue";

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

const c = (id: number, priority: number, inFlight: number, score: number): Candidate => ({ id, priority, inFlight, score });

describe("chooseConnection", () => {
  it("round robin takes the top tier in turn, skipping absent (unhealthy) ones", () => {
    const all = [c(1, 0, 0, 1), c(2, 0, 0, 1), c(3, 0, 0, 1)];
    let last: number | null = null;
    const picks: (number | null)[] = [];
    for (let i = 0; i < 5; i++) {
      last = chooseConnection("round-robin", all, last);
      picks.push(last);
    }
    expect(picks).toEqual([1, 2, 3, 1, 2]);
    const two = [c(1, 0, 0, 1), c(3, 0, 0, 1)];
    expect(chooseConnection("round-robin", two, 1)).toBe(3);
    expect(chooseConnection("round-robin", two, 3)).toBe(1);
    expect(chooseConnection("round-robin", [], 1)).toBeNull();
  });

  it("priority tiers come before the strategy", () => {
    const all = [c(1, 0, 0, 1), c(2, 5, 9, 0.1)];
    for (const s of ["round-robin", "least-used", "health-based"] as const) {
      expect(chooseConnection(s, all, 2)).toBe(2);
    }
    expect(chooseConnection("least-used", all.slice(0, 1), 2)).toBe(1);
  });

  it("least used takes the fewest in flight, then turns", () => {
    const all = [c(1, 0, 3, 1), c(2, 0, 1, 1), c(3, 0, 1, 1)];
    expect(chooseConnection("least-used", all, null)).toBe(2);
    expect(chooseConnection("least-used", all, 2)).toBe(3);
    expect(chooseConnection("least-used", all, 3)).toBe(2);
  });

  it("health based takes the best score", () => {
    const all = [c(1, 0, 0, 0.2), c(2, 0, 0, 0.9), c(3, 0, 0, 0.5)];
    expect(chooseConnection("health-based", all, null)).toBe(2);
    expect(chooseConnection("health-based", all, 2)).toBe(2);
    expect(chooseConnection("health-based", [c(1, 0, 0, 0.5), c(2, 0, 0, 0.5)], 1)).toBe(2);
  });
});

describe("WaitQueue", () => {
  it("releases higher priority first, then FIFO", () => {
    const q = new WaitQueue<string>(10);
    for (const [p, v] of [
      [1, "low"],
      [9, "high-1"],
      [5, "mid"],
      [9, "high-2"],
    ] as const) {
      expect(q.push(p, v).ok).toBe(true);
    }
    expect([q.pop(), q.pop(), q.pop(), q.pop(), q.pop()]).toEqual(["high-1", "high-2", "mid", "low", undefined]);
  });

  it("a full queue sheds the newest lowest or refuses", () => {
    const q = new WaitQueue<string>(3);
    q.push(5, "a");
    const b = q.push(1, "b");
    q.push(1, "c");
    expect(q.push(1, "d")).toEqual({ ok: false });
    expect(q.push(0, "e")).toEqual({ ok: false });
    const f = q.push(2, "f");
    expect(f).toMatchObject({ ok: true, displaced: "c" });
    expect(q.size).toBe(3);
    if (!b.ok) throw new Error("b was queued");
    expect(q.remove(b.key)).toBe("b");
    expect(q.remove(b.key)).toBeUndefined();
    expect(q.drain()).toEqual(["a", "f"]);
  });
});

describe("health", () => {
  it("the score falls with RTT and with errors", () => {
    expect(healthScore(0, 0)).toBe(1);
    expect(healthScore(50, 0)).toBe(0.5);
    expect(healthScore(null, 0)).toBe(0.5);
    expect(healthScore(0, 1)).toBe(0.5);
    expect(healthScore(50, 3)).toBe(0.125);
    expect(healthScore(5, 0)).toBeGreaterThan(healthScore(20, 0));
    expect(healthScore(20, 0)).toBeGreaterThan(healthScore(5, 1));
  });

  it("the smoothed RTT moves 30% of the way; errors leave the window", () => {
    const h = new Health();
    h.recordRtt(10);
    expect(h.rtt).toBe(10);
    h.recordRtt(110);
    expect(h.rtt).toBeCloseTo(40);
    h.recordError(0);
    h.recordError(10_000);
    expect(h.errors(11_000, 5_000)).toBe(1);
  });
});

describe("pool configuration", () => {
  const base: TetherPoolOptions = { urls: ["ws://a.test/ws", "ws://b.test/ws"] };
  const bad = (over: Partial<TetherPoolOptions>, message: RegExp): void => {
    expect(() => new TetherPool({ ...base, ...over })).toThrow(PoolConfigError);
    expect(() => new TetherPool({ ...base, ...over })).toThrow(message);
  };

  it("accepts the guide's example and applies the Rust defaults", () => {
    const pool = new TetherPool({
      maxConnections: 5,
      minConnections: 2,
      connectionTimeout: 10000,
      healthCheckInterval: 30000,
      loadBalancingStrategy: "health-based",
      urls: ["ws://localhost:8001/ws/dashboard", "ws://localhost:8002/ws/dashboard"],
    });
    expect(pool.config).toMatchObject({ maxConnections: 5, minConnections: 2, loadBalancingStrategy: "health-based" });
    const defaults = new TetherPool(base).config;
    expect(defaults).toMatchObject({
      maxConnections: 8,
      minConnections: 2,
      connectionTimeout: 10_000,
      healthCheckInterval: 5_000,
      loadBalancingStrategy: "round-robin",
      queueCapacity: 1024,
    });
  });

  it("defaults clientId to the page's persistent one, the same as a TetherClient's", () => {
    const stored = new Map<string, string>();
    vi.stubGlobal("localStorage", {
      getItem: (key: string) => stored.get(key) ?? null,
      setItem: (key: string, value: string) => {
        stored.set(key, value);
      },
    });
    try {
      const pool = new TetherPool(base);
      expect(pool.clientId).toBe(stored.get(CLIENT_ID_STORAGE_KEY));
      // A page reload (a new pool) and the page's other clients share it, so their sends deduplicate.
      expect(new TetherPool(base).clientId).toBe(pool.clientId);
      expect(defaultClientId()).toBe(pool.clientId);
      expect(new TetherPool({ ...base, clientId: "mine" }).clientId).toBe("mine");
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("names the bad field", () => {
    bad({ urls: [] }, /urls must list at least one/);
    bad({ urls: ["http://a.test"] }, /must start with ws:\/\/ or wss:\/\//);
    bad({ urls: ["ws://a.test/ws", "ws://a.test/ws"] }, /listed twice/);
    bad({ minConnections: 3, maxConnections: 2 }, /minConnections \(3\) must not exceed maxConnections \(2\)/);
    bad({ maxConnections: 0 }, /maxConnections must be a whole number of at least 1/);
    bad({ minConnections: 0 }, /minConnections must be a whole number/);
    bad({ connectionTimeout: 0 }, /connectionTimeout must be a positive number of ms/);
    bad({ healthCheckInterval: -5 }, /healthCheckInterval must be a positive number/);
    bad({ loadBalancingStrategy: "fastest" as "round-robin" }, /unknown loadBalancingStrategy "fastest"/);
    bad({ priorities: [1] }, /priorities has 1 entries for 2 URLs/);
    bad({ queueCapacity: 0 }, /queueCapacity must be/);
    bad({ clientId: "" }, /clientId must be/);
  });
});

// ---------------------------------------------------------------------------
// In-memory gateways
// ---------------------------------------------------------------------------

type Msg = Record<string, unknown>;

/** One gateway stand-in per URL: `welcome`, then replies by id per its behaviour. */
class FakeGateway {
  /** Answer new connections with `welcome` (else they wait until `openAll()`). */
  accept = true;
  /** Refuse new connections at once (close 1006). */
  refuse = false;
  /** Delay of pongs in ms. */
  pingDelay = 0;
  /** Never answer pings. */
  silentPings = false;
  /** Keep command replies until `release()`. */
  hold = false;
  /** Delay of command and publish replies in ms. */
  replyDelay = 0;
  readonly sockets: FakeSocket[] = [];
  readonly received: Msg[] = [];
  private readonly held: (() => void)[] = [];
  private seq = 0;

  constructor(readonly name: string) {}

  /** Commands received (not pings, subscribes, publishes). */
  commands(): Msg[] {
    return this.received.filter((m) => !["ping", "publish", "subscribe", "unsubscribe"].includes(String(m["type"])));
  }

  open(): FakeSocket[] {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  release(): void {
    for (const f of this.held.splice(0)) f();
  }

  openAll(): void {
    for (const s of this.sockets) if (s.readyState === 0) s.welcome();
  }

  /** Closes every open socket from the server side. */
  kill(code = 1013): void {
    for (const s of this.sockets) s.serverClose(code);
  }

  handle(socket: FakeSocket, msg: Msg): void {
    this.received.push(msg);
    const id = msg["id"];
    switch (msg["type"]) {
      case "ping":
        if (!this.silentPings) socket.reply({ type: "pong", id, ts: 1 }, this.pingDelay);
        return;
      case "publish":
        this.seq += 1;
        socket.reply({ type: "ack", id, data: { channel: msg["channel"], seq: this.seq, epoch: "e1" } }, this.replyDelay);
        return;
      case "explode":
        socket.reply({ type: "error", id, error: { code: "internal", message: "boom", retryable: true } }, this.replyDelay);
        return;
      default: {
        const answer = (): void => {
          socket.reply({ type: "result", id, data: { by: this.name } }, this.replyDelay);
        };
        if (this.hold) this.held.push(answer);
        else answer();
      }
    }
  }
}

const gateways = new Map<string, FakeGateway>();

function gw(name: string): FakeGateway {
  const g = new FakeGateway(name);
  gateways.set(`ws://${name}.test/ws`, g);
  return g;
}

class FakeSocket implements WebSocketLike {
  readyState = 0;
  readonly gateway: FakeGateway;
  onopen: ((ev: never) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: never) => void) | null = null;

  constructor(readonly url: string) {
    const g = gateways.get(url.split("?")[0] ?? "");
    if (g === undefined) throw new Error(`no fake gateway at ${url}`);
    this.gateway = g;
    g.sockets.push(this);
    setTimeout(() => {
      if (this.readyState !== 0) return;
      if (g.refuse) this.serverClose(1006);
      else if (g.accept) this.welcome();
    }, 1);
  }

  welcome(): void {
    this.readyState = 1;
    this.reply({
      type: "welcome",
      data: {
        session: `s-${this.gateway.name}-${String(this.gateway.sockets.indexOf(this))}`,
        node: this.gateway.name,
        protocol: 1,
        heartbeat_interval_ms: 600_000,
        heartbeat_timeout_ms: 10_000,
        max_message_bytes: 65536,
        server_time: 1,
      },
    });
  }

  send(text: string): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.gateway.handle(this, JSON.parse(text) as Msg);
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }

  serverClose(code: number): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason: "server" }), 0);
  }

  reply(frame: Msg, delay = 0): void {
    setTimeout(() => {
      if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
    }, delay);
  }
}

/** The global (faked) timers as a Clock. */
const CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (cb, ms) => setTimeout(cb, ms),
  clearTimeout: (h) => {
    clearTimeout(h as ReturnType<typeof setTimeout>);
  },
};

const pools: TetherPool[] = [];

function makePool(over: Partial<TetherPoolOptions> = {}): TetherPool {
  const pool = new TetherPool({
    urls: ["ws://a.test/ws", "ws://b.test/ws"],
    minConnections: 2,
    maxConnections: 2,
    connectionTimeout: 5_000,
    healthCheckInterval: 1_000,
    WebSocketImpl: FakeSocket,
    clock: CLOCK,
    clientId: "tester",
    reconnectInterval: 100,
    maxReconnectDelay: 100,
    random: () => 0.5,
    ...over,
  });
  pools.push(pool);
  return pool;
}

const tick = async (ms: number): Promise<void> => {
  await vi.advanceTimersByTimeAsync(ms);
};

/** Which gateway got the command whose `data.n` is `n`. */
function whoGot(n: number): string {
  for (const g of gateways.values()) if (g.received.some((m) => (m["data"] as { n?: unknown } | undefined)?.n === n)) return g.name;
  return "nobody";
}

describe("TetherPool with in-memory gateways", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(async () => {
    for (const p of pools.splice(0)) p.close();
    await tick(10);
    gateways.clear();
    vi.useRealTimers();
  });

  it("opens minConnections, spread over the URLs, and reports them", async () => {
    const a = gw("a");
    const b = gw("b");
    const pool = makePool({ maxConnections: 5, minConnections: 3, token: "t0k" });
    expect(pool.getConnectionCount()).toBe(0);
    pool.start();
    await tick(10);
    expect(a.sockets.length).toBe(2);
    expect(b.sockets.length).toBe(1);
    expect(pool.getConnectionCount()).toBe(3);
    expect(pool.metrics).toMatchObject({ totalConnections: 3, activeConnections: 3, healthyConnections: 3, failedConnections: 0 });
    // Every connection carries the same client_id, so deduplication spans them.
    for (const s of [...a.sockets, ...b.sockets]) expect(s.url).toContain("client_id=tester&access_token=t0k");
  });

  it("logs with the [WebSocketPool] prefix when debugging is on", async () => {
    gw("a");
    gw("b");
    const lines: string[] = [];
    setDebug(true);
    setLogSink((prefix, message) => {
      lines.push(`${prefix} ${message}`);
    });
    try {
      makePool().start();
      await tick(10);
    } finally {
      setDebug(false);
      setLogSink(null);
    }
    expect(lines).toContain("[WebSocketPool] #1 opening ws://a.test/ws (1 connections)");
    expect(lines.some((l) => l.startsWith("[WebSocketPool] #2 ws://b.test/ws: connecting → connected"))).toBe(true);
  });

  it("round-robin cycles through the connections", async () => {
    gw("a");
    gw("b");
    gw("c");
    const pool = makePool({ urls: ["ws://a.test/ws", "ws://b.test/ws", "ws://c.test/ws"], minConnections: 3, maxConnections: 3 });
    pool.start();
    await tick(10);
    const replies = [1, 2, 3, 4, 5, 6].map((n) => pool.send({ type: "work", data: { n } }));
    await tick(10);
    await Promise.all(replies);
    expect([1, 2, 3, 4, 5, 6].map(whoGot)).toEqual(["a", "b", "c", "a", "b", "c"]);
  });

  it("least-used picks the connection with the fewest requests in flight", async () => {
    const gs = [gw("a"), gw("b"), gw("c")];
    for (const g of gs) g.hold = true;
    const pool = makePool({
      urls: ["ws://a.test/ws", "ws://b.test/ws", "ws://c.test/ws"],
      minConnections: 3,
      maxConnections: 3,
      loadBalancingStrategy: "least-used",
    });
    pool.start();
    await tick(10);
    const replies = [1, 2, 3].map((n) => pool.send({ type: "work", data: { n } }));
    expect([1, 2, 3].map(whoGot)).toEqual(["a", "b", "c"]);
    gs[1]?.release();
    await tick(10);
    await replies[1];
    // b has nothing in flight now; round robin would have gone back to a.
    replies.push(pool.send({ type: "work", data: { n: 4 } }));
    expect(whoGot(4)).toBe("b");
    // All have one in flight again: the next after the last pick.
    replies.push(pool.send({ type: "work", data: { n: 5 } }));
    expect(whoGot(5)).toBe("c");
    for (const g of gs) g.release();
    await tick(10);
    await Promise.all(replies);
  });

  it("health-based prefers the best score and avoids unhealthy connections", async () => {
    const a = gw("a");
    const b = gw("b");
    a.pingDelay = 10;
    b.pingDelay = 200;
    const pool = makePool({ loadBalancingStrategy: "health-based" });
    pool.start();
    await tick(10);
    await tick(1_000 + 300); // one round of health pings, answered
    const byUrl = Object.fromEntries(pool.metrics.connections.map((m) => [m.url, m]));
    expect(byUrl["ws://a.test/ws"]?.rtt).toBe(10);
    expect(byUrl["ws://b.test/ws"]?.rtt).toBe(200);
    expect(byUrl["ws://a.test/ws"]?.score).toBeCloseTo(healthScore(10, 0));
    const first = [1, 2, 3].map((n) => pool.send({ type: "work", data: { n } }));
    await tick(10);
    await Promise.all(first);
    expect([1, 2, 3].map(whoGot)).toEqual(["a", "a", "a"]);

    // a's gateway goes away and refuses to come back: never chosen while down.
    a.refuse = true;
    a.kill(1013);
    await tick(5);
    expect(pool.metrics.healthyConnections).toBe(1);
    const second = [4, 5].map((n) => pool.send({ type: "work", data: { n } }));
    await tick(10);
    await Promise.all(second);
    expect([4, 5].map(whoGot)).toEqual(["b", "b"]);
  });

  it("errors lower the score: health-based moves away from a connection that fails", async () => {
    gw("a");
    gw("b");
    const pool = makePool({ loadBalancingStrategy: "health-based" });
    pool.start();
    await tick(10);
    // `internal` counts against a's connection (a bad_request would not).
    const failed = expect(pool.send({ type: "explode" })).rejects.toBeInstanceOf(GatewayError);
    await tick(10);
    await failed;
    const a = pool.metrics.connections.find((m) => m.url === "ws://a.test/ws");
    expect(a?.errors).toBe(1);
    expect(a?.score).toBeCloseTo(0.25);
    const replies = [1, 2].map((n) => pool.send({ type: "work", data: { n } }));
    await tick(10);
    await Promise.all(replies);
    expect([1, 2].map(whoGot)).toEqual(["b", "b"]);
  });

  it("replaces a connection that fails its health checks", async () => {
    const a = gw("a");
    gw("b");
    a.silentPings = true;
    const pool = makePool({ maxConnections: 3 });
    pool.start();
    await tick(10);
    expect(pool.metrics.connections.map((m) => m.id)).toEqual([1, 2]);
    await tick(2_000);
    const errors = pool.metrics.connections.find((m) => m.id === 1)?.errors;
    expect(errors).toBe(1);
    await tick(2_000 + 10); // the third failed check, then the replacement connects
    expect(pool.metrics.connections.map((m) => [m.id, m.url, m.state])).toEqual([
      [2, "ws://b.test/ws", "connected"],
      [3, "ws://a.test/ws", "connected"],
    ]);
    expect(a.sockets[0]?.readyState).toBe(3);
  });

  it("a single-URL pool opens the replacement while the failing member still has requests in flight", async () => {
    const a = gw("a");
    a.silentPings = true;
    a.hold = true;
    const pool = makePool({ urls: ["ws://a.test/ws"], minConnections: 1, maxConnections: 2 });
    pool.start();
    await tick(10);
    const first = pool.send({ type: "work", data: { n: 1 } }); // held by the gateway
    a.hold = false;
    await tick(4_000 + 10); // the third failed check: #1 is being replaced, its request still in flight
    a.silentPings = false;
    expect(pool.metrics.connections.map((m) => [m.id, m.state, m.replacing, m.inFlight])).toEqual([
      [1, "connected", true, 1],
      [2, "connected", false, 0],
    ]);
    // New requests go to the replacement at once instead of waiting for #1 to drain.
    const second = pool.send({ type: "work", data: { n: 2 } });
    await tick(10);
    await expect(second).resolves.toMatchObject({ type: "result" });
    expect(pool.metrics.queued).toBe(0);
    a.release();
    await tick(10);
    await expect(first).resolves.toMatchObject({ type: "result" });
    await tick(10);
    expect(pool.metrics.connections.map((m) => m.id)).toEqual([2]); // #1 closed once drained
  });

  it("replaces a lost connection on another URL, then shrinks back to minConnections", async () => {
    const a = gw("a");
    const b = gw("b");
    const pool = makePool({ maxConnections: 3, idleTimeout: 3_000 });
    pool.start();
    await tick(10);
    b.refuse = true;
    b.kill(1013);
    await tick(20);
    // b is down: a second connection to a keeps two healthy.
    expect(a.open().length).toBe(2);
    expect(pool.metrics).toMatchObject({ totalConnections: 3, healthyConnections: 2, failedConnections: 1 });
    b.refuse = false;
    await tick(500);
    expect(pool.metrics.healthyConnections).toBe(3);
    await tick(4_000);
    // The idle extra on the URL with the most connections is closed.
    expect(pool.metrics.totalConnections).toBe(2);
    expect(a.open().length).toBe(1);
    expect(b.open().length).toBe(1);
  });

  it("abandons a URL whose connection closed for good (4003) instead of hammering it", async () => {
    gw("a");
    const b = gw("b");
    const pool = makePool({ maxConnections: 3 });
    pool.start();
    await tick(10);
    b.kill(4003);
    await tick(1_000);
    expect(b.sockets.length).toBe(1); // never reopened
    expect(pool.metrics).toMatchObject({ abandonedUrls: ["ws://b.test/ws"], totalConnections: 2, healthyConnections: 2 });
    expect(pool.metrics.connections.map((m) => m.url)).toEqual(["ws://a.test/ws", "ws://a.test/ws"]);
    const reply = pool.send({ type: "work", data: { n: 1 } });
    await tick(10);
    await reply;
    expect(whoGot(1)).toBe("a");
  });

  it("grows toward maxConnections when every connection is busy, and shrinks idle extras", async () => {
    const a = gw("a");
    const b = gw("b");
    a.hold = true;
    b.hold = true;
    const pool = makePool({ minConnections: 2, maxConnections: 4, growInFlight: 2, idleTimeout: 5_000, loadBalancingStrategy: "least-used" });
    pool.start();
    await tick(10);
    const replies: Promise<ServerMessage>[] = [];
    const send = (n: number): void => {
      replies.push(pool.send({ type: "work", data: { n } }));
    };
    for (let n = 1; n <= 4; n++) send(n);
    expect(pool.metrics.totalConnections).toBe(3); // both busy: one more
    await tick(10);
    send(5);
    send(6); // both to the new connection
    expect(pool.metrics.connections.map((m) => m.inFlight)).toEqual([2, 2, 2, 0]);
    await tick(10);
    for (let n = 7; n <= 12; n++) send(n);
    await tick(10);
    expect(pool.metrics.totalConnections).toBe(4); // never above max
    expect(a.sockets.length + b.sockets.length).toBe(4);
    a.release();
    b.release();
    await tick(10);
    a.release();
    b.release();
    await tick(10);
    await Promise.all(replies);
    await tick(6_000);
    expect(pool.metrics.totalConnections).toBe(2);
    expect(pool.metrics.connections.map((m) => m.id)).toEqual([1, 2]);
  });

  it("queues while nothing is connected and releases by priority, FIFO within one", async () => {
    const a = gw("a");
    a.accept = false;
    const pool = makePool({ urls: ["ws://a.test/ws"], minConnections: 1, maxConnections: 1 });
    pool.start();
    await tick(10);
    const replies = [
      pool.send({ type: "work", data: { n: 1 } }, 1),
      pool.send({ type: "work", data: { n: 2 } }, 5),
      pool.send({ type: "work", data: { n: 3 } }, 9),
      pool.send({ type: "work", data: { n: 4 } }, 5),
      pool.send({ type: "work", data: { n: 5 } }),
    ];
    expect(pool.metrics.queued).toBe(5);
    a.openAll();
    await tick(10);
    await Promise.all(replies);
    expect(a.commands().map((m) => (m["data"] as { n: number }).n)).toEqual([3, 2, 4, 1, 5]);
    expect(pool.metrics.queued).toBe(0);
  });

  it("bounds the queue: refuses when full, or sheds the newest lowest for a higher priority", async () => {
    const a = gw("a");
    a.accept = false;
    const pool = makePool({ urls: ["ws://a.test/ws"], minConnections: 1, maxConnections: 1, queueCapacity: 2 });
    pool.start();
    const first = pool.send({ type: "work", data: { n: 1 } }, 1);
    const second = pool.send({ type: "work", data: { n: 2 } }, 1);
    await expect(pool.send({ type: "work", data: { n: 3 } }, 1)).rejects.toBeInstanceOf(PoolQueueFullError);
    const urgent = pool.send({ type: "work", data: { n: 4 } }, 10);
    await expect(second).rejects.toThrow(/wait queue is full \(2 requests\)/);
    expect(pool.metrics).toMatchObject({ queued: 2, rejected: 2, failedRequests: 2 });
    a.openAll();
    await tick(10);
    await Promise.all([first, urgent]);
    expect(a.commands().map((m) => (m["data"] as { n: number }).n)).toEqual([4, 1]);
  });

  it("fails a waiting request after connectionTimeout when nothing connects", async () => {
    const a = gw("a");
    a.accept = false;
    const pool = makePool({ urls: ["ws://a.test/ws"], minConnections: 1, maxConnections: 1, connectionTimeout: 1_000 });
    pool.start();
    const reply = pool.send({ type: "work" });
    const failed = expect(reply).rejects.toBeInstanceOf(NoHealthyConnectionError);
    await tick(999);
    expect(pool.metrics.queued).toBe(1);
    await tick(1);
    await failed;
    await expect(reply).rejects.toThrow(/no healthy connection within 1000 ms/);
    expect(pool.metrics.queued).toBe(0);
    expect(a.received).toEqual([]);
  });

  it("keeps a given id and adds one when missing", async () => {
    const a = gw("a");
    gw("b");
    const pool = makePool();
    pool.start();
    await tick(10);
    const mine = pool.send({ type: "publish", id: "my-id-1", channel: "news", data: 1 });
    const theirs = pool.send({ type: "publish", channel: "news", data: 2 });
    await tick(10);
    await expect(mine).resolves.toMatchObject({ type: "ack", id: "my-id-1" });
    const reply = await theirs;
    expect(reply.type === "ack" && reply.id).toMatch(/^pool-[0-9a-f]{16}-\d+$/);
    expect(a.received.find((m) => m["type"] === "publish")?.["id"]).toBe("my-id-1");
    const published = expect(pool.publish("news", 3)).resolves.toMatchObject({ channel: "news", epoch: "e1" });
    const commanded = expect(pool.command("work")).resolves.toMatchObject({ type: "result" });
    await tick(10);
    await published;
    await commanded;
    await expect(pool.send({ type: "task_result", id: "t1" })).rejects.toThrow(/gets no reply by id/);
    await expect(pool.send({ type: "publish", id: "x", channel: "bad channel!" })).rejects.toThrow(/invalid request frame/);
  });

  it("broadcast reaches every healthy connection, one id per connection", async () => {
    const a = gw("a");
    const b = gw("b");
    const pool = makePool();
    pool.start();
    await tick(10);
    const results = pool.broadcast({ type: "publish", channel: "news", data: "hi" });
    await tick(10);
    const settled = await results;
    expect(settled.map((r) => [r.url, r.status])).toEqual([
      ["ws://a.test/ws", "fulfilled"],
      ["ws://b.test/ws", "fulfilled"],
    ]);
    const ids = [a, b].map((g) => g.received.find((m) => m["type"] === "publish")?.["id"]);
    expect(ids.every((id) => typeof id === "string")).toBe(true);
    expect(new Set(ids).size).toBe(2);
    // A given id is kept on every copy.
    const same = pool.broadcast({ type: "publish", id: "once", channel: "news", data: "hi" });
    await tick(10);
    await same;
    expect([a, b].map((g) => g.received.filter((m) => m["id"] === "once").length)).toEqual([1, 1]);
    // A failure is reported in its slot, not thrown.
    const boom = pool.broadcast({ type: "explode" });
    await tick(10);
    expect((await boom).map((r) => r.status)).toEqual(["rejected", "rejected"]);
    expect(pool.metrics.totalRequests).toBe(6);
  });

  it("broadcast with nothing connected resolves empty; a closed pool refuses", async () => {
    const a = gw("a");
    a.accept = false;
    const pool = makePool({ urls: ["ws://a.test/ws"], minConnections: 1, maxConnections: 1 });
    pool.start();
    await expect(pool.broadcast({ type: "ping" })).resolves.toEqual([]);
    const waiting = pool.send({ type: "work" });
    pool.close();
    await expect(waiting).rejects.toBeInstanceOf(PoolClosedError);
    await expect(pool.send({ type: "work" })).rejects.toBeInstanceOf(PoolClosedError);
    await expect(pool.broadcast({ type: "ping" })).rejects.toBeInstanceOf(PoolClosedError);
    expect(pool.metrics).toMatchObject({ closed: true, totalConnections: 0 });
  });

  it("priority tiers: the lower tier serves only while the higher one is down", async () => {
    gw("a");
    const b = gw("b");
    const pool = makePool({ priorities: [0, 5] });
    pool.start();
    await tick(10);
    const one = [1, 2].map((n) => pool.send({ type: "work", data: { n } }));
    await tick(10);
    await Promise.all(one);
    expect([1, 2].map(whoGot)).toEqual(["b", "b"]);
    b.refuse = true;
    b.kill(1013);
    await tick(5);
    const two = pool.send({ type: "work", data: { n: 3 } });
    await tick(10);
    await two;
    expect(whoGot(3)).toBe("a");
  });

  it("metrics: a stable frozen snapshot, request counters, and Prometheus text", async () => {
    const a = gw("a");
    const b = gw("b");
    a.replyDelay = 20;
    b.replyDelay = 20;
    const pool = makePool();
    let notified = 0;
    const off = pool.subscribe(() => {
      notified += 1;
    });
    pool.start();
    await tick(10);
    const s1 = pool.getSnapshot();
    expect(Object.isFrozen(s1)).toBe(true);
    expect(Object.isFrozen(s1.connections)).toBe(true);
    expect(pool.getSnapshot()).toBe(s1);
    expect(pool.metrics).toBe(s1);
    expect(notified).toBeGreaterThan(0);

    const ok = [1, 2].map((n) => pool.send({ type: "work", data: { n } }));
    const bad = pool.send({ type: "explode" });
    const badDone = expect(bad).rejects.toBeInstanceOf(GatewayError);
    await tick(30);
    await Promise.all(ok);
    await badDone;
    const s2 = pool.getSnapshot();
    expect(s2).not.toBe(s1);
    expect(s2).toMatchObject({
      strategy: "round-robin",
      totalConnections: 2,
      activeConnections: 2,
      healthyConnections: 2,
      failedConnections: 0,
      totalRequests: 3,
      failedRequests: 1,
      averageResponseTime: 20,
      inFlight: 0,
      queued: 0,
      queueCapacity: 1024,
      rejected: 0,
    });
    off();

    const text = pool.toPrometheus();
    expect(text).toContain("# HELP tether_pool_healthy_connections ");
    expect(text).toContain("# TYPE tether_pool_healthy_connections gauge\ntether_pool_healthy_connections 2\n");
    expect(text).toContain("# TYPE tether_pool_requests_total counter\ntether_pool_requests_total 3\n");
    expect(text).toContain("tether_pool_failed_requests_total 1\n");
    expect(text).toContain("tether_pool_average_response_seconds 0.02\n");
    expect(text).toContain('tether_pool_endpoint_state{connection="1",url="ws://a.test/ws",state="connected"} 1\n');
    expect(text).toContain('tether_pool_endpoint_healthy{connection="2",url="ws://b.test/ws"} 1\n');
    expect(text).toContain('tether_pool_endpoint_errors{connection="1",url="ws://a.test/ws"} 1\n');
    // Every sample belongs to a family announced with HELP and TYPE.
    const families = new Set<string>();
    for (const line of text.trimEnd().split("\n")) {
      const type = /^# TYPE (tether_pool_[a-z_]+) (gauge|counter)$/.exec(line);
      if (type?.[1] !== undefined) {
        families.add(type[1]);
        continue;
      }
      if (line.startsWith("# HELP tether_pool_")) continue;
      const sample = /^(tether_pool_[a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
      expect(sample, line).not.toBeNull();
      expect(families.has(sample?.[1] ?? "")).toBe(true);
      expect(Number.isNaN(Number(sample?.[3]))).toBe(false);
    }
    expect(families.size).toBeGreaterThanOrEqual(17);
  });
});

// ---------------------------------------------------------------------------
// Two real gateways
// ---------------------------------------------------------------------------

const BIN = fileURLToPath(new URL("../../../../target/debug/tether", import.meta.url));

interface Gateway {
  proc: ChildProcess;
  addr: string;
  dir: string;
}

function startGateway(): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), "tether-pool-"));
  const proc = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dir], { stdio: ["ignore", "pipe", "ignore"] });
  return new Promise<Gateway>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error("the gateway did not print its address within 20 s"));
    }, 20_000);
    proc.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (proc.stdout === null) throw new Error("no stdout");
    createInterface({ input: proc.stdout }).once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on http:\/\/(\S+)$/.exec(line);
      if (m?.[1] === undefined) reject(new Error(`unexpected first line: ${line}`));
      else resolve({ proc, addr: m[1], dir });
    });
  });
}

function stopGateway(g: Gateway): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      rmSync(g.dir, { recursive: true, force: true });
      resolve();
    };
    if (g.proc.exitCode !== null || g.proc.signalCode !== null) {
      done();
      return;
    }
    g.proc.once("exit", done);
    g.proc.kill("SIGKILL");
  });
}

describe("TetherPool against two real gateways", () => {
  const real: Gateway[] = [];
  let pool: TetherPool | null = null;

  beforeAll(async () => {
    if (!existsSync(BIN)) throw new Error(`build the gateway first (cargo build at the repository root): ${BIN} is missing`);
    real.push(await startGateway(), await startGateway());
  }, 30_000);

  afterAll(async () => {
    pool?.close();
    await Promise.all(real.map(stopGateway));
  }, 30_000);

  it("spreads requests over both, broadcasts to both, and measures them", async () => {
    pool = new TetherPool({
      urls: real.map((g) => `ws://${g.addr}/ws`),
      minConnections: 2,
      maxConnections: 2,
      healthCheckInterval: 200,
      WebSocketImpl: WebSocket,
    });
    const p = pool;
    p.start();
    const end = Date.now() + 10_000;
    while (p.metrics.healthyConnections < 2) {
      if (Date.now() > end) throw new Error("the pool did not connect to both gateways");
      await new Promise((r) => setTimeout(r, 20));
    }
    const acks = await Promise.all([p.publish("pool-test", { n: 1 }), p.publish("pool-test", { n: 2 })]);
    // Round robin: one publish per gateway, each the first event of its own store.
    expect(acks.map((a) => a.seq)).toEqual([1, 1]);
    const results = await p.broadcast({ type: "publish", channel: "pool-test", data: { n: 3 } });
    expect(results.map((r) => (r.status === "fulfilled" && r.value.type === "ack" ? (r.value.data as { seq: number }).seq : r.status))).toEqual([
      2, 2,
    ]);
    // A resend of an id already accepted is deduplicated by the gateway.
    const first = await p.send({ type: "publish", id: "pool-dedup-1", channel: "pool-test", data: {} });
    const again = await Promise.all([
      p.send({ type: "publish", id: "pool-dedup-1", channel: "pool-test", data: {} }),
      p.send({ type: "publish", id: "pool-dedup-1", channel: "pool-test", data: {} }),
    ]);
    expect(first.type).toBe("ack");
    expect(again.some((r) => r.type === "ack" && (r.data as { duplicate?: boolean }).duplicate === true)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    const m = p.metrics;
    expect(m.totalRequests).toBe(7);
    expect(m.failedRequests).toBe(0);
    expect(m.connections.every((c) => c.rtt !== null && c.score > 0)).toBe(true);
    expect(p.toPrometheus()).toContain("tether_pool_healthy_connections 2\n");
  }, 20_000);
});
