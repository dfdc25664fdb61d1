// SingleFlight: one run at a time; a trigger during a run makes it run once more.
import { describe, expect, it } from "vitest";
import { SingleFlight } from "../src/single-flight.js";

interface Controlled {
  task: () => Promise<number>;
  runs: number;
  finish: (value?: number) => void;
  fail: (e: Error) => void;
}

/** A task whose runs finish when the test says so. */
function controlled(): Controlled {
  const waiting: { resolve: (v: number) => void; reject: (e: Error) => void }[] = [];
  const c: Controlled = {
    runs: 0,
    task: () => {
      c.runs += 1;
      return new Promise<number>((resolve, reject) => waiting.push({ resolve, reject }));
    },
    finish: (value = c.runs) => {
      waiting.shift()?.resolve(value);
    },
    fail: (e: Error) => {
      waiting.shift()?.reject(e);
    },
  };
  return c;
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe("SingleFlight", () => {
  it("runs the task once per call when calls do not overlap", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task);
    const a = f.run();
    await tick();
    c.finish();
    await expect(a).resolves.toBe(1);
    expect(f.running).toBe(false);
    const b = f.run();
    await tick();
    c.finish();
    await expect(b).resolves.toBe(2);
    expect(c.runs).toBe(2);
  });

  it("joins overlapping calls into the running one and runs once more after it", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task);
    const a = f.run();
    await tick();
    expect(c.runs).toBe(1);
    const b = f.run();
    const d = f.run();
    expect(b).toBe(a);
    expect(d).toBe(a);
    await tick();
    expect(c.runs).toBe(1); // never two at once
    c.finish();
    await tick();
    expect(c.runs).toBe(2); // the one extra run for the joined triggers
    expect(f.running).toBe(true);
    c.finish();
    await expect(a).resolves.toBe(2);
    expect(c.runs).toBe(2);
    expect(f.running).toBe(false);
  });

  it("rejects with the last run's error, and runs again on the next call", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task);
    const a = f.run();
    await tick();
    c.fail(new Error("boom"));
    await expect(a).rejects.toThrow("boom");
    expect(f.running).toBe(false);
    const b = f.run();
    await tick();
    c.finish(7);
    await expect(b).resolves.toBe(7);
  });

  it("a trigger during a failing run still gets its own run", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task);
    const a = f.run();
    await tick();
    void f.run();
    c.fail(new Error("first"));
    await tick();
    expect(c.runs).toBe(2);
    c.finish(3);
    await expect(a).resolves.toBe(3);
  });

  it("merges the results of the runs a joined call waited for", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task, (a, b) => a + b);
    const a = f.run();
    await tick();
    void f.run();
    c.finish(10);
    await tick();
    c.finish(5);
    await expect(a).resolves.toBe(15);
  });

  it("with `failed`, a failing rerun keeps what the earlier runs did", async () => {
    const c = controlled();
    const f = new SingleFlight(c.task, (a, b) => a + b, () => 100);
    const a = f.run();
    await tick();
    void f.run();
    c.finish(10);
    await tick();
    c.fail(new Error("second run"));
    await expect(a).resolves.toBe(110);
    expect(f.running).toBe(false);
  });

  it("survives a task that throws synchronously", async () => {
    let calls = 0;
    const f = new SingleFlight<number>(() => {
      calls += 1;
      if (calls === 1) throw new Error("sync");
      return Promise.resolve(calls);
    });
    await expect(f.run()).rejects.toThrow("sync");
    await expect(f.run()).resolves.toBe(2);
  });
});
