import { describe, expect, it } from "vitest";

import { Backoff } from "../src/backoff";
import { CircuitBreaker } from "../src/circuit";
import { type Action, Machine, type MachineConfig } from "../src/state";

const seeded = (seed: number) => () => {
  // A small deterministic generator (mulberry32) for table tests.
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

function machine(over: Partial<MachineConfig> = {}): Machine {
  const config: MachineConfig = {
    urls: 2,
    autoReconnect: true,
    canRenewToken: false,
    backoff: { baseMs: 1000, maxMs: 30_000, maxAttempts: null },
    circuit: { failureThreshold: 3, cooldownMs: 60_000 },
    ...over,
  };
  return new Machine(config, seeded(7));
}

function connected(m: Machine, t: number): void {
  m.handle({ type: "start" }, t);
  m.handle({ type: "opened", session: "s" }, t);
  expect(m.state.kind).toBe("connected");
}

const transitions = (actions: Action[]) =>
  actions.flatMap((a) => (a.type === "transition" ? [a.transition] : []));

describe("backoff", () => {
  it("ceilings double from the base and stop at the max", () => {
    const b = new Backoff({ baseMs: 1000, maxMs: 30_000, maxAttempts: null });
    const ceilings: number[] = [];
    for (let i = 0; i < 8; i++) {
      ceilings.push(b.ceiling());
      b.nextDelay(seeded(1));
    }
    expect(ceilings).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });

  it("delays stay within [0, ceiling], stop at the cap, and reset", () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, maxAttempts: 3 });
    const r = seeded(3);
    for (let i = 0; i < 3; i++) {
      const ceiling = b.ceiling();
      const d = b.nextDelay(r);
      expect(d).not.toBeNull();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(ceiling);
    }
    expect(b.nextDelay(r)).toBeNull();
    b.reset();
    expect(b.nextDelay(r)).not.toBeNull();
  });

  it("rejects bad settings", () => {
    expect(() => new Backoff({ baseMs: 0, maxMs: 1, maxAttempts: null })).toThrow(/reconnectInterval/);
    expect(() => new Backoff({ baseMs: 10, maxMs: 1, maxAttempts: null })).toThrow(/maxReconnectDelay/);
  });
});

describe("circuit breaker", () => {
  it("opens after N consecutive failures, probes once after the cooldown", () => {
    const c = new CircuitBreaker({ failureThreshold: 2, cooldownMs: 100 });
    c.onFailure(0);
    c.onSuccess();
    c.onFailure(0);
    expect(c.state.kind).toBe("closed");
    c.onFailure(10);
    expect(c.state).toEqual({ kind: "open", until: 110 });
    expect(c.allow(109)).toBe(false);
    expect(c.allow(110)).toBe(true);
    expect(c.allow(110)).toBe(false);
    c.onFailure(120);
    expect(c.state).toEqual({ kind: "open", until: 220 });
    expect(c.allow(220)).toBe(true);
    c.onSuccess();
    expect(c.state.kind).toBe("closed");
    expect(c.stats).toEqual({ opened: 2, failures: 4, successes: 2 });
  });
});

describe("state machine", () => {
  // [close code, token provider] -> state after losing an open connection
  const table: Array<[number | null, boolean, string]> = [
    [null, false, "reconnecting"],
    [1000, false, "reconnecting"],
    [1001, false, "connecting"],
    [1008, false, "closed"],
    [1009, false, "reconnecting"],
    [1013, false, "reconnecting"],
    [4001, false, "closed"],
    [4001, true, "reconnecting"],
    [4003, true, "closed"],
    [4008, false, "reconnecting"],
    [4029, false, "reconnecting"],
  ];
  it.each(table)("close %s (provider %s) -> %s", (code, provider, want) => {
    const m = machine({ canRenewToken: provider });
    connected(m, 0);
    const actions = m.handle({ type: "lost", code, reason: "r" }, 0);
    expect(m.state.kind).toBe(want);
    const [t] = transitions(actions);
    expect(t?.old.kind).toBe("connected");
    expect(t?.code).toBe(code);
  });

  it("1001 reconnects at once to the next URL", () => {
    const m = machine();
    connected(m, 0);
    expect(m.handle({ type: "lost", code: 1001, reason: "draining" }, 0)).toContainEqual({ type: "connect", url: 1 });
  });

  it("1013 and 4029 wait at least the base delay", () => {
    for (const code of [1013, 4029]) {
      const m = machine();
      connected(m, 0);
      m.handle({ type: "lost", code, reason: "r" }, 0);
      expect(m.pollTimeout()).toBeGreaterThanOrEqual(1000);
    }
  });

  it("gives up at the attempt cap, before the breaker", () => {
    const m = machine({ backoff: { baseMs: 1000, maxMs: 30_000, maxAttempts: 2 } });
    let now = 0;
    m.handle({ type: "start" }, now);
    for (let i = 0; i < 2; i++) {
      m.handle({ type: "connect-failed", reason: "refused" }, now);
      now = m.pollTimeout() ?? now;
      m.handle({ type: "timeout" }, now);
    }
    m.handle({ type: "connect-failed", reason: "refused" }, now);
    expect(m.state.kind).toBe("closed");
  });

  it("the breaker opens after N failures and half-opens after the cooldown", () => {
    const m = machine();
    let now = 0;
    m.handle({ type: "start" }, now);
    for (let i = 0; i < 3; i++) {
      m.handle({ type: "connect-failed", reason: "refused" }, now);
      if (m.state.kind === "reconnecting") {
        now = m.state.at;
        m.handle({ type: "timeout" }, now);
      }
    }
    expect(m.state.kind).toBe("circuit-open");
    const until = m.pollTimeout() ?? 0;
    expect(m.handle({ type: "timeout" }, until - 1)).toEqual([]);
    expect(m.handle({ type: "timeout" }, until)).toContainEqual({ type: "connect", url: expect.any(Number) });
    m.handle({ type: "opened", session: "s" }, until);
    expect(m.state.kind).toBe("connected");
  });

  it("stop closes for good", () => {
    const m = machine();
    connected(m, 0);
    expect(m.handle({ type: "stop" }, 0)).toContainEqual({ type: "disconnect" });
    expect(m.state.kind).toBe("closed");
    expect(m.handle({ type: "start" }, 0)).toEqual([]);
  });
});
