// The dashboard's pure parts: formatting, auth and refusals, the connection
// badge's words, channel logs, the sample history, the command log, routes.

import { type ConnectionSnapshot, type Event, GatewayError, type ResultFrame, type State, type TetherClient } from "@tether/client";
import { describe, expect, test } from "vitest";
import { refusal, takeTokenFromUrl } from "../src/lib/auth.js";
import { DEFAULT_LOG_SIZE, EMPTY_LOG, appendItem } from "../src/lib/channel-log.js";
import { CommandLog, MAX_COMMANDS } from "../src/lib/commands.js";
import { ago, bytes, millis, preview, rate, uptime } from "../src/lib/format.js";
import { ROUTES, matchRoute } from "../src/lib/router.js";
import { connectionStatus } from "../src/lib/status.js";
import { SystemHistory } from "../src/lib/system-history.js";

const NOW = 1_800_000_000_000;

describe("format", () => {
  test("relative times, uptimes, sizes, durations, rates", () => {
    expect(ago(null, NOW)).toBe("–");
    expect(ago(NOW - 200, NOW)).toBe("just now");
    expect(ago(NOW - 42_000, NOW)).toBe("42 s ago");
    expect(ago(NOW - 5 * 60_000, NOW)).toBe("5 min ago");
    expect(ago(NOW - 3 * 3_600_000, NOW)).toBe("3 h ago");
    expect(ago(NOW - 3 * 86_400_000, NOW)).toBe("3 d ago");
    expect(ago(NOW + 5000, NOW)).toBe("just now");
    expect(uptime(7)).toBe("7 s");
    expect(uptime(125)).toBe("2 min 5 s");
    expect(uptime(3 * 3600 + 60)).toBe("3 h 1 min");
    expect(uptime(2 * 86_400 + 3600)).toBe("2 d 1 h");
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(87 * 1024 * 1024)).toBe("87.0 MiB");
    expect(millis(null)).toBe("–");
    expect(millis(0.42)).toBe("0.4 ms");
    expect(millis(35.2)).toBe("35 ms");
    expect(millis(1200)).toBe("1.20 s");
    expect(rate(0)).toBe("0.0/s");
    expect(rate(250)).toBe("250/s");
    expect(rate(64_500)).toBe("64.5k/s");
  });

  test("preview cuts long JSON and survives what JSON cannot encode", () => {
    expect(preview({ a: 1 })).toBe('{"a":1}');
    expect(preview("x".repeat(300), 10)).toHaveLength(10);
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    expect(preview(cyclic)).toBe("[object Object]");
  });
});

describe("auth", () => {
  test("the token is taken from the URL and removed from it", () => {
    expect(takeTokenFromUrl("http://h:1/system?access_token=abc&x=1#f")).toEqual({ token: "abc", cleanHref: "http://h:1/system?x=1#f" });
    expect(takeTokenFromUrl("http://h:1/?access_token=")).toEqual({ token: null, cleanHref: "http://h:1/" });
    expect(takeTokenFromUrl("http://h:1/channels")).toEqual({ token: null, cleanHref: "http://h:1/channels" });
  });

  test("4001, 4003 and 1008 closes are refusals with a plain explanation; others are not", () => {
    const closed = (code: number | null, reason = "token expired"): State => ({ kind: "closed", code, reason });
    expect(refusal(closed(4001), false)?.title).toBe("This gateway requires sign-in");
    expect(refusal(closed(4001), true)?.detail).toContain("invalid or has expired");
    expect(refusal(closed(4001), true)?.detail).toContain("token expired");
    expect(refusal(closed(4003, "unknown role"), true)).toMatchObject({ code: 4003, title: "This principal may not connect" });
    expect(refusal(closed(1008, "origin"), false)?.code).toBe(1008);
    expect(refusal(closed(1000), false)).toBeNull();
    expect(refusal({ kind: "connected", url: 0, session: "s" }, true)).toBeNull();
  });
});

describe("connection status", () => {
  const snap = (state: State, reconnectAttempts = 0, error: string | null = null): ConnectionSnapshot => ({
    state,
    isConnected: state.kind === "connected",
    error,
    reconnectAttempts,
    lastTransition: null,
  });

  test("every state has its words", () => {
    expect(connectionStatus(snap({ kind: "idle" }), false, 0).kind).toBe("connecting");
    expect(connectionStatus(snap({ kind: "connecting", attempt: 1, url: 0 }), false, 0).label).toBe("Connecting");
    expect(connectionStatus(snap({ kind: "connected", url: 0, session: "s1" }), true, 0)).toMatchObject({ kind: "live", label: "Live" });
    expect(connectionStatus(snap({ kind: "circuit-open", until: 5000 }), true, 0).kind).toBe("paused");
    expect(connectionStatus(snap({ kind: "closed", code: 4003, reason: "role" }), true, 0).kind).toBe("refused");
    expect(connectionStatus(snap({ kind: "closed", code: null, reason: "" }), true, 0)).toMatchObject({ kind: "closed", label: "Disconnected" });
  });

  test("a connect after a loss reads Reconnecting, with the countdown and the last error", () => {
    const again = connectionStatus(snap({ kind: "connecting", attempt: 2, url: 0 }), true, 0);
    expect(again.kind).toBe("reconnecting");
    const waiting = connectionStatus(snap({ kind: "reconnecting", attempt: 3, at: 4200 }, 2, "closed 1001"), true, 1000);
    expect(waiting).toMatchObject({ kind: "reconnecting", label: "Reconnecting" });
    expect(waiting.detail).toContain("attempt 3 in 4 s");
    expect(waiting.detail).toContain("closed 1001");
  });
});

function event(seq: number, data: unknown = { n: seq }, ts = NOW, channel = "orders", epoch = "e1"): Event {
  return { type: "event", channel, seq, epoch, ts, data } as Event;
}

describe("channel log", () => {
  test("events keep seq order; the first recovery answers the history request, later ones mark reconnects", () => {
    let log = appendItem(EMPTY_LOG, { kind: "recovered", ok: true }, NOW, true);
    log = appendItem(log, { kind: "event", event: event(1) }, NOW, true);
    log = appendItem(log, { kind: "event", event: event(2) }, NOW, true);
    log = appendItem(log, { kind: "recovered", ok: true }, NOW, true);
    log = appendItem(log, { kind: "recovered", ok: false }, NOW, true);
    const texts = log.entries.map((e) => (e.kind === "event" ? `#${String(e.event.seq)}` : `${e.tone}: ${e.text}`));
    expect(texts).toEqual([
      "replayed: Retained history replayed below",
      "#1",
      "#2",
      "replayed: Reconnected: caught up from #2 without a gap",
      "gap: Reconnected, but events after #2 were no longer retained: the list has a gap",
    ]);
    expect(log.recoveries).toBe(3);
    expect(log.lastSeq).toBe(2);
  });

  test("without a history request the first recovery is a reconnect", () => {
    const log = appendItem(EMPTY_LOG, { kind: "recovered", ok: false }, NOW, false);
    expect(log.entries[0]).toMatchObject({ kind: "marker", tone: "gap" });
    expect(log.entries[0]?.kind === "marker" && log.entries[0].text).toContain("Reconnected");
  });

  test("a refused subscription is an error marker", () => {
    const error = new GatewayError({ code: "forbidden", message: "not allowed", retryable: false });
    const log = appendItem(EMPTY_LOG, { kind: "error", error }, NOW, true);
    expect(log.entries[0]).toMatchObject({ kind: "marker", tone: "error" });
  });

  test("bounded: the oldest entries go first and are counted", () => {
    let log = EMPTY_LOG;
    for (let seq = 1; seq <= DEFAULT_LOG_SIZE + 25; seq++) log = appendItem(log, { kind: "event", event: event(seq) }, NOW, false);
    expect(log.entries).toHaveLength(DEFAULT_LOG_SIZE);
    expect(log.dropped).toBe(25);
    expect(log.entries[0]?.kind === "event" && log.entries[0].event.seq).toBe(26);
  });
});

function sample(node: string, cpu: number): Record<string, unknown> {
  return {
    node,
    cpu_percent: cpu,
    memory_bytes: 1000,
    uptime_s: 1,
    connections: 2,
    agents: 0,
    messages_in_per_s: 0,
    messages_out_per_s: 0,
  };
}

describe("system history", () => {
  test("deduplicates by (epoch, seq), keeps time order, ignores what is not a sample", () => {
    const h = new SystemHistory();
    expect(h.add([event(2, sample("a", 20), NOW - 1000, "system"), event(1, sample("a", 10), NOW - 2000, "system")], NOW)).toBe(2);
    expect(h.add([event(2, sample("a", 20), NOW - 1000, "system")], NOW)).toBe(0);
    expect(h.add([event(2, sample("a", 30), NOW - 500, "system", "e2")], NOW)).toBe(1);
    expect(h.add([event(9, { not: "a sample" }, NOW, "system")], NOW)).toBe(0);
    expect(h.all().map((s) => s.metrics.cpu_percent)).toEqual([10, 20, 30]);
  });

  test("a window in time and a bound in count", () => {
    const h = new SystemHistory(60_000, 3);
    h.add([event(1, sample("a", 1), NOW - 120_000, "system")], NOW);
    expect(h.all()).toHaveLength(0);
    h.add([1, 2, 3, 4].map((i) => event(10 + i, sample("a", i), NOW - 10_000 + i, "system")), NOW);
    expect(h.all().map((s) => s.metrics.cpu_percent)).toEqual([2, 3, 4]);
    h.prune(NOW + 60_000);
    expect(h.all()).toHaveLength(0);
  });

  test("aligned chart data: one series per (metric, node), null where a node has no sample", () => {
    const h = new SystemHistory();
    h.add([event(1, sample("a", 10), NOW - 3000, "system"), event(2, sample("b", 50), NOW - 2000, "system"), event(3, sample("a", 20), NOW - 1000, "system")], NOW);
    expect(h.nodes()).toEqual(["a", "b"]);
    expect(h.latest().map((s) => [s.metrics.node, s.metrics.cpu_percent])).toEqual([
      ["a", 20],
      ["b", 50],
    ]);
    const [xs, a, b] = h.aligned([(m) => m.cpu_percent]);
    expect(xs).toEqual([(NOW - 3000) / 1000, (NOW - 2000) / 1000, (NOW - 1000) / 1000]);
    expect(a).toEqual([10, null, 20]);
    expect(b).toEqual([null, 50, null]);
  });

  test("the gateway clock's offset is the median of what live events say", () => {
    const h = new SystemHistory();
    expect(h.serverNow(NOW)).toBe(NOW);
    for (const skew of [30_000, 30_010, 29_990, 90_000]) h.observeClock(NOW + skew, NOW);
    expect(h.serverNow(NOW)).toBe(NOW + 30_010);
    h.setError("forbidden: not allowed");
    expect(h.error).toBe("forbidden: not allowed");
  });

  test("listeners hear every change", () => {
    const h = new SystemHistory();
    let calls = 0;
    const off = h.subscribe(() => {
      calls += 1;
    });
    const before = h.getVersion();
    h.add([event(1, sample("a", 1), NOW, "system")], NOW);
    expect(calls).toBe(1);
    expect(h.getVersion()).toBeGreaterThan(before);
    off();
    h.add([event(2, sample("a", 1), NOW, "system")], NOW);
    expect(calls).toBe(1);
  });
});

describe("command log", () => {
  function fakeClient(answer: (type: string) => Promise<ResultFrame>): TetherClient {
    return { command: (type: string) => answer(type) } as unknown as TetherClient;
  }

  test("pending, then the result with its latency; agent errors and gateway errors are told apart", async () => {
    let t = 0;
    const client = fakeClient((type) => {
      t += 35;
      if (type === "ok") return Promise.resolve({ type: "result", id: "c1", data: { echo: 1 } });
      if (type === "agent") return Promise.resolve({ type: "result", id: "c2", error: { code: "bad_image", message: "blurry" } });
      return Promise.reject(new GatewayError({ code: "no_handler", message: "no agent handles it", retryable: true }));
    });
    const log = new CommandLog(client, () => t);
    const seen: string[] = [];
    log.subscribe(() => {
      seen.push(log.getSnapshot()[0]?.outcome.kind ?? "none");
    });
    const ok = await log.send("ok", { a: 1 });
    expect(ok).toMatchObject({ type: "ok", latencyMs: 35, outcome: { kind: "ok", data: { echo: 1 }, duplicate: false } });
    expect(seen).toEqual(["pending", "ok"]);
    expect((await log.send("agent", null)).outcome).toEqual({ kind: "agent-error", code: "bad_image", message: "blurry" });
    expect((await log.send("nobody", null)).outcome).toEqual({ kind: "failed", code: "no_handler", message: "no agent handles it" });
    expect(log.getSnapshot().map((r) => r.type)).toEqual(["nobody", "agent", "ok"]);
    log.clear();
    expect(log.getSnapshot()).toEqual([]);
  });

  test("bounded to the newest MAX_COMMANDS", async () => {
    const log = new CommandLog(fakeClient(() => Promise.resolve({ type: "result", id: "x", data: null })));
    for (let i = 0; i < MAX_COMMANDS + 5; i++) await log.send(`c${String(i)}`, null);
    expect(log.getSnapshot()).toHaveLength(MAX_COMMANDS);
    expect(log.getSnapshot()[0]?.type).toBe(`c${String(MAX_COMMANDS + 4)}`);
  });
});

describe("routes", () => {
  test("the five views at exactly their paths (as the gateway serves them), anything else unknown", () => {
    expect(ROUTES.map((r) => r.path)).toEqual(["/", "/system", "/channels", "/commands", "/analytics"]);
    expect(matchRoute("/analytics")?.title).toBe("Analytics");
    expect(matchRoute("/analytics/")).toBeNull();
    expect(matchRoute("/")?.title).toBe("Agents");
    expect(matchRoute("/nope")).toBeNull();
  });
});

describe("the gateway serves every view", () => {
  test("its VIEWS list is ROUTES", async () => {
    const { readFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    // Tests run in web/dashboard (jsdom gives import.meta.url no file scheme).
    const rust = readFileSync(join(process.cwd(), "../../crates/gateway/src/http/dashboard.rs"), "utf8");
    const views = /pub const VIEWS: &\[&str\] = &\[([^\]]*)\];/.exec(rust)?.[1];
    expect(views, "VIEWS in crates/gateway/src/http/dashboard.rs").toBeDefined();
    expect(Array.from((views ?? "").matchAll(/"([^"]*)"/g), (m) => m[1])).toEqual(ROUTES.map((r) => r.path));
  });
});
