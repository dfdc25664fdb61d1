// The last minutes of `system_metrics` samples, per gateway node, for the
// System view's charts: fed by the live `system` channel and, once at start,
// by the channel's retained history. Bounded in time (`windowMs`) and count
// (`maxSamples`, oldest dropped first), deduplicated by (epoch, seq) so that a
// sample seen both live and in the history fetch is kept once.

import { type SystemMetrics, SystemMetricsSchema } from "@tether/client";

export interface Sample {
  /** Publish time on the gateway, ms since the epoch. */
  readonly ts: number;
  readonly metrics: SystemMetrics;
}

/** What the history needs of an `event` frame of the `system` channel. */
export interface SystemEvent {
  readonly seq: number;
  readonly epoch: string;
  readonly ts: number;
  readonly data: unknown;
}

/** uPlot's aligned data: x values (seconds), then one y array per series. */
export type Aligned = [number[], ...(number | null)[][]];

export const DEFAULT_WINDOW_MS = 10 * 60_000;
export const DEFAULT_MAX_SAMPLES = 2000;

/** Live events whose (gateway ts − browser receipt time) estimates the clock offset. */
const OFFSET_SAMPLES = 15;

export class SystemHistory {
  private samples: (Sample & { key: string })[] = [];
  private readonly keys = new Set<string>();
  private readonly listeners = new Set<() => void>();
  private version = 0;
  private offsets: number[] = [];
  private offsetMs = 0;
  private problem: string | null = null;

  constructor(
    readonly windowMs = DEFAULT_WINDOW_MS,
    readonly maxSamples = DEFAULT_MAX_SAMPLES,
  ) {}

  /** Adds the samples among `events` (others are ignored); returns how many were new. */
  add(events: readonly SystemEvent[], now: number): number {
    let added = 0;
    for (const e of events) {
      const key = `${e.epoch}:${String(e.seq)}`;
      if (this.keys.has(key) || e.ts < now - this.windowMs) continue;
      const parsed = SystemMetricsSchema.safeParse(e.data);
      if (!parsed.success) continue;
      this.keys.add(key);
      this.samples.push({ key, ts: e.ts, metrics: parsed.data });
      added += 1;
    }
    if (added > 0) {
      this.samples.sort((a, b) => a.ts - b.ts);
      this.prune(now);
      this.changed();
    }
    return added;
  }

  /** Drops samples older than the window or beyond the count bound. */
  prune(now: number): void {
    const oldest = now - this.windowMs;
    let cut = 0;
    while (cut < this.samples.length && (this.samples[cut]?.ts ?? 0) < oldest) cut += 1;
    cut = Math.max(cut, this.samples.length - this.maxSamples);
    if (cut <= 0) return;
    for (const s of this.samples.slice(0, cut)) this.keys.delete(s.key);
    this.samples = this.samples.slice(cut);
    this.changed();
  }

  /**
   * Notes that a live event stamped `ts` by the gateway arrived at browser
   * time `receivedAt`: the median of the last few differences is the gateway
   * clock's offset (plus a little transit), so that ages and the window are
   * judged on the gateway's clock, not a skewed browser's.
   */
  observeClock(ts: number, receivedAt: number): void {
    this.offsets.push(ts - receivedAt);
    if (this.offsets.length > OFFSET_SAMPLES) this.offsets.shift();
    const sorted = [...this.offsets].sort((a, b) => a - b);
    this.offsetMs = sorted[Math.floor(sorted.length / 2)] ?? 0;
  }

  /** Browser time `now` on the gateway's clock. */
  serverNow(now: number = Date.now()): number {
    return now + this.offsetMs;
  }

  /** Why there are no samples (e.g. the token may not read `system`), or null. */
  get error(): string | null {
    return this.problem;
  }

  setError(error: string | null): void {
    if (error === this.problem) return;
    this.problem = error;
    this.changed();
  }

  /** Every kept sample, oldest first. */
  all(): readonly Sample[] {
    return this.samples;
  }

  /** The nodes seen, in order of first appearance. */
  nodes(): string[] {
    return [...new Set(this.samples.map((s) => s.metrics.node))];
  }

  /** The newest sample of each node. */
  latest(): Sample[] {
    const last = new Map<string, Sample>();
    for (const s of this.samples) last.set(s.metrics.node, s);
    return [...last.values()];
  }

  /**
   * Chart data: the x axis is every sample time (seconds), and for each
   * (node, metric) pair a series with that node's value at its own times and
   * null elsewhere (drawn with gaps spanned).
   */
  aligned(metrics: readonly ((m: SystemMetrics) => number)[]): Aligned {
    const nodes = this.nodes();
    const xs = this.samples.map((s) => s.ts / 1000);
    const series: (number | null)[][] = [];
    for (const pick of metrics) {
      for (const node of nodes) {
        series.push(this.samples.map((s) => (s.metrics.node === node ? pick(s.metrics) : null)));
      }
    }
    return [xs, ...series];
  }

  // useSyncExternalStore shape: the version changes on every change.
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getVersion = (): number => this.version;

  private changed(): void {
    this.version += 1;
    for (const l of this.listeners) l();
  }
}
