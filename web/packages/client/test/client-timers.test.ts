// TetherClient's time-driven paths with a fake clock and an in-memory socket:
// the connect deadline, the heartbeat (ping after an idle interval, a missing
// pong replaces the connection), close-code handling (1001 moves to the next
// URL at once, 1008/4003 are final, 4001 asks the token provider again, 1013
// waits at least the base delay), the attempt cap, the circuit breaker,
// request deadlines, recovery after reconnect, and the metrics they feed.
// No real timers run: `FakeClock.advance` fires what is due, in order.

import { describe, expect, it } from "vitest";
import {
  type Clock,
  GatewayError,
  RequestTimeoutError,
  TetherClient,
  type TetherClientOptions,
  type WebSocketLike,
} from "../src/index";

class FakeClock implements Clock {
  private t = 0;
  private nextHandle = 1;
  private readonly timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.t;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.t + Math.max(0, ms), callback });
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; callback: () => void }] | null = null;
      for (const entry of this.timers) {
        if (entry[1].at <= end && (next === null || entry[1].at < next[1].at)) next = entry;
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].callback();
    }
    this.t = end;
  }
}

const WELCOME = {
  session: "s-1",
  node: "gw-test",
  protocol: 1,
  heartbeat_interval_ms: 30_000,
  heartbeat_timeout_ms: 10_000,
  max_message_bytes: 65_536,
  server_time: 1_764_093_600_000,
};

/** A socket the test drives by hand: nothing happens unless the test says so. */
class ManualSocket implements WebSocketLike {
  readyState = 0;
  readonly sent: Record<string, unknown>[] = [];
  closedWith: number | null = null;
  onopen: ((ev: never) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: never) => void) | null = null;

  constructor(
    readonly url: string,
    private readonly log: ManualSocket[],
  ) {
    log.push(this);
  }

  send(text: string): void {
    this.sent.push(JSON.parse(text) as Record<string, unknown>);
  }

  close(code = 1000): void {
    this.closedWith = code;
    this.readyState = 3;
  }

  /** The gateway's `welcome` (with its heartbeat settings). */
  welcome(overrides: Partial<typeof WELCOME> = {}): void {
    this.readyState = 1;
    this.deliver({ type: "welcome", data: { ...WELCOME, ...overrides } });
  }

  deliver(frame: unknown): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The server closes the connection with `code`. */
  serverClose(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  sentOfType(type: string): Record<string, unknown>[] {
    return this.sent.filter((m) => m["type"] === type);
  }
}

interface Rig {
  client: TetherClient;
  clock: FakeClock;
  sockets: ManualSocket[];
  /** The newest socket. */
  last(): ManualSocket;
}

/** A client on a fake clock; `random` 0.5 makes the full-jitter delays half the cap. */
function rig(options: Partial<TetherClientOptions> = {}): Rig {
  const clock = new FakeClock();
  const sockets: ManualSocket[] = [];
  const WebSocketImpl = class extends ManualSocket {
    constructor(url: string) {
      super(url, sockets);
    }
  };
  const client = new TetherClient({
    ...(options.urls === undefined ? { url: "ws://gw.test/ws" } : {}),
    clientId: "c-test",
    clock,
    random: () => 0.5,
    WebSocketImpl,
    ...options,
  });
  return {
    client,
    clock,
    sockets,
    last: () => {
      const s = sockets.at(-1);
      if (s === undefined) throw new Error("no socket opened yet");
      return s;
    },
  };
}

/** Lets pending promise callbacks (the token provider, `open`) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

async function connected(r: Rig): Promise<ManualSocket> {
  r.client.start();
  await settle();
  const s = r.last();
  s.welcome();
  expect(r.client.state.kind).toBe("connected");
  return s;
}

describe("connect deadline", () => {
  it("drops a socket that gets no welcome within connectionTimeout and retries after the backoff", async () => {
    const r = rig({ connectionTimeout: 5_000, reconnectInterval: 1_000 });
    r.client.start();
    await settle();
    expect(r.sockets).toHaveLength(1);
    r.clock.advance(4_999);
    expect(r.client.state.kind).toBe("connecting");
    r.clock.advance(1);
    expect(r.sockets[0]?.closedWith).not.toBeNull();
    expect(r.client.state.kind).toBe("reconnecting");
    expect(r.client.getSnapshot().error).toBe("connection timed out: no welcome");
    // Full jitter with random 0.5: the first delay is half the base.
    r.clock.advance(499);
    await settle();
    expect(r.sockets).toHaveLength(1);
    r.clock.advance(1);
    await settle();
    expect(r.sockets).toHaveLength(2);
    expect(r.client.getSnapshot().reconnectAttempts).toBe(1);
  });

  it("counts a slow token provider against the same deadline", async () => {
    const r = rig({ connectionTimeout: 2_000, getToken: () => new Promise<string>(() => undefined) });
    r.client.start();
    await settle();
    expect(r.sockets).toHaveLength(0);
    r.clock.advance(2_000);
    expect(r.client.state.kind).toBe("reconnecting");
    expect(r.client.getSnapshot().error).toBe("connection timed out (token)");
  });
});

describe("heartbeat", () => {
  it("pings after an idle interval and keeps a connection that answers", async () => {
    const r = rig({ heartbeatInterval: 1_000, heartbeatTimeout: 500 });
    const s = await connected(r);
    r.clock.advance(999);
    expect(s.sentOfType("ping")).toHaveLength(0);
    r.clock.advance(1);
    const pings = s.sentOfType("ping");
    expect(pings).toHaveLength(1);
    s.deliver({ type: "pong", id: pings[0]?.["id"], ts: 1 });
    r.clock.advance(499);
    r.clock.advance(400);
    expect(r.client.state.kind).toBe("connected");
    expect(s.closedWith).toBeNull();
    // The next ping comes an interval after the last one.
    r.clock.advance(101);
    expect(s.sentOfType("ping")).toHaveLength(2);
  });

  it("replaces a connection whose pong does not come within heartbeatTimeout", async () => {
    const r = rig({ heartbeatInterval: 1_000, heartbeatTimeout: 500, reconnectInterval: 100 });
    const s = await connected(r);
    r.clock.advance(1_000);
    expect(s.sentOfType("ping")).toHaveLength(1);
    r.clock.advance(499);
    expect(r.client.state.kind).toBe("connected");
    r.clock.advance(1);
    expect(s.closedWith).not.toBeNull();
    expect(r.client.state.kind).toBe("reconnecting");
    expect(r.client.getSnapshot().error).toBe("heartbeat timeout: no pong");
    r.clock.advance(100);
    await settle();
    expect(r.sockets).toHaveLength(2);
    r.last().welcome();
    expect(r.client.getSnapshot().isConnected).toBe(true);
    expect(r.client.getSnapshot().reconnectAttempts).toBe(0);
  });

  it("takes the smaller of its own and the welcome's heartbeat settings", async () => {
    const r = rig({ heartbeatInterval: 30_000, heartbeatTimeout: 10_000 });
    r.client.start();
    await settle();
    const s = r.last();
    s.welcome({ heartbeat_interval_ms: 2_000, heartbeat_timeout_ms: 300 });
    r.clock.advance(2_000);
    expect(s.sentOfType("ping")).toHaveLength(1);
    r.clock.advance(300);
    expect(r.client.state.kind).toBe("reconnecting");
  });

  it("does not ping while frames flow both ways", async () => {
    const r = rig({ heartbeatInterval: 1_000, heartbeatTimeout: 500 });
    const s = await connected(r);
    for (let i = 0; i < 5; i++) {
      r.clock.advance(800);
      void r.client.publish("news", { i });
      const sent = s.sentOfType("publish").at(-1);
      s.deliver({ type: "ack", id: sent?.["id"], data: { channel: "news", seq: i + 1, epoch: "e" } });
    }
    expect(s.sentOfType("ping")).toHaveLength(0);
    expect(s.sentOfType("publish")).toHaveLength(5);
  });

  it("pings a busy sender that hears nothing back, and replaces the half-open connection", async () => {
    const r = rig({ heartbeatInterval: 1_000, heartbeatTimeout: 500, requestTimeout: 60_000 });
    const s = await connected(r);
    for (let i = 0; i < 4; i++) {
      r.clock.advance(300);
      void r.client.publish("news", { i }).catch(() => undefined);
    }
    // 1200 ms after the welcome: nothing received for over an interval.
    expect(s.sentOfType("ping")).toHaveLength(1);
    r.clock.advance(500);
    expect(s.closedWith).not.toBeNull();
    expect(r.client.getSnapshot().error).toBe("heartbeat timeout: no pong");
  });
});

describe("close codes", () => {
  it("1001 moves to the next URL at once, without a backoff delay", async () => {
    const r = rig({ urls: ["ws://a.test/ws", "ws://b.test/ws"] });
    const s = await connected(r);
    expect(s.url.startsWith("ws://a.test/ws?")).toBe(true);
    s.serverClose(1001, "going away");
    await settle();
    expect(r.client.state.kind).toBe("connecting");
    expect(r.sockets).toHaveLength(2);
    expect(r.last().url.startsWith("ws://b.test/ws?")).toBe(true);
  });

  it.each([
    [1008, "policy"],
    [4003, "forbidden"],
  ])("%i is final: closed, no reconnect", async (code, reason) => {
    const r = rig();
    const s = await connected(r);
    s.serverClose(code, reason);
    r.clock.advance(120_000);
    await settle();
    expect(r.client.state).toMatchObject({ kind: "closed", code });
    expect(r.sockets).toHaveLength(1);
  });

  it.each([
    [4001, "invalid token"],
    [4003, "unknown role"],
    [1008, "policy"],
  ])("%i before the welcome (a refused upgrade) is final too", async (code, reason) => {
    const r = rig({ reconnectInterval: 10 });
    r.client.start();
    await settle();
    r.last().serverClose(code, reason);
    r.clock.advance(120_000);
    await settle();
    expect(r.client.state).toMatchObject({ kind: "closed", code, reason: `closed with ${code}: ${reason}` });
    expect(r.sockets).toHaveLength(1);
  });

  it("4001 before the welcome asks the token provider again", async () => {
    let n = 0;
    const r = rig({ reconnectInterval: 10, getToken: () => Promise.resolve(`tok-${++n}`) });
    r.client.start();
    await settle();
    r.last().serverClose(4001, "token expired");
    r.clock.advance(1_000);
    await settle();
    expect(r.sockets).toHaveLength(2);
    expect(r.last().url).toContain("access_token=tok-2");
  });

  it("4001 is final without a token provider", async () => {
    const r = rig({ token: "t1" });
    const s = await connected(r);
    s.serverClose(4001, "token expired");
    r.clock.advance(120_000);
    expect(r.client.state).toMatchObject({ kind: "closed", code: 4001 });
  });

  it("4001 asks the token provider again and reconnects with the new token", async () => {
    let n = 0;
    const r = rig({ reconnectInterval: 100, getToken: () => Promise.resolve(`tok-${++n}`) });
    const s = await connected(r);
    expect(s.url).toContain("access_token=tok-1");
    s.serverClose(4001, "token expired");
    r.clock.advance(100);
    await settle();
    expect(r.sockets).toHaveLength(2);
    expect(r.last().url).toContain("access_token=tok-2");
    expect(r.last().url).toContain("client_id=c-test");
  });

  it("1013 waits at least the base delay although full jitter could pick less", async () => {
    const r = rig({ reconnectInterval: 1_000, random: () => 0 });
    const s = await connected(r);
    s.serverClose(1013, "try again later");
    r.clock.advance(999);
    await settle();
    expect(r.sockets).toHaveLength(1);
    r.clock.advance(1);
    await settle();
    expect(r.sockets).toHaveLength(2);
  });

  it("gives up after maxReconnectAttempts and says so", async () => {
    const r = rig({ reconnectInterval: 100, maxReconnectAttempts: 2, circuit: { failureThreshold: 100, cooldownMs: 1 } });
    const s = await connected(r);
    s.serverClose(1006);
    for (let i = 0; i < 5; i++) {
      r.clock.advance(10_000);
      await settle();
      r.last().serverClose(1006);
    }
    const state = r.client.state;
    expect(state.kind).toBe("closed");
    expect(state.kind === "closed" ? state.reason : "").toMatch(/^gave up after 2 attempts/);
    expect(r.sockets).toHaveLength(3);
  });
});

describe("circuit breaker", () => {
  it("opens after failureThreshold failed connects, then probes once after resetTimeout", async () => {
    const r = rig({ reconnectInterval: 10, circuit: { failureThreshold: 3, cooldownMs: 60_000 } });
    r.client.start();
    await settle();
    for (let i = 0; i < 3; i++) {
      r.last().serverClose(1006);
      r.clock.advance(1_000);
      await settle();
    }
    expect(r.client.state.kind).toBe("circuit-open");
    const opened = r.sockets.length;
    r.clock.advance(58_000);
    await settle();
    expect(r.sockets).toHaveLength(opened);
    r.clock.advance(2_000);
    await settle();
    expect(r.client.state.kind).toBe("connecting");
    expect(r.sockets).toHaveLength(opened + 1);
    r.last().welcome();
    expect(r.client.state.kind).toBe("connected");
    expect(r.client.metrics.snapshot().circuitOpens).toBe(1);
  });
});

describe("requests across reconnects", () => {
  it("rejects a request without a reply after requestTimeout", async () => {
    const r = rig({ requestTimeout: 3_000 });
    await connected(r);
    const p = r.client.publish("news", 1);
    r.clock.advance(3_000);
    await expect(p).rejects.toBeInstanceOf(RequestTimeoutError);
  });

  it("resends an unanswered request with the same id after a reconnect, and resolves once", async () => {
    const r = rig({ reconnectInterval: 10 });
    const s1 = await connected(r);
    const p = r.client.publish("news", { n: 1 });
    const first = s1.sentOfType("publish")[0];
    s1.serverClose(1006);
    r.clock.advance(1_000);
    await settle();
    const s2 = r.last();
    s2.welcome();
    const again = s2.sentOfType("publish");
    expect(again).toHaveLength(1);
    expect(again[0]?.["id"]).toBe(first?.["id"]);
    s2.deliver({ type: "ack", id: first?.["id"], data: { channel: "news", seq: 1, epoch: "e", duplicate: true } });
    await expect(p).resolves.toMatchObject({ seq: 1, duplicate: true });
  });

  it("rejects a gateway error with GatewayError", async () => {
    const r = rig();
    const s = await connected(r);
    const p = r.client.command("process_receipt", {});
    const id = s.sentOfType("process_receipt")[0]?.["id"];
    s.deliver({ type: "error", id, error: { code: "no_handler", message: "nobody", retryable: true } });
    await expect(p).rejects.toMatchObject({ name: "GatewayError", code: "no_handler", retryable: true });
    await expect(p).rejects.toBeInstanceOf(GatewayError);
  });

  it("resubscribes with since = the last delivered event and never delivers a seq twice", async () => {
    const r = rig({ reconnectInterval: 10 });
    const s1 = await connected(r);
    const seen: number[] = [];
    r.client.subscribe("news", (item) => {
      if (item.kind === "event") seen.push(item.event.seq);
    });
    const sub = s1.sentOfType("subscribe")[0];
    s1.deliver({ type: "ack", id: sub?.["id"], data: { channel: "news", seq: 0, epoch: "e" } });
    for (const seq of [1, 2]) s1.deliver({ type: "event", channel: "news", seq, epoch: "e", ts: 1, data: seq });
    s1.serverClose(1006);
    r.clock.advance(1_000);
    await settle();
    const s2 = r.last();
    s2.welcome();
    const resub = s2.sentOfType("subscribe")[0];
    expect(resub?.["since"]).toEqual({ seq: 2, epoch: "e" });
    s2.deliver({ type: "ack", id: resub?.["id"], data: { channel: "news", seq: 3, epoch: "e", recovered: true } });
    for (const seq of [2, 3]) s2.deliver({ type: "event", channel: "news", seq, epoch: "e", ts: 1, data: seq });
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe("limits and accessors", () => {
  it("refuses a request over max_message_bytes before sending it (no 1009 reconnect loop)", async () => {
    const r = rig();
    r.client.start();
    await settle();
    const s = r.last();
    s.welcome({ max_message_bytes: 1_000 });
    const big = "x".repeat(2_000);
    await expect(r.client.publish("news", big)).rejects.toMatchObject({
      name: "MessageTooLargeError",
      limit: 1_000,
    });
    expect(s.sentOfType("publish")).toHaveLength(0);
    // Multi-byte text is measured in UTF-8 bytes.
    await expect(r.client.publish("news", "é".repeat(600))).rejects.toMatchObject({ name: "MessageTooLargeError" });
    void r.client.publish("news", "small");
    expect(s.sentOfType("publish")).toHaveLength(1);
  });

  it("carries the duplicate flag of an error reply on GatewayError", async () => {
    const r = rig();
    const s = await connected(r);
    const p = r.client.command("process_receipt", {});
    const id = s.sentOfType("process_receipt")[0]?.["id"];
    s.deliver({ type: "error", id, error: { code: "no_handler", message: "nobody", retryable: true }, duplicate: true });
    await expect(p).rejects.toMatchObject({ name: "GatewayError", duplicate: true, retryable: true });
  });

  it("reports the URL in use and the token the next connect would send", async () => {
    let n = 0;
    const r = rig({ urls: ["ws://a.test/ws?x=1", "ws://b.test/ws/dashboard"], getToken: () => Promise.resolve(`t${++n}`) });
    expect(r.client.currentUrl).toBe("ws://a.test/ws");
    const s = await connected(r);
    s.serverClose(1001, "going away");
    await settle();
    expect(r.client.currentUrl).toBe("ws://b.test/ws/dashboard");
    await expect(r.client.accessToken()).resolves.toBe("t3");
    const fixed = rig({ token: "fixed" });
    await expect(fixed.client.accessToken()).resolves.toBe("fixed");
    await expect(rig().client.accessToken()).resolves.toBeNull();
  });
});

describe("metrics", () => {
  it("drops the connected gauge on a 1001 move to the next URL", async () => {
    const r = rig({ urls: ["ws://a.test/ws", "ws://b.test/ws"] });
    const s = await connected(r);
    expect(r.client.metrics.snapshot().connected).toBe(1);
    s.serverClose(1001, "going away");
    await settle();
    expect(r.client.state.kind).toBe("connecting");
    expect(r.client.metrics.snapshot().connected).toBe(0);
  });

  it("counts attempts, reconnects, frames and ack latency, and renders Prometheus text", async () => {
    const r = rig({ reconnectInterval: 10 });
    const s1 = await connected(r);
    const p = r.client.publish("news", 1);
    r.clock.advance(20);
    const id = s1.sentOfType("publish")[0]?.["id"];
    s1.deliver({ type: "ack", id, data: { channel: "news", seq: 1, epoch: "e" } });
    await p;
    s1.serverClose(1006);
    r.clock.advance(1_000);
    await settle();
    r.last().welcome();
    const m = r.client.metrics.snapshot();
    expect(m).toMatchObject({ connectAttempts: 2, reconnects: 1, connected: 1, acks: 1 });
    expect(m.framesSent).toBe(1);
    expect(m.framesReceived).toBe(3); // welcome, ack, welcome
    expect(m.ackSecondsSum).toBeCloseTo(0.02, 6);
    const text = r.client.metrics.toPrometheus();
    expect(text).toContain("# TYPE tether_client_reconnects_total counter\ntether_client_reconnects_total 1\n");
    expect(text).toContain('tether_client_ack_seconds_bucket{le="0.01"} 0\n');
    expect(text).toContain('tether_client_ack_seconds_bucket{le="0.025"} 1\n');
    expect(text).toContain("tether_client_ack_seconds_count 1\n");
    expect(text.endsWith("\n")).toBe(true);
  });
});
