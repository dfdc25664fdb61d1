// The pool's member connections (`Members`): one `TetherClient` per member,
// opened on a URL chosen by placement, grown and shrunk by the sizing rules,
// health-checked with `ping` requests every `healthCheckInterval`, replaced
// after failed checks, and dropped (URL abandoned) when closed for good. See
// ../pool.ts for the rules in full.
//
// Not here: choosing a member for a request, the wait queue and the request
// counters (../pool.ts), the score formula (health.ts), and connecting or
// reconnecting (each member's TetherClient).

import { type Clock, TetherClient, type TetherClientOptions } from "../connection.js";
import { type Logger } from "../debug.js";
import { type Candidate } from "./choose.js";
import { type ResolvedPoolConfig } from "./config.js";
import { Health, healthScore, isConnectionFault } from "./health.js";
import { type ConnectionMetrics } from "./metrics.js";

/** Health checks failed in a row after which a member is replaced. */
export const FAILED_HEALTH_CHECKS_TO_REPLACE = 3;

/**
 * States in which a member counts as failing (its URL is "down" when all its
 * members not being replaced are; a member being replaced is not counted
 * either way).
 */
const FAILING = new Set(["reconnecting", "circuit-open", "closed"]);

/** One member connection and the pool's bookkeeping about it. */
export interface Member {
  readonly id: number;
  readonly url: string;
  readonly urlIndex: number;
  readonly priority: number;
  readonly client: TetherClient;
  readonly health: Health;
  /** Requests (and broadcast copies) in flight through the pool; pings not counted. */
  inFlight: number;
  requests: number;
  /** When a request was last handed to it or settled (ms); idleness is measured from here. */
  lastUsed: number;
  /** Failed too many health checks: takes nothing new, closed once `inFlight` is 0. */
  replacing: boolean;
  pinging: boolean;
  failedPings: number;
  off: () => void;
}

/** The set of member connections (see the file comment). */
export class Members {
  /** The members, oldest (lowest id) first. */
  readonly list: Member[] = [];
  /** URL index → why its connection closed for good; never used again. */
  private readonly abandoned = new Map<number, string>();
  private nextId = 0;
  private timer: { handle: unknown } | null = null;
  private stopped = false;

  /** `onChange` runs after every state change and health-check result (the pool re-balances and notifies). */
  constructor(
    private readonly config: ResolvedPoolConfig,
    private readonly clock: Clock,
    private readonly clientOptions: TetherClientOptions,
    private readonly onChange: () => void,
    private readonly log: Logger,
  ) {}

  /** Members that may be chosen: connected and not being replaced. */
  healthy(): Member[] {
    return this.list.filter((m) => !m.replacing && m.client.state.kind === "connected");
  }

  /** Members with an open socket, including ones being replaced. */
  connectedCount(): number {
    return this.list.filter((m) => m.client.state.kind === "connected").length;
  }

  has(m: Member): boolean {
    return this.list.includes(m);
  }

  /** Every healthy member of the top priority tier has `growInFlight` requests in flight. */
  isBusy(healthy: readonly Member[]): boolean {
    if (healthy.length === 0) return false;
    const top = Math.max(...healthy.map((m) => m.priority));
    return healthy.every((m) => m.priority !== top || m.inFlight >= this.config.growInFlight);
  }

  /** The healthy members as the choice sees them. */
  candidates(healthy: readonly Member[], now: number): Candidate[] {
    return healthy.map((m) => ({ id: m.id, priority: m.priority, inFlight: m.inFlight, score: this.score(m, now) }));
  }

  /** Counts a failure against `m` when it says something about the connection. */
  recordFailure(m: Member, error: unknown, now: number): void {
    if (isConnectionFault(error) && this.has(m)) m.health.recordError(now);
  }

  abandonedUrls(): string[] {
    return [...this.abandoned.keys()].sort((x, y) => x - y).map((i) => this.config.urls[i] ?? "");
  }

  metrics(now: number): ConnectionMetrics[] {
    return this.list.map((m): ConnectionMetrics => {
      const state = m.client.state.kind;
      const healthy = state === "connected" && !m.replacing;
      const errors = m.health.errors(now, this.config.errorWindow);
      return Object.freeze({
        id: m.id,
        url: m.url,
        priority: m.priority,
        state,
        healthy,
        replacing: m.replacing,
        score: healthy ? healthScore(m.health.rtt, errors) : 0,
        rtt: m.health.rtt,
        errors,
        inFlight: m.inFlight,
        requests: m.requests,
      });
    });
  }

  /**
   * Drops members closed for good (abandoning their URL) and replaced members
   * with nothing in flight; opens members while the sizing rules ask for one
   * (`waiting`: requests in the queue); closes idle extras.
   */
  rebalance(waiting: number): void {
    for (const m of [...this.list]) {
      const s = m.client.state;
      if (s.kind === "closed") {
        this.abandoned.set(m.urlIndex, s.reason);
        this.remove(m, `closed for good (${s.reason}); ${m.url} is not used again`);
      } else if (m.replacing && m.inFlight === 0) {
        this.remove(m, "replaced after failed health checks");
      }
    }
    while (!this.stopped && this.list.length < this.config.maxConnections) {
      const url = this.growTarget(waiting);
      if (url === null) break;
      this.add(url);
    }
    this.shrink();
  }

  /** Starts the periodic health checks. */
  startHealthChecks(): void {
    if (this.timer !== null || this.stopped) return;
    const handle = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      for (const m of [...this.list]) {
        if (!m.pinging && m.client.state.kind === "connected") this.ping(m);
      }
      // Armed after the pings, so that a ping's timeout (one interval) fires before the next round.
      this.startHealthChecks();
      this.onChange();
    }, this.config.healthCheckInterval);
    this.timer = { handle };
  }

  /** Stops the health checks and closes every member. */
  closeAll(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer.handle);
    this.timer = null;
    for (const m of [...this.list]) this.remove(m, "pool closed");
  }

  private score(m: Member, now: number): number {
    return healthScore(m.health.rtt, m.health.errors(now, this.config.errorWindow));
  }

  /**
   * The URL index of the member to open now, or null when none is needed: when
   * fewer than `minConnections` are healthy or connecting, when requests wait
   * and nothing is connecting, or when the top tier is busy and nothing is
   * connecting. Placement: not abandoned, not down (every member that is not
   * being replaced failing; a URL whose only members are being replaced is
   * not down, so a single-URL pool can open the replacement while the old
   * member still has requests in flight), fewest members not being replaced,
   * then higher priority, then URL order.
   */
  private growTarget(waiting: number): number | null {
    const healthy = this.healthy();
    const pending = this.list.filter((m) => !m.replacing && (m.client.state.kind === "idle" || m.client.state.kind === "connecting")).length;
    const needed =
      healthy.length + pending < this.config.minConnections ||
      (waiting > 0 && pending === 0) ||
      (pending === 0 && this.isBusy(healthy));
    if (!needed) return null;
    let best: { i: number; count: number; priority: number } | null = null;
    for (let i = 0; i < this.config.urls.length; i++) {
      if (this.abandoned.has(i)) continue;
      const live = this.list.filter((m) => m.urlIndex === i && !m.replacing);
      if (live.length > 0 && live.every((m) => FAILING.has(m.client.state.kind))) continue; // down
      const count = live.length;
      const priority = this.config.priorities[i] ?? 0;
      if (best === null || count < best.count || (count === best.count && priority > best.priority)) best = { i, count, priority };
    }
    return best?.i ?? null;
  }

  /** Closes extra members idle for `idleTimeout` while more than `minConnections` are healthy: from the URL with the most members, the longest idle, the newest. */
  private shrink(): void {
    const now = this.clock.now();
    const onUrl = (m: Member): number => this.list.filter((x) => x.urlIndex === m.urlIndex).length;
    for (;;) {
      const healthy = this.healthy();
      if (healthy.length <= this.config.minConnections) return;
      const idle = healthy
        .filter((m) => m.inFlight === 0 && now - m.lastUsed >= this.config.idleTimeout)
        .sort((a, b) => onUrl(b) - onUrl(a) || a.lastUsed - b.lastUsed || b.id - a.id);
      const victim = idle[0];
      if (victim === undefined) return;
      this.remove(victim, "idle extra connection");
    }
  }

  private add(urlIndex: number): void {
    const url = this.config.urls[urlIndex] ?? "";
    const client = new TetherClient({ ...this.clientOptions, url });
    const m: Member = {
      id: ++this.nextId,
      url,
      urlIndex,
      priority: this.config.priorities[urlIndex] ?? 0,
      client,
      health: new Health(),
      inFlight: 0,
      requests: 0,
      lastUsed: this.clock.now(),
      replacing: false,
      pinging: false,
      failedPings: 0,
      off: () => undefined,
    };
    m.off = client.onTransition((t) => {
      this.log(`#${String(m.id)} ${m.url}: ${t.old.kind} → ${t.new.kind}`, t.reason);
      if (!this.has(m)) return;
      if (t.new.kind === "connected") m.failedPings = 0;
      this.onChange();
    });
    this.list.push(m);
    this.log(`#${String(m.id)} opening ${url} (${String(this.list.length)} connections)`);
    client.start();
  }

  private remove(m: Member, why: string): void {
    const i = this.list.indexOf(m);
    if (i < 0) return;
    this.list.splice(i, 1);
    m.off();
    if (m.client.state.kind !== "closed") m.client.close();
    this.log(`#${String(m.id)} ${m.url} removed: ${why} (${String(this.list.length)} connections)`);
  }

  /** Pings `m` once; records the RTT, or an error when no pong comes within one interval. */
  private ping(m: Member): void {
    m.pinging = true;
    const sent = this.clock.now();
    let done = false;
    const finish = (rtt: number | null, fault: boolean): void => {
      if (done) return;
      done = true;
      this.clock.clearTimeout(timer);
      m.pinging = false;
      if (this.stopped || !this.has(m)) return;
      if (rtt !== null) {
        m.health.recordRtt(rtt);
        m.failedPings = 0;
      } else if (fault) {
        m.health.recordError(this.clock.now());
        m.failedPings += 1;
        if (m.failedPings >= FAILED_HEALTH_CHECKS_TO_REPLACE && !m.replacing) {
          m.replacing = true;
          this.log(`#${String(m.id)} ${m.url}: ${String(m.failedPings)} failed health checks, replacing it`);
        }
      }
      this.onChange();
    };
    const timer = this.clock.setTimeout(() => {
      finish(null, true);
    }, this.config.healthCheckInterval);
    m.client.request({ type: "ping" }).then(
      () => {
        finish(this.clock.now() - sent, false);
      },
      (e: unknown) => {
        finish(null, isConnectionFault(e));
      },
    );
  }
}
